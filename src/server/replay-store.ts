import { assertFunction, assertPositiveInteger } from "../core/assertions.js";
import { ReplayStoreFullError } from "../core/errors.js";

/**
 * Where a service remembers the v2 request ids it accepted, so that a
 * captured request cannot run twice. One store is shared by every instance
 * of the service that should refuse each other's replays: the in-memory
 * default covers one process; {@link createRedisReplayStore} covers a fleet.
 *
 * Only requests whose signature verified reach the store, so only the
 * gateway can add ids to it.
 */
export interface ReplayStore {
  /**
   * Records `requestId` for `ttlSeconds` (until its timestamp leaves the
   * window). Returns `true` when the id was new, `false` when it was already
   * recorded (a replay). May throw or reject when the store cannot answer:
   * the service then refuses the request (or accepts it, if configured so).
   */
  claim(requestId: string, ttlSeconds: number): boolean | Promise<boolean>;
}

/** Options of {@link createMemoryReplayStore}. */
export interface MemoryReplayStoreOptions {
  /**
   * The most ids held at once (default 500,000, about 70 MB at most). An id
   * is held for the window (60 s with the default 30 s skew), so this bounds
   * the sustained rate at about 8,000 requests per second per process; past
   * it, requests are refused as `replay_check_unavailable` rather than
   * replays let through. Use a Redis store for more.
   */
  readonly maxEntries?: number;
  /** The clock, milliseconds (default `Date.now`): for tests. */
  readonly now?: () => number;
}

// Thrown by the memory store when it is full; it lives with every other error of the library.
export { ReplayStoreFullError };

/**
 * The default replay store: a bounded map in this process, each id expiring
 * with its window. Ids are also queued in the order they arrive, which is
 * nearly the order they expire (timestamps differ by at most the skew), so
 * expired ones are dropped from the front as new ones come: O(1) amortised,
 * no timer, no iterator per request.
 */
export function createMemoryReplayStore(options: MemoryReplayStoreOptions = {}): ReplayStore {
  const maxEntries = assertPositiveInteger("maxEntries", options.maxEntries ?? 500_000);
  const now = options.now === undefined ? Date.now : assertFunction<() => number>("now", options.now);
  const expiries = new Map<string, number>();
  // The arrival queue: ids[i] expires at times[i]; entries before `head` are gone.
  let ids: string[] = [];
  let times: number[] = [];
  let head = 0;
  return {
    claim(requestId, ttlSeconds) {
      const t = now();
      while (head < ids.length && (times[head] as number) <= t) {
        const id = ids[head] as string;
        // Only if the map still holds this very entry (not a newer claim of the same id).
        if (expiries.get(id) === times[head]) expiries.delete(id);
        head++;
      }
      if (head > 1024 && head * 2 > ids.length) {
        ids = ids.slice(head);
        times = times.slice(head);
        head = 0;
      }
      const known = expiries.get(requestId);
      if (known !== undefined && known > t) return false;
      if (expiries.size >= maxEntries) throw new ReplayStoreFullError(maxEntries);
      const expiresAt = t + ttlSeconds * 1000;
      expiries.set(requestId, expiresAt);
      ids.push(requestId);
      times.push(expiresAt);
      return true;
    },
  };
}
