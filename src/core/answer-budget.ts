/**
 * A timer for how long a peer (Redis) may take to answer: `onExpired` runs
 * `ms` after the request was sent, but only once the I/O already received
 * has been handled — the timer hands over to `setImmediate`, which Node runs
 * after the event loop's poll phase, where a socket's pending data is read.
 *
 * Why: a busy event loop (a burst of calls, a long synchronous task) runs
 * timers late, and the peer's answer may have been sitting unread in the
 * socket all along. A plain timer would then fire first, in the same turn of
 * the loop, and count an answered request as "no answer" — failing a call
 * (or refusing it, with a fail-closed policy) although the peer was
 * healthy. This way the budget measures the peer, not our own lag.
 *
 * Clear it with `clearTimeout` before it fires; once it has, the caller's
 * own "settled" flag (a promise settles once) keeps a late expiry from
 * undoing an answer.
 */
export function setAnswerBudget(onExpired: () => void, ms: number): NodeJS.Timeout {
  return setTimeout(setImmediate, ms, onExpired);
}
