import { LRUCache } from "lru-cache";
import { clientNetworkOf } from "./client-network.js";
import { GatewayHttpError } from "./gateway-http-error.js";
import { anonymousIdentity, identityFromClaims, type CallerIdentity, type ClaimMapping } from "./identity-claims.js";
import type { WindowCount, WindowCounter } from "./rate-limit-store.js";
import type { UpstreamAccess } from "./routes-file.js";
import { tokenKey, type TokenClaims, type TokenVerifier } from "./token-verifier.js";

/** Options of {@link createRequestAuthenticator}. */
export interface RequestAuthenticatorOptions {
  readonly verifier: TokenVerifier;
  readonly claims: ClaimMapping;
  /** `X-Client-Id` of tokenless calls to routes that need no token. */
  readonly anonymousClientId: string;
  /** The per-client-IP budget of failed authentications; none when unset. */
  readonly failureLimit?: AuthFailureLimit;
}

/** The per-client-IP budget of failed authentications, see {@link createRequestAuthenticator}. */
export interface AuthFailureLimit {
  /** Failed authentications per IP per window; past them, the IP's unverified tokens are refused unchecked. */
  readonly max: number;
  /** Where failures are counted, per IP, in fixed windows (memory, or the rate limit's Redis). */
  readonly counter: WindowCounter;
  /**
   * The token verifier's cache lifetime (`tokens.cacheMs`). A token that
   * verified passes an over-budget IP's gate until its `exp` — validated
   * again each time the verifier's cache has let it go, without spending —
   * and, without an `exp`, for twice this long from its last validation, so
   * one in continuous use never drops out. 0 (no verifier cache, every call
   * validated): none passes.
   */
  readonly knownValidMs: number;
}

/**
 * Checks a call's token and the route's rules: who is calling, or a
 * {@link GatewayHttpError}. A token the verifier has cached (and the
 * failure gate lets through) is answered at once, without a promise: most
 * calls; the others, and every refusal, through the promise.
 */
export type RequestAuthenticator = (
  authorization: string | undefined,
  access: UpstreamAccess,
  clientIp: string,
) => CallerIdentity | Promise<CallerIdentity>;

/**
 * A 429 for an IP that spent its budget of failed authentications; the
 * gateway sends `retryAfterSeconds` as `Retry-After`.
 */
export class AuthFailureLimitError extends GatewayHttpError {
  override name = "AuthFailureLimitError";
  constructor(readonly retryAfterSeconds: number) {
    super("RATE_LIMITED", "Too many failed authentications; try again later");
  }
}

/** Most verified tokens (their hashes) remembered at once for the failure gate. */
const KNOWN_VALID_ENTRIES = 10_000;

/**
 * Token validation, then the route's
 * client allow-list and scopes. Returns who is calling, or throws a
 * {@link GatewayHttpError} (`UNAUTHORIZED`, `EXPIRED_TOKEN`, `FORBIDDEN`,
 * `INSUFFICIENT_SCOPE`, `RATE_LIMITED`). A token sent to a route that needs
 * none is still verified: a bad token is an error wherever it is sent.
 *
 * With `failureLimit`, each client IP has a budget of failed
 * authentications (401: a missing, invalid or expired token) per window,
 * spent BEFORE the token is validated, so that a spray of made-up tokens
 * never becomes more than `max` signature checks or introspection requests
 * per IP and window:
 *
 * - A token this gateway verified (not past its `exp`, not refused since)
 *   skips the budget: it spends nothing, and costs at most one validation
 *   per verifier cache lifetime — so another caller behind the same address
 *   spraying made-up tokens cannot lock out a client in continuous use.
 * - Any other token takes one unit of the budget before it is validated, and
 *   gives it back when it turns out valid — or when the verifier could not
 *   decide (503: key set or introspection endpoint away, not the caller's
 *   fault). Taking first, rather than counting failures afterwards, holds
 *   the bound for concurrent calls too: at most `max` validations per IP and
 *   window, whatever their timing. (The price: more than `max` first-time
 *   validations of distinct valid tokens in flight at once from one IP get
 *   429 too; calls sharing one token share its single validation.)
 * - Past the budget, such a call gets 429 with `Retry-After` (the seconds
 *   until the window ends), unvalidated. Decision: a valid token that is not
 *   known-valid yet is refused as well until the window ends — telling it
 *   apart from a made-up one would take exactly the validation the budget
 *   is there to save. Users whose token already went through keep working.
 * - A call without a token to a route that needs one costs no validation
 *   but counts as a failure too (and gets 429 rather than 401 past the
 *   budget); one to a route that needs none is anonymous and never counts.
 */
