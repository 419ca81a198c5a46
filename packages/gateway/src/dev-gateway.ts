// `connect-gateway dev`: the gateway and a development token issuer in one
// process, for a developer's own backends and frontends. Secrets come from
// the environment when set, so a backend configured once keeps working across
// restarts; otherwise they are random and printed.
import { randomBytes } from "node:crypto";
import type { GatewayEnv } from "connect-gateway/protocol";
import type { FastifyReply, FastifyRequest } from "fastify";
import { createGateway, type Gateway } from "./create-gateway.js";
import { DEV_TOKEN_DEFAULTS, startDevTokenIssuer, type DevClient, type DevTokenIssuer, type DevTokenSigning } from "./dev-token-issuer.js";
import { gatewayLimitsFromEnv } from "./gateway-env.js";
import { GatewayHttpError } from "./gateway-http-error.js";
import { isLoopbackHost } from "./loopback-only.js";
import { loadRoutesFile, type RoutesFile } from "./routes-file.js";

/** Options of {@link startDevGateway}. */
export interface DevGatewayOptions {
  /** The routes file (a path, `$VARS` from `env`) or a loaded one. */
  readonly routes: string | RoutesFile;
  /**
   * Where the secrets and `$VARS` come from (default `process.env`):
   * `GATEWAY_HMAC_SECRET`, `JWT_SECRET`, `GATEWAY_CLIENT_ID` (default
   * `dev-client`), `GATEWAY_CLIENT_SECRET`, `DEV_CLIENT_SCOPES` (default: every
   * scope the routes file names), `LOG_LEVEL` (default `info`); and, as for
   * `connect-gateway serve`, `CORS_*`, `BODY_LIMIT`, `RATE_LIMIT_*`,
   * `AUTH_FAILURE_LIMIT_*`, `REDIS_*` and the `GATEWAY_*_TIMEOUT_MS` ones.
   */
  readonly env?: GatewayEnv;
  /** The gateway's port; default 8080, 0 for any free one. */
  readonly port?: number;
  /** The token issuer's port; default 4000, 0 for any free one. */
  readonly oauthPort?: number;
  /** On close, how long open calls may finish. */
  readonly drainTimeoutMs?: number;
}

/** A running development stack: the gateway and its token issuer, both on 127.0.0.1. */
export interface DevGateway {
  readonly gateway: Gateway;
  readonly issuer: DevTokenIssuer;
  /** The secret the backends verify with (`GATEWAY_HMAC_SECRET`). */
  readonly hmacSecret: string;
  /** How tokens are signed (`JWT_SECRET` and the dev issuer/audience). */
  readonly signing: Required<DevTokenSigning>;
  /** The service client that may get client_credentials tokens. */
  readonly client: DevClient;
  close(): Promise<void>;
}

/**
 * Starts the gateway for `routes` and a development token issuer that it
 * trusts, on loopback. Services use it with the client's defaults: point
 * `GATEWAY_URL` at the gateway and `APPCENTER_URL` at the issuer (its token
 * endpoint is at the default `/oauth/token`).
 *
 * @example
 * ```ts
 * const dev = await startDevGateway({ routes: "routes.yaml", port: 0, oauthPort: 0 });
 * const token = await dev.issuer.issueUserToken({ subject: "alice", scopes: ["read"] });
 * await fetch(`${dev.gateway.url}/api/v1/agents`, { headers: { authorization: `Bearer ${token}` } });
 * await dev.close();
 * ```
 */
export async function startDevGateway(options: DevGatewayOptions): Promise<DevGateway> {
  const env = options.env ?? process.env;
  const routes = typeof options.routes === "string" ? loadRoutesFile(options.routes, { env }) : options.routes;
  const hmacSecret = env.GATEWAY_HMAC_SECRET || randomBytes(32).toString("hex");
  const signing = {
    secret: env.JWT_SECRET || randomBytes(32).toString("hex"),
    issuer: DEV_TOKEN_DEFAULTS.issuer,
    audience: DEV_TOKEN_DEFAULTS.audience,
    ttlSeconds: DEV_TOKEN_DEFAULTS.ttlSeconds,
  };
  const scopes = env.DEV_CLIENT_SCOPES !== undefined
    ? env.DEV_CLIENT_SCOPES.split(/[ ,]+/).filter((s) => s !== "")
    : [...new Set([...routes.routes, ...routes.backends].flatMap((r) => r.scopes))].sort();
  const client: DevClient = {
    clientId: env.GATEWAY_CLIENT_ID || "dev-client",
    clientSecret: env.GATEWAY_CLIENT_SECRET || randomBytes(24).toString("base64url"),
    scopes,
  };
  const issuer = await startDevTokenIssuer(signing, [client], { port: options.oauthPort ?? 4000 });
  let gateway: Gateway;
  try {
    gateway = createGateway({
      // The same CORS_*, BODY_LIMIT, RATE_LIMIT_*, … as `serve`; the secrets and tokens are the dev stack's own.
      ...gatewayLimitsFromEnv(env),
      routes,
      hmacSecret,
      tokens: { hs256: { secret: signing.secret, issuer: signing.issuer, audience: signing.audience } },
      logger: { level: env.LOG_LEVEL ?? "info" },
      ...(options.drainTimeoutMs !== undefined && { drainTimeoutMs: options.drainTimeoutMs }),
    });
    // A page elsewhere must not reach it through the developer's browser by DNS rebinding (see loopback-only.ts).
    gateway.app.addHook("onRequest", refuseRemoteHost);
    await gateway.listen({ port: options.port ?? 8080, host: "127.0.0.1" });
  } catch (e) {
    await issuer.close();
    throw e;
  }
  return {
    gateway,
    issuer,
    hmacSecret,
    signing,
    client,
    close: async () => {
      await Promise.all([gateway.close(), issuer.close()]);
    },
  };
}

function refuseRemoteHost(request: FastifyRequest, _reply: FastifyReply, done: (error?: Error) => void): void {
  if (isLoopbackHost(request.headers.host ?? (request.headers[":authority"] as string | undefined))) done();
  else done(new GatewayHttpError("FORBIDDEN", "This development gateway answers requests for 127.0.0.1 or localhost only"));
}

/** One variable a dev stack prints for services to use: its name, value and what it is for. */
export interface PrintedVariable {
  readonly name: string;
  readonly value: string;
  /** Printed after it as a shell comment. */
  readonly note?: string | undefined;
}

/**
 * The variables a dev stack prints (`dev`, `npm start`), as lines a
 * developer pastes into a shell: `export NAME=value  # note`, the value
 * quoted when the shell would read it otherwise (a secret set in the
 * environment may hold any character). Pasted, they are set for the
 * commands that follow, as "start your client with these" means.
 */
export function shellExports(variables: readonly PrintedVariable[], indent = "  "): string {
  const width = Math.max(...variables.map((v) => `export ${v.name}=${shellWord(v.value)}`.length));
  return variables
    .map((v) => {
      const line = `export ${v.name}=${shellWord(v.value)}`;
      return v.note === undefined ? `${indent}${line}` : `${indent}${line.padEnd(width)}  # ${v.note}`;
    })
    .join("\n");
}

/** `value` as one shell word: as it is when nothing in it is special, else single-quoted. */
export function shellWord(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`;
}
