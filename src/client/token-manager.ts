import { AuthenticationError } from "./authentication-error.js";
import { traceTokenRefresh, type TokenRefreshReason } from "./call-tracing.js";
import { exchangeSessionCode } from "./session-exchange.js";
import { SessionTokenExpiredError } from "./session-token-expired-error.js";
import { requestToken, type TokenEndpoint } from "./token-request.js";
import type { IssuedToken } from "./token-response.js";
import type { ResolvedGatewayOptions } from "./gateway-options.js";
import {
  createMemoryTokenStore,
  isStoredToken,
  processTokenStore,
  tokenStoreKey,
  type CoordinatedToken,
  type StoredToken,
  type TokenEvent,
  type TokenRefresh,
  type TokenStore,
} from "./token-store.js";

/**
 * Options of {@link createTokenManager}: the token-related part of the
 * resolved gateway options, plus a clock.
 */
export type TokenManagerOptions = Pick<
  ResolvedGatewayOptions,
  | "clientId"
  | "clientAuthentication"
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
  /**
   * Where the token is cached and shared with the other managers (and, for
   * a shared store, processes) of the same credentials. Default: a cache of
   * this manager's own. (`createGatewayTransport` and `createGatewayClient`
   * pass the process-wide store when the user names none.) Ignored in
   * session mode: a session token belongs to one manager.
   */
  readonly tokenStore?: TokenStore | undefined;
  /** Told about new tokens, failed refreshes and store failures; its exceptions are ignored. */
  readonly onTokenEvent?: ((event: TokenEvent) => void) | undefined;
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
 * is kept and the call fails with its 401, not retried; so the managers
 * sharing a set of credentials (in a token store) make at most one forced
 * token request per second between them, whatever the call rate. A 401 to
 * an older token than the cached one never forces anything (see
 * `invalidate`), so a burst of calls that all used a stale token still costs
 * exactly one token request.
 */
export const FORCED_REFRESH_BACKOFF_MS = 1000;

/**
 * After a background refresh (inside the margin, the cached token still
 * valid) fails, the next one waits this long, doubling with each further
 * failure up to {@link BACKGROUND_RETRY_MAX_MS}: calls keep the cached
 * token meanwhile, and nobody is waiting on the refresh, so trying again on
 * every call would only send a failing token endpoint one request per call
 * for the whole margin (five minutes by default). Once the token expires,
 * callers wait on a refresh again, and no backoff applies.
 */
export const BACKGROUND_RETRY_MIN_MS = 1000;
/** The longest pause between two failed background refreshes; see {@link BACKGROUND_RETRY_MIN_MS}. */
export const BACKGROUND_RETRY_MAX_MS = 30_000;

/**
 * The longest a token endpoint's `Retry-After` is followed: past it, the
 * next call asks again. A server's "come back in a day" must not leave a
 * client without a token for a day once it has recovered.
 */
export const RETRY_AFTER_MAX_MS = 5 * 60_000;

/**
 * The state the managers of one set of credentials share in a process (per
 * token store): the cached token, the request in flight, the 401 backoff and
 * the refresh token. Times are wall-clock ms (see `wall` below).
 */
interface Slot {
  cached: StoredToken | undefined;
  inflight: Promise<StoredToken> | undefined;
  // Set by invalidate(): the next refresh is a forced one.
  forcing: boolean;
  // The token the last 401 refused: never taken back from a store.
  rejected: string | undefined;
  // When the token of the last forced refresh arrived.
  lastForcedAt: number;
  // Issued by the server with a token, used for the next refresh (never stored).
  refreshToken: string | undefined;
  // Background refreshes that failed in a row, and when the next may start.
  backgroundFailures: number;
  backgroundRetryAt: number;
  // After a 429 or 503 (see overloadPause): no request before this time; calls fail with the error.
  pausedUntil: number;
  pauseError: AuthenticationError | undefined;
  // 429s and 503s in a row.
  overloads: number;
}

const slotsByStore = new WeakMap<TokenStore, Map<string, Slot>>();

