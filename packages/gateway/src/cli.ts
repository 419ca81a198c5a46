#!/usr/bin/env node
// The `connect-gateway` command: `serve` runs the gateway from a routes file
// and the environment; `dev` runs it with a development token issuer;
// `token` mints a development user token; `explain` says why a service
// refuses a signed request.
//
// The published dist/cli.js is this file bundled with the gateway's own
// modules by esbuild (`npm run build`; packages, connect-gateway included,
// stay imports): Node's ES module loader costs about a millisecond a file at
// start-up, and one file instead of ~40 brought `serve`'s cold start from
// ~1.25× to ~1.17× a bare fastify + @fastify/http-proxy script here.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { createGateway } from "./create-gateway.js";
import { shellExports, shellWord, startDevGateway, type DevGateway } from "./dev-gateway.js";
import { DEV_TOKEN_DEFAULTS, DevTokenError, signDevUserToken } from "./dev-token-issuer.js";
import { parseDuration } from "./duration.js";
import { explainSignature, formatExplanation, parseCapture } from "./explain-signature.js";
import { installedTarballs, scaffoldService, ScaffoldError, type ScaffoldPart } from "./scaffold-service.js";
import { drainTimeoutFromEnv, gatewayConfigFromEnv } from "./gateway-env.js";
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
GATEWAY_DRAIN_TIMEOUT_MS (on SIGTERM/SIGINT/SIGHUP, how long open calls may finish; default 10000), and the
others listed in the README. $VARS in proxy_upstream / upstream come from the environment too.
PORT / HOST are the defaults of --port / --host.`,
    flags: ["routes", "port", "host"],
  },
  dev: {
    usage: `Usage: connect-gateway dev --routes routes.yaml [--port 8080] [--oauth-port 4000]

Runs the gateway for your routes file together with a development token issuer, both on 127.0.0.1
(never in production: the issuer mints a token for anyone who asks). Services use the client's
defaults: GATEWAY_URL (the gateway) and APPCENTER_URL (the issuer, token endpoint /oauth/token), with
the client id and secret it prints. Frontends get user tokens from POST <issuer>/dev/user-token, or from
\`connect-gateway token\`. Secrets are taken from the environment when set, so your backends keep
theirs across restarts: GATEWAY_HMAC_SECRET, JWT_SECRET, GATEWAY_CLIENT_ID (default dev-client),
GATEWAY_CLIENT_SECRET; DEV_CLIENT_SCOPES (default: every scope in the routes file); LOG_LEVEL (default
info); $VARS in upstreams come from the environment too.`,
    flags: ["routes", "port", "oauth-port"],
  },
  token: {
    usage: `Usage: connect-gateway token --user alice [--scopes "read write:agents"] [--email a@example.com]
                            [--first-name Alice] [--last-name Doe] [--client dev-frontend] [--ttl 1h]

Prints a development user token that \`connect-gateway dev\` accepts: HS256, signed with JWT_SECRET from
the environment (the same value the running dev stack uses), issuer and audience
${DEV_TOKEN_DEFAULTS.issuer}. Use it as "Authorization: Bearer <token>".`,
    flags: ["user", "scopes", "email", "first-name", "last-name", "client", "ttl"],
  },
  init: {
    usage: `Usage: connect-gateway init --name order-history [--dir .] [--skip client,test]

Writes a new service behind the gateway into --dir (default: the current folder; created if needed):
package.json, tsconfig.json, .gitignore, buf.yaml and buf.gen.yaml, the proto with the backend option,
the service (src/service.ts) and its server wired with createGatewayAuth and resolveUser / onMissingUser
stubs (src/server.ts), a client calling it through the gateway (src/client.ts), a test calling it as the
gateway would (test/service.test.ts), a routes.yaml for the gateway, and a README. Then: npm install && npm test. --skip leaves out
client and/or test. It never overwrites a file: if any exists, it writes nothing.`,
    flags: ["name", "dir", "skip"],
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
    flags: ["request", "body", "secret-env", "max-skew"],
  },
} satisfies Record<string, { usage: string; flags: readonly string[] }>;

const usage = `Usage: connect-gateway <command> [options]

Commands:
  serve     run the gateway from a routes file and the environment
  dev       run it for local development, with a development token issuer
  token     print a development user token
  init      write a new service behind the gateway (proto, server, client, test)
  explain   say why a service refuses a request the gateway signed

Options:
  -h, --help     this help (connect-gateway <command> --help for a command's)
  -v, --version  the version`;

