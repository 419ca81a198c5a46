// `npm run bench gateway`: what the gateway hop costs, against baselines
// measured in the same run. `BENCH_QUICK=1` shortens everything (smoke run);
// `BENCH_SECTIONS=3,4` runs only those sections (numbered as printed; 1 and
// 2 run together).
//
// Processes (bench/gateway/): the load generator (autocannon, loader.ts),
// the backend (plain node:http, backend.ts, also the JWKS and introspection
// endpoints) and every proxy under test (proxy.ts, or nginx) each run in
// their own process. With taskset and 2+ CPUs, the proxies run alone on
// CPU 1, the load generator, the backend and this process on CPU 0.
//
// Proxies: `direct` (no proxy: loader → backend), `gateway` (createGateway:
// HS256 JWT, a route scope, identity headers, HMAC signing, forwarding;
// rateLimit false, logger false), `gateway+log` (the same with the default
// `serve` logging: pino at info into a file descriptor on /dev/null),
// `http-proxy` (fastify + @fastify/http-proxy, prefix rewrite, logger off)
// and `nginx` (proxy_pass, upstream keepalive, one worker) when installed.
//
// Method: a warm-up run per proxy, then rounds that interleave the proxies
// (A B C D, B C D A, …); each figure is the median over the rounds, and each
// ratio the median of the per-round ratios (two proxies measured seconds
// apart share the machine's state). CPU per request is the proxy process's
// utime + stime (/proc/<pid>/stat; nginx: master + worker) over the round,
// divided by the responses received. Peak RSS growth: VmHWM after the round
// minus VmRSS before it, the peak being reset first (clear_refs 5).
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, generateKeyPair, jwtVerify, SignJWT } from "jose";
import { coldStart, ensureBuilt, writeFastifyScript } from "./gateway/cold-start.js";
import { findNginx, startNginx } from "./gateway/nginx.js";
import {
  CPU_TICK_MICROS,
  cpuMicros,
  detectPinning,
  installCleanupHandlers,
  memoryKiB,
  onCleanup,
  pinSelf,
  resetPeakRss,
  startNodeChild,
  stopAll,
  type NodeChild,
  type Pinning,
} from "./gateway/proc.js";
import { BENCH_AUDIENCE, BENCH_ISSUER, HMAC_SECRET, type LoadRequest, type LoadResult, type ProxyHello, type ProxySpec } from "./gateway/shared.js";
import type { TokenValidationOptions } from "../packages/gateway/src/index.js";

const QUICK = process.env.BENCH_QUICK === "1";
/** The sections to run (1 to 5), from BENCH_SECTIONS; all of them when it is unset. */
const SECTIONS = sectionsToRun(process.env.BENCH_SECTIONS);

function sectionsToRun(value: string | undefined): ReadonlySet<number> {
  const all = [1, 2, 3, 4, 5];
  if (value === undefined || value.trim() === "") return new Set(all);
  const chosen = value.split(",").map((s) => Number(s.trim()));
  const unknown = chosen.filter((n) => !all.includes(n));
  if (unknown.length > 0) throw new Error(`BENCH_SECTIONS: ${value} (sections are 1 to 5, comma-separated)`);
  return new Set(chosen);
}
const ROUNDS = QUICK ? 2 : 5;
const ROUND_SECONDS = QUICK ? 0.5 : 1.5;
const WARMUP_SECONDS = QUICK ? 0.5 : 1.5;
const COLD_SPAWNS = QUICK ? 3 : 7;
const STARTS = QUICK ? 1 : 3;
const FLOOR_VERIFIES = QUICK ? 3_000 : 20_000;
const CONCURRENCIES = [1, 16, 64, 256];
const KiB = 1024;
const MiB = 1024 * KiB;
const BODY_SIZES = [KiB, 64 * KiB, MiB, 8 * MiB];
const BODY_LIMIT = 16 * MiB;
const JWT_SECRET = "bench-jwt-secret-0123456789abcdef0123";
const HS256 = { secret: JWT_SECRET, issuer: BENCH_ISSUER, audience: BENCH_AUDIENCE };

// ---- measuring --------------------------------------------------------------------

