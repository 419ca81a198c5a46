import { GatewayConfigError } from "connect-gateway/errors";
import type { GatewayEnv } from "connect-gateway/protocol";
import { parseDuration } from "./duration.js";
import { GATEWAY_DEFAULTS, type GatewayConfig } from "./gateway-config.js";
import type { TokenValidationOptions } from "./token-verifier.js";

/** Environment variables read by {@link gatewayConfigFromEnv} (the library's one environment type). */
export type { GatewayEnv };

/**
 * The configuration of `connect-gateway serve`, from the environment:
 *
 * | variable | meaning |
 * |---|---|
 * | `GATEWAY_HMAC_SECRET` | HMAC secret shared with the backends (required) |
 * | `JWT_SECRET`, `JWT_ISSUER`, `JWT_AUDIENCE` | HS256 tokens (issuer / audience default to `eloquent-gateway` / `eloquent-api`) |
 * | `JWKS_URL`, `OAUTH2_ISSUER`, `OAUTH2_AUDIENCE` | RS256/ES256 tokens from an OAuth2 server |
 * | `INTROSPECTION_URL`, `INTROSPECTION_CLIENT_ID`, `INTROSPECTION_CLIENT_SECRET` | opaque tokens (RFC 7662) |
 * | `INTROSPECTION_AUDIENCE`, `INTROSPECTION_ISSUER` | optional: the `aud` (comma-separated, one of them) and `iss` an introspection response must carry |
 * | `REDIS_URL` | share the rate limit between instances |
 * | `REDIS_TIMEOUT_MS` | budget of one Redis command before it counts as failed (default 100) |
 * | `RATE_LIMIT_ON_REDIS_FAILURE` | `open` (default: calls proceed unlimited) or `closed` (503) while Redis is away |
 * | `RATE_LIMIT_MAX`, `RATE_LIMIT_WINDOW` | requests per caller per window (default 1000 per `1m`; `RATE_LIMIT_MAX=0` disables) |
 * | `AUTH_FAILURE_LIMIT_MAX`, `AUTH_FAILURE_LIMIT_WINDOW` | failed authentications per client IP per window before its unverified tokens get 429 (default 20 per `1m`; `AUTH_FAILURE_LIMIT_MAX=0` disables) |
 * | `BODY_LIMIT` | largest request body in bytes (default 4 MiB) |
 * | `CORS_ORIGINS` | comma-separated allowed origins, or `*` |
 * | `CORS_MAX_AGE` | `Access-Control-Max-Age` of preflight answers: seconds, or a duration such as `2h` (default 7200) |
 * | `CORS_EXPOSE_HEADERS` | comma-separated response headers pages may read, besides the gRPC status, request id and rate-limit headers |
 * | `CORS_CREDENTIALS` | `true` or `false` (default): `Access-Control-Allow-Credentials` |
 * | `GATEWAY_TRUST_PROXY` | comma-separated addresses / CIDR ranges of the proxies in front (see `trustProxy`) |
 * | `LOG_LEVEL` | pino level (default `info`) |
 * | `GATEWAY_DRAIN_TIMEOUT_MS` | on SIGTERM/SIGINT/SIGHUP, how long open calls may finish before they are cut (default 10000) |
 * | `GATEWAY_HEADERS_TIMEOUT_MS` | how long a connection may take to send its first bytes (HTTP/2: preface and SETTINGS) and an HTTP/1.1 request its headers (default 10000) |
 * | `GATEWAY_REQUEST_TIMEOUT_MS` | how long a request, headers and body, may take to arrive before 408 (default 30000) |
 * | `GATEWAY_HTTP2_IDLE_TIMEOUT_MS` | how long an HTTP/2 connection without open streams is kept (default 60000) |
 * | `GATEWAY_SEND_TIMEOUT_MS` | how long an answer may wait for a caller that stopped reading it before its stream is reset or its connection closed (default 60000) |
 * | `GATEWAY_HTTP2_MAX_CONCURRENT_STREAMS` | streams one HTTP/2 connection may have open at once (default 100) |
 *
 * Throws {@link GatewayConfigError} naming the variable.
 */
export function gatewayConfigFromEnv(routes: string, env: GatewayEnv = process.env): GatewayConfig {
  return {
    routes,
    hmacSecret: env.GATEWAY_HMAC_SECRET ?? "",
    tokens: tokensFromEnv(env),
    ...gatewayLimitsFromEnv(env),
    logger: { level: env.LOG_LEVEL ?? GATEWAY_DEFAULTS.logLevel },
  };
}

/**
 * The part of {@link gatewayConfigFromEnv} that is not about secrets or
 * tokens — rate and failure limits, body limit, CORS, timeouts, drain — which
 * `connect-gateway dev` reads too, so that a `CORS_ORIGINS` that works with
 * `serve` works with `dev`. Throws {@link GatewayConfigError} naming the variable.
 */