/** A mistake in how the command was called (a flag unknown, missing or with a bad value): exit 2, no stack. */
class UsageError extends Error {
  override name = "UsageError";
}

/**
 * The command was called right, but what it works with is not as it needs
 * (a secret variable unset or too short, a file missing, or in the way):
 * exit 1, like a configuration error, no stack.
 */
class CommandFailure extends Error {
  override name = "CommandFailure";
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  // No command is a usage mistake (exit 2, the usage on stderr); asking for help is not.
  if (command === undefined) throw new UsageError(`a command is needed\n\n${usage}`);
  if (command === "help" || command === "--help" || command === "-h") {
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
    // Each command's flags take a value; every command has --help (-h).
    const options: ParseArgsConfig["options"] = {
      ...Object.fromEntries(spec.flags.map((flag) => [flag, { type: "string" as const }])),
      help: { type: "boolean", short: "h" },
    };
    ({ values } = parseArgs({ args: rest, options, strict: true, allowPositionals: false }) as { values: typeof values });
  } catch (e) {
    throw new UsageError(`${(e as Error).message}\n\n${spec.usage}`);
  }
  if (values.help) {
    console.log(spec.usage);
    return;
  }
  if (command === "serve") return serve(values as { routes?: string; port?: string; host?: string });
  if (command === "dev") return dev(values as { routes?: string; port?: string; "oauth-port"?: string });
  if (command === "token") return token(values as TokenFlags);
  if (command === "init") return init(values as { name?: string; dir?: string; skip?: string });
  return explain(values as { request?: string; body?: string; "secret-env"?: string; "max-skew"?: string });
}

function version(): string {
  // ../package.json from src/ in the repository and from dist/ when installed.
  return (createRequire(import.meta.url)("../package.json") as { version: string }).version;
}

async function serve(values: { routes?: string; port?: string; host?: string }): Promise<void> {
  if (values.routes === undefined) throw new UsageError(`serve needs --routes <file>\n\n${commands.serve.usage}`);
  // The command line first: a usage mistake is told as one (exit 2) before the environment is read.
  const port = portOption(values.port, "--port", "PORT", "8080", commands.serve.usage);
  const config = gatewayConfigFromEnv(values.routes);
  const gateway = createGateway(config);
  const host = values.host ?? process.env.HOST ?? "127.0.0.1";
  let url: string;
  try {
    url = await gateway.listen({ port, host });
  } catch (e) {
    // A host that names no address of this machine: say where it came from.
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOTFOUND" || code === "EADDRNOTAVAIL" || code === "EAI_AGAIN") {
      await gateway.close();
      const from = values.host !== undefined ? "--host" : process.env.HOST !== undefined ? "HOST" : "the default host";
      throw new CommandFailure(`cannot listen on ${JSON.stringify(host)} (${from}): ${code === "EADDRNOTAVAIL" ? "not an address of this machine" : "no such host"}; use 127.0.0.1, 0.0.0.0 or an address of this machine`);
    }
    throw e;
  }
  closeOnSignal(() => gateway.close(), gateway.drainTimeoutMs);
  console.log(`connect-gateway listening on ${url} (${routeCount(gateway.routes)})`);
}

async function dev(values: { routes?: string; port?: string; "oauth-port"?: string }): Promise<void> {
  if (values.routes === undefined) throw new UsageError(`dev needs --routes <file>\n\n${commands.dev.usage}`);
  const drainTimeoutMs = drainTimeoutFromEnv();
  const port = portOption(values.port, "--port", "PORT", "8080", commands.dev.usage);
  const oauthPort = portOption(values["oauth-port"], "--oauth-port", undefined, "4000", commands.dev.usage);
  if (port === oauthPort && port !== 0) {
    throw new UsageError(`--port and --oauth-port must differ (the gateway and its token issuer each need one): both are ${port}\n\n${commands.dev.usage}`);
  }
  let stack: DevGateway;
  try {
    stack = await startDevGateway({ routes: values.routes, port, oauthPort, ...(drainTimeoutMs !== undefined && { drainTimeoutMs }) });
  } catch (e) {
    // A port in use: name the one flag that chooses another.
    const taken = (e as NodeJS.ErrnoException & { port?: number }).code === "EADDRINUSE" ? (e as { port?: number }).port : undefined;
    if (taken !== undefined && (taken === port || taken === oauthPort)) {
      const flag = taken === oauthPort ? "--oauth-port (the token issuer's)" : "--port (the gateway's)";
      throw new CommandFailure(`port ${taken} on 127.0.0.1 is in use by another process: choose another with ${flag}`);
    }
    throw e;
  }
  closeOnSignal(() => stack.close(), stack.gateway.drainTimeoutMs);
  console.log(devSummary(stack));
}

