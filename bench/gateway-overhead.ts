// `npm run bench gateway`: the cost of the gateway hop against a plain proxy,
// measured in the same run.
//
// - the same plain connect-node backend (EchoService, no auth) behind both;
// - "gateway": createGateway — HS256 JWT validation, a route scope, identity
//   headers, HMAC signing over path and body, and the forward through
//   @fastify/reply-from (the definition: JWT + scopes + signing + proxy);
// - "gateway+rl": the same with the default in-memory rate limit on;
// - "baseline": fastify + @fastify/http-proxy, prefix stripped, nothing else;
// - each proxy runs in its own child process; the client (connect-node,
//   Connect over HTTP/1.1, 32 calls in flight, ~100-byte messages) and the
//   backend share the parent. Warm-up, then rounds alternate between the two;
//   figures are medians over the rounds.
//
// Printed: the end-to-end throughput ratio gateway / baseline, and the proxy
// process's CPU time per call (the gateway's own cost, not diluted by the
// client and backend).
import { fork, type ChildProcess } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport } from "@connectrpc/connect-node";
import httpProxy from "@fastify/http-proxy";
import Fastify from "fastify";
import { SignJWT } from "jose";
import { EchoService } from "../examples/gen/example/v1/example_pb.js";
import { createGateway, parseRoutesFile } from "../packages/gateway/src/index.js";
import { echoServiceRoutes } from "../examples/dev/echo-service.js";

type Mode = "gateway" | "gateway+rl" | "baseline";
const JWT_SECRET = "bench-jwt-secret-0123456789abcdef0123";
const HMAC_SECRET = "bench-hmac-secret-0123456789";
const WARMUP_SECONDS = 2;
const ROUND_SECONDS = 2.5;
const ROUNDS = 5;
const IN_FLIGHT = 32;

// ---- child: one proxy ------------------------------------------------------

async function serve(mode: Mode, upstream: string): Promise<void> {
  let url: string;
  if (mode !== "baseline") {
    const gateway = createGateway({
      routes: parseRoutesFile(
        `version: "1.0"\nbackends:\n  echo:\n    upstream: ${upstream}\n    scopes: [read]\n`,
        { source: "bench" },
      ),
      hmacSecret: HMAC_SECRET,
      tokens: { hs256: { secret: JWT_SECRET, issuer: "bench", audience: "bench" } },
      rateLimit: mode === "gateway+rl" ? { max: 1_000_000_000 } : false,
      logger: false,
    });
    url = await gateway.listen();
  } else {
    const app = Fastify({ logger: false });
    await app.register(httpProxy, { upstream, prefix: "/backend/echo", rewritePrefix: "" });
    url = await app.listen({ port: 0, host: "127.0.0.1" });
  }
  process.on("message", (m) => {
    if (m === "cpu") {
      const { user, system } = process.cpuUsage();
      process.send?.({ cpuMicros: user + system });
    }
    if (m === "exit") process.exit(0);
  });
  process.send?.({ url });
}

// ---- parent: backend, clients, measurements ---------------------------------

interface Proxy {
  readonly mode: Mode;
  readonly proc: ChildProcess;
  readonly url: string;
  cpuMicros(): Promise<number>;
}

async function spawnProxy(mode: Mode, upstream: string): Promise<Proxy> {
  const proc = fork(fileURLToPath(import.meta.url), ["serve", mode, upstream], { execArgv: ["--conditions=connect-gateway-source", "--import", "tsx"] });
  const url = await new Promise<string>((resolve, reject) => {
    proc.once("message", (m) => resolve((m as { url: string }).url));
    proc.once("exit", (code) => reject(new Error(`${mode} child exited with ${code}`)));
  });
  const cpuMicros = () =>
    new Promise<number>((resolve) => {
      proc.once("message", (m) => resolve((m as { cpuMicros: number }).cpuMicros));
      proc.send("cpu");
    });
  return { mode, proc, url, cpuMicros };
}