/** Something to send load to. */
interface Target {
  readonly name: string;
  /** Base URL; the request path is the load's. */
  readonly url: string;
  /** The proxy's processes (none for `direct`). */
  pids(): number[];
  /** The bearer tokens its load sends (one per connection). */
  readonly tokens: readonly string[];
  /** Counts the backend's introspection requests per round. */
  readonly countsIntrospections?: boolean;
}

interface Load {
  readonly path: string;
  readonly connections: number;
  readonly method: "GET" | "POST";
  readonly bodyBytes?: number;
  /** Read the peak RSS growth of the proxy. */
  readonly memory?: boolean;
}

interface Sample {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  /** Proxy CPU per response, microseconds (NaN without a proxy). */
  readonly cpu: number;
  /** Peak RSS growth during the round, KiB (NaN when not measured). */
  readonly rssGrowth: number;
  readonly completed: number;
  readonly failures: number;
  readonly statuses: string;
  /** Introspection requests per response (NaN when not counted). */
  readonly introspections: number;
}

let loader: NodeChild<unknown>;
let backend: NodeChild<{ port: number }>;

const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

/** A warm-up run (`seconds`) or a measured round (`amount` requests). */
type Length = { readonly seconds: number } | { readonly amount: number };

async function measure(target: Target, load: Load, length: Length): Promise<Sample> {
  const pids = target.pids();
  let rssBefore = 0;
  if (load.memory) {
    for (const pid of pids) {
      resetPeakRss(pid);
      rssBefore += memoryKiB(pid).rss;
    }
  }
  const introspectionsBefore = target.countsIntrospections ? await backend.call<number>({}) : 0;
  const cpuBefore = sum(pids.map(cpuMicros));
  const request: LoadRequest = {
    url: `${target.url}${load.path}`,
    connections: load.connections,
    ...length,
    method: load.method,
    ...(load.bodyBytes !== undefined && { bodyBytes: load.bodyBytes }),
    tokens: target.tokens,
  };
  const result = await loader.call<LoadResult>(request as unknown as Record<string, unknown>);
  const cpu = sum(pids.map(cpuMicros)) - cpuBefore;
  // The peak cannot be below the RSS before; the RSS may have shrunk meanwhile.
  const rssGrowth = load.memory ? Math.max(0, sum(pids.map((pid) => memoryKiB(pid).hwm)) - rssBefore) : NaN;
  const introspections = target.countsIntrospections ? ((await backend.call<number>({})) - introspectionsBefore) / result.completed : NaN;
  return {
    rps: result.completed / result.seconds,
    p50: result.p50,
    p99: result.p99,
    cpu: pids.length === 0 ? NaN : cpu / result.completed,
    rssGrowth,
    completed: result.completed,
    failures: result.failures,
    statuses: result.statuses,
    introspections,
  };
}

/**
 * A warm-up per target, then `ROUNDS` rounds interleaving the targets;
 * samples[target][round]. A round is a fixed number of requests: what the
 * target answered in ROUND_SECONDS during its warm-up (so every request
 * counted is whole, and no cut-off request's CPU is charged to the others).
 */
async function interleave(targets: readonly Target[], load: Load): Promise<Sample[][]> {
  const amounts: number[] = [];
  for (const target of targets) {
    const warm = await measure(target, load, { seconds: WARMUP_SECONDS });
    amounts.push(Math.max(load.connections * 4, Math.round(warm.rps * ROUND_SECONDS)));
  }
  const samples: Sample[][] = targets.map(() => []);
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < targets.length; i++) {
      const index = (i + round) % targets.length;
      samples[index]!.push(await measure(targets[index] as Target, load, { amount: amounts[index] as number }));
    }
  }
  return samples;
}

function median(values: readonly number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

const med = (samples: readonly Sample[], f: (s: Sample) => number) => median(samples.map(f));

/** The median over the rounds of f(a) / f(b), a and b measured in the same round. */
function pairedRatio(a: readonly Sample[], b: readonly Sample[], f: (s: Sample) => number): number {
  return median(a.map((s, round) => f(s) / f(b[round] as Sample)));
}

// ---- printing ---------------------------------------------------------------------

function table(headers: readonly string[], rows: readonly (readonly string[])[]): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    "  " + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join("  ");
  console.log(line(headers));
  console.log("  " + widths.map((w) => "-".repeat(w)).join("  "));
  for (const row of rows) console.log(line(row));
}

