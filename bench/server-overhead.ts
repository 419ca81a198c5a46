// `npm run bench server`: the cost of createGatewayAuth on a connect-node
// server, against the same server without it, measured in the same run.
//
// - throughput: unary calls with ~1 KiB messages, 32 in flight, for a fixed
//   time over HTTP/2; the client signs every request (v1 and v2, as the
//   gateway does) in every run (the plain server ignores the headers), so the
//   ratio is the server-side cost only: v2 verification plus the replay check,
//   with the in-memory replay store and with a Redis one (a local
//   redis-server, started here when one is installed);
// - memory: one 16 MiB unary request; each server runs in its own child
//   process, so its peak RSS (`process.resourceUsage().maxRSS`) is its own.
import { createClient, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter, Http2SessionManager } from "@connectrpc/connect-node";
import { fork, type ChildProcess } from "node:child_process";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { EchoService } from "../examples/gen/example/v1/example_pb.js";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { Redis } from "ioredis";
import { createGatewayAuth, createRedisReplayStore } from "../src/server/index.js";
import { createTestGatewayTransport } from "../src/testing/index.js";

type Mode = "plain" | "auth" | "redis";
const SECRET = "bench-secret";
const identity = { clientId: "web-app", userId: "sub-42", scopes: ["read"] };
const SECONDS = 2;
const IN_FLIGHT = 32;
const ROUNDS = 7;
const BIG = 16 * 1024 * 1024;

// ---- child: one server --------------------------------------------------

function routes(router: ConnectRouter) {
  router.service(EchoService, {
    // The same handler in both runs: echoes small texts, measures big ones.
    echo: (req) => ({ text: req.text.length <= 4096 ? req.text : String(req.text.length) }),
  });
}

async function serve(mode: Mode) {
  // No response compression: the 1 KiB answers would otherwise be gzipped,
  // and that cost, equal on both sides, would flatten the ratio.
  const options = { routes, readMaxBytes: 64 * 1024 * 1024, acceptCompression: [] };
  const redis =
    mode === "redis" ? new Redis(process.env.BENCH_REDIS_URL ?? "", { enableOfflineQueue: false }) : undefined;
  redis?.on("error", (e) => console.error("redis:", e.message));
  if (redis !== undefined) await new Promise((r) => redis.once("ready", r));
  const auth = createGatewayAuth({
    hmacSecret: SECRET,
    maxBodyBytes: 64 * 1024 * 1024,
    ...(redis !== undefined && { replayStore: createRedisReplayStore(redis) }),
  });
  const handler = connectNodeAdapter(mode === "plain" ? options : auth.connectOptions(options));
  const server = http2.createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  process.on("message", (m) => {
    if (m === "rss") process.send?.({ maxRSS: process.resourceUsage().maxRSS, rss: process.memoryUsage().rss });
    if (m === "cpu") process.send?.({ cpuMicros: process.cpuUsage().user + process.cpuUsage().system });
    if (m === "exit") server.close(() => process.exit(0));
  });
  process.send?.({ port: (server.address() as AddressInfo).port });
}

// ---- parent: clients and measurements -------------------------------------

interface Child {
  readonly proc: ChildProcess;
  readonly baseUrl: string;
  ask<T>(message: string): Promise<T>;
}

let redisUrl: string | undefined;

async function spawnServer(mode: Mode): Promise<Child> {
  const proc = fork(fileURLToPath(import.meta.url), ["serve", mode], {
    execArgv: ["--conditions=connect-gateway-source", "--import", "tsx"],
    env: { ...process.env, BENCH_REDIS_URL: redisUrl ?? "" },
  });
  const port = await new Promise<number>((resolve) => proc.once("message", (m: { port: number }) => resolve(m.port)));
  return {
    proc,
    baseUrl: `http://127.0.0.1:${port}`,
    ask: (message) =>
      new Promise((resolve) => {
        proc.once("message", resolve as (m: unknown) => void);
        proc.send(message);
      }),
  };
}

const sessions: Http2SessionManager[] = [];

async function stopServer(child: Child) {
  for (const s of sessions.splice(0)) s.abort();
  const exited = new Promise((r) => child.proc.once("exit", r));
  child.proc.send("exit");
  await exited;
}

function signedClient(baseUrl: string) {
  const sessionManager = new Http2SessionManager(baseUrl);
  sessions.push(sessionManager);
  return createClient(
    EchoService,
    createTestGatewayTransport({ baseUrl, hmacSecret: SECRET, identity, httpVersion: "2", sessionManager }),
  );
}

