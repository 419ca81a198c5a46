import type { FastifyBaseLogger } from "fastify";
import { Redis } from "ioredis";

/** The Redis connection that gateway instances share their rate-limit counters through. */
export interface RateLimitStore {
  /** What @fastify/rate-limit counts in. */
  readonly redis: Redis;
  /** True when Redis answers a PING within a second (`/ready`). */
  answers(): Promise<boolean>;
  /** Drops the connection. */
  close(): void;
}

const PING_TIMEOUT_MS = 1_000;

/**
 * Connects to Redis at `url`. ioredis reconnects on its own; an outage is
 * logged once, without the URL (it may hold a password), and until it ends
 * the limit is not enforced rather than the gateway refusing every call.
 */
export function connectRateLimitStore(url: string, log: FastifyBaseLogger): RateLimitStore {
  const redis = new Redis(url, { maxRetriesPerRequest: 1, connectTimeout: 2_000 });
  let healthy = true;
  redis.on("ready", () => {
    healthy = true;
  });
  redis.on("error", (error: NodeJS.ErrnoException) => {
    if (healthy) log.warn({ code: error.code }, "rate limit store (Redis) unavailable; limits are not enforced");
    healthy = false;
  });
  return { redis, answers: () => answersPing(redis), close: () => redis.disconnect() };
}

async function answersPing(redis: Redis): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), PING_TIMEOUT_MS);
  });
  try {
    return await Promise.race([redis.ping().then((r) => r === "PONG"), timeout]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
