// The replay store shared through a real redis-server by two service
// processes: a request accepted by one instance is a replay for the other,
// a race between them lets exactly one through, and a frozen (SIGSTOP) Redis
// costs the configured budget and a 503, never a hang.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startRedisServer } from "../support/redis-server.js";
import { rawRequest } from "../support/raw-request.js";
import { signedHeadersV2 } from "../support/signed-headers.js";

const SECRET = "redis-replay-secret-5c1e";
const PATH = "/api/orders";
const body = Buffer.from('{"id":1}');
const identity = { clientId: "orders-client", scopes: ["orders:write"] };

const children: ChildProcess[] = [];
let redis: ChildProcess;
const ports: number[] = [];

beforeAll(async () => {
  const server = await startRedisServer();
  redis = server.child;
  children.push(redis);
  const script = fileURLToPath(new URL("../support/replay-service.ts", import.meta.url));
  for (let i = 0; i < 2; i++) {
    const child = spawn(process.execPath, ["--import", "tsx", script], {
      env: { ...process.env, REDIS_URL: server.url, GATEWAY_HMAC_SECRET: SECRET },
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.push(child);
    ports.push(await portOf(child));
  }
}, 30_000);

afterAll(() => {
  for (const child of children) {
    child.kill("SIGCONT");
    child.kill("SIGKILL");
  }
});

function signed() {
  return signedHeadersV2(SECRET, { method: "POST", path: PATH, body, contentType: "application/json" }, identity);
}

function post(port: number, headers: [string, string][]) {
  return rawRequest(port, { method: "POST", path: PATH, headers, body });
}

describe("a replay store in Redis shared by two service processes", () => {
  it("a request accepted by one instance is refused as a replay by the other", async () => {
    const headers = signed();
    const [a, b] = ports as [number, number];
    expect((await post(a, headers)).status).toBe(200);
    const replayed = await post(b, headers);
    expect(replayed.status).toBe(403);
    expect(JSON.parse(replayed.body)).toEqual({ message: "replayed_request" });
  });

  it("the same request sent to both at once runs exactly once", async () => {
    for (let round = 0; round < 20; round++) {
      const headers = signed();
      const answers = await Promise.all(ports.map((p) => post(p, headers)));
      expect(answers.map((r) => r.status).sort()).toEqual([200, 403]);
    }
  });

  it("a frozen Redis costs the budget and a 503, and service resumes when it thaws", async () => {
    const [a] = ports as [number];
    redis.kill("SIGSTOP");
    try {
      const started = performance.now();
      const frozen = await post(a, signed());
      const elapsed = performance.now() - started;
      expect(frozen.status).toBe(503);
      expect(JSON.parse(frozen.body)).toEqual({ message: "replay_check_unavailable" });
      expect(elapsed).toBeLessThan(1_000);
    } finally {
      redis.kill("SIGCONT");
    }
    await expect.poll(async () => (await post(a, signed())).status, { timeout: 5_000, interval: 100 }).toBe(200);
  });
});

function portOf(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the service process did not start within 20 s")), 20_000);
    let out = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const match = /listening (\d+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    child.once("exit", (code) => reject(new Error(`the service process exited (${code})`)));
  });
}
