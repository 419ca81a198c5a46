// Redis failing under the shared rate limit, injected for real: a redis-server
// child on a loopback port is killed (SIGKILL) or frozen (SIGSTOP) while a real
// gateway counts in it. Calls must still answer within a second (fail open, or
// 503 when configured closed), /ready must follow Redis, and both must recover.
import type { ChildProcess } from "node:child_process";
import { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import { startRedisServer } from "../support/redis-server.js";
import { gatewayConfigFromEnv } from "../../packages/gateway/src/gateway-env.js";
import { createGateway, GatewayConfigError, parseRoutesFile, type Gateway, type GatewayConfig } from "../../packages/gateway/src/index.js";
import { HMAC_SECRET, JWT_SECRET, SEED_AUDIENCE, SEED_ISSUER, seedToken, startRecordingBackend, unusedPort, type RecordingBackend } from "../support/gateway.js";

const yaml = `version: "1.0"
routes:
  - path: /api/v1/profile
    method: GET
    proxy_upstream: $UP
`;

const CALL_BUDGET_MS = 1_000;

let children: ChildProcess[] = [];
let gateway: Gateway | undefined;
let backend: RecordingBackend | undefined;
let logLines: Array<{ level: number; msg: string }> = [];

afterEach(async () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGCONT");
      child.kill("SIGKILL");
    }
  }
  children = [];
  await gateway?.close();
  await backend?.close();
  gateway = undefined;
  backend = undefined;
  logLines = [];
});

async function startRedis(port: number): Promise<ChildProcess> {
  const { child } = await startRedisServer(port);
  children.push(child);
  return child;
}

