#!/usr/bin/env node
// The `connect-gateway` command: `serve` runs the gateway from a routes file
// and the environment.
import { parseArgs } from "node:util";
import { createGateway, DEFAULT_DRAIN_TIMEOUT_MS } from "./create-gateway.js";
import { gatewayConfigFromEnv } from "./gateway-env.js";
import { closeOnSignal, parsePort, startupErrorMessage } from "./process-lifecycle.js";

const usage = `Usage:
  connect-gateway serve --routes routes.yaml [--port 8080] [--host 0.0.0.0]
      Runs the gateway. Configuration from the environment: GATEWAY_HMAC_SECRET (required);
      JWT_SECRET [JWT_ISSUER JWT_AUDIENCE] for HS256 tokens; JWKS_URL OAUTH2_ISSUER OAUTH2_AUDIENCE
      for an OAuth2 server's tokens; INTROSPECTION_URL INTROSPECTION_CLIENT_ID INTROSPECTION_CLIENT_SECRET
      for opaque tokens; REDIS_URL, RATE_LIMIT_MAX, RATE_LIMIT_WINDOW, BODY_LIMIT, CORS_ORIGINS, LOG_LEVEL,
      GATEWAY_DRAIN_TIMEOUT_MS (on SIGTERM/SIGINT, how long open calls may finish; default 10000).
      $VARS in proxy_upstream / upstream come from the environment too. PORT / HOST are defaults.`;

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      routes: { type: "string" },
      port: { type: "string" },
      host: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help || command === undefined || command === "help") {
    console.log(usage);
    return;
  }
  if (command === "serve") return serve(values);
  throw new Error(`unknown command "${command}"\n\n${usage}`);
}

async function serve(values: { routes?: string; port?: string; host?: string }): Promise<void> {
  if (values.routes === undefined) throw new Error(`serve needs --routes <file>\n\n${usage}`);
  const config = gatewayConfigFromEnv(values.routes);
  const gateway = createGateway(config);
  const url = await gateway.listen({
    port: parsePort(values.port ?? process.env.PORT ?? "8080", "--port"),
    host: values.host ?? process.env.HOST ?? "0.0.0.0",
  });
  closeOnSignal(() => gateway.close(), config.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS);
  console.log(`connect-gateway listening on ${url} (${gateway.routes.routes.length} routes, ${gateway.routes.backends.length} backends)`);
}

main(process.argv.slice(2)).catch((e: unknown) => {
  console.error(startupErrorMessage(e));
  process.exit(1);
});