export function createRequestAuthenticator(options: RequestAuthenticatorOptions): RequestAuthenticator {
  const limit = options.failureLimit;
  // Hashes of tokens that verified → until when they pass the gate (epoch ms).
  const knownValid =
    limit !== undefined && limit.knownValidMs > 0 ? new LRUCache<string, number>({ max: KNOWN_VALID_ENTRIES }) : undefined;
  // Hashes of tokens whose validation (having taken a unit) is under way → settles when it ends.
  const validating = new Map<string, Promise<void>>();

  /** One unit of `clientIp`'s budget, taken; throws the 429 when it is spent. */
  const spend = async (clientIp: string): Promise<WindowCount> => {
    const counted = await (limit as AuthFailureLimit).counter.increment(clientIp);
    if (counted.count > (limit as AuthFailureLimit).max) {
      throw new AuthFailureLimitError(Math.max(1, Math.ceil((counted.resetAt - Date.now()) / 1000)));
    }
    return counted;
  };

  // The identity of verified claims: the verifier's cache returns the same
  // claims object for a token, so the mapping runs once per token, not per call.
  const identities = new WeakMap<TokenClaims, CallerIdentity>();
  const identityOf = (claims: TokenClaims): CallerIdentity => {
    let identity = identities.get(claims);
    if (identity === undefined) identities.set(claims, (identity = identityFromClaims(claims, options.claims)));
    return identity;
  };

  return (authorization, access, clientIp) => {
    const token = bearerToken(authorization);
    if (token === undefined) {
      if (!access.authRequired) return anonymousIdentity(options.anonymousClientId);
      return refuseTokenless(clientIp);
    }
    const key = tokenKey(token);
    // A token verified and cached, which the failure gate lets through: no promise.
    if (limit === undefined || (!validating.has(key) && (knownValid?.get(key) ?? 0) > Date.now())) {
      const claims = options.verifier.cached(key);
      if (claims !== undefined) return authorize(identityOf(claims), access);
    }
    return authenticateAsync(token, key, access, clientIp);
  };

  async function refuseTokenless(clientAddress: string): Promise<never> {
    const clientIp = clientNetworkOf(clientAddress);
    // Nothing to validate, but a failure all the same. Should the count fail
    // (Redis away, `closed`), the caller still gets the 401 it earned.
    if (limit !== undefined) await spend(clientIp).catch((e: unknown) => {
      if (e instanceof AuthFailureLimitError) throw e;
    });
    throw new GatewayHttpError("UNAUTHORIZED", "Missing or invalid token");
  }

  async function authenticateAsync(token: string, tokenHash: string, access: UpstreamAccess, clientAddress: string): Promise<CallerIdentity> {
    // Counted by network: an IPv6 caller's /64, not each of its addresses.
    const clientIp = clientNetworkOf(clientAddress);
    const key = limit === undefined ? undefined : tokenHash;
    // Concurrent first calls with the same token (a client opening 64 streams
    // with a fresh token) wait for the first one's validation instead of each
    // taking a unit: one token is one validation, however many calls carry it.
    const inFlight = key === undefined ? undefined : validating.get(key);
    if (inFlight !== undefined) await inFlight;
    const isKnownValid = key !== undefined && (knownValid?.get(key) ?? 0) > Date.now();
    const spent = limit === undefined || isKnownValid ? undefined : await spend(clientIp);
    let settle: (() => void) | undefined;
    if (spent !== undefined && key !== undefined && !validating.has(key)) {
      validating.set(key, new Promise<void>((resolve) => (settle = resolve)));
    }
    try {
      return await authenticate(token, tokenHash, spent, key, access, clientIp);
    } finally {
      if (settle !== undefined && key !== undefined) {
        validating.delete(key);
        settle();
      }
    }
  }

  async function authenticate(
    token: string,
    tokenHash: string,
    spent: WindowCount | undefined,
    key: string | undefined,
    access: UpstreamAccess,
    clientIp: string,
  ): Promise<CallerIdentity> {
    let claims: TokenClaims;
    let identity: CallerIdentity;
    try {
      claims = await options.verifier.verify(token, tokenHash);
      identity = identityOf(claims);
    } catch (e) {
      const refused = e instanceof GatewayHttpError && e.statusCode === 401;
      // A known token refused since (revoked, expired) is known no longer.
      if (refused && key !== undefined) knownValid?.delete(key);
      // Only the caller's failures (401) stay counted.
      if (spent !== undefined && !refused) void limit?.counter.refund(clientIp, spent);
      throw e;
    }
    if (spent !== undefined) void limit?.counter.refund(clientIp, spent);
    if (knownValid !== undefined && key !== undefined) {
      const now = Date.now();
      const until = typeof claims.exp === "number" ? claims.exp * 1000 : now + 2 * (limit as AuthFailureLimit).knownValidMs;
      if (until > now) knownValid.set(key, until, { ttl: until - now });
    }
    return authorize(identity, access);
  }
}

/** The route's rules for a caller: its client allowed, every scope it needs held. */
function authorize(identity: CallerIdentity, access: UpstreamAccess): CallerIdentity {
  if (access.clients !== undefined && !access.clients.includes(identity.clientId)) {
    throw new GatewayHttpError("FORBIDDEN", "Access denied for this client");
  }
  for (const scope of access.scopes) {
    if (!identity.scopes.includes(scope)) {
      const missing = access.scopes.filter((needed) => !identity.scopes.includes(needed));
      throw new GatewayHttpError("INSUFFICIENT_SCOPE", `Token lacks required scope: ${missing.join(" ")}`);
    }
  }
  return identity;
}

/** The token of an `Authorization: Bearer <token>` header (RFC 6750 §2.1; scheme case-insensitive). */
function bearerToken(authorization: string | undefined): string | undefined {
  const match = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(authorization ?? "");
  return match?.[1];
}
