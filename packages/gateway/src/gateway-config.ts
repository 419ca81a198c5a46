import { ConfigurationError } from "connect-gateway/errors";
import type { DestinationStream } from "pino";
import { DEFAULT_HEADERS_TIMEOUT_MS, DEFAULT_REQUEST_TIMEOUT_MS } from "./dual-protocol-server.js";
import type { ClaimMapping } from "./identity-claims.js";
import type { ResponseCacheOptions } from "./response-cache.js";
import type { RoutesFile } from "./routes-file.js";
import type { TokenValidationOptions } from "./token-verifier.js";

/** Per-caller rate limit: `max` requests per `timeWindowMs`, per client (and user). */
export interface RateLimitConfig {
  readonly max: number;
  /** Default 60 000 (a minute). */
  readonly timeWindowMs?: number;
  /**
   * `redis://…`: the counters live in Redis, so every gateway instance
   * pointing at it shares one limit. Default: in memory, per instance.
   */
  readonly redisUrl?: string;
  /**
   * With `redisUrl`: how long one Redis command may take (milliseconds)
   * before the rate limiter treats Redis as away and applies
   * `onRedisFailure`; also the budget of the `/ready` PING. Default 100.
   */
  readonly redisTimeoutMs?: number;
  /**
   * With `redisUrl`, while Redis is killed or frozen: `open` (default) lets
   * calls through unlimited, `closed` refuses them with 503 and Retry-After.
   */
  readonly onRedisFailure?: "open" | "closed";
}

/**
 * Per-client-IP budget of failed authentications (a missing, invalid or
 * expired token: 401), checked before a token is validated. Once an address
 * has spent it, its calls with a token the gateway has not recently verified
 * get 429 with `Retry-After` until the window ends, without any signature
 * check or introspection request: a spray of made-up tokens costs the
 * gateway, and the OAuth2 server, at most `max` validations per window.
 * Counted in memory per instance, or in Redis with `rateLimit.redisUrl`
 * (same timeout budget and `onRedisFailure` policy as the rate limit).
 */
export interface AuthFailureLimitConfig {
  /** Failed authentications per client IP per window. Default 20. */
  readonly max: number;
  /** Default 60 000 (a minute). */
  readonly timeWindowMs?: number;
}

/** Configuration of {@link createGateway}. */
export interface GatewayConfig {
  /** A loaded routes file, or the path of a `routes.yaml` to load (with `$ENV` from `process.env`). */
  readonly routes: RoutesFile | string;
  /** The HMAC secret shared with the backends, at least 16 characters. */
  readonly hmacSecret: string;
  /** Which bearer tokens are accepted. */
  readonly tokens: TokenValidationOptions;
  /** Overrides of the claim → header mapping, see `defaultClaimMapping`. */
  readonly claims?: Partial<ClaimMapping>;
  /** `X-Client-Id` of calls without a token to routes that need none. Default `anonymous`. */
  readonly anonymousClientId?: string;
  /** Per-caller rate limit; `false` disables it. Default 1000 per minute, in memory. */
  readonly rateLimit?: RateLimitConfig | false;
  /** Per-IP budget of failed authentications; `false` disables it. Default 20 per minute. */
  readonly authFailureLimit?: AuthFailureLimitConfig | false;
  /** Largest request body forwarded (bytes); larger ones get `413`. Default 4 MiB. */
  readonly bodyLimit?: number;
  /** Bounds of the response cache of GET routes with `cache_ttl`. */
  readonly cache?: ResponseCacheOptions;
  /** Allowed CORS origins (`true` reflects any origin). Default: no CORS headers. */
  readonly corsOrigins?: readonly string[] | boolean;
  /**
   * On close (SIGTERM/SIGINT in the CLI): how long open calls (server
   * streams, slow unary calls) may still run before their connections are
   * cut, in milliseconds. Default 10 000; 0 cuts them at once.
   */
  readonly drainTimeoutMs?: number;
  /**
   * How long a new connection may take to send its first bytes and, for
   * HTTP/2, its connection preface and SETTINGS; and how long an HTTP/1.1
   * request may take to send its headers (then 408, connection closed), in
   * milliseconds. Bounds slow and stalled clients. Default 10 000.
   */
  readonly headersTimeoutMs?: number;
  /**
   * How long a request (headers and body) may take to arrive whole, in
   * milliseconds: past it the caller gets 408 (HTTP/1.1: and its connection
   * is closed; HTTP/2: only that stream ends). Default 30 000; at least
   * `headersTimeoutMs`.
   */
  readonly requestTimeoutMs?: number;
  /** How long an HTTP/2 connection without open streams is kept (then GOAWAY and close), in milliseconds. Default 60 000. */
  readonly http2IdleTimeoutMs?: number;
  /** Streams one HTTP/2 connection may have open at once. Default 100. */
  readonly http2MaxConcurrentStreams?: number;
  /** Logging (pino, JSON lines): `false` for none. Default level `info` to stdout. */
  readonly logger?: false | { readonly level?: string; readonly stream?: DestinationStream };
}

