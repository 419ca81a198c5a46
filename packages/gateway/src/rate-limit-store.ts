import { createRequire } from "node:module";
import type { FastifyBaseLogger } from "fastify";
import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from "@fastify/rate-limit";
import type { Redis as RedisClient, RedisOptions } from "ioredis";
import { LRUCache } from "lru-cache";
import { GatewayHttpError } from "./gateway-http-error.js";

/** What the rate limiter does while Redis does not answer within its budget. */
export type RedisFailurePolicy = "open" | "closed";

/** Options of {@link connectRateLimitStore}. */
export interface RateLimitStoreOptions {
  /** How long one Redis command (a count, a health check) may take before it counts as failed. */
  readonly timeoutMs: number;
  /** `open`: the call proceeds unlimited; `closed`: it is refused with 503. */
  readonly onFailure: RedisFailurePolicy;
  /** How often Redis is checked for `/ready` (a write of a small expiring key; between the end of one check and the next). Default 250 ms. */
  readonly pingIntervalMs?: number;
}

/** The Redis connection that gateway instances share their rate-limit counters through. */
export interface RateLimitStore {
  /** What @fastify/rate-limit counts in. */
  readonly redis: RedisClient;
  /** The store to hand @fastify/rate-limit (`store` option): Redis, bounded by the timeout budget. */
  readonly storeClass: FastifyRateLimitStoreCtor;
  /** Whether the last health check (every pingIntervalMs, and after a failed count) succeeded, and the connection is up. */
  available(): boolean;
  /**
   * For `/ready`: true when {@link available}, else whether it becomes so
   * within the timeout budget (a gateway just started, still connecting).
   */
  ready(): Promise<boolean>;
  /**
   * A fixed-window counter in this Redis (keys `connect-gateway-<name>:<key>`),
   * shared by every gateway instance, under the same timeout budget and
   * `onFailure` policy as the rate limit: while Redis is away, `open` counts
   * nothing (`count` 0: never over a limit), `closed` rejects with 503.
   */
  windowCounter(name: string, windowMs: number): WindowCounter;
  /** Stops the health checks and drops the connection. */
  close(): void;
}

/** A count in a fixed window, as {@link WindowCounter.increment} returns it. */
export interface WindowCount {
  /** Increments in the current window, this one included; 0 when nothing was counted (Redis away, `open`). */
  readonly count: number;
  /** When the window ends (epoch ms). */
  readonly resetAt: number;
}

/** Counts events per key in fixed windows: the per-IP budget of failed authentications. */
export interface WindowCounter {
  /** Counts one more event for `key`. */
  increment(key: string): Promise<WindowCount>;
  /** Takes back one increment (made in `window`), if that window is still running. Never rejects. */
  refund(key: string, window: WindowCount): Promise<void>;
}

/** Most keys (client addresses) a {@link memoryWindowCounter} remembers; the least recently counted go first. */
const MEMORY_COUNTER_KEYS = 100_000;

/** A {@link WindowCounter} in this process's memory: each gateway instance counts on its own. */
export function memoryWindowCounter(windowMs: number): WindowCounter {
  // Made with the first count: an LRUCache allocates its index arrays for
  // `max` entries up front (milliseconds of start-up for a counter that
  // well-behaved traffic never touches).
  let cache: LRUCache<string, { count: number; resetAt: number }> | undefined;
  const windowsCache = () => (cache ??= new LRUCache({ max: MEMORY_COUNTER_KEYS, ttl: windowMs }));
  return {
    async increment(key) {
      const now = Date.now();
      const windows = windowsCache();
      let window = windows.get(key);
      if (window === undefined || window.resetAt <= now) {
        window = { count: 0, resetAt: now + windowMs };
        windows.set(key, window);
      }
      window.count++;
      return { count: window.count, resetAt: window.resetAt };
    },
    async refund(key, counted) {
      const window = cache?.get(key);
      if (window !== undefined && window.resetAt === counted.resetAt && window.count > 0) window.count--;
    },
  };
}

// INCR, starting the window on the first count (and repairing a key without expiry); answers { count, ms left }.
const WINDOW_INCREMENT_SCRIPT = `
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return { count, ttl }`;
// DECR only while the window lives: never a count without expiry.
const WINDOW_REFUND_SCRIPT = `
if redis.call('PTTL', KEYS[1]) > 0 then return redis.call('DECR', KEYS[1]) end
return 0`;

const DEFAULT_PING_INTERVAL_MS = 250;
/** Longest pause between reconnection attempts once Redis has gone. */
const MAX_RECONNECT_DELAY_MS = 500;

interface CountResult {
  current: number;
  ttl: number;
}
type Callback = (error: Error | null, result?: CountResult) => void;
type InnerStore = FastifyRateLimitStore & { read?(key: string, cb: Callback, timeWindow: number, max: number): void };

