// `npm run bench server`: the cost of createGatewayAuth, against the same
// work without it, measured in the same run.
//
// - verifier ÷ floor: in this process, the verification of one request, on
//   its own, against its floor — the work no verifier can skip: the HMAC of
//   the v2 canonical request and the SHA-256 of the body, computed directly
//   with node:crypto in a tight loop (nothing else: no header parsing, no
//   stream, no replay check). The verifier runs on a real
//   `http.IncomingMessage` (over a stub socket) carrying the raw headers a
//   gateway sends (v1 and v2 signatures, identity, Connect headers), its body
//   pushed in 64 KiB chunks as Node's HTTP parser pushes it, with a fresh
//   request id each time (the replay store, in memory, grows as in a
//   service). Timed: from the call to the verified result, pushing the body
//   included; building the request objects and signing are not (batches are
//   small, so that the harness's live objects weigh little on the timed
//   code's young-generation collections). Two rows:
//   "core" is what every adapter runs (checkRequestHead, then
//   readAndVerifyBody: the header checks, the read, SHA-256, HMAC,
//   constant-time compare, replay claim); `auth.verifyNodeRequest` adds the
//   verification span check, the context values, and — for a body of several
//   chunks — joining them into the one Buffer it returns. Rounds alternate
//   floor and verifier; each figure is a median over rounds.
// - throughput: unary calls with ~1 KiB messages, 32 in flight, over HTTP/1.1
//   and HTTP/2, against long-lived servers (each in its own process, warmed
//   up once), plain connect-node and connect-node with createGatewayAuth,
//   measured in alternating order round after round, medians of the rounds.
//   The same client code signs every request (v1 and v2, as the gateway
//   does) in every run (the plain server ignores the headers), so the ratio
//   is the server-side cost only: v2 verification plus the replay check, with
//   the in-memory replay store and (HTTP/2) with a Redis one (a local
//   redis-server, started here when one is installed). Client and servers
//   share the machine's cores: a server's extra CPU slows the whole run, as
//   it would on a shared host, so the server CPU per call is printed too;
// - memory: one 16 MiB unary request; each server runs in its own child
//   process, so its peak RSS (`process.resourceUsage().maxRSS`) is its own.
import { createHash, createHmac, createSecretKey } from "node:crypto";
import { createClient, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter, Http2SessionManager } from "@connectrpc/connect-node";
import { fork, type ChildProcess } from "node:child_process";
import * as http from "node:http";
import * as http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { EchoService } from "../examples/gen/example/v1/example_pb.js";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { Redis } from "ioredis";
import { createGatewayAuth, createRedisReplayStore } from "../src/server/index.js";
import { resolveGatewayAuthConfig } from "../src/server/gateway-auth-options.js";
import { checkRequestHead, readAndVerifyBody } from "../src/server/request-check.js";
import { canonicalRequestV2, gatewaySignatureHeaders } from "../src/signing/index.js";
import { createTestGatewayTransport } from "../src/testing/index.js";

type Mode = "plain" | "auth" | "redis";
type Version = "1.1" | "2";
const SECRET = "bench-secret";
const identity = { clientId: "web-app", userId: "sub-42", scopes: ["read"] };
const SECONDS = 1.5;
const IN_FLIGHT = 32;
const ROUNDS = 9;
const BIG = 16 * 1024 * 1024;

// ---- child: one server --------------------------------------------------

function routes(router: ConnectRouter) {
  router.service(EchoService, {
    // The same handler in both runs: echoes small texts, measures big ones.
    echo: (req) => ({ text: req.text.length <= 4096 ? req.text : String(req.text.length) }),
  });
}