/**
 * Thrown by `createGateway` (and the CLI) for a configuration it cannot run
 * with; names the option, never its value. A `ConfigurationError`, like every
 * configuration error of the package.
 */
export class GatewayConfigError extends ConfigurationError {
  override name = "GatewayConfigError";
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** Checks `config` and throws {@link GatewayConfigError} naming the first bad option. */
export function validateGatewayConfig(config: GatewayConfig): void {
  const fail = (option: string, problem: string): never => {
    throw new GatewayConfigError(option, problem);
  };
  if (typeof config !== "object" || config === null) fail("config", "must be an object: createGateway needs a configuration");
  if (typeof config.routes !== "string" && (typeof config.routes !== "object" || config.routes === null)) {
    fail("routes", "must be a routes.yaml path or a loaded routes file");
  }
  if (typeof config.hmacSecret !== "string" || config.hmacSecret.length < 16) {
    fail("hmacSecret", "must be a string of at least 16 characters (set GATEWAY_HMAC_SECRET)");
  }
  validateTokens(config.tokens, fail);
  if (config.anonymousClientId !== undefined && !/^[\x21-\x7b\x7d\x7e]+$/.test(config.anonymousClientId)) {
    fail("anonymousClientId", "must be a non-empty visible ASCII string without '|'");
  }
  if (config.rateLimit !== undefined && config.rateLimit !== false) {
    const { max, timeWindowMs, redisUrl, redisTimeoutMs, onRedisFailure } = config.rateLimit;
    if (!isPositiveInteger(max)) fail("rateLimit.max", "must be a positive integer");
    if (timeWindowMs !== undefined && !isPositiveInteger(timeWindowMs)) {
      fail("rateLimit.timeWindowMs", "must be a positive integer (milliseconds)");
    }
    if (redisUrl !== undefined && !/^rediss?:\/\/./.test(redisUrl)) {
      fail("rateLimit.redisUrl", "must be a redis:// or rediss:// URL");
    }
    if (redisTimeoutMs !== undefined && !isPositiveInteger(redisTimeoutMs)) {
      fail("rateLimit.redisTimeoutMs", "must be a positive integer (milliseconds; set REDIS_TIMEOUT_MS)");
    }
    if (onRedisFailure !== undefined && onRedisFailure !== "open" && onRedisFailure !== "closed") {
      fail("rateLimit.onRedisFailure", 'must be "open" or "closed" (set RATE_LIMIT_ON_REDIS_FAILURE)');
    }
  }
  if (config.authFailureLimit !== undefined && config.authFailureLimit !== false) {
    const { max, timeWindowMs } = config.authFailureLimit;
    if (!isPositiveInteger(max)) fail("authFailureLimit.max", "must be a positive integer (set AUTH_FAILURE_LIMIT_MAX)");
    if (timeWindowMs !== undefined && !isPositiveInteger(timeWindowMs)) {
      fail("authFailureLimit.timeWindowMs", "must be a positive integer (milliseconds; set AUTH_FAILURE_LIMIT_WINDOW)");
    }
  }
  const level = config.logger ? config.logger.level : undefined;
  if (level !== undefined && !LOG_LEVELS.includes(level)) {
    fail("logger.level", `must be one of ${LOG_LEVELS.join(", ")} (set LOG_LEVEL)`);
  }
  if (config.bodyLimit !== undefined && !isPositiveInteger(config.bodyLimit)) {
    fail("bodyLimit", "must be a positive integer (bytes)");
  }
  if (config.drainTimeoutMs !== undefined && !isNonNegativeInteger(config.drainTimeoutMs)) {
    fail("drainTimeoutMs", "must be a non-negative integer (milliseconds; set GATEWAY_DRAIN_TIMEOUT_MS)");
  }
  const connectionLimits = [
    ["headersTimeoutMs", "milliseconds; set GATEWAY_HEADERS_TIMEOUT_MS"],
    ["requestTimeoutMs", "milliseconds; set GATEWAY_REQUEST_TIMEOUT_MS"],
    ["http2IdleTimeoutMs", "milliseconds; set GATEWAY_HTTP2_IDLE_TIMEOUT_MS"],
    ["http2MaxConcurrentStreams", "set GATEWAY_HTTP2_MAX_CONCURRENT_STREAMS"],
  ] as const;
  for (const [option, unit] of connectionLimits) {
    if (config[option] !== undefined && !isPositiveInteger(config[option])) fail(option, `must be a positive integer (${unit})`);
  }
  if ((config.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS) < (config.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS)) {
    fail("requestTimeoutMs", "must be at least headersTimeoutMs (set GATEWAY_REQUEST_TIMEOUT_MS)");
  }
}

function validateTokens(
  tokens: TokenValidationOptions | undefined,
  fail: (option: string, problem: string) => never,
): void {
  if (typeof tokens !== "object" || tokens === null || (!tokens.hs256 && !tokens.jwks && !tokens.introspection)) {
    fail("tokens", "must configure at least one of hs256, jwks or introspection");
  }
  const { hs256, jwks, introspection } = tokens as TokenValidationOptions;
  if (hs256) {
    if (typeof hs256.secret !== "string" || hs256.secret.length < 32) {
      fail("tokens.hs256.secret", "must be at least 32 characters (HS256 needs 256 bits; set JWT_SECRET)");
    }
    if (!nonEmpty(hs256.issuer)) fail("tokens.hs256.issuer", "is required (e.g. eloquent-gateway)");
    if (!nonEmpty(hs256.audience)) fail("tokens.hs256.audience", "is required (e.g. eloquent-api)");
  }
  if (jwks) {
    if (!isHttpUrl(jwks.url)) fail("tokens.jwks.url", "must be an http(s) URL");
    if (!nonEmpty(jwks.issuer)) fail("tokens.jwks.issuer", "is required (the OAuth2 server's issuer)");
    const audiences = [jwks.audience].flat();
    if (audiences.length === 0 || !audiences.every(nonEmpty)) fail("tokens.jwks.audience", "is required");
  }
  if (introspection) {
    if (!isHttpUrl(introspection.url)) fail("tokens.introspection.url", "must be an http(s) URL");
    if (!nonEmpty(introspection.clientId)) fail("tokens.introspection.clientId", "is required");
    if (!nonEmpty(introspection.clientSecret)) fail("tokens.introspection.clientSecret", "is required");
  }
}

function nonEmpty(value: unknown): value is string {
  return typeof value === "string" && value !== "";
}

function isPositiveInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0;
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function isHttpUrl(value: unknown): boolean {
  if (typeof value !== "string") return false;
  try {
    return ["http:", "https:"].includes(new URL(value).protocol);
  } catch {
    return false;
  }
}
