import { AuthenticationError } from "./authentication-error.js";
import { exchangeSessionCode } from "./session-exchange.js";
import { SessionTokenExpiredError } from "./session-token-expired-error.js";
import { requestToken, type TokenEndpoint } from "./token-request.js";
import type { IssuedToken } from "./token-response.js";
import type { ResolvedGatewayOptions } from "./gateway-options.js";

/**
 * Options of {@link createTokenManager}: the token-related part of the
 * resolved gateway options, plus a clock.
 */
export type TokenManagerOptions = Pick<
  ResolvedGatewayOptions,
  | "clientId"
  | "clientSecret"
  | "tokenUrl"
  | "scope"
  | "agent"
  | "timeoutMs"
  | "refreshMarginSeconds"
  | "defaultTokenLifetimeSeconds"
  | "session"
> & {
  /** Milliseconds from a monotonic clock. Tests pass a controllable one. Default `performance.now`. */
  readonly now?: () => number;
};

/** The service-token cache shared by a transport's (or REST client's) calls. */
export interface TokenManager {
  /**
   * A token to call with. Cached until `refreshMarginSeconds` before expiry
   * (never more than half its lifetime); inside that margin the cached token
   * is still returned while one background refresh runs; once expired (or
   * before the first token) every caller waits on the same single request.
   * A usable cached token is returned synchronously, sparing the hot path a
   * promise.
   */
  getToken(): string | Promise<string>;
  /**
   * After a 401 answered to `token`: drops it — only if it is still the
   * cached one, so a fresher token survives — which forces a refresh.
   * Returns whether a retry can hope for another token: `false` only when
   * `token` is still cached and is kept because of the forced-refresh
   * backoff ({@link FORCED_REFRESH_BACKOFF_MS}).
   */
  invalidate(token: string): boolean;
}

/**
 * No forced refresh (a 401 dropping the cached token) within this many ms of
 * the token the last forced refresh obtained: under a sustained 401 storm —
 * the gateway rejecting every token, say, a clock or key problem — a client
 * would otherwise request one token per call (each 401 drops the token, the
 * retry fetches another, which gets a 401 too). Within the backoff the token
 * is kept and the call fails with its 401, not retried; so a token manager
 * (one per transport or REST client, i.e. per set of credentials) makes at
 * most one forced token request per second, whatever the call rate. A 401 to
 * an older token than the cached one never forces anything (see
 * `invalidate`), so a burst of calls that all used a stale token still costs
 * exactly one token request.
 */
export const FORCED_REFRESH_BACKOFF_MS = 1000;

interface CachedToken {
  readonly accessToken: string;
  readonly refreshAt: number;
  readonly expiresAt: number;
}

/**
 * Creates the token cache: lazy, single-flight, refreshed before expiry;
 * uses the `refresh_token` grant when the server issued a refresh token
 * (falling back to client_credentials if that grant is refused); a failed
 * request does not poison the cache — the next call tries again. In session
 * mode the code is exchanged exactly once, and the session token's expiry
 * ends the session with a {@link SessionTokenExpiredError}.
 */
export function createTokenManager(options: TokenManagerOptions): TokenManager {
  const now = options.now ?? (() => performance.now());
  const endpoint: TokenEndpoint = {
    url: options.tokenUrl,
    clientId: options.clientId,
    clientSecret: options.clientSecret,
    scope: options.scope,
    agent: options.agent,
    timeoutMs: options.timeoutMs,
  };
  const obtain = options.session ? sessionSource(endpoint, options.session) : clientCredentialsSource(endpoint);
  let cached: CachedToken | undefined;
  let inflight: Promise<CachedToken> | undefined;
  // Set by invalidate(): the next refresh is a forced one.
  let forcing = false;
  // When the token of the last forced refresh arrived.
  let lastForcedAt = Number.NEGATIVE_INFINITY;

  function refresh(): Promise<CachedToken> {
    if (inflight) return inflight;
    const sentAt = now();
    const forced = forcing;
    forcing = false;
    const request = obtain().then((issued) => {
      cached = cacheable(issued, sentAt, options);
      if (forced) lastForcedAt = now();
      return cached;
    });
    inflight = request;
    // Cleared once settled, success or failure: a failure is not cached.
    const clear = () => {
      if (inflight === request) inflight = undefined;
    };
    request.then(clear, clear);
    return request;
  }

  return {
    getToken() {
      const at = now();
      if (cached && at < cached.refreshAt) return cached.accessToken;
      if (cached && at < cached.expiresAt) {
        // Inside the margin: one background refresh; its failure keeps the current token.
        if (!options.session) refresh().catch(() => {});
        return cached.accessToken;
      }
      return refresh().then((token) => token.accessToken);
    },
    invalidate(token) {
      if (cached?.accessToken !== token) return true; // a fresher token is cached or on its way
      if (now() - lastForcedAt < FORCED_REFRESH_BACKOFF_MS) return false;
      cached = undefined;
      forcing = true;
      return true;
    },
  };
}

function cacheable(issued: IssuedToken, sentAt: number, options: TokenManagerOptions): CachedToken {
  const lifetime = issued.expiresInSeconds ?? options.defaultTokenLifetimeSeconds;
  const margin = Math.min(options.refreshMarginSeconds, lifetime / 2);
  // Measured from when the request was sent, so the latency counts against the token.
  return {
    accessToken: issued.accessToken,
    expiresAt: sentAt + lifetime * 1000,
    refreshAt: sentAt + (lifetime - margin) * 1000,
  };
}

// client_credentials, or refresh_token once the server has issued one.
function clientCredentialsSource(endpoint: TokenEndpoint): () => Promise<IssuedToken> {
  let refreshToken: string | undefined;
  const keep = (issued: IssuedToken) => {
    refreshToken = issued.refreshToken ?? refreshToken;
    return issued;
  };
  return async () => {
    if (refreshToken !== undefined) {
      try {
        return keep(await requestToken(endpoint, { type: "refresh_token", refreshToken }));
      } catch (error) {
        // The server answered (expired or revoked refresh token): start over.
        // Unreachable: client_credentials would fail the same way.
        if (!(error instanceof AuthenticationError && error.status !== undefined)) throw error;
        refreshToken = undefined;
      }
    }
    return keep(await requestToken(endpoint, { type: "client_credentials" }));
  };
}

// Seed 001: client_credentials token, then the code is exchanged — once.
function sessionSource(
  endpoint: TokenEndpoint,
  session: NonNullable<TokenManagerOptions["session"]>,
): () => Promise<IssuedToken> {
  const exchange = { ...session, agent: endpoint.agent, timeoutMs: endpoint.timeoutMs };
  let state: "fresh" | "exchanged" | "failed" = "fresh";
  return async () => {
    if (state === "exchanged") throw new SessionTokenExpiredError();
    if (state === "failed") {
      throw new AuthenticationError(
        "the one-time session code was already sent to the exchange endpoint, which failed; " +
          "a code is single-use — obtain a new one",
      );
    }
    // A failure here leaves the code unspent: the next call may try again.
    // (Single flight: no other exchange can start while this one runs.)
    const client = await requestToken(endpoint, { type: "client_credentials" });
    try {
      const session = await exchangeSessionCode(exchange, client.accessToken);
      state = "exchanged";
      return session;
    } catch (error) {
      state = "failed";
      throw error;
    }
  };
}