const num = (n: number, digits = 0) => (Number.isNaN(n) ? "-" : n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits }));
const ms = (n: number) => (Number.isNaN(n) ? "-" : n < 10 ? n.toFixed(2) : n.toFixed(1));
const cpuFmt = (n: number) => (Number.isNaN(n) ? "-" : n < 100 ? n.toFixed(1) : n.toFixed(0));
const size = (bytes: number) => (bytes >= MiB ? `${bytes / MiB} MiB` : `${bytes / KiB} KiB`);

/** A ratio row: figure, value, target, verdict. */
type Check = readonly [figure: string, value: number, bound: number | undefined, direction?: "max" | "min"];

function checks(title: string, rows: readonly Check[]): void {
  console.log(`\n  ${title}`);
  table(
    ["figure", "value", "target", "verdict"],
    rows.map(([figure, value, bound, direction = "max"]) => [
      figure,
      Number.isNaN(value) ? "-" : value >= 100 ? value.toFixed(0) : value.toFixed(2),
      bound === undefined ? "(info)" : `${direction === "max" ? "≤" : "≥"} ${bound}`,
      bound === undefined || Number.isNaN(value) ? "" : (direction === "max" ? value <= bound : value >= bound) ? "ok" : "MISSES TARGET",
    ]),
  );
}

/** Warns about failed requests (they would make the figures meaningless). */
function failures(label: string, targets: readonly Target[], samples: readonly Sample[][]): void {
  targets.forEach((target, i) => {
    const bad = samples[i]!.filter((s) => s.failures > 0);
    if (bad.length === 0) return;
    const failed = sum(bad.map((s) => s.failures));
    console.log(`  WARNING ${target.name} ${label}: ${failed} failed requests in ${bad.length} rounds (${bad[0]!.statuses})`);
  });
}

function section(title: string): void {
  console.log(`\n### ${title}\n`);
}

// ---- set-up ------------------------------------------------------------------------

interface Started {
  readonly target: Target;
  readonly hello: ProxyHello;
  stop(): Promise<void>;
}

async function startProxy(pinning: Pinning, name: string, spec: ProxySpec, tokens: readonly string[], countsIntrospections = false): Promise<Started> {
  const child = await startNodeChild<ProxyHello>(name, pinning, "proxy", "proxy.ts", [], { BENCH_PROXY: JSON.stringify(spec) });
  return {
    target: { name, url: child.hello.url, pids: () => [child.pid], tokens, countsIntrospections },
    hello: child.hello,
    stop: () => child.stop(),
  };
}

function gatewaySpec(routes: string, tokens: TokenValidationOptions, log = false): ProxySpec {
  return { kind: "gateway", routes, tokens, log, bodyLimit: BODY_LIMIT };
}

/** A first request through each target, which must answer 200: a wrong set-up fails here, loudly. */
async function preflight(target: Target, path: string): Promise<void> {
  const response = await fetch(`${target.url}${path}`, { headers: { authorization: `Bearer ${target.tokens[0]}` } });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`${target.name}: GET ${path} answered ${response.status}: ${text.slice(0, 300)}`);
}

async function hs256Tokens(count: number): Promise<string[]> {
  const key = new TextEncoder().encode(JWT_SECRET);
  return Promise.all(
    Array.from({ length: count }, (_, i) =>
      new SignJWT({ client_id: "bench-client", scope: "read" })
        .setProtectedHeader({ alg: "HS256", typ: "JWT" })
        .setSubject(`bench-user-${i}`)
        .setIssuer(BENCH_ISSUER)
        .setAudience(BENCH_AUDIENCE)
        .setIssuedAt()
        .setExpirationTime("3h")
        .sign(key),
    ),
  );
}

// ---- sections ----------------------------------------------------------------------

interface Context {
  readonly pinning: Pinning;
  readonly tmp: string;
  readonly backendUrl: string;
  readonly nginxBinary: string | undefined;
  readonly tokens: readonly string[];
  /** routes.yaml with one backend `echo` (scope read) → the backend. */
  readonly backendsFile: string;
}

