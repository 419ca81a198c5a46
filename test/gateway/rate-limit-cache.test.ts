import type { ChildProcess } from "node:child_process";
import { startRedisServer } from "../support/redis-server.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gateway, GatewayConfig } from "../../packages/gateway/src/index.js";
import { closeInTurn, readyStatus, route, routesFileText, seedToken, startRecordingBackend, startSeedGateway, type RecordingBackend } from "../support/gateway.js";

const yaml = routesFileText({
  routes: [
    route("GET", "/api/v1/agents", { cache_ttl: "60s" }),
    route("POST", "/api/v1/agents"),
    route("GET", "/api/v1/profile", { cache_ttl: "60s" }),
  ],
});

/** A gateway listening for the routes above in front of `backend`, with `rateLimit` and whatever `more` adds. */
function startGateway(backend: RecordingBackend, rateLimit: GatewayConfig["rateLimit"], more: Partial<GatewayConfig> = {}): Promise<Gateway> {
  return startSeedGateway(yaml, { UP: backend.url }, { rateLimit, ...more });
}

async function get(gateway: Gateway, path: string, token: string, headers: Record<string, string> = {}) {
  const res = await fetch(gateway.url + path, { headers: { authorization: `Bearer ${token}`, ...headers } });
  return { status: res.status, headers: res.headers, body: await res.text() };
}

async function startRedis(): Promise<{ url: string; process: ChildProcess }> {
  const { url, child } = await startRedisServer();
  return { url, process: child };
}

describe("rate limiting in memory", () => {
  let backend: RecordingBackend;
  let gateway: Gateway;
  beforeAll(async () => {
    backend = await startRecordingBackend();
    gateway = await startGateway(backend, { max: 3, timeWindowMs: 60_000 });
  });
  afterAll(() => closeInTurn(gateway, backend));

  it("limits each client (and each user of a client) separately with 429 RATE_LIMITED", async () => {
    const alice = await seedToken({ user_id: "alice" });
    const bob = await seedToken({ user_id: "bob" });
    const service = await seedToken({ user_id: undefined, client_id: "svc" });
    for (let i = 0; i < 3; i++) expect((await get(gateway, "/api/v1/profile", alice)).status).toBe(200);
    const limited = await get(gateway, "/api/v1/profile", alice);
    expect(limited.status).toBe(429);
    expect(JSON.parse(limited.body).error).toMatchObject({ code: "RATE_LIMITED", message: "Too many requests" });
    expect(limited.headers.get("retry-after")).toMatch(/^\d+$/);
    expect((await get(gateway, "/api/v1/profile", bob)).status).toBe(200);
    expect((await get(gateway, "/api/v1/profile", service)).status).toBe(200);
    const connect = await fetch(`${gateway.url}/api/v1/agents`, {
      method: "POST",
      headers: { authorization: `Bearer ${alice}`, "content-type": "application/json", "connect-protocol-version": "1" },
      body: "{}",
    });
    expect([connect.status, ((await connect.json()) as { code: string }).code]).toEqual([429, "resource_exhausted"]);
    expect((await fetch(`${gateway.url}/health`)).status).toBe(200);
  });

  it("keeps callers whose ids hold ':' apart: client urn:acme's user web:42 is not client urn:acme:web's user 42", async () => {
    const first = await seedToken({ client_id: "urn:acme", user_id: "web:42" });
    const second = await seedToken({ client_id: "urn:acme:web", user_id: "42" });
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await get(gateway, "/api/v1/profile", first)).status);
    statuses.push((await get(gateway, "/api/v1/profile", second)).status);
    expect(statuses).toEqual([200, 200, 200, 429, 200]);
  });
});

