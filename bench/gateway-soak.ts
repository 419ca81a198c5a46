// `npx tsx --conditions=connect-gateway-source bench/gateway-soak.ts [seconds]`: 64 calls in flight through the
// gateway (in this process) to an HTTP/1.1 and an h2c upstream for 60 s, one
// in ten abandoned by its caller mid-flight; prints post-GC heap and RSS
// every 5 s, then the calls made and anything the gateway logged at warn or
// above. A leak shows as a heap that keeps climbing. Not run by bench/run.ts.
import { driveSoak, forcedGc, settledHeap, startSoakStack } from "./soak-driver.js";

const seconds = Number(process.argv[2] ?? 60);
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
const gc = forcedGc();
const stack = await startSoakStack();
const start = settledHeap(gc);
console.log(`soak: ${seconds} s, 64 in flight, 1 in 10 abandoned; heap at start ${mib(start)}`);
const stats = await driveSoak(stack, {
  seconds,
  inFlight: 64,
  abandonEvery: 10,
  onSecond: (second) => {
    if (second % 5 !== 0) return;
    const heap = settledHeap(gc);
    console.log(`${String(second).padStart(4)} s  heap ${mib(heap).padStart(10)}  (${heap >= start ? "+" : ""}${mib(heap - start)})  rss ${mib(process.memoryUsage().rss)}`);
  },
});
await new Promise((resolve) => setTimeout(resolve, 500));
console.log(`end    heap ${mib(settledHeap(gc))}  rss ${mib(process.memoryUsage().rss)}`);
console.log(`calls: ${stats.completed} completed, ${stats.abandoned} abandoned, ${stats.failed.length} failed; log lines ${stack.logLines()}, at warn or above ${stack.problems.length}`);
for (const failure of stats.failed) console.log(`  failed: ${failure}`);
for (const line of stack.problems.slice(0, 5)) console.log(`  logged: ${line.slice(0, 300).trim()}`);
await stack.close();
process.exit(stats.failed.length > 0 || stack.problems.length > 0 ? 1 : 0);
