import { assertFunction, assertPositiveInteger } from "../core/assertions.js";
import type { ReplayStore } from "./replay-store.js";

/**
 * The one command the Redis replay store needs, in ioredis's spelling
 * (`redis.set(key, value, "EX", seconds, "NX")`, resolving to `"OK"` or
 * `null`). With node-redis, pass
 * `{ set: (k, v, _ex, s) => client.set(k, v, { EX: s, NX: true }) }`.
 */
export interface RedisSetNx {
  /**
   * Sets `key` to `value`, expiring after `seconds`, only if it does not exist
   * yet: resolves to `"OK"` when it was set (the request id is new), anything
   * else (`null`) when it already existed (a replay).
   */
  set(key: string, value: string, expiry: "EX", seconds: number, mode: "NX"): Promise<unknown>;
}

/** Options of {@link createRedisReplayStore}. */
export interface RedisReplayStoreOptions {
  /** Prefix of the keys, default `connect-gateway:replay:`. Give each service its own if they share a Redis. */
  readonly keyPrefix?: string;
  /**
   * The most claims sent to Redis and not answered yet (default 1,000). Past
   * it, a claim fails at once without sending anything, and the request is
   * refused as `replay_check_unavailable` (or accepted, with
   * `onReplayStoreFailure: "accept"`). A frozen Redis answers nothing, and a
   * client keeps every unanswered command queued until it does — no client
   * timeout removes them — so without this bound a freeze would grow the
   * process's memory by every request that arrived during it.
   */
  readonly maxPendingClaims?: number;
}

/** Thrown by a claim while {@link RedisReplayStoreOptions.maxPendingClaims} are unanswered. */
const tooManyPending = (max: number) => new Error(`${max} replay claims are waiting for Redis (maxPendingClaims)`);

/**
 * A replay store in Redis, shared by every instance of a service: one
 * `SET key 1 EX ttl NX` per request, atomic, so two instances racing on the
 * same replayed request cannot both accept it. The service bounds each call
 * (`replayStoreTimeoutMs`, default 100 ms) and, when Redis does not answer in
 * time, refuses the request (or accepts it, with
 * `onReplayStoreFailure: "accept"`): a frozen Redis never hangs a caller.
 *
 * Bring your own client (ioredis or node-redis); this package depends on
 * neither. Give the client a short connect timeout and no offline queue
 * (ioredis: `enableOfflineQueue: false`) so that a dead Redis fails fast; a
 * frozen one is bounded by `maxPendingClaims`. Give it no resend after a
 * reconnect (ioredis: `maxRetriesPerRequest: 0`): a claim whose connection
 * reset after its `SET` landed would otherwise be sent again, find its own
 * key, and refuse the request as a replay. Give it no command timeout
 * (ioredis: `commandTimeout`): the service bounds each claim itself
 * (`replayStoreTimeoutMs`), and a command the client gives up on stays in
 * its queue all the same, where `maxPendingClaims` no longer counts it.
 *
 * @example
 * ```ts
 * import { Redis } from "ioredis";
 * const auth = createGatewayAuth({
 *   replayStore: createRedisReplayStore(new Redis(process.env.REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 0 })),
 * });
 * ```
 */
export function createRedisReplayStore(client: RedisSetNx, options: RedisReplayStoreOptions = {}): ReplayStore {
  assertFunction("client", (client as Partial<RedisSetNx> | undefined)?.set, {
    expected: "a Redis client with a set() method (ioredis, or a node-redis adapter)",
  });
  const prefix = options.keyPrefix ?? "connect-gateway:replay:";
  const maxPending = assertPositiveInteger("maxPendingClaims", options.maxPendingClaims ?? 1000);
  // When each claim still unanswered was sent, oldest first: Redis answers in order.
  const sentAt: number[] = [];
  let oldest = 0;
  let lastResync = 0;
  const settled = () => {
    oldest++;
    if (oldest === sentAt.length) {
      sentAt.length = 0;
      oldest = 0;
    }
  };
  // A claim unanswered for RESYNC_AFTER_MS means the connection can no
  // longer be trusted to answer in order (replies lost on a connection that
  // stayed open would pair every later answer with the wrong claim, and keep
  // the lost ones pending for good): with a client that can (ioredis), its
  // connection is dropped and made again, failing what it still holds. At
  // most once per RESYNC_AFTER_MS; checked as claims come, no timer.
  const resyncIfStale = (now: number) => {
    const first = sentAt[oldest];
    if (first === undefined || now - first < RESYNC_AFTER_MS || now - lastResync < RESYNC_AFTER_MS) return;
    // ioredis: disconnect(true) reconnects. (A node-redis client comes wrapped in a { set } adapter: none.)
    const reconnecting = (client as { disconnect?: (reconnect?: boolean) => void }).disconnect;
    if (typeof reconnecting !== "function") return;
    lastResync = now;
    reconnecting.call(client, true);
  };
  return {
    claim(requestId, ttlSeconds) {
      const now = Date.now();
      resyncIfStale(now);
      if (sentAt.length - oldest >= maxPending) throw tooManyPending(maxPending);
      let answer: Promise<unknown>;
      try {
        answer = Promise.resolve(client.set(prefix + requestId, "1", "EX", Math.max(1, Math.ceil(ttlSeconds)), "NX"));
      } catch (error) {
        return Promise.reject(error);
      }
      sentAt.push(now);
      answer.then(settled, settled);
      return answer.then((reply) => reply === "OK");
    },
  };
}

/** How long a claim may go unanswered before the connection is made again (see createRedisReplayStore). */
const RESYNC_AFTER_MS = 1_000;
