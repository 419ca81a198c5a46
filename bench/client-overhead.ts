// Client overhead: unary calls per second against the same local connect-node
// server, through a plain `createConnectTransport` (baseline) and through
// `createGatewayTransport` with a cached token (routing interceptor, token
// lookup, Authorization header, error mapping). Same process, same server,
// same HTTP/1.1 keep-alive agent settings; rounds alternate so that drift
// (CPU frequency, GC) hits both sides alike. Prints the median ratio.
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { createClient, type Transport } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport } from "@connectrpc/connect-node";
import { createGatewayTransport } from "../src/client/index.js";
import { startOAuth2Server } from "../src/testing/oauth2-server.js";
import { EchoService } from "../gen/example/v1/example_pb.js";

const CONCURRENCY = 16;
const ROUND_MS = 1000;
const ROUNDS = 9;

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
const server = http.createServer((req, res) => (req.url?.startsWith("/backend/echo/") ? routed : plain)(req, res));
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

const sides = { plain: baseline, "plain+deadline": baselineWithDeadline, gateway } as const;
for (const transport of Object.values(sides)) await callsPerSecond(transport, 1000); // warm-up; caches the token

type Side = keyof typeof sides;
const rounds: Record<Side, Rate>[] = [];
for (let round = 0; round < ROUNDS; round++) {
  // Rotate the order so that no side always runs first.
  const names = Object.keys(sides) as Side[];
  const order = [...names.slice(round % 3), ...names.slice(0, round % 3)];
  const rate = {} as Record<Side, Rate>;
  for (const name of order) rate[name] = await callsPerSecond(sides[name], ROUND_MS);
  rounds.push(rate);
  console.log(
    `round ${round + 1}: ` +
      names.map((n) => `${n} ${rate[n].wall.toFixed(0)}/s wall, ${rate[n].cpu.toFixed(0)}/s cpu`).join("; "),
  );
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ratio = (base: Side, measure: keyof Rate) =>
  median(rounds.map((r) => r.gateway[measure] / r[base][measure])).toFixed(3);
console.log(`client overhead, ${CONCURRENCY} concurrent unary calls over HTTP/1.1, token cached (target ≥ 0.97):`);
console.log("  median ratio gateway / plain createConnectTransport   per CPU-second   per wall-second");
console.log(`    baseline with the same 30 s deadline             ${ratio("plain+deadline", "cpu")}            ${ratio("plain+deadline", "wall")}`);
console.log(`    baseline without a deadline                      ${ratio("plain", "cpu")}            ${ratio("plain", "wall")}`);
console.log(`  token requests during the run: ${oauth.tokenRequests}`);

server.closeAllConnections();
server.close();
await oauth.close();
process.exit(0);