async function getAndBodies(ctx: Context): Promise<void> {
  const started: Started[] = [];
  let nginx: Awaited<ReturnType<typeof startNginx>> | undefined;
  try {
    started.push(await startProxy(ctx.pinning, "gateway", gatewaySpec(ctx.backendsFile, { hs256: HS256 }), ctx.tokens));
    started.push(await startProxy(ctx.pinning, "gateway+log", gatewaySpec(ctx.backendsFile, { hs256: HS256 }, true), ctx.tokens));
    started.push(await startProxy(ctx.pinning, "http-proxy", { kind: "http-proxy", upstream: ctx.backendUrl, bodyLimit: BODY_LIMIT }, ctx.tokens));
    if (ctx.nginxBinary !== undefined) nginx = await startNginx(ctx.nginxBinary, ctx.pinning, backend.hello.port);
    // Every proxy strips /backend/echo: the backend sees the same path as with direct.
    const direct: Target = { name: "direct", url: ctx.backendUrl, pids: () => [], tokens: ctx.tokens };
    const prefixed = (t: Target): Target => ({ ...t, url: `${t.url}/backend/echo` });
    const [gateway, gatewayLog, httpProxy] = started.map((s) => prefixed(s.target)) as [Target, Target, Target];
    const nginxTarget: Target | undefined = nginx && prefixed({ name: "nginx", url: nginx.url, pids: nginx.pids, tokens: ctx.tokens });
    const proxies = [gateway, gatewayLog, httpProxy, ...(nginxTarget ? [nginxTarget] : [])];
    for (const target of [direct, ...proxies]) await preflight(target, "/items/small");

    // ---- 1. GET, small answer, by concurrency
    section("1. GET, small answer: concurrency 1 / 16 / 64 / 256");
    console.log(`  proxy CPU = utime+stime of the proxy process per response (resolution ${CPU_TICK_MICROS / 1000} ms per round); latencies from the load generator\n`);
    const byConcurrency = new Map<number, { targets: Target[]; samples: Sample[][] }>();
    for (const c of CONCURRENCIES) {
      // direct has no prefix to strip: the backend sees the same path either way.
      const targets = [direct, ...proxies];
      const samples = await interleave(targets, { path: "/items/small", connections: c, method: "GET" });
      byConcurrency.set(c, { targets, samples });
      console.log(`  c=${c}`);
      table(
        ["proxy", "req/s", "p50 ms", "p99 ms", "proxy CPU µs/req"],
        targets.map((t, i) => {
          const s = samples[i] as Sample[];
          return [t.name, num(med(s, (x) => x.rps)), ms(med(s, (x) => x.p50)), ms(med(s, (x) => x.p99)), cpuFmt(med(s, (x) => x.cpu))];
        }),
      );
      failures(`c=${c}`, targets, samples);
      console.log("");
    }
    const cpuOf = (s: Sample) => s.cpu;
    const ratioRows: Check[] = [];
    for (const c of CONCURRENCIES) {
      const { targets, samples } = byConcurrency.get(c)!;
      const at = (name: string) => samples[targets.findIndex((t) => t.name === name)] as Sample[];
      ratioRows.push([`c=${c}: gateway CPU/req ÷ http-proxy CPU/req`, pairedRatio(at("gateway"), at("http-proxy"), cpuOf), c === 1 ? 1.1 : 0.85]);
    }
    for (const c of CONCURRENCIES) {
      const { targets, samples } = byConcurrency.get(c)!;
      const at = (name: string) => samples[targets.findIndex((t) => t.name === name)] as Sample[];
      ratioRows.push([`c=${c}: logging cost, gateway+log CPU/req ÷ gateway CPU/req`, pairedRatio(at("gateway+log"), at("gateway"), cpuOf), 1.05]);
    }
    {
      const { targets, samples } = byConcurrency.get(64)!;
      const at = (name: string) => samples[targets.findIndex((t) => t.name === name)] as Sample[];
      if (nginxTarget) {
        ratioRows.push(["c=64: gateway CPU/req ÷ nginx CPU/req", pairedRatio(at("gateway"), at("nginx"), cpuOf), 3]);
      }
      ratioRows.push(["c=64: gateway req/s ÷ http-proxy req/s", pairedRatio(at("gateway"), at("http-proxy"), (s) => s.rps), undefined]);
      ratioRows.push(["c=64: gateway req/s ÷ direct req/s", pairedRatio(at("gateway"), at("direct"), (s) => s.rps), undefined]);
    }
    checks("ratios (medians of per-round ratios)", ratioRows);
    if (!nginxTarget) console.log("  nginx: skipped (not installed: apt-get install nginx)");

    // ---- 2. POST bodies
    section("2. POST bodies: 1 KiB / 64 KiB / 1 MiB / 8 MiB");
    console.log("  c=8 up to 1 MiB, c=4 for 8 MiB; peak RSS growth = VmHWM after − VmRSS before the round (peak reset first);");
    console.log("  × (c·size) = that growth as a multiple of concurrency × body size\n");
    const bodyTargets = [gateway, httpProxy, ...(nginxTarget ? [nginxTarget] : [])];
    const bodyChecks: Check[] = [];
    for (const bytes of BODY_SIZES) {
      const c = bytes <= MiB ? 8 : 4;
      const samples = await interleave(bodyTargets, { path: "/upload", connections: c, method: "POST", bodyBytes: bytes, memory: true });
      console.log(`  ${size(bytes)}, c=${c}`);
      table(
        ["proxy", "req/s", "MiB/s", "p50 ms", "p99 ms", "proxy CPU µs/req", "peak RSS growth MiB", "× (c·size)"],
        bodyTargets.map((t, i) => {
          const s = samples[i] as Sample[];
          const growth = med(s, (x) => x.rssGrowth);
          return [
            t.name,
            num(med(s, (x) => x.rps)),
            num((med(s, (x) => x.rps) * bytes) / MiB, 1),
            ms(med(s, (x) => x.p50)),
            ms(med(s, (x) => x.p99)),
            cpuFmt(med(s, (x) => x.cpu)),
            num(growth / KiB, 1),
            (growth * KiB / (c * bytes)).toFixed(2),
          ];
        }),
      );
      failures(`${size(bytes)}`, bodyTargets, samples);
      console.log("");
      const [gw, hp, ng] = samples as [Sample[], Sample[], Sample[] | undefined];
      bodyChecks.push([`${size(bytes)}: gateway CPU/req ÷ http-proxy CPU/req`, pairedRatio(gw, hp, cpuOf), bytes === 8 * MiB ? 1.2 : undefined]);
      if (ng) bodyChecks.push([`${size(bytes)}: gateway CPU/req ÷ nginx CPU/req`, pairedRatio(gw, ng, cpuOf), undefined]);
      // Below 1 MiB, c × size (8–512 KiB) is smaller than the heap's own
      // growth between collections: the multiple is printed, not judged.
      bodyChecks.push([`${size(bytes)}: gateway peak RSS growth ÷ (c × body size)`, (med(gw, (x) => x.rssGrowth) * KiB) / (c * bytes), bytes >= MiB ? 1.0 : undefined]);
    }
    checks("ratios", bodyChecks);
    if (!nginxTarget) console.log("  nginx: skipped (not installed: apt-get install nginx)");
  } finally {
    await nginx?.stop();
    await Promise.all(started.map((s) => s.stop()));
  }
}