describe("rate limiting shared through Redis", () => {
  let redis: { url: string; process: ChildProcess };
  let backend: RecordingBackend;
  let first: Gateway;
  let second: Gateway;
  beforeAll(async () => {
    redis = await startRedis();
    backend = await startRecordingBackend();
    const rateLimit = { max: 4, timeWindowMs: 60_000, redisUrl: redis.url };
    [first, second] = await Promise.all([startGateway(backend, rateLimit), startGateway(backend, rateLimit)]);
  });
  afterAll(async () => {
    await Promise.all([first.close(), second.close()]);
    await backend.close();
    redis.process.kill("SIGKILL");
  });

  it("lets two gateway instances share one limit, is ready while Redis answers, and fails open when it stops", async () => {
    expect(await readyStatus(first)).toBe(200);
    expect(await readyStatus(second)).toBe(200);
    const token = await seedToken({ user_id: "carol" });
    const statuses: number[] = [];
    for (const gateway of [first, second, first, second, second]) {
      statuses.push((await get(gateway, "/api/v1/profile", token)).status);
    }
    expect(statuses).toEqual([200, 200, 200, 200, 429]);
    expect((await get(first, "/api/v1/profile", token)).status).toBe(429);

    redis.process.kill("SIGKILL");
    await new Promise((resolve) => redis.process.once("exit", resolve));
    const ready = await fetch(`${first.url}/ready`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { error: { code: string } }).error.code).toBe("SERVICE_UNAVAILABLE");
    const other = await seedToken({ user_id: "dave" });
    expect((await get(second, "/api/v1/agents", other)).status).toBe(200);
  });
});

describe("response cache", () => {
  let backend: RecordingBackend;
  let gateway: Gateway;
  beforeAll(async () => {
    backend = await startRecordingBackend();
    backend.respond = (req, res) => {
      if (req.url.startsWith("/api/v1/profile")) res.setHeader("set-cookie", "session=1");
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ user: req.headers["x-user-id"], n: backend.requests.length }));
    };
    gateway = await startGateway(backend, false, { corsOrigins: ["https://a.example", "https://b.example"] });
  });
  afterAll(() => closeInTurn(gateway, backend));

  it("serves a GET route with cache_ttl from cache, per caller, never across users", async () => {
    const alice = await seedToken({ user_id: "alice" });
    const bob = await seedToken({ user_id: "bob" });
    const before = backend.requests.length;
    const miss = await get(gateway, "/api/v1/agents?page=1", alice);
    const hit = await get(gateway, "/api/v1/agents?page=1", alice);
    expect([miss.headers.get("x-cache"), hit.headers.get("x-cache")]).toEqual(["MISS", "HIT"]);
    expect(hit.body).toBe(miss.body);
    expect(hit.headers.get("content-type")).toBe("application/json");
    expect(hit.headers.get("x-request-id")).not.toBe(miss.headers.get("x-request-id"));
    expect(backend.requests.length).toBe(before + 1);

    const bobs = await get(gateway, "/api/v1/agents?page=1", bob);
    expect(JSON.parse(bobs.body).user).toBe("bob");
    expect((await get(gateway, "/api/v1/agents?page=2", alice)).headers.get("x-cache")).toBe("MISS");
    expect((await get(gateway, "/api/v1/agents?page=1", alice, { accept: "text/plain" })).headers.get("x-cache")).toBe("MISS");
    expect(backend.requests.length).toBe(before + 4);
  });

  it("answers a hit with the CORS headers of the caller's own Origin", async () => {
    const alice = await seedToken({ user_id: "alice-cors" });
    const fromA = await get(gateway, "/api/v1/agents?cors", alice, { origin: "https://a.example" });
    const fromB = await get(gateway, "/api/v1/agents?cors", alice, { origin: "https://b.example" });
    expect([fromA.headers.get("x-cache"), fromB.headers.get("x-cache")]).toEqual(["MISS", "HIT"]);
    expect(fromB.headers.get("access-control-allow-origin")).toBe("https://b.example");
  });

  it("never caches answers that set cookies, nor other methods", async () => {
    const alice = await seedToken({ user_id: "alice" });
    const before = backend.requests.length;
    await get(gateway, "/api/v1/profile", alice);
    expect((await get(gateway, "/api/v1/profile", alice)).headers.get("x-cache")).toBeNull();
    const post = () =>
      fetch(`${gateway.url}/api/v1/agents`, { method: "POST", headers: { authorization: `Bearer ${alice}` }, body: "{}" });
    await post();
    await post();
    expect(backend.requests.length).toBe(before + 4);
  });
});
