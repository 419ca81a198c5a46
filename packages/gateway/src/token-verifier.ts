import { hash } from "node:crypto";
import type { JWTPayload, JWTVerifyGetKey } from "jose";
import { LRUCache } from "lru-cache";
import { basicAuthorization } from "connect-gateway/protocol";
import { boundedFetch, MAX_INTROSPECTION_BYTES, MAX_KEY_SET_BYTES, readBoundedBody } from "./bounded-answer.js";
import { GatewayHttpError } from "./gateway-http-error.js";
import { createHs256Verification, jwsAlgorithm, TokenRefusal } from "./hs256-token.js";

type Jose = typeof import("jose");
let joseLoading: Promise<Jose> | undefined;

/**
 * jose, loaded the first time an RS256/ES256 token is verified rather than
 * imported:
 * it is a tenth of the gateway's start-up, and a gateway without a JWKS
 * never needs it.
 */
function loadJose(): Promise<Jose> {
  joseLoading ??= import("jose").catch((error: unknown) => {
    joseLoading = undefined;
    throw error;
  });
  return joseLoading;
}

/**
 * HS256 tokens signed with a shared secret, as a frontend that shares the secret issues them.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc7519 | RFC 7519} (JWT: `iss`, `aud`, `exp`)
 */
export interface Hs256TokenOptions {
  /** The shared secret (`JWT_SECRET`), at least 32 characters. */
  readonly secret: string;
  /** Expected `iss`, e.g. `eloquent-gateway`. */
  readonly issuer: string;
  /** Expected `aud`, e.g. `eloquent-api`. */
  readonly audience: string;
}

/**
 * Asymmetric tokens (RS256 / ES256) verified with an OAuth2 server's JWKS.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc7517 | RFC 7517} (JWK Set) and {@link https://www.rfc-editor.org/rfc/rfc7519 | RFC 7519} (JWT)
 */
export interface JwksTokenOptions {
  /** The JWKS URL, e.g. `http://127.0.0.1:4000/jwks`. */
  readonly url: string;
  /** Expected `iss`: the OAuth2 server's issuer. */
  readonly issuer: string;
  /** Expected `aud` (one of them, when several). */
  readonly audience: string | readonly string[];
  /** Accepted algorithms. Default `["RS256", "ES256"]`. */
  readonly algorithms?: readonly string[];
  /**
   * A token whose `kid` is not in the cached key set makes the gateway fetch
   * the JWKS again, at most once per this many ms (jose's cooldown), so key
   * rotation is picked up without letting garbage tokens hammer the server.
   * Default 30 s.
   */
  readonly refetchCooldownMs?: number;
  /** Keys are refetched at the latest after this long. Default 10 min. */
  readonly maxAgeMs?: number;
  /** Give up on a JWKS request after this long (→ `SERVICE_UNAVAILABLE`). Default 5 s. */
  readonly timeoutMs?: number;
  /**
   * After the JWKS endpoint failed (unreachable, an error status, garbage),
   * it is not asked again for this many ms, so an outage of the OAuth2
   * server is not met with a fetch per call. Meanwhile, and whenever a
   * fetch fails, tokens signed with a key of the last key set fetched keep
   * verifying against it; only a token whose key it lacks gets
   * `SERVICE_UNAVAILABLE`. Default 5 s; 0 disables the pause (never the
   * last key set).
   */
  readonly failureCooldownMs?: number;
}

/**
 * Opaque tokens checked through an RFC 7662 introspection endpoint; the
 * gateway authenticates to it with `client_secret_basic`.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc7662 | RFC 7662} (token introspection)
 */
