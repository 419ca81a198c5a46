/**
 * The bound on how long a verified service waits for a request's body.
 *
 * The signature covers the body's hash, so a verifier must read the whole
 * body before it can tell a forgery from the gateway's request — and a
 * caller on the gateway→service hop needs no secret to send headers that
 * pass the checks made before the body (a fresh timestamp, well-formed
 * values), then trickle the body a byte at a time. Node bounds that over
 * HTTP/1.1 only loosely (`requestTimeout`, 300 s by default) and not at all
 * over HTTP/2. Our gateway (like the Ruby one) has the whole body before it
 * signs, so on a sound hop a body arrives at once; one that takes longer
 * than `bodyTimeoutMs` is refused (`body_timeout`).
 *
 * One timer for the whole process rather than one per request: reads in
 * progress are kept in an intrusive list (the reads themselves are its
 * nodes, so watching costs a request no allocation), swept every
 * {@link SWEEP_INTERVAL_MS} while the list is not empty. A node leaving the
 * list points at nothing, so that a finished read never keeps a later one
 * alive (see the gateway's `LinkedSet` for why that matters to the garbage
 * collector).
 */

/** A read with a deadline: what {@link watchDeadline} keeps. */
export interface DeadlineWatch {
  /** `performance.now()` past which {@link DeadlineWatch.expire} is called. */
  deadlineAt: number;
  /** Called once, from the sweep, when the deadline passed before {@link unwatchDeadline}. */
  expire(): void;
  /** @internal list links, owned by this module. */
  previousWatch: DeadlineWatch | undefined;
  /** @internal */
  nextWatch: DeadlineWatch | undefined;
  /** @internal */
  watched: boolean;
}

/** How often reads in progress are checked: a deadline is enforced within this much. */
export const SWEEP_INTERVAL_MS = 250;

let first: DeadlineWatch | undefined;
let last: DeadlineWatch | undefined;
let sweeper: ReturnType<typeof setInterval> | undefined;

/** Starts watching `watch`, whose `deadlineAt` is `timeoutMs` from now. */
export function watchDeadline(watch: DeadlineWatch, timeoutMs: number): void {
  if (watch.watched) return;
  watch.deadlineAt = performance.now() + timeoutMs;
  watch.watched = true;
  watch.previousWatch = last;
  watch.nextWatch = undefined;
  if (last === undefined) first = watch;
  else last.nextWatch = watch;
  last = watch;
  // The sweep stops itself once nothing is watched: an idle process keeps no timer.
  if (sweeper === undefined) {
    sweeper = setInterval(sweep, SWEEP_INTERVAL_MS);
    sweeper.unref();
  }
}

/** Stops watching `watch`; harmless when it is not watched (any more). */
export function unwatchDeadline(watch: DeadlineWatch): void {
  if (!watch.watched) return;
  watch.watched = false;
  const { previousWatch, nextWatch } = watch;
  if (previousWatch === undefined) first = nextWatch;
  else previousWatch.nextWatch = nextWatch;
  if (nextWatch === undefined) last = previousWatch;
  else nextWatch.previousWatch = previousWatch;
  watch.previousWatch = undefined;
  watch.nextWatch = undefined;
}

/** How many reads are watched now: for tests. */
export function watchedDeadlines(): number {
  let count = 0;
  for (let w = first; w !== undefined; w = w.nextWatch) count++;
  return count;
}

function sweep(): void {
  const now = performance.now();
  let watch = first;
  while (watch !== undefined) {
    const next = watch.nextWatch;
    if (watch.deadlineAt <= now) {
      unwatchDeadline(watch);
      try {
        watch.expire();
      } catch {
        // A read's own failure path must not stop the sweep for the others.
      }
    }
    watch = next;
  }
  if (first === undefined && sweeper !== undefined) {
    clearInterval(sweeper);
    sweeper = undefined;
  }
}