function newSlot(): Slot {
  return {
    cached: undefined,
    inflight: undefined,
    forcing: false,
    rejected: undefined,
    lastForcedAt: Number.NEGATIVE_INFINITY,
    refreshToken: undefined,
    backgroundFailures: 0,
    backgroundRetryAt: Number.NEGATIVE_INFINITY,
    pausedUntil: Number.NEGATIVE_INFINITY,
    pauseError: undefined,
    overloads: 0,
  };
}

function slotFor(store: TokenStore, key: string): Slot {
  let slots = slotsByStore.get(store);
  if (slots === undefined) slotsByStore.set(store, (slots = new Map()));
  let slot = slots.get(key);
  if (slot === undefined) slots.set(key, (slot = newSlot()));
  return slot;
}

/**
 * Creates the token cache: lazy, single-flight, refreshed before expiry;
 * uses the `refresh_token` grant when the server issued a refresh token
 * (falling back to client_credentials if that grant is refused); a failed
 * request does not poison the cache — the next call tries again. Managers
 * given the same `tokenStore` and credentials share one cache. In session
 * mode the code is exchanged exactly once, and the session token's expiry
 * ends the session with a {@link SessionTokenExpiredError}.
 */
export function createTokenManager(options: TokenManagerOptions): TokenManager {
  const now = options.now ?? (() => performance.now());
  // Wall-clock ms that never jump: the epoch time at creation, advanced by the
  // monotonic clock. Stores shared between processes compare times in it.
  const offset = Date.now() - now();
  const wall = () => offset + now();
  const endpoint: TokenEndpoint = {
    url: options.tokenUrl,
    clientId: options.clientId,
    authentication: options.clientAuthentication,
    scope: options.scope,
    agent: options.agent,
    timeoutMs: options.timeoutMs,
  };
  const marginMs = options.refreshMarginSeconds * 1000;
  const auth = options.clientAuthentication;
  // Never in an event (the token request's own errors redact it already).
  const secret = auth.method === "private_key_jwt" ? "" : auth.clientSecret;
  const session = options.session;
  // A session token is this manager's alone; otherwise the store's slot for these credentials.
  const store = session ? undefined : (options.tokenStore ?? createMemoryTokenStore());
  const key = tokenStoreKey(options);
  const slot = store ? slotFor(store, key) : newSlot();
  const exchange = session ? sessionSource(endpoint, session) : undefined;

  const emit = (event: TokenEvent) => {
    if (options.onTokenEvent === undefined) return;
    try {
      options.onTokenEvent(event);
    } catch {
      // The user's logging must not break token handling.
    }
  };
  const report = (operation: string, message: string) =>
    emit({ type: "store-failed", clientId: options.clientId, operation, message: redact(message, secret) });

  // Refresh `margin` before expiry, never more than half the lifetime before.
  const refreshAt = (token: StoredToken) =>
    token.expiresAt - Math.min(marginMs, (token.expiresAt - token.issuedAt) / 2);

  // A request to the token endpoint (or the session exchange), as a stored token.
  const fetch = (): Promise<StoredToken> => {
    const sentAt = wall();
    const issued = exchange ? exchange() : clientCredentials(endpoint, slot);
    return issued.then((token) => stored(token, sentAt, options.defaultTokenLifetimeSeconds));
  };

  // Where the next token comes from: the store when it holds a usable one, else a request.
  function obtain(): Promise<CoordinatedToken> {
    if (store === undefined) return fetch().then((token) => ({ token, source: "fetched" }));
    const rejected = slot.rejected;
    const refresh: TokenRefresh = {
      usable: (token) => isStoredToken(token) && token.accessToken !== rejected && wall() < refreshAt(token),
      fetch,
      report,
    };
    if (typeof store.coordinate === "function") {
      return store.coordinate(key, refresh).then((result) =>
        result.source === "fetched" || refresh.usable(result.token)
          ? result
          : fetch().then((token) => ({ token, source: "fetched" as const })),
      );
    }
    // Read and decide synchronously when the store answers synchronously (in
    // memory): the token request starts at once.
    const decide = (found: StoredToken | undefined): CoordinatedToken | Promise<CoordinatedToken> => {
      if (found !== undefined && refresh.usable(found)) return { token: found, source: "store" };
      return fetch().then((token) => {
        keep(store, token);
        return { token, source: "fetched" as const };
      });
    };
    const found = attempt("get", () => store.get(key));
    return found instanceof Promise ? found.then(decide) : Promise.resolve(decide(found));
  }

  // A store call whose failure (thrown or rejected) is reported, then counts as nothing found.
  function attempt<T>(operation: string, run: () => T | Promise<T>): T | undefined | Promise<T | undefined> {
    const failed = (error: unknown) => {
      report(operation, `the token store failed (${error instanceof Error ? error.name : typeof error})`);
      return undefined;
    };
    try {
      const result = run();
      return result instanceof Promise ? result.catch(failed) : result;
    } catch (error) {
      return failed(error);
    }
  }

  function keep(into: TokenStore, token: StoredToken): void {
    const done = attempt("set", () => into.set(key, token));
    if (done instanceof Promise) done.catch(() => {});
  }

  function refresh(background: boolean): Promise<StoredToken> {
    if (slot.inflight) return slot.inflight;
    const forced = slot.forcing;
    slot.forcing = false;
    const reason: TokenRefreshReason = forced ? "rejected" : background ? "background" : slot.cached === undefined ? "initial" : "expired";
    const request = traceTokenRefresh(reason, obtain).then(
      ({ token, source }) => {
        slot.cached = token;
        slot.backgroundFailures = 0;
        slot.overloads = 0;
        slot.pausedUntil = Number.NEGATIVE_INFINITY;
        slot.pauseError = undefined;
        if (forced) slot.lastForcedAt = wall();
        emit({
          type: "token",
          source,
          clientId: options.clientId,
          expiresInSeconds: Math.max(0, Math.round((token.expiresAt - wall()) / 1000)),
        });
        return token;
      },
      (error: unknown) => {
        if (background) {
          const pause = Math.min(BACKGROUND_RETRY_MIN_MS * 2 ** slot.backgroundFailures, BACKGROUND_RETRY_MAX_MS);
          slot.backgroundFailures++;
          slot.backgroundRetryAt = wall() + pause;
        }
        const overloaded = overloadPause(error, slot.overloads);
        if (overloaded !== undefined) {
          slot.overloads++;
          slot.pausedUntil = wall() + overloaded;
          slot.pauseError = error as AuthenticationError;
        }
        emit({
          type: "refresh-failed",
          clientId: options.clientId,
          errorClass: error instanceof Error ? error.constructor.name || error.name : typeof error,
          message: redact(error instanceof Error ? error.message : String(error), secret),
          background,
        });
        throw error;
      },
    );
    slot.inflight = request;
    // Cleared once settled, success or failure: a failure is not cached.
    const clear = () => {
      if (slot.inflight === request) slot.inflight = undefined;
    };
    request.then(clear, clear);
    return request;
  }

  return {
    getToken() {
      const cached = slot.cached;
      if (cached) {
        const at = wall();
        if (at < refreshAt(cached)) return cached.accessToken;
        if (at < cached.expiresAt) {
          // Inside the margin: one background refresh; its failure keeps the
          // current token, and the next one waits (BACKGROUND_RETRY_MIN_MS).
          if (!session && at >= slot.backgroundRetryAt && at >= slot.pausedUntil) refresh(true).catch(() => {});
          return cached.accessToken;
        }
      }
      // The token endpoint asked for a pause (429, 503): failed at once, without asking it.
      const paused = slot.pauseError;
      if (slot.inflight === undefined && paused !== undefined && wall() < slot.pausedUntil) {
        return Promise.reject(pausedError(paused, slot.pausedUntil - wall()));
      }
      return refresh(false).then((token) => token.accessToken);
    },
    invalidate(token) {
      if (slot.cached?.accessToken !== token) return true; // a fresher token is cached or on its way
      if (wall() - slot.lastForcedAt < FORCED_REFRESH_BACKOFF_MS) return false;
      slot.cached = undefined;
      slot.forcing = true;
      slot.rejected = token;
      return true;
    },
  };
}

