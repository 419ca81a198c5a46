import { createHash, createPublicKey } from "node:crypto";
import type { TokenEndpointAuthentication } from "./token-request.js";
import { isSendableAccessToken } from "./token-response.js";

/**
 * A service token as a {@link TokenStore} keeps it: only what a caller needs
 * to use it and to know when to replace it. Times are milliseconds since the
 * Unix epoch, so that processes sharing a store agree on them.
 */
export interface StoredToken {
  /** The bearer token. A secret: whoever reads it can call as the service until it expires. */
  readonly accessToken: string;
  /** When it was requested (its lifetime counts from there), in ms since the epoch. */
  readonly issuedAt: number;
  /** When it expires, in ms since the epoch. */
  readonly expiresAt: number;
}

/** Where a token a caller uses came from: requested from the OAuth2 server, or read from the store. */
export type TokenSource = "fetched" | "store";

/**
 * One refresh, as the token manager hands it to {@link TokenStore.coordinate}:
 * how to tell whether a stored token will do, how to request a new one, and
 * where to report a store problem that was worked around.
 */
export interface TokenRefresh {
  /**
   * Whether a stored token can be used instead of requesting one: well
   * formed, not due for refresh for this caller, and not a token the gateway
   * has just refused (a 401).
   */
  readonly usable: (token: StoredToken) => boolean;
  /** Requests a new token from the OAuth2 server (rejects with an `AuthenticationError`). */
  readonly fetch: () => Promise<StoredToken>;
  /**
   * Reports a store failure that was worked around (to the `onTokenEvent`
   * hook). `message` must contain no token and no secret.
   */
  readonly report: (operation: string, message: string) => void;
}

/** What {@link TokenStore.coordinate} resolves to: the token to use and where it came from. */
export interface CoordinatedToken {
  /** The token to use. */
  readonly token: StoredToken;
  /** `"fetched"` when this process requested it, `"store"` when another one did. */
  readonly source: TokenSource;
}

/**
 * Where service tokens are cached, under a key derived from the token URL,
 * the client id, a hash of the client secret and the scope (never the
 * secret itself). Every transport and REST client of a process that uses the
 * same store and the same credentials shares one token, one refresh at a
 * time and one 401 backoff, whatever the store; the store decides what is
 * shared beyond the process.
 *
 * The default is one in-memory store per process ({@link createMemoryTokenStore});
 * {@link createRedisTokenStore} shares tokens between processes. Your own
 * store needs `get` and `set`; a store shared between processes should also
 * implement `coordinate`, so that they make one token request between them.
 * Each method must settle promptly (reject rather than hang when its
 * backend is slow): the caller waits for it.
 */
export interface TokenStore {
  /**
   * The token stored under `key`, or `undefined`. An in-memory store answers
   * synchronously. Whatever comes back is checked before use: a malformed
   * value is ignored.
   */
  get(key: string): StoredToken | undefined | Promise<StoredToken | undefined>;
  /** Stores `token` under `key`, at most until it expires. */
  set(key: string, token: StoredToken): void | Promise<void>;
  /**
   * Optional, for stores shared between processes: obtains a token for `key`
   * with at most one token request at a time between all the processes —
   * a stored token that `refresh.usable` accepts, else the one
   * `refresh.fetch` gets (stored for the others). When the store fails, it
   * falls back to `refresh.fetch` instead of failing the caller. Without
   * `coordinate`, a refresh is `get`, then `fetch` and `set` when the stored
   * token will not do.
   */
  coordinate?(key: string, refresh: TokenRefresh): Promise<CoordinatedToken>;
}

/**
 * A service token was obtained: requested from the OAuth2 server
 * (`source: "fetched"`), or found in a token store shared with other
 * processes (`source: "store"`).
 */
export interface TokenObtainedEvent {
  /** Always `"token"`. */
  readonly type: "token";
  /** `"fetched"`: this process made the token request; `"store"`: another one did. */
  readonly source: TokenSource;
  /** The OAuth2 client id the token is for. */
  readonly clientId: string;
  /** Seconds until the token expires. */
  readonly expiresInSeconds: number;
}

