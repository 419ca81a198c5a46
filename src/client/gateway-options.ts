import type { KeyObject } from "node:crypto";
import type { JsonWebKeyInput } from "../core/json-web-key.js";
import type { Agent } from "node:http";
import { checkServiceName } from "./backend-service.js";
import { importClientAssertionKey, type ClientAssertionAlgorithm } from "./client-assertion.js";
import type { TokenEndpointAuthentication } from "./token-request.js";
import type { TokenEvent, TokenStore } from "./token-store.js";
import {
  assertDurationMs,
  assertFunction,
  assertHttpUrl,
  assertNumber,
  assertOneOf,
  assertPositiveInteger,
  isScopeToken,
  MAX_TIMER_MS,
} from "../core/assertions.js";
import type { GatewayEnv } from "../core/environment.js";
import { isLoopbackHostname } from "../core/loopback.js";
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
  /**
   * OAuth2 client secret. Default: `GATEWAY_CLIENT_SECRET`. Required, except
   * with `private_key_jwt` (see {@link clientAuthentication}); never appears
   * in an error or log.
   */
  readonly clientSecret?: string;
  /**
   * How the client authenticates to the token endpoint:
   * `"client_secret_basic"` (HTTP Basic with `clientId` and `clientSecret`),
   * `"client_secret_post"` (both in the form body, for servers that need it),
   * or `{ method: "private_key_jwt", privateKey, keyId?, algorithm? }` (a JWT
   * signed with the client's private key, RFC 7523: no client secret at all).
   *
   * Default: `private_key_jwt` with the PEM key in `GATEWAY_CLIENT_PRIVATE_KEY`
   * (and the key id in `GATEWAY_CLIENT_KEY_ID`) when that variable is set and
   * no `clientSecret` option is given — it wins over `GATEWAY_CLIENT_SECRET`;
   * otherwise `"client_secret_basic"`.
   *
   * @see https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1
   * @see https://www.rfc-editor.org/rfc/rfc7523#section-2.2
   */
  readonly clientAuthentication?: ClientAuthentication;
  /** The API gateway; may carry a path prefix. Default: `GATEWAY_URL`, else `https://gateway.fluence-europe.cloud`. */
  readonly gatewayUrl?: string;
  /**
   * The OAuth2 server. Default: `APPCENTER_URL`, else
   * `https://appcenter.fluence-europe.cloud` — except with a gateway on this
   * machine (`localhost`, 127.0.0.0/8, `[::1]`), where it must be set: a
   * forgotten `APPCENTER_URL` in local development would otherwise send the
   * client's credentials to the production token endpoint.
   */
  readonly appcenterUrl?: string;
  /** Token endpoint path, appended to `appcenterUrl`. Default: `GATEWAY_TOKEN_PATH`, else `/oauth/token`. */
  readonly tokenPath?: string;
  /** Deadline of each call, and of each token request, in ms. Default 30000. */
  readonly timeoutMs?: number;
  /** Refresh the service token this long before it expires (at most half its lifetime). Default 300. */
  readonly refreshMarginSeconds?: number;
  /** Lifetime assumed when the token response has no `expires_in`. Default 300. */
  readonly defaultTokenLifetimeSeconds?: number;
  /** Scopes to request with the service token (OAuth2 `scope`). Default: `GATEWAY_SCOPE` (space-separated), else none. */
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
   * Default 4 MiB (4194304); at most 2³²−1.
   */
  readonly readMaxBytes?: number;
  /**
   * Where the service token is cached. Default: one in-memory store per
   * process, so every transport and REST client of the process with the
   * same token URL, client id, credential and scope shares one token (and
   * one refresh). `createRedisTokenStore(redis)` shares it between
   * processes; `createMemoryTokenStore()` gives a cache of its own. Not with
   * `session` (a session token is never shared).
   */
  readonly tokenStore?: TokenStore;
  /**
   * Called on each new service token (`source` `"fetched"` or `"store"`),
   * failed token request and worked-around token store failure, for your own
   * logging or metrics. No event carries a token or a secret. Called
   * synchronously; exceptions it throws are ignored.
   */
  readonly onTokenEvent?: (event: TokenEvent) => void;
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