async function routeCount(ctx: Context): Promise<void> {
  section("3. 10 routes vs 10,000 routes");
  const files = new Map<number, string>();
  for (const n of [10, 10_000]) {
    const lines = ['version: "1.0"', "routes:"];
    for (let i = 0; i < n; i++) {
      lines.push(`  - path: /api/v1/r${i}/items/{id}`, "    method: GET", `    proxy_upstream: ${ctx.backendUrl}`, "    scopes: [read]");
    }
    const file = join(ctx.tmp, `routes-${n}.yaml`);
    writeFileSync(file, `${lines.join("\n")}\n`);
    files.set(n, file);
  }
  console.log(`  start-up = routes file loaded + createGateway + listen, in a fresh process (median of ${STARTS}); then GET c=64 on the last route\n`);
  const startups = new Map<number, number[]>([[10, []], [10_000, []]]);
  const rss = new Map<number, number[]>([[10, []], [10_000, []]]);
  const running = new Map<number, Started>();
  try {
    for (let i = 0; i < STARTS; i++) {
      for (const n of [10, 10_000]) {
        const proxy = await startProxy(ctx.pinning, `gateway ${n} routes`, gatewaySpec(files.get(n)!, { hs256: HS256 }), ctx.tokens);
        startups.get(n)!.push(proxy.hello.startupMs);
        rss.get(n)!.push(memoryKiB(proxy.target.pids()[0] as number).rss);
        if (i === STARTS - 1) running.set(n, proxy);
        else await proxy.stop();
      }
    }
    const targets = [10, 10_000].map((n) => ({ ...running.get(n)!.target, url: `${running.get(n)!.target.url}/api/v1/r${n - 1}/items` }));
    for (const t of targets) await preflight(t, "/42");
    const samples = await interleave(targets, { path: "/42", connections: 64, method: "GET" });
    table(
      ["routes", "start-up ms", "RSS after start MiB", "req/s", "p99 ms", "proxy CPU µs/req"],
      [10, 10_000].map((n, i) => {
        const s = samples[i] as Sample[];
        return [num(n), num(median(startups.get(n)!)), num(median(rss.get(n)!) / KiB, 1), num(med(s, (x) => x.rps)), ms(med(s, (x) => x.p99)), cpuFmt(med(s, (x) => x.cpu))];
      }),
    );
    failures("c=64", targets, samples);
    checks("ratios", [
      ["start-up with 10,000 routes, ms", median(startups.get(10_000)!), 1000],
      ["start-up 10,000 ÷ 10 routes", median(startups.get(10_000)!) / median(startups.get(10)!), undefined],
      ["RSS after start 10,000 ÷ 10 routes", median(rss.get(10_000)!) / median(rss.get(10)!), undefined],
      ["c=64: CPU/req 10,000 routes ÷ 10 routes", pairedRatio(samples[1]!, samples[0]!, (s) => s.cpu), 1.1],
    ]);
  } finally {
    await Promise.all([...running.values()].map((p) => p.stop()));
  }
}

