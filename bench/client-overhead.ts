// Client overhead: unary calls per second against the same local connect-node
// server, through plain `createConnectTransport`s (baselines) and through
// `createGatewayTransport` with a cached token (routing interceptor, token
// lookup, Authorization header, error mapping). Same process, same server,
// same HTTP/1.1 keep-alive agent settings. Short rounds rotate the order of the
// sides so that load from other processes hits all of them alike; each figure
// is the median of the per-round ratios, per wall-clock second and per CPU
// second of this process (client and server both run here).
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
import { EchoService } from "../gen/example/v1/example_pb.js";

const CONCURRENCY = 16;
const ROUND_MS = 300;
const ROUNDS = 25;

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

async function callsPerSecond(transport: Transport, ms: number): Promise<Rate> {
  const echo = createClient(EchoService, transport);
  const until = performance.now() + ms;
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
  return { wall: calls / (ms / 1000), cpu: calls / ((cpu.user + cpu.system) / 1e6) };
}

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
const rounds: Record<Side, Rate>[] = [];
for (let round = 0; round < ROUNDS; round++) {
  // Rotate the order so that no side always runs first.
  const names = Object.keys(sides) as Side[];
  const order = [...names.slice(round % names.length), ...names.slice(0, round % names.length)];
  const rate = {} as Record<Side, Rate>;
  for (const name of order) rate[name] = await callsPerSecond(sides[name], ROUND_MS);
  rounds.push(rate);
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sum = (side: Side, measure: keyof Rate) => median(rounds.map((r) => r[side][measure])).toFixed(0);
console.log(
  `median calls/s over ${ROUNDS} rounds of ${ROUND_MS} ms: ` +
    (Object.keys(sides) as Side[]).map((n) => `${n} ${sum(n, "wall")} (wall) ${sum(n, "cpu")} (cpu)`).join(", "),
);
const ratio = (base: Side, measure: keyof Rate) =>
  median(rounds.map((r) => r.gateway[measure] / r[base][measure])).toFixed(3);
console.log(`client overhead, ${CONCURRENCY} concurrent unary calls over HTTP/1.1, token cached (target ≥ 0.97):`);
console.log("  median ratio gateway / plain createConnectTransport   per CPU-second   per wall-second");
console.log(`    baseline with the same deadline, bearer and path ${ratio("plain+deadline+bearer", "cpu")}            ${ratio("plain+deadline+bearer", "wall")}`);
console.log(`    baseline with the same 30 s deadline             ${ratio("plain+deadline", "cpu")}            ${ratio("plain+deadline", "wall")}`);
console.log(`    baseline without a deadline                      ${ratio("plain", "cpu")}            ${ratio("plain", "wall")}`);
console.log(`  token requests during the run: ${oauth.tokenRequests}`);

server.closeAllConnections();
server.close();
await oauth.close();
process.exit(0);
