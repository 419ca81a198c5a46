import { Code, ConnectError } from "@connectrpc/connect";

/**
 * The attempts of one call share its deadline, counted from when this is
 * made (the call's start). A call is sent again at most once, after a 401
 * to its service token (see callWithToken); each attempt gets what is left
 * of `timeoutMs` — after the wait for a token too, which callWithToken
 * bounds by the same deadline — so a call never runs past the deadline its
 * caller gave.
 *
 * Returns the attempt to make: `send` with the time left (and the attempt's
 * own argument, the Authorization value), or, when nothing
 * is left, a rejection with `DeadlineExceeded` — which the transport and
 * the REST client report as a `ConnectionError` like any passed deadline.
 */
export function sharedDeadline<A, T>(
  timeoutMs: number | undefined,
  send: (timeoutMs: number | undefined, arg: A) => Promise<T>,
): (arg: A) => Promise<T> {
  if (timeoutMs === undefined) return (arg) => send(undefined, arg);
  const startedAt = performance.now();
  return (arg) => {
    // Whole milliseconds: Connect sends the timeout as an integer header.
    const left = Math.floor(timeoutMs - (performance.now() - startedAt));
    return left <= 0 ? Promise.reject(deadlinePassed()) : send(left, arg);
  };
}

/** The rejection of an attempt the call's deadline leaves no time for. */
export function deadlinePassed(): ConnectError {
  return new ConnectError("the call's deadline passed before it could be sent again", Code.DeadlineExceeded);
}
