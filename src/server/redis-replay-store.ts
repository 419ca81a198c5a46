import { assertFunction, assertPositiveInteger } from "../core/assertions.js";
import { RedisConnectionWatch } from "../core/redis-connection-watch.js";
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
  // Answers lost on a connection that stayed open: remade (see RedisConnectionWatch).
  const watch = new RedisConnectionWatch(client);
  return {
    claim(requestId, ttlSeconds) {
      const now = Date.now();
      watch.check(now);
      if (watch.pending >= maxPending) throw tooManyPending(maxPending);
      let answer: Promise<unknown>;
      try {
        answer = Promise.resolve(client.set(prefix + requestId, "1", "EX", Math.max(1, Math.ceil(ttlSeconds)), "NX"));
      } catch (error) {
        return Promise.reject(error);
      }
      const settled = watch.sent(now);
      answer.then(settled, settled);
      return answer.then((reply) => reply === "OK");
    },
  };
}