export interface IntrospectionOptions {
  /** The introspection endpoint. */
  readonly url: string;
  /** The gateway's own OAuth2 client id, to authenticate to the endpoint. */
  readonly clientId: string;
  /** Its client secret (never logged). */
  readonly clientSecret: string;
  /** Give up on an introspection request after this long. Default 5 s. */
  readonly timeoutMs?: number;
  /** Expected `aud` of the introspection response (one of them, when several); unchecked when unset. */
  readonly audience?: string | readonly string[];
  /** Expected `iss` of the introspection response; unchecked when unset. */
  readonly issuer?: string;
  /**
   * A token the endpoint refused (`active: false`, wrong audience…) is refused
   * again without asking for this many ms (bounded LRU, keyed by the token's
   * hash). Default 10 s; 0 disables.
   */
  readonly negativeCacheMs?: number;
  /**
   * After the endpoint failed (unreachable, late, an error status such as
   * 429 or 503, garbage), it is not asked again for this many ms: a token not
   * already verified gets `SERVICE_UNAVAILABLE` at once. An overloaded
   * authorization server is then not met with one request per call — nor can
   * a spray of made-up tokens keep it overloaded (the failed-authentication
   * budget gives a unit back when the verifier could not decide). Default
   * 1 s; 0 disables the pause.
   */
  readonly failureCooldownMs?: number;
}

/** Which tokens the gateway accepts. At least one of the three. */
export interface TokenValidationOptions {
  readonly hs256?: Hs256TokenOptions;
  readonly jwks?: JwksTokenOptions;
  readonly introspection?: IntrospectionOptions;
  /**
   * Allowed clock skew on `exp` / `nbf` / `iat` (JWTs, and `exp` of an
   * introspection response). Default 5 s. A JWT without `exp` is refused.
   */
  readonly clockToleranceSeconds?: number;
  /**
   * A token that verified is trusted again for this long, never past its
   * `exp` (keyed by its hash; the cache never holds a usable token). Saves a
   * signature check — or an introspection round trip — per call, at the price
   * of noticing an introspected token's revocation this much later.
   * Default 30 s; 0 disables.
   */
  readonly cacheMs?: number;
}

/** {@link TokenValidationOptions} checked by `resolveGatewayConfig`, every default applied. */
export interface ResolvedTokenValidationOptions {
  /** HS256 tokens, when configured. */
  readonly hs256?: Hs256TokenOptions;
  /** JWKS-verified tokens, when configured. */
  readonly jwks?: ResolvedJwksTokenOptions;
  /** Opaque tokens through introspection, when configured. */
  readonly introspection?: ResolvedIntrospectionOptions;
  /** Leeway for `exp` / `nbf` / `iat`, seconds. */
  readonly clockToleranceSeconds: number;
  /** How long a verified token is remembered, milliseconds (0: never). */
  readonly cacheMs: number;
}

/** {@link JwksTokenOptions} checked, with defaults applied and the URL parsed. */
export type ResolvedJwksTokenOptions = Required<Omit<JwksTokenOptions, "url" | "audience">> & {
  readonly url: URL;
  readonly audience: readonly string[];
};

/** {@link IntrospectionOptions} checked, with defaults applied and the URL parsed. */
export type ResolvedIntrospectionOptions = Required<Omit<IntrospectionOptions, "url" | "audience" | "issuer">> & {
  readonly url: URL;
  readonly audience: readonly string[] | undefined;
  readonly issuer: string | undefined;
};

/** The verified claims of a token. */
export type TokenClaims = Readonly<JWTPayload>;

/** Verifies bearer tokens; see {@link createTokenVerifier}. */
export interface TokenVerifier {
  /**
   * The token's claims when it is valid; otherwise throws a
   * {@link GatewayHttpError}: `EXPIRED_TOKEN`, `UNAUTHORIZED`, or
   * `SERVICE_UNAVAILABLE` when the key set or introspection endpoint cannot be reached.
   */
  verify(token: string, key?: string): Promise<TokenClaims>;
  /**
   * The claims of a token verified within the cache lifetime and not expired
   * since, at once; `undefined` when {@link TokenVerifier.verify} must run.
   * `key` is the token's {@link tokenKey}.
   */
  cached(key: string): TokenClaims | undefined;
}

