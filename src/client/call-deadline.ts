import { Code, ConnectError } from "@connectrpc/connect";

/**
 * The attempts of one call share its deadline. A call is sent again at most
 * once, after a 401 to its service token (see callWithToken); the second
 * attempt gets what the first left of `timeoutMs`, not a whole new
 * `timeoutMs`, so a call never runs past the deadline its caller gave.
 * (Waiting for a token is not counted: the token request has its own
 * timeout, and its failure is an `AuthenticationError`, not a deadline.)
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
  let spent = 0;
  return (arg) => {
    const left = timeoutMs - spent;
    if (left <= 0) return Promise.reject(deadlinePassed());
    const sentAt = performance.now();
    const settled = () => {
      spent += performance.now() - sentAt;
    };
    const sent = send(left, arg);
    sent.then(settled, settled);
    return sent;
  };
}

/** The rejection of an attempt the call's deadline leaves no time for. */
export function deadlinePassed(): ConnectError {
  return new ConnectError("the call's deadline passed before it could be sent again", Code.DeadlineExceeded);
}