async function coldStarts(ctx: Context, cli: string | undefined): Promise<void> {
  section("4. cold start: spawn → listening, compiled JavaScript on node (no tsx)");
  if (cli === undefined) {
    console.log("  cold start: skipped (packages/gateway/dist/cli.js missing after the build)");
    return;
  }
  const fastifyScript = writeFastifyScript(ctx.tmp);
  const commands = [
    {
      label: "connect-gateway serve",
      args: (port: number) => [cli, "serve", "--routes", ctx.backendsFile, "--port", String(port), "--host", "127.0.0.1"],
      env: { GATEWAY_HMAC_SECRET: HMAC_SECRET, JWT_SECRET, JWT_ISSUER: BENCH_ISSUER, JWT_AUDIENCE: BENCH_AUDIENCE },
    },
    { label: "fastify + @fastify/http-proxy", args: () => [fastifyScript], env: { UPSTREAM: ctx.backendUrl } },
  ];
  console.log(`  ${COLD_SPAWNS} alternating spawns each, "listening" seen on stdout; serve with its defaults (logging at info, rate limit on)\n`);
  const times = commands.map(() => [] as number[]);
  for (let i = 0; i < COLD_SPAWNS; i++) {
    for (let j = 0; j < commands.length; j++) {
      const index = (i + j) % commands.length;
      times[index]!.push(await coldStart(ctx.pinning, commands[index]!));
    }
  }
  table(
    ["process", "median ms", "min ms", "max ms"],
    commands.map((c, i) => [c.label, num(median(times[i]!)), num(Math.min(...times[i]!)), num(Math.max(...times[i]!))]),
  );
  const pairs = times[0]!.map((t, i) => t / times[1]![i]!);
  checks("ratios", [["cold start: serve ÷ fastify + http-proxy", median(pairs), 1.2]]);
}