const require = createRequire(import.meta.url);
// @fastify/rate-limit's own Redis store (its Lua script), wrapped below; the
// package is CommonJS. Loaded, with ioredis, only when Redis is configured:
// a gateway without it does not pay their start-up time.
type RedisStoreCtor = new (continueExceeding: boolean, exponentialBackoff: boolean, redis: RedisClient, key?: string) => InnerStore;

/**
 * Connects to Redis at `url` for the shared rate limit, so that a Redis
 * outage never stalls a call: Redis is killed (connection refused while it
 * reconnects) or frozen (SIGSTOP, a hung host: the socket stays open and
 * nothing answers).
 *
 * - ioredis does not queue commands while disconnected (`enableOfflineQueue:
 *   false`), gives each `timeoutMs` (`commandTimeout`), does not retry them
 *   (`maxRetriesPerRequest: 0`), and reconnects every ≤ 500 ms; an `error`
 *   listener is always attached (an EventEmitter without one throws).
 * - Each count is also raced against `timeoutMs` here, whatever ioredis does.
 * - Every `pingIntervalMs`, with the same budget, Redis is asked to write a
 *   small expiring key: not a PING, which a Redis that refuses writes (the
 *   old primary after a failover: `READONLY`; `maxmemory` reached: `OOM`)
 *   still answers while every count fails. A failed count runs a health
 *   check at once. While the last health check failed, or the connection is
 *   down, counts do not even try Redis, and `available()` (`/ready`) is
 *   false, until a health check succeeds.
 *   The outage is logged once at warn when it starts, without the URL (it
 *   may hold a password), and once at info when it ends.
 * - A failed count then follows `onFailure`. The default is `open`: the call
 *   proceeds without being counted. The rate limit protects backends from
 *   one greedy caller; refusing every caller because the counter store is
 *   away would turn a Redis outage into a full gateway outage, which is
 *   worse than briefly unenforced limits (and `/ready` going 503 tells the
 *   orchestrator). `closed` is for deployments where an unenforced limit is
 *   the bigger risk (a paid quota, an abuse-prone public route): the call
 *   gets 503 SERVICE_UNAVAILABLE with Retry-After.
 */
