#!/usr/bin/env node
// The `connect-gateway` command: `serve` runs the gateway from a routes file
// and the environment; `explain` says why a service refuses a signed request.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { createGateway, DEFAULT_DRAIN_TIMEOUT_MS } from "./create-gateway.js";
import { explainSignature, formatExplanation, parseCapture } from "./explain-signature.js";
import { gatewayConfigFromEnv } from "./gateway-env.js";
import { closeOnSignal, parsePort, startupErrorMessage } from "./process-lifecycle.js";

const commands = {
  serve: {
    usage: `Usage: connect-gateway serve --routes routes.yaml [--port 8080] [--host 127.0.0.1]

Runs the gateway. It listens on loopback (127.0.0.1) unless --host or HOST says otherwise: in a
container, pass --host 0.0.0.0 (or HOST=0.0.0.0) so that other containers can reach it.
Configuration from the environment: GATEWAY_HMAC_SECRET (required);
JWT_SECRET [JWT_ISSUER JWT_AUDIENCE] for HS256 tokens; JWKS_URL OAUTH2_ISSUER OAUTH2_AUDIENCE
for an OAuth2 server's tokens; INTROSPECTION_URL INTROSPECTION_CLIENT_ID INTROSPECTION_CLIENT_SECRET
for opaque tokens; REDIS_URL, RATE_LIMIT_MAX, RATE_LIMIT_WINDOW, BODY_LIMIT, CORS_ORIGINS, LOG_LEVEL,
GATEWAY_DRAIN_TIMEOUT_MS (on SIGTERM/SIGINT, how long open calls may finish; default 10000), and the
others listed in the README. $VARS in proxy_upstream / upstream come from the environment too.
PORT / HOST are the defaults of --port / --host.`,
    options: {
      routes: { type: "string" },
      port: { type: "string" },
      host: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  },
  explain: {
    usage: `Usage: connect-gateway explain --request capture.http [--body body.bin] [--secret-env GATEWAY_HMAC_SECRET] [--max-skew 30]

Explains why a service accepts or refuses a request signed by the gateway. --request is the request as
the service received it: the raw HTTP/1.1 message (request line, headers, an empty line, the body), or
JSON {"method", "target", "headers", "body" | "bodyBase64"}; --body replaces its body with a file's
bytes. The secret is read from the environment variable --secret-env names (default
GATEWAY_HMAC_SECRET), never from the command line. Prints, for each signature (v1, v2), whether it
matches, the first field that changed between the gateway and the service (a path prefix, an encoding,
a re-serialised body, a Content-Type, a different secret), and both canonical strings field by field.
Never prints the secret or a signature. Exits 0 when every signature matches inside the window, 1 when
not.`,
    options: {
      request: { type: "string" },
      body: { type: "string" },
      "secret-env": { type: "string" },
      "max-skew": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  },
} satisfies Record<string, { usage: string; options: ParseArgsConfig["options"] }>;

const usage = `Usage: connect-gateway <command> [options]

Commands:
  serve     run the gateway from a routes file and the environment
  explain   say why a service refuses a request the gateway signed

Options:
  -h, --help     this help (connect-gateway <command> --help for a command's)
  -v, --version  the version`;

/** A mistake in how the command was called: printed with the usage, no stack. */
class UsageError extends Error {
  override name = "UsageError";
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "help" || command === "--help" || command === "-h") {
    console.log(usage);
    return;
  }
  if (command === "--version" || command === "-v") {
    console.log(version());
    return;
  }
  if (!(command in commands)) throw new UsageError(`unknown command "${command}"\n\n${usage}`);
  const spec = commands[command as keyof typeof commands];
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: rest, options: spec.options, strict: true, allowPositionals: false }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${spec.usage}`);
  }
  if (values.help) {
    console.log(spec.usage);
    return;
  }
  if (command === "serve") return serve(values as { routes?: string; port?: string; host?: string });
  return explain(values as { request?: string; body?: string; "secret-env"?: string; "max-skew"?: string });
}

function version(): string {
  // ../package.json from src/ in the repository and from dist/ when installed.
  return (createRequire(import.meta.url)("../package.json") as { version: string }).version;
}

async function serve(values: { routes?: string; port?: string; host?: string }): Promise<void> {
  if (values.routes === undefined) throw new UsageError(`serve needs --routes <file>\n\n${commands.serve.usage}`);
  const config = gatewayConfigFromEnv(values.routes);
  const gateway = createGateway(config);
  const url = await gateway.listen({
    port: parsePort(values.port ?? process.env.PORT ?? "8080", "--port"),
    host: values.host ?? process.env.HOST ?? "127.0.0.1",
  });
  closeOnSignal(() => gateway.close(), config.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS);
  console.log(`connect-gateway listening on ${url} (${gateway.routes.routes.length} routes, ${gateway.routes.backends.length} backends)`);
}

function explain(values: { request?: string; body?: string; "secret-env"?: string; "max-skew"?: string }): void {
  if (values.request === undefined) throw new UsageError(`explain needs --request <capture file>\n\n${commands.explain.usage}`);
  const secretEnv = values["secret-env"] ?? "GATEWAY_HMAC_SECRET";
  const secret = process.env[secretEnv];
  if (secret === undefined || secret === "") throw new UsageError(`explain reads the secret from ${secretEnv}, which is not set (--secret-env names another variable)`);
  const maxSkew = values["max-skew"] ?? "30";
  if (!/^[0-9]{1,6}$/.test(maxSkew)) throw new UsageError(`--max-skew must be a number of seconds, got ${JSON.stringify(maxSkew)}`);
  let request = parseCapture(readFile(values.request, "--request"));
  if (values.body !== undefined) request = { ...request, body: readFile(values.body, "--body") };
  const explanation = explainSignature(request, secret, { maxSkewSeconds: Number(maxSkew) });
  console.log(formatExplanation(explanation, Number(maxSkew)));
  if (explanation.outsideWindow || explanation.signatures.some((s) => !s.matches)) process.exitCode = 1;
}

function readFile(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new UsageError(`${flag} ${path}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  console.error(e instanceof UsageError ? `connect-gateway: ${e.message}` : startupErrorMessage(e));
  process.exit(e instanceof UsageError ? 2 : 1);
});