/**
 * How long the token endpoint is left alone after `error`, when it said it
 * is overloaded (429 Too Many Requests, 503 Service Unavailable; RFC 9110
 * §15.6.4, RFC 6585 §4): its `Retry-After`, at most
 * {@link RETRY_AFTER_MAX_MS}; without one, a pause doubling from
 * {@link BACKGROUND_RETRY_MIN_MS} to {@link BACKGROUND_RETRY_MAX_MS} with
 * each such answer in a row (`overloads` before this one). Otherwise (it
 * could not be reached, refused the credentials…) none: the next call asks
 * again. Without the pause, calls made one after another would each send it
 * a request — one per call for the whole outage.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc9110#section-10.2.3 | RFC 9110 §10.2.3} (Retry-After)
 */
function overloadPause(error: unknown, overloads: number): number | undefined {
  if (!(error instanceof AuthenticationError) || (error.status !== 429 && error.status !== 503)) return undefined;
  if (error.retryAfterMs !== undefined) return Math.min(error.retryAfterMs, RETRY_AFTER_MAX_MS);
  return Math.min(BACKGROUND_RETRY_MIN_MS * 2 ** overloads, BACKGROUND_RETRY_MAX_MS);
}

/** A call's error while the token endpoint is left alone: what it last answered, and for how long it is not asked. */
function pausedError(error: AuthenticationError, remainingMs: number): AuthenticationError {
  const seconds = Math.max(1, Math.ceil(remainingMs / 1000));
  const why = error.retryAfterMs !== undefined ? "as its Retry-After asked" : "after it said it is overloaded";
  return new AuthenticationError(
    `${error.rawMessage}; not asked again for ${seconds} s, ${why}`,
    {
      ...(error.status !== undefined && { status: error.status }),
      ...(error.oauthError !== undefined && { oauthError: error.oauthError }),
      ...(error.oauthErrorDescription !== undefined && { oauthErrorDescription: error.oauthErrorDescription }),
      retryAfterMs: remainingMs,
    },
    { cause: error },
  );
}