function killed(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

async function startGateway(port: number, rateLimit: Partial<Exclude<GatewayConfig["rateLimit"], false>> = {}): Promise<Gateway> {
  backend = await startRecordingBackend();
  const config: GatewayConfig = {
    routes: parseRoutesFile(yaml, { source: "routes.yaml", env: { UP: backend.url } }),
    hmacSecret: HMAC_SECRET,
    tokens: { hs256: { secret: JWT_SECRET, issuer: SEED_ISSUER, audience: SEED_AUDIENCE } },
    rateLimit: { max: 3, timeWindowMs: 60_000, redisUrl: `redis://127.0.0.1:${port}`, ...rateLimit },
    logger: {
      level: "info",
      stream: { write: (line: string) => void logLines.push(JSON.parse(line) as { level: number; msg: string }) },
    },
  };
  gateway = createGateway(config);
  await gateway.listen();
  expect(await readyWithin(gateway, 200, 3_000)).toBe(true);
  return gateway;
}

/** A redis-server on a free port and a gateway counting in it (see startGateway). */
async function startRedisAndGateway(rateLimit: Partial<Exclude<GatewayConfig["rateLimit"], false>> = {}) {
  const port = await unusedPort();
  const redis = await startRedis(port);
  return { port, redis, gw: await startGateway(port, rateLimit) };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** One call, bounded: resolves to its status and how long it took. */
async function timedGet(gw: Gateway, path: string, token?: string) {
  const started = performance.now();
  const res = await fetch(gw.url + path, {
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
    signal: AbortSignal.timeout(5_000),
  });
  await res.arrayBuffer();
  return { status: res.status, retryAfter: res.headers.get("retry-after"), ms: performance.now() - started };
}

/** Polls /ready until it answers `status`, for at most `withinMs`. */
async function readyWithin(gw: Gateway, status: number, withinMs: number): Promise<boolean> {
  const deadline = performance.now() + withinMs;
  while (performance.now() < deadline) {
    if ((await timedGet(gw, "/ready")).status === status) return true;
    await sleep(50);
  }
  return false;
}

async function limitingWorks(gw: Gateway, user: string): Promise<number[]> {
  const token = await seedToken({ user_id: user });
  const statuses: number[] = [];
  for (let i = 0; i < 4; i++) statuses.push((await timedGet(gw, "/api/v1/profile", token)).status);
  return statuses;
}

const outageWarnings = () => logLines.filter((l) => l.level === 40 && /rate limit store \(Redis\) unavailable/.test(l.msg));

/** While Redis is out: every call answered 200 within a second, /ready 503, one warning logged. */
async function expectFailedOpen(gw: Gateway, userId: string): Promise<void> {
  const token = await seedToken({ user_id: userId });
  for (let i = 0; i < 6; i++) {
    const call = await timedGet(gw, "/api/v1/profile", token);
    expect(call.status).toBe(200);
    expect(call.ms).toBeLessThan(CALL_BUDGET_MS);
  }
  expect(await readyWithin(gw, 503, 1_500)).toBe(true);
  // A readiness probe polling through the outage adds no warning of its own.
  for (let i = 0; i < 5; i++) expect((await timedGet(gw, "/ready")).status).toBe(503);
  expect(outageWarnings(), JSON.stringify(logLines)).toHaveLength(1);
  expect(logLines.filter((l) => l.level >= 40), JSON.stringify(logLines)).toHaveLength(1);
}

/** Once Redis is back: /ready 200 within 5 s, and the limit counts again (the fourth call of `user` refused). */
async function expectRecovered(gw: Gateway, user: string): Promise<void> {
  expect(await readyWithin(gw, 200, 5_000)).toBe(true);
  expect(await limitingWorks(gw, user)).toEqual([200, 200, 200, 429]);
}

describe("the rate limiter when Redis fails", () => {
  it("answers within a second while Redis is killed (fail open, one warning), /ready 503, and recovers when it restarts", async () => {
    const { port, redis, gw } = await startRedisAndGateway();
    expect(await limitingWorks(gw, "before-kill")).toEqual([200, 200, 200, 429]);

    await killed(redis);
    await expectFailedOpen(gw, "during-kill");

    await startRedis(port);
    await expectRecovered(gw, "after-restart");
  }, 20_000);

  it("answers within a second while Redis is frozen (SIGSTOP), /ready 503, and recovers on SIGCONT", async () => {
    const { redis, gw } = await startRedisAndGateway();

    redis.kill("SIGSTOP");
    await expectFailedOpen(gw, "during-freeze");

    redis.kill("SIGCONT");
    await expectRecovered(gw, "after-freeze");
  }, 20_000);

  it.each([
    // The old primary after a failover: a replica of a primary that is gone, refusing writes with READONLY.
    ["READONLY", (deadPort: number) => ["REPLICAOF", "127.0.0.1", String(deadPort)], ["REPLICAOF", "NO", "ONE"]],
    // maxmemory reached, nothing to evict: writes refused with OOM.
    ["OOM", () => ["CONFIG", "SET", "maxmemory", "1"], ["CONFIG", "SET", "maxmemory", "0"]],
  ] as const)("a Redis that answers PING but refuses writes (%s): calls 503 (closed), /ready 503, one warning, until it takes writes again", async (label, refuse, restore) => {
    const { port, gw } = await startRedisAndGateway({ onRedisFailure: "closed" });
    const admin = new Redis(`redis://127.0.0.1:${port}`, { maxRetriesPerRequest: 1 });
    admin.on("error", () => {});
    try {
      const token = await seedToken({ user_id: `refusing-${label}` });
      expect((await timedGet(gw, "/api/v1/profile", token)).status).toBe(200);
      await admin.call(...(refuse(await unusedPort()) as [string, ...string[]]));
      expect(await readyWithin(gw, 503, 1_500)).toBe(true);
      for (let i = 0; i < 6; i++) {
        expect((await timedGet(gw, "/ready")).status).toBe(503);
        const call = await timedGet(gw, "/api/v1/profile", token);
        expect([call.status, call.ms < CALL_BUDGET_MS]).toEqual([503, true]);
        await sleep(100);
      }
      // One warning for the outage, not one per health check or count.
      expect(outageWarnings(), JSON.stringify(logLines)).toHaveLength(1);
      expect(logLines.filter((l) => /available again/.test(l.msg))).toHaveLength(0);
      await admin.call(...(restore as unknown as [string, ...string[]]));
      await expectRecovered(gw, `after-${label}`);
    } finally {
      admin.disconnect();
    }
  }, 20_000);

  it("one caller's failed count (its key of the wrong type) fails that call only: /ready and other callers stay served", async () => {
    const { port, gw } = await startRedisAndGateway({ onRedisFailure: "closed" });
    const admin = new Redis(`redis://127.0.0.1:${port}`, { maxRetriesPerRequest: 1 });
    admin.on("error", () => {});
    try {
      const broken = await seedToken({ user_id: "wrong-type-key" });
      const other = await seedToken({ user_id: "another-caller" });
      expect((await timedGet(gw, "/api/v1/profile", broken)).status).toBe(200);
      // That caller's counter becomes a hash: its INCR fails with WRONGTYPE, Redis itself is fine.
      const keys = await admin.keys("*wrong-type-key*");
      expect(keys.length).toBeGreaterThan(0);
      for (const key of keys) {
        await admin.del(key);
        await admin.hset(key, "f", "v");
      }
      expect((await timedGet(gw, "/api/v1/profile", broken)).status).toBe(503);
      expect((await timedGet(gw, "/api/v1/profile", other)).status).toBe(200);
      expect((await timedGet(gw, "/ready")).status).toBe(200);
    } finally {
      admin.disconnect();
    }
  }, 20_000);

  it("refuses calls with 503 and Retry-After within a second when configured to fail closed", async () => {
    const { redis, gw } = await startRedisAndGateway({ onRedisFailure: "closed", redisTimeoutMs: 100 });
    const token = await seedToken({ user_id: "closed" });
    expect((await timedGet(gw, "/api/v1/profile", token)).status).toBe(200);

    redis.kill("SIGSTOP");
    for (let i = 0; i < 3; i++) {
      const call = await timedGet(gw, "/api/v1/profile", token);
      expect([call.status, call.retryAfter]).toEqual([503, "1"]);
      expect(call.ms).toBeLessThan(CALL_BUDGET_MS);
    }
    await killed(redis);
    const call = await timedGet(gw, "/api/v1/profile", token);
    expect([call.status, call.retryAfter]).toEqual([503, "1"]);
    expect(call.ms).toBeLessThan(CALL_BUDGET_MS);
    expect(await readyWithin(gw, 503, 1_500)).toBe(true);
    expect((await timedGet(gw, "/health")).status).toBe(200);
  }, 20_000);
});

describe("Redis failure options", () => {
  const base = (rateLimit: Record<string, unknown>) =>
    ({
      routes: parseRoutesFile(yaml, { source: "routes.yaml", env: { UP: "http://127.0.0.1:1" } }),
      hmacSecret: HMAC_SECRET,
      tokens: { hs256: { secret: JWT_SECRET, issuer: SEED_ISSUER, audience: SEED_AUDIENCE } },
      rateLimit: { max: 5, ...rateLimit },
      logger: false,
    }) as GatewayConfig;

  it("validates rateLimit.redisTimeoutMs and rateLimit.onRedisFailure", () => {
    for (const [rateLimit, message] of [
      [{ redisTimeoutMs: 0 }, /`rateLimit\.redisTimeoutMs` must be a positive integer/],
      [{ redisTimeoutMs: 1.5 }, /`rateLimit\.redisTimeoutMs` must be a positive integer/],
      [{ onRedisFailure: "maybe" }, /`rateLimit\.onRedisFailure` must be "open" or "closed"/],
    ] as const) {
      expect(() => createGateway(base(rateLimit))).toThrow(GatewayConfigError);
      expect(() => createGateway(base(rateLimit))).toThrow(message);
    }
  });

  it("reads REDIS_TIMEOUT_MS and RATE_LIMIT_ON_REDIS_FAILURE", () => {
    const env = { GATEWAY_HMAC_SECRET: HMAC_SECRET, JWT_SECRET, REDIS_URL: "redis://127.0.0.1:1" };
    expect(gatewayConfigFromEnv("routes.yaml", env).rateLimit).toEqual({ max: 1000, timeWindowMs: 60_000, redisUrl: "redis://127.0.0.1:1" });
    expect(
      gatewayConfigFromEnv("routes.yaml", { ...env, REDIS_TIMEOUT_MS: "250", RATE_LIMIT_ON_REDIS_FAILURE: "closed" }).rateLimit,
    ).toMatchObject({ redisTimeoutMs: 250, onRedisFailure: "closed" });
    expect(() => gatewayConfigFromEnv("routes.yaml", { ...env, REDIS_TIMEOUT_MS: "fast" })).toThrow(/REDIS_TIMEOUT_MS/);
    expect(() => gatewayConfigFromEnv("routes.yaml", { ...env, RATE_LIMIT_ON_REDIS_FAILURE: "sometimes" })).toThrow(
      /RATE_LIMIT_ON_REDIS_FAILURE/,
    );
  });
});