/**
 * The `clientAuthentication` option: how the client authenticates to the
 * OAuth2 token endpoint.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1
 * @see https://www.rfc-editor.org/rfc/rfc7523#section-2.2
 */
export type ClientAuthentication = "client_secret_basic" | "client_secret_post" | PrivateKeyJwtAuthentication;

/**
 * `private_key_jwt` client authentication (RFC 7523, OpenID Connect Core §9):
 * every token request carries a fresh JWT signed with the client's private
 * key (60 seconds of validity, audience the token endpoint URL); the
 * authorization server verifies it with the client's registered public key.
 * The key is imported at construction: an invalid key, or an `algorithm` that
 * does not fit it, throws a {@link ConfigurationError} naming the option.
 *
 * @see https://www.rfc-editor.org/rfc/rfc7523
 */
export interface PrivateKeyJwtAuthentication {
  /** Always `"private_key_jwt"`. */
  readonly method: "private_key_jwt";
  /**
   * The client's private key: a `KeyObject`, an unencrypted PEM string
   * (PKCS#8, PKCS#1 or SEC1) or a private JWK object. An RSA key of 2048
   * bits or more, an EC P-256 key, or an Ed25519 key.
   */
  readonly privateKey: KeyObject | string | JsonWebKeyInput;
  /** The `kid` header of the assertions, when the server needs it to pick the key. Default: the JWK's `kid`, else none. */
  readonly keyId?: string;
  /**
   * The signing algorithm. Default: the JWK's `alg`, else inferred from the
   * key — `RS256` for RSA (`PS256` for an RSA-PSS key), `ES256` for P-256,
   * `EdDSA` for Ed25519.
   */
  readonly algorithm?: ClientAssertionAlgorithm;
}

/** {@link GatewayOptions} checked, with defaults applied. */
export interface ResolvedGatewayOptions {
  readonly clientId: string;
  /** How the client authenticates to the token endpoint, with its secret or key. */
  readonly clientAuthentication: TokenEndpointAuthentication;
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
  /** The token store the user gave; `undefined`: the process-wide default. */
  readonly tokenStore: TokenStore | undefined;
  readonly onTokenEvent: ((event: TokenEvent) => void) | undefined;
}

/** Environment variables read for defaults (one type for the whole project). */
export type { GatewayEnv };

/**
 * Checks every option and fills in defaults from `env`
 * (`GATEWAY_CLIENT_ID`, `GATEWAY_CLIENT_SECRET`, `GATEWAY_CLIENT_PRIVATE_KEY`,
 * `GATEWAY_CLIENT_KEY_ID`, `GATEWAY_URL`, `APPCENTER_URL`). Throws a
 * {@link ConfigurationError} naming the first bad option; no message ever
 * contains the secret or key material.
 */
