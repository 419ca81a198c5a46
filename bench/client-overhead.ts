// Client overhead: unary calls per second against the same local connect-node
// server, through plain `createConnectTransport`s (baselines) and through
// `createGatewayTransport` with a cached token (routing interceptor, token
// lookup, Authorization header, error mapping). Same process, same server,
// same HTTP/1.1 keep-alive agent settings. Each round measures every side
// twice, in a palindrome (A B C D D C B A), so that a load from other processes
// that grows or fades during the round weighs on every side alike; the order
// rotates from round to round. Each figure is the median of the per-round
// ratios, with the interquartile range to show the noise, per wall-clock second
// and per CPU second of this process (client and server both run here).
//
// Baselines: plain; plain with the gateway's default 30 s deadline (a timer
// and a timeout header on both ends of every call); plain with that deadline,
// the same bearer token and the same /backend/echo path (what authenticated,
// routed calls cost on the wire, whoever makes them).
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { createClient, type Transport } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport } from "@connectrpc/connect-node";
import { createGatewayTransport } from "../src/client/index.js";
import { startOAuth2Server } from "../src/testing/oauth2-server.js";
import { EchoService } from "../examples/gen/example/v1/example_pb.js";

const CONCURRENCY = 16;
const SLOT_MS = 150; // two slots per side and round
const ROUNDS = 48; // ~60 s of measurement, ~70 s in all: the rounds vary a lot on a shared machine

const routes = (router: Parameters<NonNullable<Parameters<typeof connectNodeAdapter>[0]["routes"]>>[0]) =>
  router.service(EchoService, {
    echo: (req) => ({ text: req.text }),
    echoStream: async function* () {},
    collect: async () => ({}),
    chat: async function* () {},
  });

// One server: `/backend/echo/…` for the gateway transport, plain paths for the baseline.
const plain = connectNodeAdapter({ routes });
const routed = connectNodeAdapter({ routes, requestPathPrefix: "/backend/echo" });
let seenAuthorization = "";
const server = http.createServer((req, res) => {
  seenAuthorization = req.headers.authorization ?? seenAuthorization;
  (req.url?.startsWith("/backend/echo/") ? routed : plain)(req, res);
});
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const credentials = { clientId: "bench", clientSecret: "bench-secret", scopes: ["read"] };
const oauth = await startOAuth2Server({ clients: [credentials] });

const baseline = createConnectTransport({
  baseUrl,
  httpVersion: "1.1",
  nodeOptions: { agent: new http.Agent({ keepAlive: true }) },
});
// The gateway transport always has a deadline (`timeoutMs`, default 30 s, per
// SPEC §3), which costs a timer and a timeout header on both ends of every
// call. This baseline has the same deadline, to isolate the gateway's own work.
const baselineWithDeadline = createConnectTransport({
  baseUrl,
  httpVersion: "1.1",
  nodeOptions: { agent: new http.Agent({ keepAlive: true }) },
  defaultTimeoutMs: 30_000,
});
const gateway = createGatewayTransport({
  ...credentials,
  gatewayUrl: baseUrl,
  appcenterUrl: oauth.issuer,
  tokenPath: "/token",
  agent: new http.Agent({ keepAlive: true }),
});

// Calls per second of wall-clock time, and of this process's CPU time (client
// and server both run here). The CPU figure is the steadier one on a shared
// machine: other processes stealing cores lower calls per wall-second for
// whichever side happens to run then, but not the CPU each call costs.
interface Rate {
  readonly wall: number;
  readonly cpu: number;
}

/** What one slot measured. */
interface Sample {
  readonly calls: number;
  readonly wallMs: number;
  readonly cpuMs: number;
}

async function measure(transport: Transport, ms: number): Promise<Sample> {
  const echo = createClient(EchoService, transport);
  const start = performance.now();
  const until = start + ms;
  const cpuStart = process.cpuUsage();
  let calls = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < until) {
        await echo.echo({ text: "bench" });
        calls++;
      }
    }),
  );
  const cpu = process.cpuUsage(cpuStart);
  return { calls, wallMs: performance.now() - start, cpuMs: (cpu.user + cpu.system) / 1000 };
}