async function serve(mode: Mode, version: Version) {
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
  const server = version === "2" ? http2.createServer(handler) : http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  process.on("message", (m) => {
    if (m === "rss") process.send?.({ maxRSS: process.resourceUsage().maxRSS, rss: process.memoryUsage().rss });
    if (m === "cpu") process.send?.({ cpuMicros: process.cpuUsage().user + process.cpuUsage().system });
    if (m === "exit") {
      if ("closeAllConnections" in server) server.closeAllConnections();
      server.close(() => process.exit(0));
      setTimeout(() => process.exit(0), 500).unref();
    }
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

async function spawnServer(mode: Mode, version: Version): Promise<Child> {
  const proc = fork(fileURLToPath(import.meta.url), ["serve", mode, version], {
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
  const exited = new Promise((r) => child.proc.once("exit", r));
  child.proc.send("exit");
  await exited;
}

// The same client code for every server: signs each request as the gateway does.
function signedClient(baseUrl: string, version: Version) {
  if (version === "1.1") {
    return createClient(EchoService, createTestGatewayTransport({ baseUrl, hmacSecret: SECRET, identity, httpVersion: "1.1" }));
  }
  const sessionManager = new Http2SessionManager(baseUrl);
  sessions.push(sessionManager);
  return createClient(
    EchoService,
    createTestGatewayTransport({ baseUrl, hmacSecret: SECRET, identity, httpVersion: "2", sessionManager }),
  );
}

/** One long-lived server and its client. */
interface Side {
  readonly child: Child;
  readonly client: ReturnType<typeof signedClient>;
  readonly runs: { rate: number; cpuPerCall: number }[];
}

async function startSide(mode: Mode, version: Version): Promise<Side> {
  const child = await spawnServer(mode, version);
  return { child, client: signedClient(child.baseUrl, version), runs: [] };
}

const text = "x".repeat(1024);

async function callsFor(side: Side, ms: number): Promise<number> {
  let calls = 0;
  const end = performance.now() + ms;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (performance.now() < end) {
        await side.client.echo({ text });
        calls++;
      }
    }),
  );
  return calls;
}

async function measure(side: Side): Promise<void> {
  const { cpuMicros: cpuBefore } = await side.child.ask<{ cpuMicros: number }>("cpu");
  const started = performance.now();
  const calls = await callsFor(side, SECONDS * 1000);
  const elapsed = performance.now() - started;
  const { cpuMicros: cpuAfter } = await side.child.ask<{ cpuMicros: number }>("cpu");
  side.runs.push({ rate: calls / (elapsed / 1000), cpuPerCall: (cpuAfter - cpuBefore) / calls });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] as number;

async function peakRss(mode: Mode): Promise<{ before: number; peak: number }> {
  const child = await spawnServer(mode, "2");
  const client = signedClient(child.baseUrl, "2");
  await client.echo({ text: "warm" });
  const { rss: before } = await child.ask<{ rss: number }>("rss");
  const res = await client.echo({ text: "y".repeat(BIG) });
  if (res.text !== String(BIG)) throw new Error(`unexpected answer ${res.text.slice(0, 40)}`);
  const { maxRSS } = await child.ask<{ maxRSS: number }>("rss");
  for (const s of sessions.splice(0)) s.abort();
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

// ---- verifier ÷ floor, in this process --------------------------------------

const TARGET = "/example.v1.EchoService/Echo";
const CHUNK = 64 * 1024;

interface Prepared {
  readonly req: http.IncomingMessage;
  readonly chunks: readonly Buffer[];
  /** The v2 canonical request, for the floor's HMAC. */
  readonly canonical: string;
}

// A stub socket: what IncomingMessage touches when it is read.
const stubSocket = { readable: false, destroyed: false, on() {}, once() {}, removeListener() {}, destroy() {}, resume() {}, pause() {} } as unknown as Socket;

function prepare(size: number, count: number): Prepared[] {
  const body = Buffer.alloc(size, 0x78);
  const chunks: Buffer[] = [];
  for (let at = 0; at < size; at += CHUNK) chunks.push(body.subarray(at, Math.min(size, at + CHUNK)));
  const sha256 = createHash("sha256").update(body).digest("hex");
  return Array.from({ length: count }, () => {
    const signed = gatewaySignatureHeaders(
      SECRET,
      { method: "POST", requestTarget: TARGET, body: { sha256 }, contentType: "application/proto" },
      identity,
    );
    // As connect-node's client sends them, then the gateway's.
    const rawHeaders = [
      "host", "127.0.0.1:8080",
      "content-type", "application/proto",
      "connect-protocol-version", "1",
      "connect-timeout-ms", "30000",
      "accept-encoding", "gzip, br",
      "user-agent", "connect-es/2.2.0",
      "content-length", String(size),
      ...Object.entries(signed).flat(),
    ];
    const [keyId = ""] = (signed["x-gateway-signature-v2"] ?? "").split(":");
    const canonical = canonicalRequestV2({
      keyId,
      method: "POST",
      requestTarget: TARGET,
      timestamp: signed["x-gateway-timestamp"] ?? "",
      requestId: signed["x-gateway-request-id"] ?? "",
      bodySha256: sha256,
      contentType: "application/proto",
      contentEncoding: undefined,
      identity: signed,
    });
    const req = new http.IncomingMessage(stubSocket);
    req.method = "POST";
    req.url = TARGET;
    req.httpVersionMajor = 1;
    req.httpVersionMinor = 1;
    req.httpVersion = "1.1";
    req.rawHeaders = rawHeaders;
    return { req, chunks, canonical };
  });
}

// What Node's HTTP parser does with a body that has arrived.
function pushBody({ req, chunks }: Prepared): void {
  for (const chunk of chunks) req.push(chunk);
  req.complete = true;
  req.push(null);
}

const refusingResponse = {
  headersSent: false,
  writeHead() {
    throw new Error("the bench request was refused");
  },
  end() {
    throw new Error("the bench request was refused");
  },
} as unknown as http.ServerResponse;

// The floor's HMAC key, prepared once (the fastest way node:crypto offers).
const FLOOR_KEY = createSecretKey(Buffer.from(SECRET, "utf8"));

function floorPerRequest(batch: readonly Prepared[]): number {
  let sink = 0;
  const started = performance.now();
  for (const { chunks, canonical } of batch) {
    const hash = createHash("sha256");
    for (const chunk of chunks) hash.update(chunk);
    const bodySha256 = hash.digest("hex");
    const signature = createHmac("sha256", FLOOR_KEY).update(canonical, "latin1").digest("hex");
    sink += bodySha256.length + signature.length;
  }
  const elapsed = performance.now() - started;
  if (sink === 0) throw new Error("unreachable");
  return (elapsed * 1000) / batch.length;
}

const benchAuth = createGatewayAuth({ hmacSecret: SECRET, maxBodyBytes: 64 * 1024 * 1024 });
const benchConfig = resolveGatewayAuthConfig({ hmacSecret: SECRET, maxBodyBytes: 64 * 1024 * 1024 });

async function corePerRequest(batch: readonly Prepared[]): Promise<number> {
  const started = performance.now();
  for (const prepared of batch) {
    const { req } = prepared;
    const check = checkRequestHead(benchConfig, req);
    if (!check.ok) throw new Error(`refused: ${check.reason}`);
    const pending = readAndVerifyBody(benchConfig, check, req);
    pushBody(prepared);
    const body = await pending;
    if (body.kind !== "verified") throw new Error(`refused: ${body.kind}`);
  }
  return ((performance.now() - started) * 1000) / batch.length;
}

async function verifyNodeRequestPerRequest(batch: readonly Prepared[]): Promise<number> {
  const started = performance.now();
  for (const prepared of batch) {
    const pending = benchAuth.verifyNodeRequest(prepared.req, refusingResponse);
    pushBody(prepared);
    if ((await pending) === undefined) throw new Error("refused");
  }
  return ((performance.now() - started) * 1000) / batch.length;
}

async function verifierFloor() {
  const sizes = [
    ["1 KiB", 1024, 250],
    ["64 KiB", 64 * 1024, 100],
    ["1 MiB", 1024 * 1024, 8],
  ] as const;
  const rounds = 41;
  console.log(`verifier ÷ floor, µs per request (medians of ${rounds} interleaved rounds; see the header of this file)`);
  console.log("  body      floor    core  ÷floor   verifyNodeRequest  ÷floor");
  for (const [label, size, count] of sizes) {
    const floor: number[] = [];
    const core: number[] = [];
    const node: number[] = [];
    for (let round = -2; round < rounds; round++) {
      const [a, b] = [prepare(size, count), prepare(size, count)];
      // Alternate the order, so that neither side always runs on a fresher heap.
      const f1 = floorPerRequest(a);
      const c = round % 2 === 0 ? await corePerRequest(a) : await verifyNodeRequestPerRequest(b);
      const n = round % 2 === 0 ? await verifyNodeRequestPerRequest(b) : await corePerRequest(a);
      const f2 = floorPerRequest(b);
      if (round < 0) continue; // warm-up
      floor.push((f1 + f2) / 2);
      core.push(round % 2 === 0 ? c : n);
      node.push(round % 2 === 0 ? n : c);
    }
    const [f, c, n] = [median(floor), median(core), median(node)];
    console.log(
      `  ${label.padEnd(7)} ${f.toFixed(1).padStart(7)} ${c.toFixed(1).padStart(7)} ${(c / f).toFixed(2).padStart(7)}` +
        ` ${n.toFixed(1).padStart(19)} ${(n / f).toFixed(2).padStart(7)}`,
    );
  }
  console.log("  targets: core ≤ 2× the floor at 1 KiB, ≤ 1.2× at 1 MiB");
}

// ---- main ---------------------------------------------------------------------

async function main() {
  await verifierFloor();

  const redis = await startRedis();
  redisUrl = redis?.url;
  if (redis === undefined) console.log("  (no redis-server installed: the Redis replay store is not measured)");
  const versions: Version[] = ["1.1", "2"];
  const sides = new Map<string, Side>();
  for (const version of versions) {
    for (const mode of ["plain", "auth"] as const) sides.set(`${mode} ${version}`, await startSide(mode, version));
  }
  if (redis !== undefined) sides.set("redis 2", await startSide("redis", "2"));
  for (const side of sides.values()) await callsFor(side, 1500); // warm-up: JIT, connections
  // Interleaved rounds, the order reversed every other round, so that machine
  // noise and drift hit every side alike.
  const order = [...sides.values()];
  for (let round = 0; round < ROUNDS; round++) {
    for (const side of round % 2 === 0 ? order : order.toReversed()) await measure(side);
  }
  for (const s of sessions.splice(0)) s.abort();
  for (const side of sides.values()) await stopServer(side.child);
  redis?.stop();

  const rate = (key: string) => median(sides.get(key)!.runs.map((r) => r.rate));
  const cpu = (key: string) => median(sides.get(key)!.runs.map((r) => r.cpuPerCall));
  // The median of the per-round ratios (the rounds pair sides measured back to back).
  const ratio = (a: string, b: string, of: "rate" | "cpuPerCall") =>
    median(sides.get(a)!.runs.map((r, i) => r[of] / sides.get(b)!.runs[i]![of]));
  console.log(`unary 1 KiB, ${IN_FLIGHT} in flight, client signs in every run (medians of ${ROUNDS} rounds of ${SECONDS} s)`);
  for (const version of versions) {
    const [plain, auth] = [`plain ${version}`, `auth ${version}`];
    console.log(`  HTTP/${version}`);
    console.log(`    plain connectNodeAdapter : ${rate(plain).toFixed(0)} calls/s, ${cpu(plain).toFixed(1)} µs server CPU/call`);
    console.log(`    with createGatewayAuth   : ${rate(auth).toFixed(0)} calls/s, ${cpu(auth).toFixed(1)} µs server CPU/call (v2, replay store in memory)`);
    console.log(
      `    throughput ratio         : ${(rate(auth) / rate(plain)).toFixed(3)} of the medians, ${ratio(auth, plain, "rate").toFixed(3)} per round (target >= 0.97)`,
    );
    console.log(
      `    server CPU/call ratio    : ${(cpu(auth) / cpu(plain)).toFixed(3)} of the medians, ${ratio(auth, plain, "cpuPerCall").toFixed(3)} per round` +
        ` (+${(cpu(auth) - cpu(plain)).toFixed(1)} µs/call)`,
    );
  }
  if (sides.has("redis 2")) {
    console.log(`  HTTP/2 with a Redis replay store: ${rate("redis 2").toFixed(0)} calls/s, ${cpu("redis 2").toFixed(1)} µs server CPU/call`);
    console.log(`    throughput ratio (Redis) : ${(rate("redis 2") / rate("plain 2")).toFixed(3)} (target >= 0.95)`);
    console.log(`    server CPU/call (Redis)  : ${(cpu("redis 2") / cpu("plain 2")).toFixed(3)}`);
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
  await serve(process.argv[3] as Mode, (process.argv[4] ?? "2") as Version);
} else if (process.argv[2] === "verifier") {
  await verifierFloor();
} else {
  await main();
}