export function connectRateLimitStore(url: string, log: FastifyBaseLogger, options: RateLimitStoreOptions): RateLimitStore {
  const { timeoutMs, onFailure } = options;
  const pingIntervalMs = options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS;
  const { Redis } = require("ioredis") as { Redis: new (url: string, options: RedisOptions) => RedisClient };
  const RedisStore = require("@fastify/rate-limit/store/RedisStore.js") as RedisStoreCtor;
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    // The budget itself is ours (see setAnswerBudget): ioredis's own timer
    // would fire first when the event loop runs late, failing answered
    // commands. Its timeout only drops a command Redis never answers.
    commandTimeout: Math.max(timeoutMs * 10, 5_000),
    maxRetriesPerRequest: 0,
    connectTimeout: Math.max(timeoutMs, 1_000),
    retryStrategy: (times) => Math.min(times * 50, MAX_RECONNECT_DELAY_MS),
  });

  let connected = false;
  let pingAnswered = false;
  let inOutage = false;
  let closed = false;
  const outage = (reason: unknown) => {
    if (closed || inOutage) return;
    inOutage = true;
    log.warn(
      { cause: reason, onRedisFailure: onFailure },
      onFailure === "open"
        ? "rate limit store (Redis) unavailable; limits are not enforced until it returns"
        : "rate limit store (Redis) unavailable; rate-limited calls are refused until it returns",
    );
  };
  const recovered = () => {
    if (!inOutage) return;
    inOutage = false;
    log.info("rate limit store (Redis) available again; limits are enforced");
  };

  redis.on("error", (error: NodeJS.ErrnoException) => outage(error.code ?? error.message));
  let availabilityWaiters: Array<(ok: boolean) => void> = [];
  const setAnswered = (answered: boolean) => {
    pingAnswered = answered;
    if (available()) {
      for (const wake of availabilityWaiters) wake(true);
      availabilityWaiters = [];
    }
  };
  redis.on("ready", () => {
    // Connected (ioredis checked INFO): available once Redis takes a write.
    connected = true;
    void probe();
  });
  redis.on("close", () => {
    connected = false;
    pingAnswered = false;
    outage("connection closed");
  });

  let pingTimer: NodeJS.Timeout | undefined;
  let probing = false;
  // One health check at a time: each schedules the next when it ends.
  const probe = async () => {
    if (probing || closed) return;
    probing = true;
    clearTimeout(pingTimer);
    // Not connected: nothing to ask (the 'error' and 'close' events report it); look again later.
    if (connected) {
      const failed = await withinBudget(redis.set(HEALTH_KEY, "1", "PX", HEALTH_KEY_TTL_MS), timeoutMs).then(
        (reply) => (reply === "OK" ? undefined : `health check answered ${String(reply)}`),
        (e: unknown) => (e instanceof Error ? e.message : String(e)),
      );
      if (closed) return;
      setAnswered(failed === undefined);
      if (failed === undefined) recovered();
      else outage(failed);
    }
    probing = false;
    pingTimer = setTimeout(() => void probe(), pingIntervalMs);
    pingTimer.unref();
  };
  void probe();

  const available = () => connected && pingAnswered;
  // A count or refund that failed: a health check at once, which decides —
  // one slow command does not make every call fail (with `closed`) or /ready
  // answer 503, a Redis that refuses writes does.
  const failure = (cause: unknown): Error => {
    void probe();
    outage(cause instanceof Error ? cause.message : cause);
    return new GatewayHttpError("SERVICE_UNAVAILABLE", "Rate limit store is unavailable", { cause });
  };
  // Calls a store method with at most one answer, within the budget, following onFailure.
  const guarded = (run: (cb: Callback) => void, cb: Callback) => {
    if (!available()) return settle(cb, failure("rate limit store unavailable"));
    let done = false;
    const timer = setAnswerBudget(() => {
      if (!done) finish(failure(new Error(`no answer within ${timeoutMs} ms`)));
    }, timeoutMs);
    const finish = (error: Error | null, result?: CountResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (error) settle(cb, error instanceof GatewayHttpError ? error : failure(error));
      else cb(null, result);
    };
    try {
      run(finish);
    } catch (error) {
      finish(error as Error);
    }
  };
  // open: counted as nothing (the call proceeds); closed: the error, which the gateway answers with 503.
  const settle = (cb: Callback, error: Error) => (onFailure === "open" ? cb(null, { current: 0, ttl: 0 }) : cb(error));

  class GuardedRedisStore implements FastifyRateLimitStore {
    private readonly inner: InnerStore;
    constructor(params: { continueExceeding?: boolean; exponentialBackoff?: boolean }, inner?: InnerStore) {
      this.inner =
        inner ??
        new RedisStore(params.continueExceeding ?? false, params.exponentialBackoff ?? false, redis, "connect-gateway-rate-limit:");
    }
    incr(key: string, cb: Callback, timeWindow: number, max: number): void {
      guarded((done) => this.inner.incr(key, done, timeWindow, max), cb);
    }
    read(key: string, cb: Callback, timeWindow: number, max: number): void {
      guarded((done) => this.inner.read?.(key, done, timeWindow, max), cb);
    }
    child(routeOptions: Parameters<FastifyRateLimitStore["child"]>[0]): FastifyRateLimitStore {
      return new GuardedRedisStore({}, this.inner.child(routeOptions) as InnerStore);
    }
  }

  const ready = () =>
    available()
      ? Promise.resolve(true)
      : new Promise<boolean>((resolve) => {
          const wake = (ok: boolean) => {
            clearTimeout(timer);
            resolve(ok);
          };
          const timer = setTimeout(() => {
            availabilityWaiters = availabilityWaiters.filter((w) => w !== wake);
            resolve(false);
          }, timeoutMs);
          availabilityWaiters.push(wake);
        });

  const windowCounter = (name: string, windowMs: number): WindowCounter => {
    const prefix = `connect-gateway-${name}:`;
    return {
      async increment(key) {
        try {
          if (!available()) throw failure("rate limit store unavailable");
          const [count, ttl] = (await withinBudget(
            redis.eval(WINDOW_INCREMENT_SCRIPT, 1, prefix + key, windowMs),
            timeoutMs,
          )) as [number, number];
          return { count, resetAt: Date.now() + ttl };
        } catch (e) {
          const error = e instanceof GatewayHttpError ? e : failure(e);
          if (onFailure === "open") return { count: 0, resetAt: 0 };
          throw error;
        }
      },
      async refund(key, window) {
        if (window.count === 0 || !available()) return;
        await withinBudget(redis.eval(WINDOW_REFUND_SCRIPT, 1, prefix + key), timeoutMs).catch((e: unknown) => failure(e));
      },
    };
  };

  return {
    redis,
    storeClass: GuardedRedisStore as unknown as FastifyRateLimitStoreCtor,
    available,
    ready,
    windowCounter,
    close: () => {
      closed = true;
      clearTimeout(pingTimer);
      for (const wake of availabilityWaiters) wake(false);
      availabilityWaiters = [];
      redis.disconnect();
    },
  };
}

/** The key the health check writes (shared by every gateway on the Redis; it expires on its own). */
const HEALTH_KEY = "connect-gateway-health";
const HEALTH_KEY_TTL_MS = 60_000;

function withinBudget<T>(promise: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setAnswerBudget(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A timer for how long Redis may take to answer that expires only once the
 * I/O already received is handled (`setImmediate` runs after the event
 * loop's poll phase, where a socket's pending data is read): a busy event
 * loop runs timers late, and Redis's answer may be sitting unread in the
 * socket — a plain timer would fail (or, with `closed`, refuse) a call
 * that Redis answered in time. The library's replay and token stores use
 * the same rule.
 */
function setAnswerBudget(onExpired: () => void, ms: number): NodeJS.Timeout {
  return setTimeout(setImmediate, ms, onExpired);
}
