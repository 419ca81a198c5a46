import type { Agent } from "node:http";
import { checkServiceName } from "./backend-service.js";
import { ConfigurationError } from "../core/errors.js";

/**
 * Options shared by `createGatewayTransport` and `createGatewayClient`
 * Every one is optional where an environment variable or a
 * default exists; anything invalid throws a {@link ConfigurationError} at
 * construction, naming the option.
 */
export interface GatewayOptions {
  /** OAuth2 client id. Default: `GATEWAY_CLIENT_ID`. Required. */
  readonly clientId?: string;
  /** OAuth2 client secret. Default: `GATEWAY_CLIENT_SECRET`. Required; never appears in an error or log. */
  readonly clientSecret?: string;
  /** The API gateway; may carry a path prefix. Default: `GATEWAY_URL`, else `https://gateway.fluence-europe.cloud`. */
  readonly gatewayUrl?: string;
  /** The OAuth2 server. Default: `APPCENTER_URL`, else `https://appcenter.fluence-europe.cloud`. */
  readonly appcenterUrl?: string;
  /** Token endpoint path, appended to `appcenterUrl`. Default `/oauth/token`. */
  readonly tokenPath?: string;
  /** Deadline of each call, and of each token request, in ms. Default 30000. */
  readonly timeoutMs?: number;
  /** Refresh the service token this long before it expires (at most half its lifetime). Default 300. */
  readonly refreshMarginSeconds?: number;
  /** Lifetime assumed when the token response has no `expires_in`. Default 300. */
  readonly defaultTokenLifetimeSeconds?: number;
  /** Scopes to request with the service token (OAuth2 `scope`); none by default. */
  readonly scope?: string | readonly string[];
  /** Backend service of calls that name none by any other means (see routing). */
  readonly defaultService?: string;
  /** Session mode: exchange this one-time code for a session token, once. */
  readonly session?: SessionOptions;
  /**
   * An `http.Agent` / `https.Agent`. Used for the token request and REST
   * calls, and for Connect calls over HTTP/1.1, so they share one connection
   * pool and TLS configuration. Its protocol must match both URLs.
   */
  readonly agent?: Agent;
  /**
   * The most bytes read for one answer, so a misbehaving server cannot
   * exhaust memory: each Connect message (passed to connect-node), and a REST
   * call's whole response body. Reading stops as soon as it is exceeded.
   * Default 4 MiB ({@link DEFAULT_READ_MAX_BYTES}); at most 2³²−1.
   */
  readonly readMaxBytes?: number;
}

/** The default `readMaxBytes`: 4 MiB. */
export const DEFAULT_READ_MAX_BYTES = 4 * 1024 * 1024;

/** Session mode: a one-time authorization code and where to exchange it. */
export interface SessionOptions {
  /** The one-time code (e.g. from a biometrics flow). */
  readonly code: string;
  /** Exchange endpoint path, appended to `appcenterUrl`. Default `/biometrics/session-exchange`. */
  readonly exchangePath?: string;
}

/** {@link GatewayOptions} checked, with defaults applied. */
export interface ResolvedGatewayOptions {
  readonly clientId: string;
  readonly clientSecret: string;
  /** Gateway URL without a trailing `/` (the Connect `baseUrl`). */
  readonly gatewayUrl: string;
  readonly gatewayOrigin: URL;
  readonly tokenUrl: URL;
  readonly timeoutMs: number;
  readonly refreshMarginSeconds: number;
  readonly defaultTokenLifetimeSeconds: number;
  readonly scope: string | undefined;
  readonly defaultService: string | undefined;
  readonly session: { readonly code: string; readonly url: URL } | undefined;
  readonly agent: Agent | undefined;
  readonly readMaxBytes: number;
}

/** Environment variables read for defaults. */
export type GatewayEnv = Readonly<Record<string, string | undefined>>;

/**
 * Checks every option and fills in defaults from `env`
 * (`GATEWAY_CLIENT_ID`, `GATEWAY_CLIENT_SECRET`, `GATEWAY_URL`,
 * `APPCENTER_URL`). Throws a {@link ConfigurationError} naming the first bad
 * option; no message ever contains the secret.
 */
export function resolveGatewayOptions(options: GatewayOptions = {}, env: GatewayEnv = process.env): ResolvedGatewayOptions {
  if (typeof options !== "object" || options === null) {
    throw new ConfigurationError("options", "must be an object (or omitted to use the environment).");
  }
  const appcenter = httpUrl("appcenterUrl", options.appcenterUrl ?? env.APPCENTER_URL ?? "https://appcenter.fluence-europe.cloud");
  const gateway = httpUrl("gatewayUrl", options.gatewayUrl ?? env.GATEWAY_URL ?? "https://gateway.fluence-europe.cloud");
  const agent = checkAgent(options.agent, [gateway, appcenter]);
  return {
    clientId: credential("clientId", options.clientId ?? env.GATEWAY_CLIENT_ID, "GATEWAY_CLIENT_ID"),
    clientSecret: credential("clientSecret", options.clientSecret ?? env.GATEWAY_CLIENT_SECRET, "GATEWAY_CLIENT_SECRET"),
    gatewayUrl: gateway.href.replace(/\/+$/, ""),
    gatewayOrigin: new URL(gateway.origin),
    tokenUrl: endpointUrl(appcenter, path("tokenPath", options.tokenPath ?? "/oauth/token")),
    timeoutMs: checkTimeoutMs(options.timeoutMs ?? 30_000),
    refreshMarginSeconds: number("refreshMarginSeconds", options.refreshMarginSeconds ?? 300, { min: 0 }),
    defaultTokenLifetimeSeconds: number("defaultTokenLifetimeSeconds", options.defaultTokenLifetimeSeconds ?? 300, {
      min: 1,
    }),
    scope: scope(options.scope),
    defaultService: options.defaultService === undefined ? undefined : checkServiceName(options.defaultService, "defaultService"),
    session: session(options.session, appcenter),
    agent,
    readMaxBytes: integer("readMaxBytes", options.readMaxBytes ?? DEFAULT_READ_MAX_BYTES, { min: 1, max: 2 ** 32 - 1 }),
  };
}

