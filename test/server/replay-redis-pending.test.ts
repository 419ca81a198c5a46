// A frozen Redis (SIGSTOP) answers nothing, and the client keeps every command
// it was sent queued until Redis answers: the Redis replay store bounds how
// many claims may wait at once, so a freeze under load cannot grow the
// service's memory by every request that arrives during it. Real redis-server.
import type { ChildProcess } from "node:child_process";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisReplayStore } from "../../src/server/index.js";
import { startAnswerLosingProxy } from "../support/answer-losing-proxy.js";
import { startRedisServer } from "../support/redis-server.js";

let server: ChildProcess;
let redis: Redis;
let redisUrl: string;

beforeAll(async () => {
  const started = await startRedisServer();
  server = started.child;
  redisUrl = started.url;
  redis = new Redis(started.url, { enableOfflineQueue: false, maxRetriesPerRequest: 0 });
  redis.on("error", () => {});
  await new Promise((resolve) => redis.once("ready", resolve));
}, 30_000);

afterAll(() => {
  redis?.disconnect();
  server?.kill("SIGCONT");
  server?.kill("SIGKILL");
});

describe("createRedisReplayStore's maxPendingClaims", () => {
  it("while Redis is frozen, at most maxPendingClaims commands are sent; the rest fail at once; all is well after the thaw", async () => {
    const store = createRedisReplayStore(redis, { keyPrefix: "pending-test:", maxPendingClaims: 50 });
    server.kill("SIGSTOP");
    const outcomes: ("sent" | "refused")[] = [];
    const sent: Promise<boolean>[] = [];
    try {
      for (let i = 0; i < 500; i++) {
        try {
          const claim = store.claim(`frozen-${i}-abcdefghijklmnopqrstuv`, 60) as Promise<boolean>;
          claim.catch(() => {});
          sent.push(claim);
          outcomes.push("sent");
        } catch (error) {
          expect(String(error)).toContain("maxPendingClaims");
          outcomes.push("refused");
        }
      }
    } finally {
      server.kill("SIGCONT");
    }
    expect(outcomes.filter((o) => o === "sent")).toHaveLength(50);
    await Promise.allSettled(sent);
    // Only the claims that were sent reached Redis.
    expect(await redis.dbsize()).toBe(50);
    // The bound is on claims waiting, not in all: with Redis answering, it never bites.
    for (let i = 0; i < 200; i++) expect(await store.claim(`thawed-${i}-abcdefghijklmnopqrstuv`, 60)).toBe(true);
    expect(await store.claim("thawed-0-abcdefghijklmnopqrstuv", 60)).toBe(false);
  });

  it("a connection that lost answers without closing is made again: no later claim is paired with a lost one's answer", async () => {
    // A proxy in front of Redis that can swallow Redis's answers while keeping the connection open.
    const proxy = await startAnswerLosingProxy(Number(new URL(redisUrl).port));
    const viaProxy = new Redis(proxy.url, { enableOfflineQueue: false, maxRetriesPerRequest: 0 });
    viaProxy.on("error", () => {});
    await new Promise((resolve) => viaProxy.once("ready", resolve));
    try {
      const store = createRedisReplayStore(viaProxy, { keyPrefix: "desync-test:" });
      expect(await store.claim("accepted-before-abcdefghijklmnopqrstuv", 60)).toBe(true);
      // Five claims whose answers are lost; then the proxy passes answers again.
      proxy.swallow = true;
      const lost = Array.from({ length: 5 }, (_, i) => store.claim(`lost-${i}-abcdefghijklmnopqrstuv`, 60) as Promise<boolean>);
      for (const claim of lost) claim.catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, 200));
      proxy.swallow = false;
      // Past a second, the next claim notices the stale ones and the connection is made again.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const noticed = store.claim("fresh-after-abcdefghijklmnopqrstuv", 60) as Promise<boolean>;
      noticed.catch(() => {});
      expect((await Promise.allSettled(lost)).every((outcome) => outcome.status === "rejected")).toBe(true);
      await new Promise((resolve) => (viaProxy.status === "ready" ? resolve(undefined) : viaProxy.once("ready", resolve)));
      // In step again: the replay of an accepted id is refused, a fresh id accepted — every time.
      for (let i = 0; i < 20; i++) {
        const [replay, fresh] = await Promise.all([
          store.claim("accepted-before-abcdefghijklmnopqrstuv", 60),
          store.claim(`fresh-${i}-abcdefghijklmnopqrstuv`, 60),
        ]);
        expect([i, replay, fresh]).toEqual([i, false, true]);
      }
    } finally {
      viaProxy.disconnect();
      proxy.close();
    }
  });

  it("refuses a bad maxPendingClaims, naming it", () => {
    expect(() => createRedisReplayStore(redis, { maxPendingClaims: 0 })).toThrow(/maxPendingClaims/);
  });
});
