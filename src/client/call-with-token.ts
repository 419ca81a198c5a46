import { Code, ConnectError } from "@connectrpc/connect";
import { AuthenticationError } from "./authentication-error.js";
import { recordUnauthorizedAnswer } from "./call-tracing.js";
import { SessionTokenExpiredError } from "./session-token-expired-error.js";
import type { TokenManager } from "./token-manager.js";

/** How {@link callWithToken} runs one call. */
export interface TokenCall<T> {
  /** An end-user token: sent as is, never cached, refreshed or retried. */
  readonly userToken: string | undefined;
  /** Sends the call with this `Authorization` header value. */
  readonly attempt: (authorization: string) => Promise<T>;
  /** Whether the call can be sent twice (unary, body in memory). */
  readonly replayable: boolean;
  /** The caller's cancellation, honoured while waiting for a token. */
  readonly signal?: AbortSignal | undefined;
  /** The service token, when the caller already asked `tokens.getToken()` for it. */
  readonly token?: Promise<string> | undefined;
}

/**
 * Runs a call with the right bearer token — the transport's and the REST
 * client's single implementation of the token rules: the user token when
 * there is one, else the service token; a `401` (code `Unauthenticated`)
 * answered to the service token invalidates *that* token (the one the call
 * used, never whatever is cached by then) and, when the call is replayable,
 * retries once with a fresh token — unless the token manager kept it because
 * of its forced-refresh backoff, when the 401 is the answer. Never more than
 * one retry.
 */
export function callWithToken<T>(tokens: TokenManager, call: TokenCall<T>): Promise<T> {
  // Promise chaining rather than async functions: this wraps every call, and a
  // cached token should add no more than one promise to it.
  if (call.userToken !== undefined) return call.attempt(`Bearer ${call.userToken}`);
  if (call.signal?.aborted) return Promise.reject(canceled(call.signal)); // no token request for nobody
  const pending = abortable(call.token ?? tokens.getToken(), call.signal);
  return typeof pending === "string"
    ? attemptWith(tokens, call, pending)
    : pending.then((token) => attemptWith(tokens, call, token));
}

function attemptWith<T>(tokens: TokenManager, call: TokenCall<T>, token: string): Promise<T> {
  return call.attempt(`Bearer ${token}`).catch((error: unknown) => {
    if (!call.replayable) return notRetried(tokens, error, token);
    return retryUnauthorized(tokens, error, token, call.signal, call.attempt);
  });
}

/**
 * What {@link callWithToken} does when a replayable call sent with the
 * service token `token` failed with `error`: a 401 drops that token and, if a
 * fresh one can be hoped for, sends the call once more with it; anything
 * else is rethrown. For a transport's hot path, which sends the call itself.
 */
export async function retryUnauthorized<T>(
  tokens: TokenManager,
  error: unknown,
  token: string,
  signal: AbortSignal | undefined,
  attempt: (authorization: string) => Promise<T>,
): Promise<T> {
  if (!isUnauthorizedAnswer(error)) throw error;
  const renewed = tokens.invalidate(token);
  recordUnauthorizedAnswer(renewed);
  if (!renewed) throw error;
  return attempt(`Bearer ${await abortable(tokens.getToken(), signal)}`);
}

// A call that cannot be sent again: a 401 still drops its token, for the next call.
function notRetried(tokens: TokenManager, error: unknown, token: string): never {
  if (isUnauthorizedAnswer(error)) {
    tokens.invalidate(token);
    recordUnauthorizedAnswer(false);
  }
  throw error;
}

// A 401 from the gateway or backend — not our own token failures, which share the code.
function isUnauthorizedAnswer(error: unknown): boolean {
  return (
    error instanceof ConnectError &&
    error.code === Code.Unauthenticated &&
    !(error instanceof AuthenticationError) &&
    !(error instanceof SessionTokenExpiredError)
  );
}

// A cached token comes back as a plain string: no waiting, nothing to abort.
// A token request outlives the callers that abort: it is shared, and its
// outcome (a failure included) is always handled here.
function abortable<T>(pending: T | Promise<T>, signal: AbortSignal | undefined): T | Promise<T> {
  if (signal === undefined || !(pending instanceof Promise)) return pending;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(canceled(signal));
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    pending.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function canceled(signal: AbortSignal): ConnectError {
  return ConnectError.from(signal.reason, Code.Canceled);
}