/**
 * A port from its flag, else from `env` (when the command reads one), else
 * `fallback`. A bad flag value is a usage mistake (exit 2, with the usage); a
 * bad `PORT` in the environment names the variable (exit 1).
 */
function portOption(flagValue: string | undefined, flag: string, env: string | undefined, fallback: string, usage: string): number {
  const fromEnv = flagValue === undefined && env !== undefined ? process.env[env] : undefined;
  const value = flagValue ?? fromEnv ?? fallback;
  try {
    return parsePort(value, fromEnv !== undefined ? (env as string) : flag);
  } catch (e) {
    const message = `${(e as Error).message}, got ${JSON.stringify(value)}`;
    throw flagValue !== undefined ? new UsageError(`${message}\n\n${usage}`) : new CommandFailure(message);
  }
}

/** "1 route, 2 backends". */
function routeCount(routes: { readonly routes: readonly unknown[]; readonly backends: readonly unknown[] }): string {
  const count = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;
  return `${count(routes.routes.length, "route")}, ${count(routes.backends.length, "backend")}`;
}

/**
 * How to run this CLI again, as printed advice: `npx connect-gateway` when
 * it runs from a project's node_modules (not on PATH there), else its bare
 * name. Never a bare `npx` outside a project, which would fetch whatever the
 * registry holds under that name.
 */
function cliName(): string {
  return /[\\/]node_modules[\\/]/.test(process.argv[1] ?? "") ? "npx connect-gateway" : "connect-gateway";
}

/** What `dev` prints: where everything is and the values to point services and frontends at. */
function devSummary(stack: DevGateway): string {
  const { gateway, issuer, client } = stack;
  // Entries signing with their own secret (`hmac_secret: $VAR`): their services verify with that one.
  const entries = [...gateway.routes.backends.map((b) => ({ name: `/backend/${b.name}`, env: b.hmacSecretEnv })), ...gateway.routes.routes.map((r) => ({ name: `${r.method} ${r.path}`, env: r.hmacSecretEnv }))];
  const ownSecret = entries.filter((e) => e.env !== undefined);
  const sharedBy = ownSecret.length === 0 ? "backends behind this gateway" : ownSecret.length === entries.length ? "no entry: each has its own hmac_secret" : "the entries without their own hmac_secret";
  const own = ownSecret.map((e) => `\n  # ${e.name} signs with $${e.env as string} (its service's createGatewayAuth secret)`).join("");
  return `connect-gateway dev: ${gateway.routes.source} (${routeCount(gateway.routes)})
  gateway        ${gateway.url}
  token issuer   ${issuer.url}  (development only: client_credentials at /oauth/token, user tokens at /dev/user-token)

Point your services at it: paste these into the shell that starts them (set them before starting dev
to keep them across restarts):
${shellExports([
  { name: "GATEWAY_URL", value: gateway.url },
  { name: "APPCENTER_URL", value: issuer.url },
  { name: "GATEWAY_CLIENT_ID", value: client.clientId },
  { name: "GATEWAY_CLIENT_SECRET", value: client.clientSecret, note: `scopes: ${client.scopes.join(" ") || "-"}` },
  { name: "GATEWAY_HMAC_SECRET", value: stack.hmacSecret, note: `for ${sharedBy}: createGatewayAuth` },
  { name: "JWT_SECRET", value: stack.signing.secret, note: `for ${cliName()} token` },
])}${own}

A user token for a frontend or curl (with JWT_SECRET set as above):
  ${cliName()} token --user alice --scopes ${shellWord(client.scopes.join(" "))}
  curl -s -H 'content-type: application/json' -d '{"sub":"alice","scope":"${client.scopes.join(" ")}"}' ${issuer.userTokenUrl}

Ctrl-C stops it.`;
}

interface TokenFlags {
  user?: string;
  scopes?: string;
  email?: string;
  "first-name"?: string;
  "last-name"?: string;
  client?: string;
  ttl?: string;
}