async function measure(proxy: Proxy, bearer: Interceptor, seconds: number): Promise<{ callsPerSecond: number; cpuMicrosPerCall: number }> {
  const client = createClient(
    EchoService,
    createConnectTransport({ baseUrl: `${proxy.url}/backend/echo`, httpVersion: "1.1", interceptors: [bearer] }),
  );
  const text = "x".repeat(100);
  const cpuBefore = await proxy.cpuMicros();
  const started = performance.now();
  const deadline = started + seconds * 1000;
  let calls = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (performance.now() < deadline) {
        await client.echo({ text });
        calls++;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const cpu = (await proxy.cpuMicros()) - cpuBefore;
  return { callsPerSecond: calls / elapsed, cpuMicrosPerCall: cpu / calls };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

async function main(): Promise<void> {
  const backend = createServer(connectNodeAdapter({ routes: echoServiceRoutes(() => undefined) }));
  await new Promise<void>((resolve) => backend.listen(0, "127.0.0.1", resolve));
  const upstream = `http://127.0.0.1:${(backend.address() as AddressInfo).port}`;
  const token = await new SignJWT({ client_id: "bench-client", scopes: ["read"] })
    .setProtectedHeader({ alg: "HS256" })
    .setIssuer("bench")
    .setAudience("bench")
    .setExpirationTime("1h")
    .sign(new TextEncoder().encode(JWT_SECRET));
  // The baseline gets the same header (and ignores it): only the hop differs.
  const bearer: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  const modes: Mode[] = ["baseline", "gateway", "gateway+rl"];
  const proxies: Proxy[] = [];
  for (const mode of modes) proxies.push(await spawnProxy(mode, upstream));
  try {
    for (const proxy of proxies) await measure(proxy, bearer, WARMUP_SECONDS);
    const results = Object.fromEntries(modes.map((m) => [m, { rate: [] as number[], cpu: [] as number[], ratio: [] as number[] }]));
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate the order so that no proxy always runs first or last.
      const order = proxies.map((_, i) => proxies[(i + round) % proxies.length] as Proxy);
      const rates: Partial<Record<Mode, number>> = {};
      for (const proxy of order) {
        const { callsPerSecond, cpuMicrosPerCall } = await measure(proxy, bearer, ROUND_SECONDS);
        results[proxy.mode]!.rate.push(callsPerSecond);
        results[proxy.mode]!.cpu.push(cpuMicrosPerCall);
        rates[proxy.mode] = callsPerSecond;
      }
      for (const mode of modes) results[mode]!.ratio.push((rates[mode] as number) / (rates.baseline as number));
    }
    const f = (n: number) => n.toFixed(0);
    const baseCpu = median(results.baseline!.cpu);
    console.log(`unary Connect calls, HTTP/1.1, ${IN_FLIGHT} in flight, ${ROUNDS} rotating rounds of ${ROUND_SECONDS}s (medians)`);
    const labels: Record<Mode, string> = {
      baseline: "baseline @fastify/http-proxy       ",
      gateway: "gateway (JWT+scopes+signing+proxy)  ",
      "gateway+rl": "gateway + in-memory rate limit      ",
    };
    for (const mode of modes) {
      const r = results[mode]!;
      console.log(
        `  ${labels[mode]} ${f(median(r.rate))} calls/s  throughput ratio ${median(r.ratio).toFixed(2)}  ` +
          `proxy CPU ${f(median(r.cpu))} µs/call (×${(median(r.cpu) / baseCpu).toFixed(2)})`,
      );
    }
    console.log("  target: throughput ratio ≥ 0.90 for the gateway");
  } finally {
    for (const proxy of proxies) proxy.proc.send("exit");
    backend.closeAllConnections();
    backend.close();
  }
}

if (process.argv[2] === "serve") {
  await serve(process.argv[3] as Mode, process.argv[4] as string);
} else {
  await main();
}
