// A Redis that answered in time counts as having answered, even when this
// process's event loop was too busy to read the answer before the budget's
// timer came due (a burst of calls, a long synchronous task): the budget
// measures Redis, not our own lag. Each store sends its command, then the
// event loop is blocked well past the budget while the real redis-server
// answers; the answer must win.
import { Redis } from "ioredis";
import type { FastifyBaseLogger } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectRateLimitStore } from "../../packages/gateway/src/rate-limit-store.js";
import { createRedisTokenStore } from "../../src/client/index.js";
import { resolveGatewayAuthConfig } from "../../src/server/gateway-auth-options.js";
import { createRedisReplayStore } from "../../src/server/index.js";
import { claimRequestId } from "../../src/server/replay-check.js";
import { startRedisServer, type RedisServer } from "../support/redis-server.js";

let server: RedisServer;
let client: Redis;

beforeAll(async () => {
  server = await startRedisServer();
  client = new Redis(server.url, { maxRetriesPerRequest: 0 });
  client.on("error", () => {});
  await client.ping();
}, 30_000);

afterAll(() => {
  client.disconnect();
  server.child.kill("SIGKILL");
});

/** Blocks the event loop for `ms`, as a burst of synchronous work does. */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // spin
  }
}

const BUDGET_MS = 50;

describe("a Redis answer that arrived while the event loop was busy", () => {
  it("replay store: the request id is claimed, not refused as replay_check_unavailable", async () => {
    const config = resolveGatewayAuthConfig({
      hmacSecret: "answer-budget-secret",
      replayStore: createRedisReplayStore(client),
      replayStoreTimeoutMs: BUDGET_MS,
    });
    const verdict = claimRequestId(config, `id-${Math.random()}`, String(Math.floor(Date.now() / 1000)));
    busy(BUDGET_MS * 4);
    expect(await verdict).toBeUndefined();
  });

  it("token store: the stored token is read, not a 'did not answer' failure", async () => {
    const store = createRedisTokenStore(client, { commandTimeoutMs: BUDGET_MS });
    const token = { accessToken: "stored-token", issuedAt: Date.now(), expiresAt: Date.now() + 60_000 };
    await store.set("budget-key", token);
    const read = store.get("budget-key");
    busy(BUDGET_MS * 4);
    expect(await read).toMatchObject({ accessToken: "stored-token" });
  });

  it("gateway rate limit (closed on failure): the call is counted, not refused with 503", async () => {
    const warnings: unknown[] = [];
    const log = { warn: (...args: unknown[]) => warnings.push(args), info() {}, error() {}, debug() {} } as unknown as FastifyBaseLogger;
    const store = connectRateLimitStore(server.url, log, { timeoutMs: BUDGET_MS, onFailure: "closed" });
    try {
      // Ready once its first health check passed: within moments, not necessarily within the 50 ms budget.
      const deadline = Date.now() + 5_000;
      while (!store.available() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(store.available()).toBe(true);
      const counter = store.windowCounter("answer-budget", 60_000);
      const counted = counter.increment(`caller-${Math.random()}`);
      busy(BUDGET_MS * 4);
      expect((await counted).count).toBe(1);
      expect(warnings).toEqual([]);
    } finally {
      store.close();
    }
  });
});
