#!/usr/bin/env node
// The `connect-gateway` command: `serve` runs the gateway from a routes file
// and the environment; `dev` (`npm start`) runs the whole local stack.
import { parseArgs } from "node:util";
import { ConfigurationError } from "../client/index.js";
import { createGateway, DEFAULT_DRAIN_TIMEOUT_MS } from "./create-gateway.js";
import { startDevStack, type DevStack } from "./dev-stack.js";
import { runExampleClientTour } from "./example-client-tour.js";
import { drainTimeoutFromEnv, gatewayConfigFromEnv } from "./gateway-env.js";

const usage = `Usage:
  connect-gateway serve --routes routes.yaml [--port 8080] [--host 0.0.0.0]
      Runs the gateway. Configuration from the environment: GATEWAY_HMAC_SECRET (required);
      JWT_SECRET [JWT_ISSUER JWT_AUDIENCE] for HS256 tokens; JWKS_URL OAUTH2_ISSUER OAUTH2_AUDIENCE
      for an OAuth2 server's tokens; INTROSPECTION_URL INTROSPECTION_CLIENT_ID INTROSPECTION_CLIENT_SECRET
      for opaque tokens; REDIS_URL, RATE_LIMIT_MAX, RATE_LIMIT_WINDOW, BODY_LIMIT, CORS_ORIGINS, LOG_LEVEL,
      GATEWAY_DRAIN_TIMEOUT_MS (on SIGTERM/SIGINT, how long open calls may finish; default 10000).
      $VARS in proxy_upstream / upstream come from the environment too. PORT / HOST are defaults.
  connect-gateway dev [--routes examples/routes.yaml] [--port 8080] [--oauth-port 4000]
      Starts an OAuth2 server, the example backends and the gateway in this process, runs the
      example client through them, then keeps serving (npm start).`;

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      routes: { type: "string" },
      port: { type: "string" },
      host: { type: "string" },
      "oauth-port": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help || command === undefined || command === "help") {
    console.log(usage);
    return;
  }
  if (command === "serve") return serve(values);
  if (command === "dev") return dev(values);
  throw new Error(`unknown command "${command}"\n\n${usage}`);
}

async function serve(values: { routes?: string; port?: string; host?: string }): Promise<void> {
  if (values.routes === undefined) throw new Error(`serve needs --routes <file>\n\n${usage}`);
  const config = gatewayConfigFromEnv(values.routes);
  const gateway = createGateway(config);
  const url = await gateway.listen({
    port: port(values.port ?? process.env.PORT ?? "8080", "--port"),
    host: values.host ?? process.env.HOST ?? "0.0.0.0",
  });
  closeOnSignal(() => gateway.close(), config.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS);
  console.log(`connect-gateway listening on ${url} (${gateway.routes.routes.length} routes, ${gateway.routes.backends.length} backends)`);
}

async function dev(values: { routes?: string; port?: string; "oauth-port"?: string }): Promise<void> {
  console.log("connect-gateway dev: the whole system in one process, no outside service\n");
  const drainTimeoutMs = drainTimeoutFromEnv();
  const stack = await startDevStack({
    ...(drainTimeoutMs !== undefined && { drainTimeoutMs }),
    routesFile: values.routes ?? "examples/routes.yaml",
    gatewayPort: port(values.port ?? "8080", "--port"),
    oauthPort: port(values["oauth-port"] ?? "4000", "--oauth-port"),
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
Serving. Point your own services at it:
  GATEWAY_URL=${gateway.url}
  APPCENTER_URL=${oauth.issuer}     (token endpoint ${oauth.tokenUrl}: use tokenPath "/token")
  GATEWAY_CLIENT_ID=${client.clientId}
  GATEWAY_CLIENT_SECRET=${client.clientSecret}     (scopes: ${client.scopes.join(" ")})
  GATEWAY_HMAC_SECRET=${stack.hmacSecret}     (for backends behind this gateway)

Try it:
  TOKEN=$(curl -s -u '${client.clientId}:${client.clientSecret}' -d grant_type=client_credentials ${oauth.tokenUrl} | sed -E 's/.*"access_token":"([^"]+)".*/\\1/')
  curl -s -H "Authorization: Bearer $TOKEN" ${gateway.url}/api/v1/agents
  npx buf curl --schema proto --http2-prior-knowledge -H "Authorization: Bearer $TOKEN" \\
    --data '{"text":"hi"}' ${gateway.url}/backend/echo/example.v1.EchoService/Echo

Ctrl-C stops everything.`);
}

function port(value: string, option: string): number {
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || n > 65535) throw new Error(`${option} must be a port number (0-65535)`);
  return n;
}

/**
 * SIGTERM / SIGINT: a graceful close (no new connections, idle ones closed,
 * open calls get `drainTimeoutMs`, then are cut), then exit 0. A close that
 * still hangs well after the drain timeout, or a second signal, exits at once.
 */
function closeOnSignal(close: () => Promise<void>, drainTimeoutMs: number): void {
  let closing = false;
  const onSignal = () => {
    if (closing) process.exit(0);
    closing = true;
    setTimeout(() => {
      console.error("connect-gateway: shutdown did not finish after the drain timeout; exiting");
      process.exit(0);
    }, drainTimeoutMs + CLOSE_GRACE_MS).unref();
    close().then(
      () => process.exit(0),
      (e: unknown) => {
        console.error(`connect-gateway: error while shutting down: ${messageOf(e)}`);
        process.exit(0);
      },
    );
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, onSignal);
}

/** What a close may take beyond the drain timeout (closing upstream pools, Redis) before the process exits anyway. */
const CLOSE_GRACE_MS = 5_000;

main(process.argv.slice(2)).catch((e: unknown) => {
  // Configuration and routes-file errors are meant for the reader: no stack.
  console.error(messageOf(e));
  process.exit(1);
});

function messageOf(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  // A ConfigurationError's message already starts with "connect-gateway: ".
  if (e instanceof ConfigurationError) return e.message;
  const hint = (e as NodeJS.ErrnoException).code === "EADDRINUSE" ? " (another process holds it: choose a port with --port, or --oauth-port for dev)" : "";
  return `connect-gateway: ${e.message}${hint}`;
}
