// `npm start`: the whole local stack in one process — an OAuth2 server, the
// example backends and the gateway — then the example client's tour through
// them, then it keeps serving for your own services to use.
import { parseArgs } from "node:util";
import {
  closeOnSignal,
  DEFAULT_DRAIN_TIMEOUT_MS,
  drainTimeoutFromEnv,
  parsePort,
  shellExports,
  startupErrorMessage,
} from "@connect-gateway/gateway";
import { runExampleClientTour } from "./client-tour.js";
import { startDevStack, type DevStack } from "./dev-stack.js";

const usage = `Usage: npm start -- [--routes examples/routes.yaml] [--port 8080] [--oauth-port 4000]
  Starts an OAuth2 server, the example backends and the gateway in this process, runs the
  example client through them, then keeps serving.`;

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      routes: { type: "string" },
      port: { type: "string" },
      "oauth-port": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(usage);
    return;
  }
  await dev(values);
}

async function dev(values: { routes?: string; port?: string; "oauth-port"?: string }): Promise<void> {
  console.log("npm start: the whole system in one process, no outside service\n");
  const drainTimeoutMs = drainTimeoutFromEnv();
  const stack = await startDevStack({
    ...(drainTimeoutMs !== undefined && { drainTimeoutMs }),
    routesFile: values.routes ?? "examples/routes.yaml",
    gatewayPort: parsePort(values.port ?? "8080", "--port"),
    oauthPort: parsePort(values["oauth-port"] ?? "4000", "--oauth-port"),
  });
  closeOnSignal(() => stack.close(), drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS);
  printStarted(stack);
  const steps = await runExampleClientTour(stack, (line) => console.log(line));
  printServing(stack);
  if (steps.some((s) => !s.ok)) {
    console.log("\nSome steps of the tour failed (see above); the stack keeps serving for inspection.");
    process.exitCode = 1;
  }
}

function printStarted(stack: DevStack): void {
  console.log(`  ✔ OAuth2 server   ${stack.oauth.issuer}  (oidc-provider, in memory; JWT access tokens, JWKS ${stack.oauth.jwksUrl})`);
  console.log(`  ✔ echo backend    ${stack.echo.url}  (example.v1.EchoService over h2c, createGatewayAuth)`);
  console.log(`  ✔ agents backend  ${stack.agents.url}  (REST /api/v1/agents, createGatewayAuth)`);
  console.log(`  ✔ gateway         ${stack.gateway.url}  (${stack.gateway.routes.source}; HTTP/1.1 and h2c)`);
}

function printServing(stack: DevStack): void {
  const { gateway, oauth, client } = stack;
  console.log(`
Serving. Point your own services at it: paste these into the shell that starts them:
${shellExports([
  { name: "GATEWAY_URL", value: gateway.url },
  { name: "APPCENTER_URL", value: oauth.issuer },
  { name: "GATEWAY_TOKEN_PATH", value: new URL(oauth.tokenUrl).pathname, note: "this OAuth2 server's token endpoint" },
  { name: "GATEWAY_CLIENT_ID", value: client.clientId },
  { name: "GATEWAY_CLIENT_SECRET", value: client.clientSecret, note: `scopes: ${client.scopes.join(" ")}` },
  { name: "GATEWAY_HMAC_SECRET", value: stack.hmacSecret, note: "for backends behind this gateway" },
])}

Try it:
  TOKEN=$(curl -s -u '${client.clientId}:${client.clientSecret}' -d grant_type=client_credentials --data-urlencode 'scope=${client.scopes.join(" ")}' ${oauth.tokenUrl} | sed -E 's/.*"access_token":"([^"]+)".*/\\1/')
  curl -s -H "Authorization: Bearer $TOKEN" ${gateway.url}/api/v1/agents
  npx buf curl --schema . --http2-prior-knowledge -H "Authorization: Bearer $TOKEN" \\
    --data '{"text":"hi"}' ${gateway.url}/backend/echo/example.v1.EchoService/Echo

Ctrl-C stops everything.`);
}

main(process.argv.slice(2)).catch((e: unknown) => {
  console.error(startupErrorMessage(e, "npm start -- --port <gateway port> --oauth-port <OAuth2 port>"));
  process.exit(1);
});