export function resolveGatewayOptions(options: GatewayOptions = {}, env: GatewayEnv = process.env): ResolvedGatewayOptions {
  if (typeof options !== "object" || options === null) {
    throw new ConfigurationError("options", "must be an object (or omitted to use the environment).");
  }
  const appcenter = urlOption("appcenterUrl", options.appcenterUrl, "APPCENTER_URL", env, DEFAULT_APPCENTER_URL);
  const gateway = urlOption("gatewayUrl", options.gatewayUrl, "GATEWAY_URL", env, DEFAULT_GATEWAY_URL);
  // A gateway on this machine (the dev stack, a port-forward) with the
  // default OAuth2 server: a forgotten APPCENTER_URL would send this
  // client's credentials to the production token endpoint. Said, not done.
  if (appcenter.fromDefault && reachesThisMachine(gateway.url.hostname.replace(/\.$/, ""))) {
    throw new ConfigurationError(
      "appcenterUrl",
      `is not set, and the gateway ${gateway.url.origin} is on this machine: the client's credentials would go to the default ` +
        `OAuth2 server ${DEFAULT_APPCENTER_URL}. Set APPCENTER_URL (or appcenterUrl) to the server of your token endpoint ` +
        "(the dev stack's: http://127.0.0.1:4000).",
    );
  }
  // The mirror case: a token endpoint on this machine with the default
  // gateway: a forgotten GATEWAY_URL would send every call, with its bearer
  // token and payload, to the production gateway.
  if (gateway.fromDefault && reachesThisMachine(appcenter.url.hostname.replace(/\.$/, ""))) {
    throw new ConfigurationError(
      "gatewayUrl",
      `is not set, and the token endpoint ${appcenter.url.origin} is on this machine: the calls, with their tokens, would go to ` +
        `the default gateway ${DEFAULT_GATEWAY_URL}. Set GATEWAY_URL (or gatewayUrl) to your gateway (the dev stack's: http://127.0.0.1:8080).`,
    );
  }
  const agent = checkAgent(options.agent, [gateway.url, appcenter.url]);
  return {
    clientId: credential("clientId", options.clientId ?? env.GATEWAY_CLIENT_ID, "GATEWAY_CLIENT_ID"),
    clientAuthentication: clientAuthentication(options, env),
    gatewayUrl: gateway.url.href.replace(/\/+$/, ""),
    gatewayOrigin: new URL(gateway.url.origin),
    tokenUrl: endpointUrl(appcenter.url, path("tokenPath", options.tokenPath ?? env.GATEWAY_TOKEN_PATH ?? "/oauth/token")),
    timeoutMs: checkTimeoutMs(options.timeoutMs ?? 30_000),
    refreshMarginSeconds: assertNumber("refreshMarginSeconds", options.refreshMarginSeconds ?? 300, { min: 0 }),
    defaultTokenLifetimeSeconds: assertNumber("defaultTokenLifetimeSeconds", options.defaultTokenLifetimeSeconds ?? 300, {
      min: 1,
    }),
    scope: scope(options.scope ?? env.GATEWAY_SCOPE),
    defaultService: options.defaultService === undefined ? undefined : checkServiceName(options.defaultService, "defaultService"),
    session: session(options.session, appcenter.url),
    agent,
    // connect-node's own bounds for readMaxBytes: a whole number from 1 to 2³²−1.
    readMaxBytes: assertPositiveInteger("readMaxBytes", options.readMaxBytes ?? DEFAULT_READ_MAX_BYTES, { max: 2 ** 32 - 1 }),
    tokenStore: checkTokenStore(options),
    onTokenEvent:
      options.onTokenEvent === undefined
        ? undefined
        : assertFunction<(event: TokenEvent) => void>("onTokenEvent", options.onTokenEvent),
  };
}

/**
 * Checks a deadline in milliseconds: the transport's and REST client's
 * `timeoutMs`, and a REST call's own. At most 2³¹−1, the largest delay
 * `setTimeout` honours (a larger one fires at once).
 */