/**
 * What the verifier's caches (and the authenticator's failure gate) know a
 * token by: its SHA-256, so that no cache ever holds a usable token.
 * `verify` and `cached` take it from a caller that has it already.
 */
export function tokenKey(token: string): string {
  // One call into node:crypto, no Hash object: this runs for every request with a token.
  return hash("sha256", token, "base64url");
}

const INVALID = "Invalid or expired token";
/** Most tokens remembered at once, by each of the verifier's caches. */
const CACHE_ENTRIES = 10_000;

/**
 * Creates the gateway's token verifier: HS256 JWTs with a shared secret,
 * RS256/ES256 JWTs through a cached remote JWKS, and opaque tokens through
 * introspection — each only when configured, chosen by the token's shape and
 * `alg`, with issuer, audience and expiry always checked.
 */
export function createTokenVerifier(options: ResolvedTokenValidationOptions): TokenVerifier {
  const clockTolerance = options.clockToleranceSeconds;
  // HS256 with node:crypto, synchronously (see hs256-token.ts); RS256/ES256 with jose.
  const hs256 =
    options.hs256 && createHs256Verification({ ...options.hs256, clockToleranceSeconds: clockTolerance });
  const jwksOptions = options.jwks;
  let jwksKeys: JWTVerifyGetKey | undefined;
  // The remote key set, made with the first JWT to verify against it (jose is loaded by then).
  const jwksKeysOf = (jose: Jose, settings: NonNullable<typeof jwksOptions>): JWTVerifyGetKey =>
    (jwksKeys ??= withLastKeySet(
      jose.createRemoteJWKSet(settings.url, {
        cooldownDuration: settings.refetchCooldownMs,
        cacheMaxAge: settings.maxAgeMs,
        timeoutDuration: settings.timeoutMs,
        [jose.customFetch]: boundedFetch(MAX_KEY_SET_BYTES, "the key set"),
      }),
      settings.failureCooldownMs,
      jose,
    ));
  const jwks = jwksOptions && {
    verify: {
      issuer: options.jwks.issuer,
      audience: [...options.jwks.audience],
      algorithms: [...options.jwks.algorithms],
      requiredClaims: ["exp"],
      clockTolerance,
    },
  };
  const introspect = options.introspection && createIntrospection(options.introspection, clockTolerance);
  const cacheMs = options.cacheMs;
  const verified = cacheMs > 0 ? new LRUCache<string, TokenClaims>({ max: CACHE_ENTRIES }) : undefined;
  // Refusals of opaque tokens by the introspection endpoint, remembered briefly.
  const negativeMs = options.introspection?.negativeCacheMs;
  const refused =
    introspect && negativeMs !== undefined && negativeMs > 0
      ? new LRUCache<string, GatewayHttpError>({ max: CACHE_ENTRIES, ttl: negativeMs })
      : undefined;
  // One verification at a time per token: concurrent calls share it.
  const inflight = new Map<string, Promise<TokenClaims>>();

  async function verifyUncached(token: string, key: string): Promise<TokenClaims> {
    const alg = jwsAlgorithm(token);
    let jose: Jose | undefined;
    try {
      if (alg === undefined) {
        if (introspect) {
          try {
            return await introspect(token);
          } catch (e) {
            if (refused && e instanceof GatewayHttpError && e.statusCode === 401) refused.set(key, e);
            throw e;
          }
        }
      } else if (alg === "HS256" && hs256) {
        return hs256(token);
      } else if (jwks && jwksOptions && jwks.verify.algorithms.includes(alg)) {
        jose = await loadJose();
        return (await jose.jwtVerify(token, jwksKeysOf(jose, jwksOptions), jwks.verify)).payload;
      }
    } catch (e) {
      throw asTokenError(e, jose);
    }
    throw new GatewayHttpError("UNAUTHORIZED", INVALID, {
      cause: new TokenRefusal(alg === undefined ? "not a JWT, and no introspection is configured" : `its alg ${JSON.stringify(alg)} is not one this gateway verifies`),
    });
  }

  async function verifyAndRemember(token: string, key: string): Promise<TokenClaims> {
    const claims = await verifyUncached(token, key);
    if (verified !== undefined) {
      const ttl = typeof claims.exp === "number" ? Math.min(cacheMs, claims.exp * 1000 - Date.now()) : cacheMs;
      if (ttl > 0) verified.set(key, claims, { ttl });
    }
    return claims;
  }

  return {
    cached(key) {
      const cached = verified?.get(key);
      return cached !== undefined && !isExpired(cached) ? cached : undefined;
    },
    async verify(token, key = tokenKey(token)) {
      const cached = verified?.get(key);
      if (cached !== undefined && !isExpired(cached)) return cached;
      const refusal = refused?.get(key);
      // A fresh error per call: callers may decorate what they are thrown.
      if (refusal !== undefined) throw new GatewayHttpError(refusal.code, refusal.message);
      let pending = inflight.get(key);
      if (pending === undefined) {
        pending = verifyAndRemember(token, key).finally(() => inflight.delete(key));
        inflight.set(key, pending);
      }
      try {
        return await pending;
      } catch (e) {
        throw e instanceof GatewayHttpError ? new GatewayHttpError(e.code, e.message, { cause: e.cause }) : e;
      }
    },
  };
}

