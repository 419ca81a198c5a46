// A short, bounded soak: 64 calls in flight for ~5 s through an in-process
// gateway to an HTTP/1.1 and an h2c upstream, one call in ten abandoned by
// its caller mid-flight (before the answer's headers or halfway through its
// body). Abandoned calls are normal traffic: the gateway logs nothing at
// warn or above, keeps answering, and its post-GC heap stays flat. The long
// version is `npx tsx --conditions=connect-gateway-source bench/gateway-soak.ts`.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { driveSoak, forcedGc, settledHeap, startSoakStack, type SoakStack } from "../../bench/soak-driver.js";

const MiB = 1024 * 1024;

describe("soak: 64 in flight, 10% abandoned", () => {
  let stack: SoakStack;
  beforeAll(async () => {
    stack = await startSoakStack();
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("logs no gateway error, keeps answering, and keeps its heap flat", { timeout: 15_000 }, async () => {
    const gc = forcedGc();
    const heap = new Map<number, number>();
    const stats = await driveSoak(stack, {
      seconds: 5,
      inFlight: 64,
      abandonEvery: 10,
      onSecond: (second) => {
        if (second === 1 || second === 5) heap.set(second, settledHeap(gc));
      },
    });

    expect(stack.problems).toEqual([]);
    expect(stats.failed).toEqual([]);
    // It kept answering (speed is measured by npm run bench, not here: a loaded CI machine
    // completes a few hundred calls where an idle one completes thousands).
    expect(stats.completed).toBeGreaterThan(100);
    expect(stats.abandoned).toBeGreaterThan(stats.completed / 20);
    // Still answering once the load is over.
    const health = await fetch(`${stack.gateway.url}/health`, { signal: AbortSignal.timeout(5_000) });
    expect(health.status).toBe(200);
    const growth = (heap.get(5) as number) - (heap.get(1) as number);
    expect(growth, `post-GC heap grew ${(growth / MiB).toFixed(1)} MiB between second 1 and second 5`).toBeLessThan(20 * MiB);
  });
});