/**
 * A token request failed. The callers waiting for it get the error; a
 * background refresh (inside the refresh margin) keeps the current token.
 */
export interface TokenRefreshFailedEvent {
  /** Always `"refresh-failed"`. */
  readonly type: "refresh-failed";
  /** The OAuth2 client id. */
  readonly clientId: string;
  /** The error's class, e.g. `AuthenticationError` (or `SessionTokenExpiredError`). */
  readonly errorClass: string;
  /** The error's message: never a secret or a token. */
  readonly message: string;
  /** Whether it was a background refresh, no caller waiting on it. */
  readonly background: boolean;
}

/**
 * A token store failed (down, slow, or holding garbage) and was worked
 * around: the process requested its own token, or did without the store.
 */
export interface TokenStoreFailedEvent {
  /** Always `"store-failed"`. */
  readonly type: "store-failed";
  /** The OAuth2 client id. */
  readonly clientId: string;
  /** What failed, e.g. `get`, `set`, `lock`, `wait`. */
  readonly operation: string;
  /** What happened: never a secret or a token. */
  readonly message: string;
}

/**
 * What the `onTokenEvent` hook receives, for your own logging or metrics.
 * No event carries a token or a secret.
 */
export type TokenEvent = TokenObtainedEvent | TokenRefreshFailedEvent | TokenStoreFailedEvent;

/**
 * An in-memory token store: tokens are shared by the transports and REST
 * clients of this process that are given this store and use the same
 * credentials. Every transport and REST client uses one such store per
 * process by default; pass `tokenStore: createMemoryTokenStore()` to give a
 * transport a token cache of its own.
 */
export function createMemoryTokenStore(): TokenStore {
  const tokens = new Map<string, StoredToken>();
  return {
    get(key) {
      const token = tokens.get(key);
      if (token !== undefined && token.expiresAt <= Date.now()) tokens.delete(key);
      return tokens.get(key);
    },
    set(key, token) {
      tokens.set(key, token);
    },
  };
}

/** The store of every transport and REST client of the process that names none. */
export const processTokenStore: TokenStore = createMemoryTokenStore();

/** The credentials a token is for, which make its key. */
export interface TokenKeyParts {
  readonly tokenUrl: URL;
  readonly clientId: string;
  readonly clientAuthentication: TokenEndpointAuthentication;
  readonly scope: string | undefined;
}

/**
 * The key of a set of credentials: a SHA-256 of the token URL, the client id,
 * the authentication method with a SHA-256 of its credential (the client
 * secret, or the public half of a `private_key_jwt` key) and the scope. No
 * secret ever appears in a key.
 */
export function tokenStoreKey(parts: TokenKeyParts): string {
  const auth = parts.clientAuthentication;
  const credential =
    auth.method === "private_key_jwt"
      ? `${auth.method}:${sha256(createPublicKey(auth.key.privateKey).export({ type: "spki", format: "der" }))}`
      : `${auth.method}:${sha256(auth.clientSecret)}`;
  return sha256(JSON.stringify([parts.tokenUrl.href, parts.clientId, credential, parts.scope ?? null]));
}

function sha256(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/**
 * Whether a value read from a store is a token that can be sent: a non-empty
 * string of visible ASCII (it goes into an `Authorization` header) and
 * finite times, expiring after it was issued.
 */
export function isStoredToken(value: unknown): value is StoredToken {
  if (typeof value !== "object" || value === null) return false;
  const { accessToken, issuedAt, expiresAt } = value as Record<string, unknown>;
  return (
    typeof accessToken === "string" &&
    isSendableAccessToken(accessToken) &&
    typeof issuedAt === "number" &&
    typeof expiresAt === "number" &&
    Number.isFinite(issuedAt) &&
    Number.isFinite(expiresAt) &&
    expiresAt > issuedAt
  );
}