/**
 * The remote key set, kept usable while its endpoint fails. A failure of the
 * key set (see {@link isKeySetFailure}) is remembered for `cooldownMs`, and
 * the endpoint not asked again meanwhile (jose shares one fetch among
 * concurrent calls, but forgets a failed one at once). During that pause,
 * and for the call whose fetch failed, a token is verified against the last
 * key set fetched (jose keeps it after a failed refresh): without it, one
 * made-up `kid` — which makes jose refetch — would turn the endpoint's
 * outage into a 503 for every caller, and a key set past `maxAgeMs` would
 * fail every token while its keys are still at hand. Only a token whose key
 * that set lacks gets the failure (a 503: the key may be a new one). A
 * refresh that succeeds replaces the set, dropping a revoked key at once;
 * and the last set stands in for an hour at most after the endpoint last
 * answered, so an attacker who keeps the gateway from its OAuth2 server
 * cannot keep a removed key working for ever.
 */
function withLastKeySet(remote: RemoteKeySet, cooldownMs: number, jose: Jose): JWTVerifyGetKey {
  let failure: { error: unknown; until: number; lastKeys: JWTVerifyGetKey | undefined } | undefined;
  // When the remote set last answered (it was fresh then, or refreshed): the
  // last set stands in for at most LAST_KEY_SET_MAX_MS after that, so that
  // an endpoint kept away cannot keep a key it has since removed in use.
  let lastAnsweredAt = 0;
  const fromLastKeys = async (failed: NonNullable<typeof failure>, ...args: Parameters<JWTVerifyGetKey>) => {
    if (failed.lastKeys === undefined || Date.now() - lastAnsweredAt > LAST_KEY_SET_MAX_MS) throw failed.error;
    try {
      return await failed.lastKeys(...args);
    } catch (e) {
      throw e instanceof jose.errors.JWKSNoMatchingKey ? failed.error : e;
    }
  };
  // jose refetches the set for an unknown kid at most once per refetch
  // cooldown (30 s by default): inside it, a token signed with a key the
  // OAuth2 server has just started using would be refused for up to that
  // long. So a kid the set lacks also gets one early refetch, shared by
  // everyone and at most once per UNKNOWN_KID_REFETCH_MS: a key rotation is
  // seen within seconds, while made-up kids (which need no key to send)
  // reach the endpoint no more often than that, and are refused with 401,
  // counted against their sender's budget like any bad token.
  let earlyRefetch: { at: number; done: Promise<unknown> } | undefined;
  const withEarlyRefetch = async (header: Parameters<JWTVerifyGetKey>[0], token: Parameters<JWTVerifyGetKey>[1]) => {
    const coolingDown = remote.coolingDown;
    try {
      return await remote(header, token);
    } catch (e) {
      if (!coolingDown || !(e instanceof jose.errors.JWKSNoMatchingKey)) throw e;
      const now = Date.now();
      if (earlyRefetch === undefined || now - earlyRefetch.at >= UNKNOWN_KID_REFETCH_MS) {
        earlyRefetch = { at: now, done: remote.reload() };
      }
      await earlyRefetch.done;
      return await remote(header, token);
    }
  };
  return async (header, token) => {
    if (failure !== undefined && Date.now() < failure.until) return fromLastKeys(failure, header, token);
    try {
      const key = await withEarlyRefetch(header, token);
      failure = undefined;
      lastAnsweredAt = Date.now();
      return key;
    } catch (e) {
      if (!isKeySetFailure(e, jose)) throw e;
      const last = remote.jwks();
      failure = { error: e, until: Date.now() + cooldownMs, lastKeys: last && jose.createLocalJWKSet(last) };
      return fromLastKeys(failure, header, token);
    }
  };
}