export function gatewayLimitsFromEnv(
  env: GatewayEnv = process.env,
): Omit<GatewayConfig, "routes" | "hmacSecret" | "tokens" | "logger"> {
  return {
    rateLimit: rateLimitFromEnv(env),
    authFailureLimit: authFailureLimitFromEnv(env),
    ...(env.BODY_LIMIT !== undefined && { bodyLimit: integer(env, "BODY_LIMIT") }),
    ...(env.CORS_ORIGINS !== undefined && { corsOrigins: corsOriginsFromEnv(env.CORS_ORIGINS) }),
    ...(env.CORS_MAX_AGE !== undefined && { corsMaxAgeSeconds: seconds(env, "CORS_MAX_AGE") }),
    ...(env.CORS_EXPOSE_HEADERS !== undefined && { corsExposeHeaders: [list(env, "CORS_EXPOSE_HEADERS")].flat() }),
    ...(env.CORS_CREDENTIALS !== undefined && { corsCredentials: boolean(env, "CORS_CREDENTIALS") }),
    ...(env.GATEWAY_TRUST_PROXY !== undefined && { trustProxy: [list(env, "GATEWAY_TRUST_PROXY")].flat() }),
    ...(env.GATEWAY_DRAIN_TIMEOUT_MS !== undefined && { drainTimeoutMs: drainTimeoutFromEnv(env) }),
    ...(env.GATEWAY_HEADERS_TIMEOUT_MS !== undefined && { headersTimeoutMs: integer(env, "GATEWAY_HEADERS_TIMEOUT_MS") }),
    ...(env.GATEWAY_REQUEST_TIMEOUT_MS !== undefined && { requestTimeoutMs: integer(env, "GATEWAY_REQUEST_TIMEOUT_MS") }),
    ...(env.GATEWAY_HTTP2_IDLE_TIMEOUT_MS !== undefined && {
      http2IdleTimeoutMs: integer(env, "GATEWAY_HTTP2_IDLE_TIMEOUT_MS"),
    }),
    ...(env.GATEWAY_SEND_TIMEOUT_MS !== undefined && { sendTimeoutMs: integer(env, "GATEWAY_SEND_TIMEOUT_MS") }),
    ...(env.GATEWAY_HTTP2_MAX_CONCURRENT_STREAMS !== undefined && {
      http2MaxConcurrentStreams: integer(env, "GATEWAY_HTTP2_MAX_CONCURRENT_STREAMS"),
    }),
  };
}

/**
 * `GATEWAY_DRAIN_TIMEOUT_MS` (milliseconds), `undefined` when unset; throws
 * {@link GatewayConfigError} when it is not a whole number.
 */
export function drainTimeoutFromEnv(env: GatewayEnv = process.env): number | undefined {
  return env.GATEWAY_DRAIN_TIMEOUT_MS === undefined ? undefined : integer(env, "GATEWAY_DRAIN_TIMEOUT_MS");
}

function tokensFromEnv(env: GatewayEnv): TokenValidationOptions {
  const tokens: { -readonly [K in keyof TokenValidationOptions]: TokenValidationOptions[K] } = {};
  if (env.JWT_SECRET) {
    tokens.hs256 = {
      secret: env.JWT_SECRET,
      issuer: env.JWT_ISSUER ?? "eloquent-gateway",
      audience: env.JWT_AUDIENCE ?? "eloquent-api",
    };
  }
  if (env.JWKS_URL) {
    tokens.jwks = {
      url: env.JWKS_URL,
      issuer: required(env, "OAUTH2_ISSUER", "with JWKS_URL"),
      audience: required(env, "OAUTH2_AUDIENCE", "with JWKS_URL"),
    };
  }
  if (env.INTROSPECTION_URL) {
    tokens.introspection = {
      url: env.INTROSPECTION_URL,
      clientId: required(env, "INTROSPECTION_CLIENT_ID", "with INTROSPECTION_URL"),
      clientSecret: required(env, "INTROSPECTION_CLIENT_SECRET", "with INTROSPECTION_URL"),
      ...(env.INTROSPECTION_AUDIENCE && { audience: list(env, "INTROSPECTION_AUDIENCE") }),
      ...(env.INTROSPECTION_ISSUER && { issuer: env.INTROSPECTION_ISSUER }),
    };
  }
  return tokens;
}

