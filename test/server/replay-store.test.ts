import { randomBytes } from "node:crypto";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { createMemoryReplayStore, ReplayStoreFullError } from "../../src/server/index.js";

// The in-memory replay store, on its own. Through a server, see signature-v2.test.ts.
describe("createMemoryReplayStore", () => {
  it("against a model of exact expiry: never admits a replay, never refuses a fresh id, across growth and rebuilds", () => {
    let now = 1_000_000;
    const store = createMemoryReplayStore({ now: () => now });
    const model = new Map<string, number>();
    // A pseudo-random walk (fixed seed): ids come back before and after their window.
    let seed = 42;
    const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const ids = Array.from({ length: 20_000 }, (_, i) => `request-${i}-${"x".repeat(14)}`);
    let admitted = 0;
    let refused = 0;
    const mismatches: string[] = [];
    for (let step = 0; step < 120_000; step++) {
      now += Math.floor(random() * 4);
      const id = ids[Math.floor(random() * ids.length)] as string;
      const ttl = 1 + Math.floor(random() * 61);
      const expiry = model.get(id);
      const fresh = expiry === undefined || expiry <= now;
      if (store.claim(id, ttl) !== fresh) mismatches.push(`step ${step}: ${id} should be ${fresh ? "fresh" : "a replay"}`);
      if (fresh) {
        model.set(id, now + ttl * 1000);
        admitted++;
      } else refused++;
    }
    expect(mismatches.slice(0, 5)).toEqual([]);
    // Both paths ran many times, with thousands of ids held at once.
    expect(admitted).toBeGreaterThan(20_000);
    expect(refused).toBeGreaterThan(20_000);
  });

  it("tells apart ids that differ in one character, wherever it is, and ids of every length", () => {
    const store = createMemoryReplayStore();
    const base = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const ids = new Set<string>();
    for (let at = 0; at < base.length; at++) {
      for (const c of "BZaz09-_") ids.add(base.slice(0, at) + c + base.slice(at + 1));
    }
    for (let n = 0; n <= 130; n++) ids.add("q".repeat(n));
    for (let i = 0; i < 300_000; i++) ids.add(`req-${i.toString().padStart(18, "0")}`);
    const refusedFresh = [...ids].filter((id) => !store.claim(id, 60));
    expect(refusedFresh).toEqual([]);
    const admittedAgain = [...ids].filter((id) => store.claim(id, 60));
    expect(admittedAgain).toEqual([]);
  });

  it("once full, refuses new ids until held ones expire, then takes them again", () => {
    let now = 5_000_000;
    const store = createMemoryReplayStore({ maxEntries: 3, now: () => now });
    for (const id of ["a1", "a2", "a3"]) expect(store.claim(id, 10)).toBe(true);
    expect(() => store.claim("a4", 10)).toThrow(ReplayStoreFullError);
    // Still a replay, full or not.
    expect(store.claim("a2", 10)).toBe(false);
    now += 10_001;
    expect(store.claim("a4", 10)).toBe(true);
    expect(store.claim("a1", 10)).toBe(true);
    expect(store.claim("a5", 10)).toBe(true);
    expect(() => store.claim("a6", 10)).toThrow(ReplayStoreFullError);
  });

  it("holds 400,000 ids in a few MiB outside the JavaScript heap", async () => {
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    const random = randomBytes(400_000 * 16);
    const ids = Array.from({ length: 400_000 }, (_, i) => random.subarray(i * 16, i * 16 + 16).toString("base64url"));
    gc();
    const before = process.memoryUsage();
    const store = createMemoryReplayStore();
    for (const id of ids) store.claim(id, 61);
    // The tables the store outgrew are garbage; V8 frees their memory on a
    // background thread after a collection, so give it a moment to catch up.
    let after = process.memoryUsage();
    for (let i = 0; i < 20; i++) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 10));
      after = process.memoryUsage();
      if (after.arrayBuffers - before.arrayBuffers <= 16 * 1024 * 1024 + 4096) break;
    }
    // A Map of the ids would add ~50 MiB to the heap; the table is 16 bytes a slot, at most half full.
    expect(after.heapUsed - before.heapUsed).toBeLessThan(8 * 1024 * 1024);
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThanOrEqual(16 * 1024 * 1024 + 4096);
    expect(store.claim(ids[123_456] as string, 61)).toBe(false);
  });
});