type RemoteKeySet = ReturnType<Jose["createRemoteJWKSet"]>;

/** The shortest time between two early refetches of the key set for a kid it lacks (see withLastKeySet). */
const UNKNOWN_KID_REFETCH_MS = 5_000;

/** How long after the key set last answered it may stand in while its endpoint fails: an hour. */
const LAST_KEY_SET_MAX_MS = 60 * 60_000;

function asTokenError(e: unknown, jose: Jose | undefined): GatewayHttpError {
  if (e instanceof GatewayHttpError) return e;
  // Without jose loaded, nothing thrown came from it.
  if (jose === undefined) return new GatewayHttpError("SERVICE_UNAVAILABLE", "Token keys are unavailable", { cause: e });
  const joseErrors = jose.errors;
  if (e instanceof joseErrors.JWTExpired) {
    return new GatewayHttpError("EXPIRED_TOKEN", "Token has expired");
  }
  if (e instanceof joseErrors.JWTClaimValidationFailed && e.claim === "exp" && e.reason === "missing") {
    return new GatewayHttpError("UNAUTHORIZED", "Token has no expiry (exp)");
  }
  if (isKeySetFailure(e, jose)) {
    return new GatewayHttpError("SERVICE_UNAVAILABLE", "Token keys are unavailable", { cause: e });
  }
  // jose's message says which check failed (`unexpected "aud" claim value`, …), never the token.
  return new GatewayHttpError("UNAUTHORIZED", INVALID, { cause: e });
}

/**
 * The key set could not be had — unreachable, slow, not a 200, not a key set —
 * which is the OAuth2 server's fault, not the caller's. jose throws a bare
 * `JOSEError` only for a JWKS answer it cannot use, and no JOSE error at all
 * when the request fails.
 */
function isKeySetFailure(e: unknown, { errors: joseErrors }: Jose): boolean {
  return (
    !(e instanceof joseErrors.JOSEError) ||
    e instanceof joseErrors.JWKSTimeout ||
    e instanceof joseErrors.JWKSInvalid ||
    e.code === joseErrors.JOSEError.code
  );
}

/**
 * RFC 7662: POST the token with the gateway's client credentials; `active:
 * false` is invalid, as is a refresh token, a token of another issuer or
 * audience when those are configured, one past its `exp` or before its
 * `nbf` (with the clock leeway), or one whose `exp` or `nbf` is not a number.
 */