export function checkTimeoutMs(value: unknown): number {
  return assertDurationMs("timeoutMs", value, { allowFraction: true, max: MAX_TIMER_MS });
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

const SECRET_METHODS = ["client_secret_basic", "client_secret_post"] as const;

function clientAuthentication(options: GatewayOptions, env: GatewayEnv): TokenEndpointAuthentication {
  const value: unknown = options.clientAuthentication;
  if (value === undefined && options.clientSecret === undefined && env.GATEWAY_CLIENT_PRIVATE_KEY) {
    const key = importClientAssertionKey(
      { privateKey: pemFromEnv(env.GATEWAY_CLIENT_PRIVATE_KEY), keyId: env.GATEWAY_CLIENT_KEY_ID || undefined },
      { privateKey: "GATEWAY_CLIENT_PRIVATE_KEY", algorithm: "clientAuthentication.algorithm", keyId: "GATEWAY_CLIENT_KEY_ID" },
    );
    return { method: "private_key_jwt", key };
  }
  if (value === undefined || typeof value === "string") {
    const method = assertOneOf("clientAuthentication", value ?? "client_secret_basic", SECRET_METHODS, {
      expected: '"client_secret_basic", "client_secret_post" or { method: "private_key_jwt", privateKey }',
    });
    return { method, clientSecret: credential("clientSecret", options.clientSecret ?? env.GATEWAY_CLIENT_SECRET, "GATEWAY_CLIENT_SECRET") };
  }
  if (typeof value !== "object" || value === null) {
    throw new ConfigurationError(
      "clientAuthentication",
      'must be "client_secret_basic", "client_secret_post" or { method: "private_key_jwt", privateKey }.',
    );
  }
  const jwt = value as Partial<Record<keyof PrivateKeyJwtAuthentication, unknown>>;
  assertOneOf("clientAuthentication.method", jwt.method, ["private_key_jwt"]);
  if (jwt.privateKey === undefined) {
    throw new ConfigurationError("clientAuthentication.privateKey", "is missing: pass the client's private key (a KeyObject, a PEM string or a JWK).");
  }
  const key = importClientAssertionKey(jwt as { privateKey: unknown }, {
    privateKey: "clientAuthentication.privateKey",
    algorithm: "clientAuthentication.algorithm",
    keyId: "clientAuthentication.keyId",
  });
  return { method: "private_key_jwt", key };
}

// A PEM key in a single-line variable (a .env file, a CI secret) often has
// its line breaks written as the two characters `\n`: a key without a real
// line break gets them back.
function pemFromEnv(value: string): string {
  return value.includes("\n") ? value : value.replace(/\\n/g, "\n");
}

// The value is not echoed: a URL may carry credentials.
const DEFAULT_GATEWAY_URL = "https://gateway.fluence-europe.cloud";
const DEFAULT_APPCENTER_URL = "https://appcenter.fluence-europe.cloud";

/**
 * A URL option: the option, else the environment variable `envName`, else
 * `fallback`. A bad value from the environment is refused naming the
 * variable too, as that is where it has to be fixed.
 */
function urlOption(option: string, given: unknown, envName: string, env: GatewayEnv, fallback: string): { url: URL; fromDefault: boolean } {
  const fromEnv = given === undefined ? env[envName] : undefined;
  try {
    return { url: httpUrl(option, given ?? fromEnv ?? fallback), fromDefault: given === undefined && fromEnv === undefined };
  } catch (e) {
    if (fromEnv === undefined || !(e instanceof ConfigurationError)) throw e;
    throw new ConfigurationError(option, "", { message: `${e.message.replace(/\.$/, "")} (it comes from ${envName}).` });
  }
}

/**
 * True for a gateway host that is this machine: a loopback name, or an
 * address a local listener answers on (`0.0.0.0`, `[::]` — as a "listening
 * on 0.0.0.0" banner says — and IPv4-mapped loopback, which URL parsing
 * writes `[::ffff:7f00:1]`). Only for this check: the dev tools' Host check
 * accepts loopback names alone.
 */
function reachesThisMachine(hostname: string): boolean {
  return isLoopbackHostname(hostname) || hostname === "0.0.0.0" || hostname === "[::]" || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(hostname);
}

function httpUrl(option: string, value: unknown): URL {
  return assertHttpUrl(option, value, {
    expectedFor: { credentials: "a URL without credentials (user:password@); use clientId and clientSecret" },
  });
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

// Each scope is an RFC 6749 §3.3 scope-token, see https://www.rfc-editor.org/rfc/rfc6749#section-3.3
function scope(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  const scopes = typeof value === "string" ? value.split(" ").filter((s) => s !== "") : value;
  if (!Array.isArray(scopes) || scopes.length === 0 || !scopes.every(isScopeToken)) {
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

function checkTokenStore(options: GatewayOptions): TokenStore | undefined {
  const store: unknown = options.tokenStore;
  if (store === undefined) return undefined;
  const methods = store as Partial<Record<keyof TokenStore, unknown>> | null;
  if (
    typeof store !== "object" ||
    methods === null ||
    typeof methods.get !== "function" ||
    typeof methods.set !== "function" ||
    (methods.coordinate !== undefined && typeof methods.coordinate !== "function")
  ) {
    throw new ConfigurationError(
      "tokenStore",
      "must be a token store: an object with get() and set() methods, e.g. createRedisTokenStore(redis).",
    );
  }
  if (options.session !== undefined) {
    throw new ConfigurationError("tokenStore", "cannot be used with session: a session token is never shared.");
  }
  return store as TokenStore;
}