function rateOf(samples: readonly Sample[]): Rate {
  const total = (key: keyof Sample) => samples.reduce((sum, s) => sum + s[key], 0);
  return { wall: total("calls") / (total("wallMs") / 1000), cpu: total("calls") / (total("cpuMs") / 1000) };
}

const callsPerSecond = async (transport: Transport, ms: number) => rateOf([await measure(transport, ms)]);

await callsPerSecond(gateway, 1000); // warm-up; caches the token
// What authentication costs on the wire whoever does it: the same bearer
// token (a ~1 KB JWT) and the same /backend/echo path, set by a one-line
// interceptor on a plain transport with the same deadline.
const bearer = seenAuthorization;
const baselineWithBearer = createConnectTransport({
  baseUrl: `${baseUrl}/backend/echo`,
  httpVersion: "1.1",
  nodeOptions: { agent: new http.Agent({ keepAlive: true }) },
  defaultTimeoutMs: 30_000,
  interceptors: [
    (next) => (req) => {
      req.header.set("authorization", bearer);
      return next(req);
    },
  ],
});
const sides = {
  plain: baseline,
  "plain+deadline": baselineWithDeadline,
  "plain+deadline+bearer": baselineWithBearer,
  gateway,
} as const;
for (const transport of Object.values(sides)) await callsPerSecond(transport, 1000); // warm-up

type Side = keyof typeof sides;
const names = Object.keys(sides) as Side[];
const perSide = <T>(value: (side: Side) => T) => Object.fromEntries(names.map((n) => [n, value(n)])) as Record<Side, T>;
const rounds: Record<Side, Rate>[] = [];
const everySample = perSide((): Sample[] => []);
for (let round = 0; round < ROUNDS; round++) {
  const shift = round % names.length;
  const rotated = [...names.slice(shift), ...names.slice(0, shift)];
  const samples = perSide((): Sample[] => []);
  for (const name of [...rotated, ...rotated.toReversed()]) samples[name].push(await measure(sides[name], SLOT_MS));
  rounds.push(perSide((n) => rateOf(samples[n])));
  for (const n of names) everySample[n].push(...samples[n]);
}
const pooled = perSide((n) => rateOf(everySample[n]));

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.round((xs.length - 1) * q)]!;
const rate = (side: Side, measure: keyof Rate) => quantile(rounds.map((r) => r[side][measure]), 0.5).toFixed(0);
console.log(
  `median calls/s over ${ROUNDS} rounds of 2 × ${SLOT_MS} ms per side: ` +
    names.map((n) => `${n} ${rate(n, "wall")} (wall) ${rate(n, "cpu")} (cpu)`).join(", "),
);
// The median of the per-round ratios, the middle half of them, and the ratio
// over the whole run (all calls / all time): two estimates, and how far apart.
const ratio = (base: Side, measure: keyof Rate) => {
  const ratios = rounds.map((r) => r.gateway[measure] / r[base][measure]);
  const [q1, q2, q3] = [0.25, 0.5, 0.75].map((q) => quantile(ratios, q).toFixed(3));
  const whole = (pooled.gateway[measure] / pooled[base][measure]).toFixed(3);
  return `${q2} (${q1}–${q3}) ${whole}`.padEnd(28);
};
console.log(`client overhead, ${CONCURRENCY} concurrent unary calls over HTTP/1.1, token cached (target ≥ 0.99 against the first baseline):`);
console.log("  ratio gateway / plain createConnectTransport: median of rounds (interquartile range), whole run");
console.log("                                                      per CPU-second               per wall-second");
const baselines = [
  ["plain+deadline+bearer", "with the same deadline, bearer and path"],
  ["plain+deadline", "with the same 30 s deadline"],
  ["plain", "without a deadline"],
] as const;
for (const [base, label] of baselines) console.log(`    baseline ${label.padEnd(40)} ${ratio(base, "cpu")} ${ratio(base, "wall")}`);
console.log(`  token requests during the run: ${oauth.tokenRequests}`);

server.closeAllConnections();
server.close();
await oauth.close();
process.exit(0);