function rateLimitFromEnv(env: GatewayEnv): GatewayConfig["rateLimit"] {
  const max = env.RATE_LIMIT_MAX === undefined ? GATEWAY_DEFAULTS.rateLimit.max : integer(env, "RATE_LIMIT_MAX");
  if (max === 0) return false;
  const timeWindowMs =
    env.RATE_LIMIT_WINDOW === undefined ? GATEWAY_DEFAULTS.rateLimit.timeWindowMs : parseDuration(env.RATE_LIMIT_WINDOW);
  if (timeWindowMs === undefined) throw new GatewayConfigError("RATE_LIMIT_WINDOW", "must be a duration such as 60s or 1m");
  const onRedisFailure = env.RATE_LIMIT_ON_REDIS_FAILURE;
  if (onRedisFailure !== undefined && onRedisFailure !== "open" && onRedisFailure !== "closed") {
    throw new GatewayConfigError("RATE_LIMIT_ON_REDIS_FAILURE", "must be open or closed");
  }
  return {
    max,
    timeWindowMs,
    ...(env.REDIS_URL && { redisUrl: env.REDIS_URL }),
    ...(env.REDIS_TIMEOUT_MS !== undefined && { redisTimeoutMs: integer(env, "REDIS_TIMEOUT_MS") }),
    ...(onRedisFailure !== undefined && { onRedisFailure }),
  };
}

function authFailureLimitFromEnv(env: GatewayEnv): GatewayConfig["authFailureLimit"] {
  const max = env.AUTH_FAILURE_LIMIT_MAX === undefined ? GATEWAY_DEFAULTS.authFailureLimit.max : integer(env, "AUTH_FAILURE_LIMIT_MAX");
  if (max === 0) return false;
  const timeWindowMs =
    env.AUTH_FAILURE_LIMIT_WINDOW === undefined
      ? GATEWAY_DEFAULTS.authFailureLimit.timeWindowMs
      : parseDuration(env.AUTH_FAILURE_LIMIT_WINDOW);
  if (timeWindowMs === undefined) {
    throw new GatewayConfigError("AUTH_FAILURE_LIMIT_WINDOW", "must be a duration such as 60s or 1m");
  }
  return { max, timeWindowMs };
}

/** A comma-separated list, one entry for a single value; throws when it names nothing. */
/**
 * `CORS_ORIGINS`: `*`, or origins separated by commas, each checked here so
 * that the message names the variable and the entry (an origin is public:
 * every browser sends it).
 */
function corsOriginsFromEnv(value: string): true | string[] {
  if (value.trim() === "*") return true;
  const origins = value.split(",").map((o) => o.trim()).filter(Boolean);
  for (const origin of origins) {
    const url = URL.canParse(origin) ? new URL(origin) : undefined;
    if (url === undefined || !/^https?:$/.test(url.protocol) || url.origin !== origin) {
      throw new GatewayConfigError(
        "CORS_ORIGINS",
        `entry ${JSON.stringify(origin)} must be an origin such as https://app.example.com (no path, no trailing /), or the whole value "*"`,
      );
    }
  }
  return origins;
}

function list(env: GatewayEnv, name: string): string | string[] {
  const items = (env[name] ?? "").split(",").map((v) => v.trim()).filter(Boolean);
  if (items.length === 0) throw new GatewayConfigError(name, "must name at least one value");
  return items.length === 1 ? items[0]! : items;
}

function required(env: GatewayEnv, name: string, why: string): string {
  const value = env[name];
  if (!value) throw new GatewayConfigError(name, `is required ${why}`);
  return value;
}

/** A whole number of seconds, or a duration (`600s`, `2h`) in whole seconds. */
function seconds(env: GatewayEnv, name: string): number {
  const value = (env[name] ?? "").trim();
  if (/^[0-9]+$/.test(value)) return Number(value);
  const ms = parseDuration(value);
  if (ms === undefined || ms % 1000 !== 0) throw new GatewayConfigError(name, "must be a whole number of seconds or a duration such as 600s or 2h");
  return ms / 1000;
}

function boolean(env: GatewayEnv, name: string): boolean {
  const value = (env[name] ?? "").trim();
  if (value !== "true" && value !== "false") throw new GatewayConfigError(name, "must be true or false");
  return value === "true";
}

function integer(env: GatewayEnv, name: string): number {
  const value = env[name] ?? "";
  if (!/^[0-9]+$/.test(value)) throw new GatewayConfigError(name, `must be a whole number${UNIT_HINTS[name] ?? ""}`);
  return Number(value);
}

// What a whole number stands for, where its name does not say (`BODY_LIMIT=4MB` is a natural mistake).
const UNIT_HINTS: Readonly<Record<string, string>> = {
  BODY_LIMIT: " of bytes, e.g. 4194304 for 4 MiB",
  RATE_LIMIT_MAX: " of requests per window",
  AUTH_FAILURE_LIMIT_MAX: " of failed authentications per window",
  GATEWAY_HTTP2_MAX_CONCURRENT_STREAMS: " of streams",
};
