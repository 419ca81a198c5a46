import { isIP } from "node:net";
import { GatewayConfigError } from "connect-gateway/errors";
import {
  assertDurationMs,
  assertHttpUrl,
  assertNonEmptyString,
  assertNumber,
  assertOneOf,
  assertPositiveInteger,
  type AssertionOptions,
  type OptionErrorFactory,
} from "connect-gateway/protocol";
import type { DestinationStream } from "pino";
import { defaultClaimMapping, type ClaimMapping } from "./identity-claims.js";
import type { ResponseCacheOptions } from "./response-cache.js";
import { DEFAULT_CORS_EXPOSE_HEADERS, exposableHeaderProblem, type CorsPolicy } from "./cors.js";
import { loadRoutesFile, type RoutesFile } from "./routes-file.js";
import type { ResolvedTokenValidationOptions, TokenValidationOptions } from "./token-verifier.js";

// GatewayConfigError lives with every other configuration error of the
// project (connect-gateway/errors); the gateway re-exports it.
export { GatewayConfigError };

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
   * `onRedisFailure`; also the budget of the `/ready` health check. Default 100.
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
  /**
   * Origins whose pages may call the gateway (CORS), e.g.
   * `["https://app.example.com"]`; `true` allows any origin. Default: the
   * routes file's `cors.origins`, else none (no CORS headers at all).
   */
  readonly corsOrigins?: readonly string[] | boolean;
  /**
   * How long a browser may reuse a preflight answer (`Access-Control-Max-Age`),
   * in whole seconds. Default: the routes file's `cors.max_age`, else 7200.
   */
  readonly corsMaxAgeSeconds?: number;
  /**
   * Response headers pages may read (`Access-Control-Expose-Headers`) in
   * addition to the ones always exposed (`DEFAULT_CORS_EXPOSE_HEADERS`: the
   * gRPC status headers, `X-Request-ID`, `Retry-After`, the rate-limit
   * headers), e.g. a Connect trailer `Trailer-Cost`. Names only, no patterns.
   * Default: the routes file's `cors.expose_headers`, else none.
   */
  readonly corsExposeHeaders?: readonly string[];
  /**
   * `Access-Control-Allow-Credentials: true`: pages may send cookies or HTTP
   * authentication with their calls. Refused with any origin (`corsOrigins:
   * true`). Default: the routes file's `cors.credentials`, else `false`.
   */
  readonly corsCredentials?: boolean;
  /**
   * The proxies in front of the gateway (a load balancer, an ingress), whose
   * `X-Forwarded-For` it believes: IP addresses, CIDR ranges
   * (`10.0.0.0/8`), or `loopback`, `linklocal`, `uniquelocal`. A request
   * from one of them is taken to come from the nearest address in its
   * `X-Forwarded-For` that is not one of them — for the rate limit, the
   * failed-authentication budget, the log and the `X-Forwarded-For` sent
   * upstream; its `X-Forwarded-Proto` / `-Host` are believed too. Behind a
   * load balancer without it, every caller shares the balancer's address:
   * one budget for all. Default none: the gateway is the edge, and no
   * caller can choose the address it is counted under.
   */
  readonly trustProxy?: readonly string[];
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
  /**
   * How long a caller may leave its answer unread, in milliseconds: when
   * part of an answer waits to be sent and none of it goes out for this
   * long (the caller stopped reading: an HTTP/2 window it never opens, a
   * full TCP buffer), the HTTP/2 stream is reset (CANCEL) or the HTTP/1.1
   * connection closed, and what it held is let go. An answer that is only
   * quiet (a stream waiting for its next message) is never cut. Default
   * 60 000, as nginx's `send_timeout`.
   */
  readonly sendTimeoutMs?: number;
  /** Streams one HTTP/2 connection may have open at once. Default 100. */
  readonly http2MaxConcurrentStreams?: number;
  /**
   * Logging (pino, JSON lines): `false` for none. Default level `info` to
   * stdout, written 4 KiB at a time and at least every 100 ms (and all of it
   * on exit); a `stream` of your own gets every line as it is logged.
   */
  readonly logger?: false | { readonly level?: string; readonly stream?: DestinationStream };
}