async function token(values: TokenFlags): Promise<void> {
  if (values.user === undefined) throw new UsageError(`token needs --user <subject>\n\n${commands.token.usage}`);
  const secret = process.env.JWT_SECRET;
  if (secret === undefined || secret.length < 32) {
    throw new CommandFailure("token signs with JWT_SECRET, which is not set or shorter than 32 characters (connect-gateway dev prints the value it uses)");
  }
  let ttlSeconds: number = DEV_TOKEN_DEFAULTS.ttlSeconds;
  if (values.ttl !== undefined) {
    const ms = parseDuration(values.ttl);
    if (ms === undefined || ms < 1000) throw new UsageError(`--ttl must be a duration such as 15m or 1h, got ${JSON.stringify(values.ttl)}`);
    ttlSeconds = Math.floor(ms / 1000);
  }
  // A comma may be part of a scope (RFC 6749 §3.3), so "read,write" is one
  // scope, which no route names: say so, rather than mint a token that
  // fails later with INSUFFICIENT_SCOPE.
  const commaScopes = (values.scopes ?? "").split(" ").filter((s) => s.includes(","));
  if (commaScopes.length > 0) {
    console.error(
      `connect-gateway token: note: --scopes takes scopes separated by spaces; ${commaScopes.map((s) => JSON.stringify(s)).join(", ")} ` +
        `is one scope (for several: --scopes "${commaScopes.map((s) => s.split(",").filter((p) => p !== "").join(" ")).join(" ")}")`,
    );
  }
  const flagOf: Record<string, string> = {
    subject: "--user",
    scopes: "--scopes",
    email: "--email",
    firstName: "--first-name",
    lastName: "--last-name",
    clientId: "--client",
  };
  try {
    console.log(
      await signDevUserToken(
        { secret, ttlSeconds },
        {
          subject: values.user,
          scopes: values.scopes?.split(" ").filter((s) => s !== ""),
          email: values.email,
          firstName: values["first-name"],
          lastName: values["last-name"],
          clientId: values.client,
        },
      ),
    );
  } catch (e) {
    if (e instanceof DevTokenError) throw new UsageError(`${flagOf[e.field] ?? e.field} ${e.message.slice(e.field.length + 1)}`);
    throw e;
  }
}

function init(values: { name?: string; dir?: string; skip?: string }): void {
  if (values.name === undefined) throw new UsageError(`init needs --name <service>\n\n${commands.init.usage}`);
  const skip = (values.skip ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
  const unknown = skip.filter((s) => s !== "client" && s !== "test");
  if (unknown.length > 0) throw new UsageError(`--skip takes client and/or test, got ${unknown.join(", ")}`);
  const dir = values.dir ?? ".";
  try {
    const tarballs = installedTarballs(process.cwd());
    const written = scaffoldService({ dir, name: values.name, skip: skip as ScaffoldPart[], connectGatewayVersion: `^${version()}`, tarballs });
    const next = skip.includes("test") ? "npm run typecheck" : "npm test";
    console.log(
      `Wrote ${written.length} files into ${dir}:\n${written.map((f) => `  ${f}`).join("\n")}\n\nNext: cd ${dir} && npm install && ${next}\n` +
        (tarballs !== undefined
          ? `(Its package.json depends on the tarballs this project installed: ${tarballs.library}, ${tarballs.gateway}.)`
          : "(Until connect-gateway is on the npm registry, install both tarballs in one command instead of the first `npm install`:\n" +
            ` npm install <checkout>/connect-gateway-${version()}.tgz <checkout>/connect-gateway-gateway-${version()}.tgz)`),
    );
  } catch (e) {
    if (e instanceof ScaffoldError) throw e.flag !== undefined ? new UsageError(e.message) : new CommandFailure(e.message);
    throw e;
  }
}

function explain(values: { request?: string; body?: string; "secret-env"?: string; "max-skew"?: string }): void {
  if (values.request === undefined) throw new UsageError(`explain needs --request <capture file>\n\n${commands.explain.usage}`);
  const secretEnv = values["secret-env"] ?? "GATEWAY_HMAC_SECRET";
  const secret = process.env[secretEnv];
  if (secret === undefined || secret === "") throw new CommandFailure(`explain reads the secret from ${secretEnv}, which is not set (--secret-env names another variable)`);
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
    throw new CommandFailure(`${flag} ${path}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
}

const args = process.argv.slice(2);
main(args).catch((e: unknown) => {
  const portFlags = args[0] === "dev" ? "--port (the gateway) or --oauth-port (the token issuer)" : "--port";
  console.error(e instanceof UsageError || e instanceof CommandFailure ? `connect-gateway: ${e.message}` : startupErrorMessage(e, portFlags));
  process.exit(e instanceof UsageError ? 2 : 1);
});