/**
 * Checks a deadline in milliseconds: the transport's and REST client's
 * `timeoutMs`, and a REST call's own. At most 2³¹−1, the largest delay
 * `setTimeout` honours (a larger one fires at once).
 */
export function checkTimeoutMs(value: unknown): number {
  return number("timeoutMs", value, { min: 1, max: 2 ** 31 - 1 });
}

function credential(option: string, value: unknown, envName: string): string {
  if (value === undefined || value === "") {
    throw new ConfigurationError(option, `is missing: pass it as an option or set ${envName}.`);
  }
  if (typeof value !== "string" || /[\u0000-\u001f\u007f]/.test(value)) {
    throw new ConfigurationError(option, "must be a string without control characters.");
  }
  return value;
}

// The value is not echoed: a URL may carry credentials.
function httpUrl(option: string, value: unknown): URL {
  let url: URL;
  try {
    url = new URL(String(value));
  } catch {
    throw new ConfigurationError(option, "must be an absolute http:// or https:// URL.");
  }
  if (typeof value !== "string" || (url.protocol !== "http:" && url.protocol !== "https:")) {
    throw new ConfigurationError(option, "must be an absolute http:// or https:// URL.");
  }
  if (url.username !== "" || url.password !== "") {
    throw new ConfigurationError(option, "must not carry credentials (user:password@); use clientId and clientSecret.");
  }
  if (url.search !== "" || url.hash !== "") {
    throw new ConfigurationError(option, "must not have a query or a fragment.");
  }
  return url;
}

function path(option: string, value: unknown): string {
  if (typeof value !== "string" || !/^\/[^?#\s]*$/.test(value)) {
    throw new ConfigurationError(option, 'must be a path starting with "/", without query, fragment or whitespace.');
  }
  return value;
}

function endpointUrl(base: URL, endpointPath: string): URL {
  return new URL(`${base.origin}${base.pathname.replace(/\/+$/, "")}${endpointPath}`);
}

function number(option: string, value: unknown, range: { min: number; max?: number }): number {
  const max = range.max ?? Number.MAX_SAFE_INTEGER;
  if (typeof value !== "number" || !Number.isFinite(value) || value < range.min || value > max) {
    throw new ConfigurationError(option, `must be a number from ${range.min} to ${max}.`);
  }
  return value;
}

// connect-node's own bounds for readMaxBytes: a whole number from 1 to 2³²−1.
function integer(option: string, value: unknown, range: { min: number; max: number }): number {
  if (!Number.isInteger(value) || (value as number) < range.min || (value as number) > range.max) {
    throw new ConfigurationError(option, `must be a whole number from ${range.min} to ${range.max}.`);
  }
  return value as number;
}

function scope(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  const scopes = typeof value === "string" ? value.split(" ").filter((s) => s !== "") : value;
  if (!Array.isArray(scopes) || scopes.length === 0 || !scopes.every((s) => typeof s === "string" && /^[\x21\x23-\x5b\x5d-\x7e]+$/.test(s))) {
    throw new ConfigurationError("scope", 'must be a non-empty list of OAuth2 scopes, e.g. ["read", "write"] or "read write".');
  }
  return scopes.join(" ");
}

function session(value: SessionOptions | undefined, appcenter: URL): ResolvedGatewayOptions["session"] {
  if (value === undefined) return undefined;
  if (typeof value !== "object" || value === null || typeof value.code !== "string" || value.code === "") {
    throw new ConfigurationError("session.code", "must be the non-empty one-time code to exchange.");
  }
  const exchangePath = path("session.exchangePath", value.exchangePath ?? "/biometrics/session-exchange");
  return { code: value.code, url: endpointUrl(appcenter, exchangePath) };
}

function checkAgent(agent: unknown, urls: readonly URL[]): Agent | undefined {
  if (agent === undefined) return undefined;
  const protocol = (agent as { protocol?: unknown } | null)?.protocol;
  if (typeof agent !== "object" || typeof protocol !== "string") {
    throw new ConfigurationError("agent", "must be an http.Agent or an https.Agent.");
  }
  if (urls.some((url) => url.protocol !== protocol)) {
    throw new ConfigurationError(
      "agent",
      `is an ${protocol.slice(0, -1)} agent but gatewayUrl and appcenterUrl must both use ${protocol} to share it; ` +
        "omit `agent` or use URLs of one protocol.",
    );
  }
  return agent as Agent;
}