/** How long close() lets open calls finish before cutting them (`drainTimeoutMs`). */
export const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;

/** The pino levels `logger.level` (`LOG_LEVEL`) may name. */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/**
 * Every default of {@link GatewayConfig}, in one place: what
 * {@link resolveGatewayConfig} fills in for an option left out.
 */
export const GATEWAY_DEFAULTS = {
  anonymousClientId: "anonymous",
  rateLimit: { max: 1000, timeWindowMs: 60_000, redisTimeoutMs: 100, onRedisFailure: "open" },
  authFailureLimit: { max: 20, timeWindowMs: 60_000 },
  bodyLimit: 4 * 1024 * 1024,
  cache: { maxBytes: 64 * 1024 * 1024, maxEntryBytes: 1024 * 1024 },
  corsOrigins: false,
  corsMaxAgeSeconds: 7200,
  /** Always exposed; `corsExposeHeaders` adds to them. */
  corsExposeHeaders: DEFAULT_CORS_EXPOSE_HEADERS,
  corsCredentials: false,
  drainTimeoutMs: DEFAULT_DRAIN_TIMEOUT_MS,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  http2IdleTimeoutMs: 60_000,
  sendTimeoutMs: 60_000,
  http2MaxConcurrentStreams: 100,
  logLevel: "info",
  tokens: {
    clockToleranceSeconds: 5,
    cacheMs: 30_000,
    jwks: { algorithms: ["RS256", "ES256"], refetchCooldownMs: 30_000, maxAgeMs: 600_000, timeoutMs: 5_000, failureCooldownMs: 5_000 },
    introspection: { timeoutMs: 5_000, negativeCacheMs: 10_000, failureCooldownMs: 1_000 },
  },
} as const;

/** {@link RateLimitConfig} checked, with defaults applied. */
export interface ResolvedRateLimitConfig {
  readonly max: number;
  readonly timeWindowMs: number;
  readonly redisUrl: string | undefined;
  readonly redisTimeoutMs: number;
  readonly onRedisFailure: "open" | "closed";
}

/** {@link GatewayConfig} checked by {@link resolveGatewayConfig}: every default applied, the routes file loaded. */
export interface ResolvedGatewayConfig {
  readonly routes: RoutesFile;
  readonly hmacSecret: string;
  readonly tokens: ResolvedTokenValidationOptions;
  /** The full claim mapping: `defaultClaimMapping` with the overrides of `claims`. */
  readonly claims: ClaimMapping;
  readonly anonymousClientId: string;
  readonly rateLimit: ResolvedRateLimitConfig | false;
  readonly authFailureLimit: Required<AuthFailureLimitConfig> | false;
  readonly bodyLimit: number;
  readonly cache: Required<ResponseCacheOptions>;
  /** The CORS policy (origins, max age, exposed headers, credentials), from the options and the routes file; `false`: no CORS. */
  readonly cors: CorsPolicy | false;
  /** The trusted proxies; empty when the gateway is the edge. */
  readonly trustProxy: readonly string[];
  readonly drainTimeoutMs: number;
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly http2IdleTimeoutMs: number;
  readonly sendTimeoutMs: number;
  readonly http2MaxConcurrentStreams: number;
  readonly logger: false | { readonly level: string; readonly stream?: DestinationStream };
}

/** A failed assertion, as a GatewayConfigError: "`option` must be <expected>". */
const gatewayError: OptionErrorFactory = (option, expected) => new GatewayConfigError(option, `must be ${expected}`);

/** An assertion's options for the gateway, with this wording of what the value must be. */
const must = (expected?: string): AssertionOptions => ({ error: gatewayError, ...(expected !== undefined && { expected }) });

/** An option that is required (an error "`option` is required …" when it is missing or not a non-empty string). */
function required(option: string, value: unknown, hint = ""): string {
  return assertNonEmptyString(option, value, { error: (o) => new GatewayConfigError(o, `is required${hint}`) });
}

function fail(option: string, problem: string): never {
  throw new GatewayConfigError(option, problem);
}