async function tokenModes(ctx: Context, introspectionUrl: string, jwksUrl: string): Promise<void> {
  section("5. token modes, GET c=64, verified-token cache on (default) and off (tokens.cacheMs: 0)");
  console.log("  one token per connection (never shared by two requests in flight), so with the cache off every request verifies its token\n");
  const { privateKey, kid } = rsaKey!;
  const rs256 = await Promise.all(
    Array.from({ length: 64 }, (_, i) =>
      new SignJWT({ client_id: "bench-client", scope: "read" })
        .setProtectedHeader({ alg: "RS256", kid, typ: "JWT" })
        .setSubject(`bench-user-${i}`)
        .setIssuer(BENCH_ISSUER)
        .setAudience(BENCH_AUDIENCE)
        .setIssuedAt()
        .setExpirationTime("3h")
        .sign(privateKey),
    ),
  );
  const opaque = Array.from({ length: 64 }, () => randomBytes(24).toString("base64url"));
  const jwks = { url: jwksUrl, issuer: BENCH_ISSUER, audience: BENCH_AUDIENCE };
  const introspection = { url: introspectionUrl, clientId: "bench-gateway", clientSecret: "bench-gateway-secret" };
  const modes: { name: string; tokens: TokenValidationOptions; list: readonly string[] }[] = [
    { name: "HS256", tokens: { hs256: HS256 }, list: ctx.tokens },
    { name: "HS256 uncached", tokens: { hs256: HS256, cacheMs: 0 }, list: ctx.tokens },
    { name: "RS256 (JWKS)", tokens: { jwks }, list: rs256 },
    { name: "RS256 (JWKS) uncached", tokens: { jwks, cacheMs: 0 }, list: rs256 },
    { name: "introspection", tokens: { introspection }, list: opaque },
    { name: "introspection uncached", tokens: { introspection, cacheMs: 0 }, list: opaque },
  ];
  const started: Started[] = [];
  try {
    for (const mode of modes) {
      started.push(await startProxy(ctx.pinning, mode.name, gatewaySpec(ctx.backendsFile, mode.tokens), mode.list, mode.name.startsWith("introspection")));
    }
    const targets = started.map((s) => ({ ...s.target, url: `${s.target.url}/backend/echo` }));
    for (const t of targets) await preflight(t, "/items/small");
    const samples = await interleave(targets, { path: "/items/small", connections: 64, method: "GET" });
    const base = samples[0] as Sample[];
    table(
      ["token mode", "req/s", "p50 ms", "p99 ms", "proxy CPU µs/req", "÷ HS256 cached", "introspections/req"],
      targets.map((t, i) => {
        const s = samples[i] as Sample[];
        return [
          t.name,
          num(med(s, (x) => x.rps)),
          ms(med(s, (x) => x.p50)),
          ms(med(s, (x) => x.p99)),
          cpuFmt(med(s, (x) => x.cpu)),
          pairedRatio(s, base, (x) => x.cpu).toFixed(2),
          t.countsIntrospections ? med(s, (x) => x.introspections).toFixed(2) : "-",
        ];
      }),
    );
    failures("c=64", targets, samples);

    // The floor: one jose jwtVerify of an HS256 token with an imported
    // CryptoKey and the gateway's verify options, in a tight loop in this
    // process (nothing else runs meanwhile): this process's CPU per call.
    const key = await crypto.subtle.importKey("raw", Buffer.from(JWT_SECRET, "utf8"), { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
    const options = { issuer: BENCH_ISSUER, audience: BENCH_AUDIENCE, algorithms: ["HS256"], requiredClaims: ["exp"], clockTolerance: 5 };
    const token = ctx.tokens[0] as string;
    const floors: number[] = [];
    for (let batch = 0; batch < 6; batch++) {
      const before = process.cpuUsage();
      for (let i = 0; i < FLOOR_VERIFIES / 5; i++) await jwtVerify(token, key, options);
      const used = process.cpuUsage(before);
      if (batch > 0) floors.push((used.user + used.system) / (FLOOR_VERIFIES / 5)); // batch 0 warms up
    }
    const floor = median(floors);
    // What is divided: extra = the gateway process's CPU per request with
    // HS256 and cacheMs: 0, minus the same with the cache on (median of the
    // per-round differences; the two differ only by the verification, the
    // cache key hash is computed in both), i.e. the gateway's whole cost of
    // verifying a token per request; divided by the floor, the cost of the
    // bare jwtVerify call that verification cannot go below.
    const extra = median(samples[1]!.map((s, round) => s.cpu - samples[0]![round]!.cpu));
    console.log(`\n  floor: one jose jwtVerify (HS256, imported CryptoKey, same options), tight loop in-process: ${floor.toFixed(1)} µs CPU`);
    console.log(`  gateway extra CPU per request for HS256 uncached (uncached − cached, per round): ${extra.toFixed(1)} µs`);
    checks("ratios", [
      ["HS256 uncached: gateway extra CPU/req ÷ jwtVerify floor", extra / floor, 5],
      ["HS256 uncached ÷ cached CPU/req", pairedRatio(samples[1]!, samples[0]!, (s) => s.cpu), undefined],
      ["RS256 uncached ÷ HS256 cached CPU/req", pairedRatio(samples[3]!, samples[0]!, (s) => s.cpu), undefined],
      ["introspection uncached ÷ HS256 cached CPU/req", pairedRatio(samples[5]!, samples[0]!, (s) => s.cpu), undefined],
    ]);
  } finally {
    await Promise.all(started.map((s) => s.stop()));
  }
}

let rsaKey: { privateKey: Awaited<ReturnType<typeof generateKeyPair>>["privateKey"]; kid: string } | undefined;

// ---- main --------------------------------------------------------------------------

async function main(): Promise<void> {
  installCleanupHandlers();
  const began = performance.now();
  const tmp = mkdtempSync(join(tmpdir(), "bench-gateway-"));
  // Also on SIGINT and crashes (stopAll runs it).
  onCleanup(() => rmSync(tmp, { recursive: true, force: true }));
  try {
    const pinning = detectPinning();
    console.log(`gateway benchmark (${QUICK ? "BENCH_QUICK=1: smoke run" : "full run"}): ${ROUNDS} interleaved rounds of ${ROUND_SECONDS}s after a ${WARMUP_SECONDS}s warm-up per cell, medians`);
    console.log(`  ${pinning.note}`);
    const nginxBinary = findNginx();
    console.log(nginxBinary ? `  nginx: ${nginxBinary}` : "  nginx: skipped (not installed: apt-get install nginx)");
    // Built before anything is pinned or measured (tsc uses both cores).
    console.log("  cold start needs the compiled CLI:");
    const cli = ensureBuilt();
    pinSelf(pinning, 0);

    const { publicKey, privateKey } = await generateKeyPair("RS256", { extractable: true });
    const kid = "bench-rs256";
    rsaKey = { privateKey, kid };
    const jwk = { ...(await exportJWK(publicKey)), kid, alg: "RS256", use: "sig" };
    backend = await startNodeChild("backend", pinning, "load", "backend.ts", [], { BENCH_JWKS: JSON.stringify({ keys: [jwk] }) });
    loader = await startNodeChild("loader", pinning, "load", "loader.ts");
    const backendUrl = `http://127.0.0.1:${backend.hello.port}`;
    const backendsFile = join(tmp, "routes.yaml");
    writeFileSync(backendsFile, `version: "1.0"\nbackends:\n  echo:\n    upstream: ${backendUrl}\n    scopes: [read]\n`);
    const ctx: Context = { pinning, tmp, backendUrl, nginxBinary, tokens: await hs256Tokens(256), backendsFile };

    if (SECTIONS.has(1) || SECTIONS.has(2)) await getAndBodies(ctx);
    if (SECTIONS.has(3)) await routeCount(ctx);
    if (SECTIONS.has(4)) await coldStarts(ctx, cli);
    if (SECTIONS.has(5)) await tokenModes(ctx, `${backendUrl}/introspect`, `${backendUrl}/.well-known/jwks.json`);
    console.log(`\ngateway benchmark done in ${((performance.now() - began) / 1000).toFixed(0)} s`);
  } finally {
    await stopAll();
  }
}

try {
  await main();
} catch (e) {
  console.error(e);
  process.exitCode = 1;
}