async function throughput(mode: Mode): Promise<{ rate: number; cpuPerCall: number }> {
  const child = await spawnServer(mode);
  const client = signedClient(child.baseUrl);
  const text = "x".repeat(1024);
  const run = async (ms: number) => {
    let calls = 0;
    const end = Date.now() + ms;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (Date.now() < end) {
          await client.echo({ text });
          calls++;
        }
      }),
    );
    return calls / (ms / 1000);
  };
  await run(1000); // warm-up: JIT, connections
  const { cpuMicros: cpuBefore } = await child.ask<{ cpuMicros: number }>("cpu");
  const started = Date.now();
  const rate = await run(SECONDS * 1000);
  const { cpuMicros: cpuAfter } = await child.ask<{ cpuMicros: number }>("cpu");
  const cpuPerCall = (cpuAfter - cpuBefore) / (rate * SECONDS);
  const busy = (cpuAfter - cpuBefore) / 1000 / (Date.now() - started);
  console.log(`    ${mode.padEnd(6)}: ${rate.toFixed(0)} calls/s, server CPU ${(busy * 100).toFixed(0)}%, ${cpuPerCall.toFixed(1)} µs/call`);
  await stopServer(child);
  return { rate, cpuPerCall };
}

async function peakRss(mode: Mode): Promise<{ before: number; peak: number }> {
  const child = await spawnServer(mode);
  const client = signedClient(child.baseUrl);
  await client.echo({ text: "warm" });
  const { rss: before } = await child.ask<{ rss: number }>("rss");
  const res = await client.echo({ text: "y".repeat(BIG) });
  if (res.text !== String(BIG)) throw new Error(`unexpected answer ${res.text.slice(0, 40)}`);
  const { maxRSS } = await child.ask<{ maxRSS: number }>("rss");
  await stopServer(child);
  return { before: before / 1024, peak: maxRSS };
}

/** A throwaway redis-server on a free loopback port, or undefined when none is installed. */
async function startRedis(): Promise<{ url: string; stop(): void } | undefined> {
  const port = await new Promise<number>((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
  const started = await new Promise<boolean>((resolve) => {
    child.once("error", () => resolve(false));
    setTimeout(() => resolve(child.exitCode === null), 500);
  });
  return started ? { url: `redis://127.0.0.1:${port}`, stop: () => child.kill("SIGKILL") } : undefined;
}

async function main() {
  const redis = await startRedis();
  redisUrl = redis?.url;
  if (redis === undefined) console.log("  (no redis-server installed: the Redis replay store is not measured)");
  const modes: Mode[] = redis === undefined ? ["plain", "auth"] : ["plain", "auth", "redis"];
  // Interleaved rounds, so that machine noise hits every side alike.
  const runs: Record<Mode, { rate: number; cpuPerCall: number }[]> = { plain: [], auth: [], redis: [] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of modes) runs[mode].push(await throughput(mode));
  }
  redis?.stop();
  // Medians: one disturbed round (2 cores, shared machine) does not move them.
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] as number;
  const rate = (m: Mode) => median(runs[m].map((r) => r.rate));
  const cpu = (m: Mode) => median(runs[m].map((r) => r.cpuPerCall));
  console.log(`unary 1 KiB, ${IN_FLIGHT} in flight, HTTP/2, client signs in both runs (medians of ${ROUNDS} rounds)`);
  console.log(`  plain connectNodeAdapter : ${rate("plain").toFixed(0)} calls/s, ${cpu("plain").toFixed(1)} µs server CPU/call`);
  console.log(`  with createGatewayAuth   : ${rate("auth").toFixed(0)} calls/s, ${cpu("auth").toFixed(1)} µs server CPU/call (v2, replay store in memory)`);
  console.log(`  throughput ratio         : ${(rate("auth") / rate("plain")).toFixed(3)} (target >= 0.97 for verification; >= 0.95 with v2 + replay)`);
  console.log(`  server CPU/call ratio    : ${(cpu("auth") / cpu("plain")).toFixed(3)} (plain/auth = ${(cpu("plain") / cpu("auth")).toFixed(3)})`);
  if (modes.includes("redis")) {
    console.log(`  with a Redis replay store: ${rate("redis").toFixed(0)} calls/s, ${cpu("redis").toFixed(1)} µs server CPU/call`);
    console.log(`  throughput ratio (Redis) : ${(rate("redis") / rate("plain")).toFixed(3)} (target >= 0.95)`);
    console.log(`  server CPU/call (Redis)  : ${(cpu("redis") / cpu("plain")).toFixed(3)}`);
  }

  const plain = await peakRss("plain");
  const auth = await peakRss("auth");
  console.log(`one 16 MiB unary request, peak RSS of the server process (KiB)`);
  console.log(`  plain connectNodeAdapter : ${plain.peak} (before the request: ${plain.before.toFixed(0)})`);
  console.log(`  with createGatewayAuth   : ${auth.peak} (before the request: ${auth.before.toFixed(0)})`);
  console.log(`  peak RSS ratio           : ${(auth.peak / plain.peak).toFixed(3)} (target <= 1.1)`);
  console.log(`  growth ratio             : ${((auth.peak - auth.before) / (plain.peak - plain.before)).toFixed(3)} (peak minus RSS before)`);
}

if (process.argv[2] === "serve") {
  await serve(process.argv[3] as Mode);
} else {
  await main();
}