// What proxy-addr (fastify's trustProxy) takes besides addresses and ranges.
const PROXY_KEYWORDS = new Set(["loopback", "linklocal", "uniquelocal"]);

function resolveTrustProxy(value: GatewayConfig["trustProxy"]): readonly string[] {
  if (value === undefined) return [];
  const expected = 'a list of proxy addresses, CIDR ranges or "loopback" / "linklocal" / "uniquelocal", e.g. ["10.0.0.0/8"] (set GATEWAY_TRUST_PROXY)';
  if (!Array.isArray(value)) fail("trustProxy", `must be ${expected}`);
  for (const entry of value as unknown[]) {
    if (typeof entry !== "string" || !isProxyAddress(entry)) {
      fail("trustProxy", `must be ${expected}; ${JSON.stringify(typeof entry === "string" ? entry.slice(0, 60) : entry)} is none of those`);
    }
  }
  return [...value];
}

function isProxyAddress(entry: string): boolean {
  if (PROXY_KEYWORDS.has(entry) || isIP(entry) !== 0) return true;
  const slash = entry.indexOf("/");
  if (slash < 0) return false;
  const family = isIP(entry.slice(0, slash));
  const bits = entry.slice(slash + 1);
  return family !== 0 && /^[0-9]{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}

function isObject<T>(value: T): value is T & object {
  return typeof value === "object" && value !== null;
}

/**
 * Checks every option of `config` and applies the defaults
 * ({@link GATEWAY_DEFAULTS}); loads the routes file when `routes` is a path.
 * Throws {@link GatewayConfigError} naming the first bad option — never its
 * value — or a `RoutesFileError` for the routes file.
 */
export function resolveGatewayConfig(config: GatewayConfig): ResolvedGatewayConfig {
  if (!isObject(config)) fail("config", "must be an object: createGateway needs a configuration");
  if (typeof config.routes !== "string" && !isObject(config.routes)) {
    fail("routes", "must be a routes.yaml path or a loaded routes file");
  }
  const hmacSecret = assertNonEmptyString("hmacSecret", config.hmacSecret, {
    ...must("a string of at least 16 characters (set GATEWAY_HMAC_SECRET)"),
    minLength: 16,
  });
  const tokens = resolveTokens(config.tokens);
  const claims = resolveClaims(config.claims);
  const anonymousClientId = config.anonymousClientId ?? GATEWAY_DEFAULTS.anonymousClientId;
  if (typeof anonymousClientId !== "string" || !/^[\x21-\x7b\x7d\x7e]+$/.test(anonymousClientId)) {
    fail("anonymousClientId", "must be a non-empty visible ASCII string without '|'");
  }
  const rateLimit = resolveRateLimit(config.rateLimit);
  const authFailureLimit = resolveAuthFailureLimit(config.authFailureLimit);
  const logger = resolveLogger(config.logger);
  const bodyLimit =
    config.bodyLimit === undefined ? GATEWAY_DEFAULTS.bodyLimit : assertPositiveInteger("bodyLimit", config.bodyLimit, must("a positive integer (bytes)"));
  const cache = resolveCache(config.cache);
  const corsOptions = resolveCorsOptions(config);
  const trustProxy = resolveTrustProxy(config.trustProxy);
  const timer = (option: keyof GatewayConfig, value: unknown, fallback: number, hint: string, allowZero = false) =>
    value === undefined
      ? fallback
      : assertDurationMs(option, value, { ...must(`a ${allowZero ? "non-negative" : "positive"} integer (${hint})`), allowZero });
  const drainTimeoutMs = timer(
    "drainTimeoutMs",
    config.drainTimeoutMs,
    GATEWAY_DEFAULTS.drainTimeoutMs,
    "milliseconds; set GATEWAY_DRAIN_TIMEOUT_MS",
    true,
  );
  const headersTimeoutMs = timer(
    "headersTimeoutMs",
    config.headersTimeoutMs,
    GATEWAY_DEFAULTS.headersTimeoutMs,
    "milliseconds; set GATEWAY_HEADERS_TIMEOUT_MS",
  );
  const requestTimeoutMs = timer(
    "requestTimeoutMs",
    config.requestTimeoutMs,
    GATEWAY_DEFAULTS.requestTimeoutMs,
    "milliseconds; set GATEWAY_REQUEST_TIMEOUT_MS",
  );
  const http2IdleTimeoutMs = timer(
    "http2IdleTimeoutMs",
    config.http2IdleTimeoutMs,
    GATEWAY_DEFAULTS.http2IdleTimeoutMs,
    "milliseconds; set GATEWAY_HTTP2_IDLE_TIMEOUT_MS",
  );
  const sendTimeoutMs = timer("sendTimeoutMs", config.sendTimeoutMs, GATEWAY_DEFAULTS.sendTimeoutMs, "milliseconds; set GATEWAY_SEND_TIMEOUT_MS");
  const http2MaxConcurrentStreams =
    config.http2MaxConcurrentStreams === undefined
      ? GATEWAY_DEFAULTS.http2MaxConcurrentStreams
      : assertPositiveInteger(
          "http2MaxConcurrentStreams",
          config.http2MaxConcurrentStreams,
          // HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS is a 32-bit value.
          { ...must("a positive integer (set GATEWAY_HTTP2_MAX_CONCURRENT_STREAMS)"), max: 2 ** 32 - 1 },
        );
  if (requestTimeoutMs < headersTimeoutMs) {
    fail("requestTimeoutMs", "must be at least headersTimeoutMs (set GATEWAY_REQUEST_TIMEOUT_MS)");
  }
  // Last: the file is read only once every other option is known to be good.
  const routes = typeof config.routes === "string" ? loadRoutesFile(config.routes) : config.routes;
  const cors = resolveCors(corsOptions, routes.cors);
  return {
    routes,
    hmacSecret,
    tokens,
    claims,
    anonymousClientId,
    rateLimit,
    authFailureLimit,
    bodyLimit,
    cache,
    cors,
    trustProxy,
    drainTimeoutMs,
    headersTimeoutMs,
    requestTimeoutMs,
    http2IdleTimeoutMs,
    sendTimeoutMs,
    http2MaxConcurrentStreams,
    logger,
  };
}

function resolveRateLimit(rateLimit: GatewayConfig["rateLimit"]): ResolvedRateLimitConfig | false {
  if (rateLimit === false) return false;
  const defaults = GATEWAY_DEFAULTS.rateLimit;
  if (rateLimit === undefined) return { ...defaults, redisUrl: undefined };
  if (!isObject(rateLimit)) fail("rateLimit", "must be an object { max, timeWindowMs, … } or false");
  const { max, timeWindowMs, redisUrl, redisTimeoutMs, onRedisFailure } = rateLimit;
  if (redisUrl !== undefined && (typeof redisUrl !== "string" || !/^rediss?:\/\/./.test(redisUrl))) {
    fail("rateLimit.redisUrl", "must be a redis:// or rediss:// URL");
  }
  return {
    max: assertPositiveInteger("rateLimit.max", max, must("a positive integer")),
    timeWindowMs:
      timeWindowMs === undefined
        ? defaults.timeWindowMs
        : assertPositiveInteger("rateLimit.timeWindowMs", timeWindowMs, must("a positive integer (milliseconds)")),
    redisUrl,
    redisTimeoutMs:
      redisTimeoutMs === undefined
        ? defaults.redisTimeoutMs
        : assertDurationMs("rateLimit.redisTimeoutMs", redisTimeoutMs, must("a positive integer (milliseconds; set REDIS_TIMEOUT_MS)")),
    onRedisFailure:
      onRedisFailure === undefined
        ? defaults.onRedisFailure
        : assertOneOf("rateLimit.onRedisFailure", onRedisFailure, ["open", "closed"], must('"open" or "closed" (set RATE_LIMIT_ON_REDIS_FAILURE)')),
  };
}

function resolveAuthFailureLimit(limit: GatewayConfig["authFailureLimit"]): Required<AuthFailureLimitConfig> | false {
  if (limit === false) return false;
  if (limit === undefined) return { ...GATEWAY_DEFAULTS.authFailureLimit };
  if (!isObject(limit)) fail("authFailureLimit", "must be an object { max, timeWindowMs } or false");
  return {
    max: assertPositiveInteger("authFailureLimit.max", limit.max, must("a positive integer (set AUTH_FAILURE_LIMIT_MAX)")),
    timeWindowMs:
      limit.timeWindowMs === undefined
        ? GATEWAY_DEFAULTS.authFailureLimit.timeWindowMs
        : assertPositiveInteger(
            "authFailureLimit.timeWindowMs",
            limit.timeWindowMs,
            must("a positive integer (milliseconds; set AUTH_FAILURE_LIMIT_WINDOW)"),
          ),
  };
}

function resolveLogger(logger: GatewayConfig["logger"]): ResolvedGatewayConfig["logger"] {
  if (logger === false) return false;
  if (logger !== undefined && !isObject(logger)) fail("logger", "must be an object { level, stream } or false");
  const level =
    logger?.level === undefined
      ? GATEWAY_DEFAULTS.logLevel
      : assertOneOf("logger.level", logger.level, LOG_LEVELS, must(`one of ${LOG_LEVELS.join(", ")} (set LOG_LEVEL)`));
  if (logger?.stream !== undefined && typeof (logger.stream as { write?: unknown } | null)?.write !== "function") {
    fail("logger.stream", "must be a writable stream (an object with a write method)");
  }
  return { level, ...(logger?.stream !== undefined && { stream: logger.stream }) };
}

function resolveCache(cache: ResponseCacheOptions | undefined): Required<ResponseCacheOptions> {
  const defaults = GATEWAY_DEFAULTS.cache;
  if (cache === undefined) return { ...defaults };
  if (!isObject(cache)) fail("cache", "must be an object { maxBytes, maxEntryBytes }");
  const maxBytes =
    cache.maxBytes === undefined ? defaults.maxBytes : assertPositiveInteger("cache.maxBytes", cache.maxBytes, must("a positive integer (bytes)"));
  const maxEntryBytes =
    cache.maxEntryBytes === undefined
      ? Math.min(defaults.maxEntryBytes, maxBytes)
      : assertPositiveInteger("cache.maxEntryBytes", cache.maxEntryBytes, must("a positive integer (bytes)"));
  if (maxEntryBytes > maxBytes) fail("cache.maxEntryBytes", "must be at most cache.maxBytes");
  return { maxBytes, maxEntryBytes };
}

/** The CORS options of `config`, each checked; `undefined` where left out. */
interface CorsOptions {
  readonly origins: readonly string[] | boolean | undefined;
  readonly maxAgeSeconds: number | undefined;
  readonly exposeHeaders: readonly string[] | undefined;
  readonly credentials: boolean | undefined;
}

function resolveCorsOptions(config: GatewayConfig): CorsOptions {
  const { corsMaxAgeSeconds, corsExposeHeaders, corsCredentials } = config;
  if (corsExposeHeaders !== undefined) {
    if (!Array.isArray(corsExposeHeaders)) fail("corsExposeHeaders", "must be a list of header names, e.g. [\"Trailer-Cost\"] (set CORS_EXPOSE_HEADERS)");
    for (const name of corsExposeHeaders as unknown[]) {
      const problem = exposableHeaderProblem(name);
      if (problem !== undefined) fail("corsExposeHeaders", `must be a list of header names: ${problem} (set CORS_EXPOSE_HEADERS)`);
    }
  }
  if (corsCredentials !== undefined && typeof corsCredentials !== "boolean") {
    fail("corsCredentials", "must be true or false (set CORS_CREDENTIALS)");
  }
  return {
    origins: config.corsOrigins === undefined ? undefined : resolveCorsOrigins(config.corsOrigins),
    maxAgeSeconds:
      corsMaxAgeSeconds === undefined
        ? undefined
        : assertPositiveInteger("corsMaxAgeSeconds", corsMaxAgeSeconds, {
            ...must("a whole number of seconds, 0 or more (set CORS_MAX_AGE)"),
            allowZero: true,
          }),
    exposeHeaders: corsExposeHeaders === undefined ? undefined : [...corsExposeHeaders],
    credentials: corsCredentials,
  };
}

/**
 * The CORS policy: each option from `createGateway` when given, else from the
 * routes file's `cors:` block, else its default ({@link GATEWAY_DEFAULTS}).
 * `false` when no origin is allowed.
 */
function resolveCors(options: CorsOptions, file: RoutesFile["cors"]): CorsPolicy | false {
  const origins = options.origins ?? file?.origins ?? GATEWAY_DEFAULTS.corsOrigins;
  if (origins === false || (Array.isArray(origins) && origins.length === 0)) return false;
  const credentials = options.credentials ?? file?.credentials ?? GATEWAY_DEFAULTS.corsCredentials;
  if (credentials && origins === true) {
    fail(
      "corsCredentials",
      "cannot be true while any origin is allowed (corsOrigins: true, CORS_ORIGINS=*, or cors.origins: \"*\" in the routes file): list the origins",
    );
  }
  const extra = options.exposeHeaders ?? file?.exposeHeaders ?? [];
  const exposeHeaders = [...GATEWAY_DEFAULTS.corsExposeHeaders];
  for (const name of extra) {
    if (!exposeHeaders.some((h) => h.toLowerCase() === name.toLowerCase())) exposeHeaders.push(name);
  }
  return {
    origins: origins === true ? true : [...(origins as readonly string[])],
    maxAgeSeconds: options.maxAgeSeconds ?? file?.maxAgeSeconds ?? GATEWAY_DEFAULTS.corsMaxAgeSeconds,
    exposeHeaders,
    credentials,
  };
}

function resolveCorsOrigins(origins: GatewayConfig["corsOrigins"]): readonly string[] | boolean {
  if (origins === undefined) return GATEWAY_DEFAULTS.corsOrigins;
  if (typeof origins === "boolean") return origins;
  if (!Array.isArray(origins)) fail("corsOrigins", "must be a list of origins, true (any origin) or false (set CORS_ORIGINS)");
  for (const origin of origins as unknown[]) {
    // An origin is scheme://host[:port], nothing more; the entry is not echoed.
    const url = assertHttpUrl("corsOrigins", origin, must("a list of origins such as https://app.example.com (set CORS_ORIGINS)"));
    if (url.origin !== origin) fail("corsOrigins", "must be a list of origins such as https://app.example.com, without a path (set CORS_ORIGINS)");
  }
  return [...origins];
}

function resolveClaims(claims: GatewayConfig["claims"]): ClaimMapping {
  if (claims === undefined) return defaultClaimMapping;
  if (!isObject(claims)) fail("claims", "must be an object of identity fields to claim names");
  const known = Object.keys(defaultClaimMapping);
  for (const [field, names] of Object.entries(claims)) {
    if (!known.includes(field)) fail("claims", `must only map ${known.join(", ")}`);
    if (names === undefined) continue;
    if (!Array.isArray(names) || names.length === 0 || !names.every((n) => typeof n === "string" && n !== "")) {
      fail(`claims.${field}`, "must be a non-empty list of claim names");
    }
  }
  const overrides = Object.fromEntries(Object.entries(claims).filter(([, names]) => names !== undefined));
  return { ...defaultClaimMapping, ...overrides };
}

function resolveTokens(tokens: TokenValidationOptions | undefined): ResolvedTokenValidationOptions {
  if (!isObject(tokens) || (!tokens.hs256 && !tokens.jwks && !tokens.introspection)) {
    fail("tokens", "must configure at least one of hs256, jwks or introspection (set JWT_SECRET, JWKS_URL or INTROSPECTION_URL)");
  }
  const { hs256, jwks, introspection } = tokens;
  const defaults = GATEWAY_DEFAULTS.tokens;
  const optionalMs = (option: string, value: unknown, fallback: number, allowZero: boolean) =>
    value === undefined
      ? fallback
      : assertDurationMs(option, value, { ...must(`a ${allowZero ? "non-negative" : "positive"} integer (milliseconds)`), allowZero });
  const resolved: { -readonly [K in keyof ResolvedTokenValidationOptions]: ResolvedTokenValidationOptions[K] } = {
    clockToleranceSeconds:
      tokens.clockToleranceSeconds === undefined
        ? defaults.clockToleranceSeconds
        : assertNumber("tokens.clockToleranceSeconds", tokens.clockToleranceSeconds, {
            ...must("a non-negative number of seconds"),
            min: 0,
          }),
    cacheMs: optionalMs("tokens.cacheMs", tokens.cacheMs, defaults.cacheMs, true),
  };
  if (hs256) {
    resolved.hs256 = {
      secret: assertNonEmptyString("tokens.hs256.secret", hs256.secret, {
        ...must("at least 32 characters (HS256 needs 256 bits; set JWT_SECRET)"),
        minLength: 32,
      }),
      issuer: required("tokens.hs256.issuer", hs256.issuer, " (e.g. eloquent-gateway)"),
      audience: required("tokens.hs256.audience", hs256.audience, " (e.g. eloquent-api)"),
    };
  }
  if (jwks) {
    const audience = [jwks.audience].flat();
    if (audience.length === 0 || !audience.every((a) => typeof a === "string" && a !== "")) fail("tokens.jwks.audience", "is required");
    const algorithms = jwks.algorithms ?? defaults.jwks.algorithms;
    if (!Array.isArray(algorithms) || algorithms.length === 0 || !algorithms.every((a) => typeof a === "string" && a !== "")) {
      fail("tokens.jwks.algorithms", "must be a non-empty list of JWS algorithms, e.g. RS256, ES256");
    }
    resolved.jwks = {
      url: assertHttpUrl("tokens.jwks.url", jwks.url, { ...must("an http(s) URL"), allowQuery: true }),
      issuer: required("tokens.jwks.issuer", jwks.issuer, " (the OAuth2 server's issuer)"),
      audience: audience as string[],
      algorithms: [...algorithms],
      refetchCooldownMs: optionalMs("tokens.jwks.refetchCooldownMs", jwks.refetchCooldownMs, defaults.jwks.refetchCooldownMs, true),
      maxAgeMs: optionalMs("tokens.jwks.maxAgeMs", jwks.maxAgeMs, defaults.jwks.maxAgeMs, false),
      timeoutMs: optionalMs("tokens.jwks.timeoutMs", jwks.timeoutMs, defaults.jwks.timeoutMs, false),
      failureCooldownMs: optionalMs("tokens.jwks.failureCooldownMs", jwks.failureCooldownMs, defaults.jwks.failureCooldownMs, true),
    };
  }
  if (introspection) {
    const url = assertHttpUrl("tokens.introspection.url", introspection.url, { ...must("an http(s) URL"), allowQuery: true });
    const clientId = required("tokens.introspection.clientId", introspection.clientId);
    const clientSecret = required("tokens.introspection.clientSecret", introspection.clientSecret);
    const audience = introspection.audience === undefined ? undefined : [introspection.audience].flat();
    if (audience !== undefined && (audience.length === 0 || !audience.every((a) => typeof a === "string" && a !== ""))) {
      fail("tokens.introspection.audience", "must be a non-empty audience or list of audiences (set INTROSPECTION_AUDIENCE)");
    }
    if (introspection.issuer !== undefined) {
      assertNonEmptyString("tokens.introspection.issuer", introspection.issuer, must("a non-empty string when set (set INTROSPECTION_ISSUER)"));
    }
    resolved.introspection = {
      url,
      clientId,
      clientSecret,
      timeoutMs: optionalMs("tokens.introspection.timeoutMs", introspection.timeoutMs, defaults.introspection.timeoutMs, false),
      audience: audience as string[] | undefined,
      issuer: introspection.issuer,
      negativeCacheMs: optionalMs(
        "tokens.introspection.negativeCacheMs",
        introspection.negativeCacheMs,
        defaults.introspection.negativeCacheMs,
        true,
      ),
      failureCooldownMs: optionalMs(
        "tokens.introspection.failureCooldownMs",
        introspection.failureCooldownMs,
        defaults.introspection.failureCooldownMs,
        true,
      ),
    };
  }
  return resolved;
}