function createIntrospection(
  options: ResolvedIntrospectionOptions,
  clockToleranceSeconds: number,
): (token: string) => Promise<TokenClaims> {
  const authorization = basicAuthorization(options.clientId, options.clientSecret);
  const audiences = options.audience;
  // Until when the endpoint is left alone after a failure (see failureCooldownMs).
  let pausedUntil = 0;
  return async (token) => {
    if (pausedUntil > Date.now()) {
      throw new GatewayHttpError("SERVICE_UNAVAILABLE", "Token introspection is unavailable", {
        cause: new Error(`the introspection endpoint failed less than ${options.failureCooldownMs} ms ago`),
      });
    }
    let claims: Record<string, unknown>;
    try {
      claims = await postIntrospection(options, authorization, token);
    } catch (e) {
      if (options.failureCooldownMs > 0) pausedUntil = Date.now() + options.failureCooldownMs;
      throw e;
    }
    if (claims.active !== true) {
      throw new GatewayHttpError("UNAUTHORIZED", INVALID, { cause: new TokenRefusal("the introspection endpoint says it is not active") });
    }
    if (typeof claims.token_type === "string" && claims.token_type.toLowerCase() === "refresh_token") {
      throw new GatewayHttpError("UNAUTHORIZED", "A refresh token is not an access token");
    }
    if (options.issuer !== undefined && claims.iss !== options.issuer) {
      throw new GatewayHttpError("UNAUTHORIZED", "Token has an unexpected issuer");
    }
    if (audiences !== undefined) {
      const aud = typeof claims.aud === "string" ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud : [];
      if (!aud.some((a) => typeof a === "string" && audiences.includes(a))) {
        throw new GatewayHttpError("UNAUTHORIZED", "Token has an unexpected audience");
      }
    }
    // Both optional (RFC 7662 §2.2), but when present a NumericDate: a string
    // `exp` must not skip the expiry check, as jose refuses one in a JWT.
    for (const claim of ["exp", "nbf"] as const) {
      if (claims[claim] !== undefined && !Number.isFinite(claims[claim])) {
        throw new GatewayHttpError("UNAUTHORIZED", `Token introspection answered an ${claim} that is not a number`);
      }
    }
    const nowMs = Date.now();
    if (typeof claims.exp === "number" && (claims.exp + clockToleranceSeconds) * 1000 <= nowMs) {
      throw new GatewayHttpError("EXPIRED_TOKEN", "Token has expired");
    }
    if (typeof claims.nbf === "number" && (claims.nbf - clockToleranceSeconds) * 1000 > nowMs) {
      throw new GatewayHttpError("UNAUTHORIZED", "Token is not valid yet (nbf)");
    }
    return claims;
  };
}

async function postIntrospection(
  options: ResolvedIntrospectionOptions,
  authorization: string,
  token: string,
): Promise<Record<string, unknown>> {
  let response: Response;
  try {
    response = await fetch(options.url, {
      method: "POST",
      headers: { authorization, accept: "application/json" },
      body: new URLSearchParams({ token, token_type_hint: "access_token" }),
      signal: AbortSignal.timeout(options.timeoutMs),
    });
  } catch (e) {
    throw new GatewayHttpError("SERVICE_UNAVAILABLE", "Token introspection is unavailable", { cause: e });
  }
  let body: unknown;
  try {
    // Bounded, and read under the same timeout as the request (the signal covers the body).
    body = JSON.parse(Buffer.from(await readBoundedBody(response, MAX_INTROSPECTION_BYTES, "introspection")).toString("utf8"));
  } catch (e) {
    // Too large, cut off, timed out or not JSON: the server did not answer usably.
    throw new GatewayHttpError("SERVICE_UNAVAILABLE", "Token introspection is unavailable", { cause: e });
  }
  if (!response.ok || typeof body !== "object" || body === null || Array.isArray(body)) {
    const cause = new Error(`introspection answered HTTP ${response.status}`);
    throw new GatewayHttpError("SERVICE_UNAVAILABLE", "Token introspection is unavailable", { cause });
  }
  return body as Record<string, unknown>;
}

function isExpired(claims: Readonly<Record<string, unknown>>): boolean {
  return typeof claims.exp === "number" && claims.exp * 1000 <= Date.now();
}