/**
 * The token manager of a transport or REST client: in the token store the
 * user named, else in the process-wide one ({@link processTokenStore}), so
 * that all of them with the same credentials share one token.
 */
export function createGatewayTokenManager(options: TokenManagerOptions): TokenManager {
  return createTokenManager({ ...options, tokenStore: options.tokenStore ?? processTokenStore });
}

// Its lifetime measured from when the request was sent, so the latency counts against the token.
function stored(issued: IssuedToken, sentAt: number, defaultLifetimeSeconds: number): StoredToken {
  const lifetime = issued.expiresInSeconds ?? defaultLifetimeSeconds;
  return { accessToken: issued.accessToken, issuedAt: sentAt, expiresAt: sentAt + lifetime * 1000 };
}

function redact(text: string, secret: string): string {
  return secret === "" ? text : text.split(secret).join("[redacted]");
}

// client_credentials, or refresh_token once the server has issued one (kept in the slot).
async function clientCredentials(endpoint: TokenEndpoint, slot: Slot): Promise<IssuedToken> {
  const keep = (issued: IssuedToken) => {
    slot.refreshToken = issued.refreshToken ?? slot.refreshToken;
    return issued;
  };
  const refreshToken = slot.refreshToken;
  if (refreshToken !== undefined) {
    try {
      return keep(await requestToken(endpoint, { type: "refresh_token", refreshToken }));
    } catch (error) {
      // The server answered (expired or revoked refresh token): start over.
      // Unreachable, or overloaded (429, 503): client_credentials would fail the same way.
      if (!(error instanceof AuthenticationError && error.status !== undefined) || overloadPause(error, 0) !== undefined) throw error;
      if (slot.refreshToken === refreshToken) slot.refreshToken = undefined;
    }
  }
  return keep(await requestToken(endpoint, { type: "client_credentials" }));
}

// Session mode: a client_credentials token, then the one-time code is exchanged — once.
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
