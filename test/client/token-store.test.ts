// One token cache for a whole fleet: every transport and REST client of a
// process with the same credentials shares one token (the default in-memory
// store), and processes share it through Redis (createRedisTokenStore) — one
// token request per refresh between them, a dead lock holder costing its
// lease, and a dead, frozen or garbage-holding Redis costing a small budget
// and a token request of the process's own, never a hang or a failed call.
import { spawn, type ChildProcess } from "node:child_process";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { Redis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  AuthenticationError,
  ConfigurationError,
  createGatewayClient,
  createGatewayTransport,
  createMemoryTokenStore,
  createRedisTokenStore,
  type GatewayOptions,
  type TokenEvent,
} from "../../src/client/index.js";
import { resolveGatewayOptions } from "../../src/client/gateway-options.js";
import { createGatewayTokenManager } from "../../src/client/token-manager.js";
import { tokenStoreKey } from "../../src/client/token-store.js";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import { startServer, type RunningServer } from "../support/loopback-server.js";
import { startAnswerLosingProxy } from "../support/answer-losing-proxy.js";
import { startRedisServer, type RedisServer } from "../support/redis-server.js";
import { expectNoSecret } from "../support/no-secret.js";
import { startTokenEndpoint, type TestTokenEndpoint, type TokenEndpointAnswer } from "../support/token-endpoint.js";

const SECRET = "fleet-secret-9f3a+/";
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// The token endpoint: a new token per request (tok-1, tok-2, …), after `delayMs`.
let endpoint: TestTokenEndpoint;
let issued = 0;
let answer: () => TokenEndpointAnswer;
const issuedTokens: string[] = [];
const okAnswer = (delayMs = 0): (() => TokenEndpointAnswer) => () => {
  const token = `tok-${++issued}-${"x".repeat(8)}`;
  issuedTokens.push(token);
  return { delayMs, json: { access_token: token, token_type: "bearer", expires_in: 3600 } };
};

// The gateway: answers an empty message (a valid Connect answer; `{}` for
// REST) to every request, recording the Authorization header; a 401 to a refused token.
let gateway: RunningServer;
const seen: string[] = [];
const refused = new Set<string>();

beforeAll(async () => {
  endpoint = await startTokenEndpoint(() => answer());
  gateway = await startServer((req: IncomingMessage, res: ServerResponse) => {
    seen.push(req.headers.authorization ?? "");
    req.resume();
    req.on("end", () =>
      refused.has(req.headers.authorization ?? "")
        ? res.writeHead(401, { "content-type": "application/json" }).end('{"code":"unauthenticated","message":"refused"}')
        : req.headers["content-type"] === "application/proto" // an empty message, in binary
          ? res.writeHead(200, { "content-type": "application/proto" }).end()
          : res.writeHead(200, { "content-type": "application/json" }).end("{}"),
    );
  }, "1.1");
});
afterAll(() => Promise.all([endpoint.close(), gateway.close()]));
beforeEach(() => {
  answer = okAnswer();
});

// Each test its own client id, so that the process-wide store starts cold.
let clients = 0;
function credentials(extra: Partial<GatewayOptions> = {}): GatewayOptions {
  return {
    clientId: `fleet-${++clients}`,
    clientSecret: SECRET,
    appcenterUrl: endpoint.url,
    gatewayUrl: gateway.baseUrl,
    ...extra,
  };
}

const tokenRequests = () => endpoint.requests.length;
const echoThrough = (options: GatewayOptions) => createClient(EchoService, createGatewayTransport(options));

// No event carries a secret or a token, whatever happened.
function expectCleanEvents(events: readonly TokenEvent[]): void {
  const text = JSON.stringify(events);
  for (const secret of [SECRET, ...issuedTokens]) expect(text).not.toContain(secret);
}

describe("the default in-memory store: one token per set of credentials in a process", () => {
  it("a transport and a REST client with the same credentials make one token request between them", async () => {
    answer = okAnswer(100); // slow enough for both to wait on the same request
    const options = credentials();
    const echo = echoThrough(options);
    const api = createGatewayClient(options);
    const before = tokenRequests();
    const calls = seen.length;
    await Promise.all([echo.echo({}), api.get("/a"), echo.echo({}), api.get("/b")]);
    expect(tokenRequests()).toBe(before + 1);
    // One after the other, and a third transport created later: still that token.
    await api.get("/c");
    await echoThrough(options).echo({});
    expect(tokenRequests()).toBe(before + 1);
    expect(new Set(seen.slice(calls))).toEqual(new Set([`Bearer ${issuedTokens.at(-1)}`]));
  });

  it("different client ids, secrets or scopes get tokens of their own", async () => {
    const base = credentials();
    const before = tokenRequests();
    const calls = seen.length;
    await echoThrough(base).echo({});
    await echoThrough({ ...base, clientSecret: `${SECRET}-rotated` }).echo({});
    await echoThrough({ ...base, scope: "read" }).echo({});
    await echoThrough({ ...base, clientId: `${base.clientId}-other` }).echo({});
    await echoThrough({ ...base, tokenPath: "/other/token" }).echo({});
    await echoThrough(base).echo({}); // the first one's token again
    expect(tokenRequests()).toBe(before + 5);
    const used = seen.slice(calls);
    expect(new Set(used.slice(0, 5)).size).toBe(5);
    expect(used[5]).toBe(used[0]);
  });

  it("keeps the hot path synchronous: a cached token is a string, not a promise, for every sharer", async () => {
    const resolved = resolveGatewayOptions(credentials(), {});
    const first = createGatewayTokenManager(resolved);
    const token = await first.getToken();
    expect(first.getToken()).toBe(token);
    expect(createGatewayTokenManager(resolved).getToken()).toBe(token); // a new sharer: no promise either
  });

  it("createMemoryTokenStore() gives a transport a cache of its own", async () => {
    const options = credentials();
    const before = tokenRequests();
    await echoThrough(options).echo({});
    await echoThrough({ ...options, tokenStore: createMemoryTokenStore() }).echo({});
    expect(tokenRequests()).toBe(before + 2);
  });

  it("a 401 drops the shared token for every sharer: one refresh, not one per transport", async () => {
    const options = credentials();
    const a = echoThrough(options);
    const b = createGatewayClient(options);
    await a.echo({});
    const before = tokenRequests();
    const managers = [createGatewayTokenManager(resolveGatewayOptions(options, {}))];
    const stale = managers[0]!.getToken() as string;
    expect(managers[0]!.invalidate(stale)).toBe(true);
    await Promise.all([a.echo({}), b.get("/x"), a.echo({})]);
    expect(tokenRequests()).toBe(before + 1);
    expect(seen.at(-1)).not.toBe(`Bearer ${stale}`);
  });

  it("refuses a token store that is not one, and a store with session mode", () => {
    expect(() => createGatewayTransport(credentials({ tokenStore: {} as never }))).toThrow(ConfigurationError);
    expect(() =>
      createGatewayTransport(credentials({ tokenStore: createMemoryTokenStore(), session: { code: "c" } })),
    ).toThrow(/tokenStore.*session/);
    expect(() => createGatewayTransport(credentials({ onTokenEvent: "log" as never }))).toThrow(ConfigurationError);
  });
});

describe("the onTokenEvent hook", () => {
  it("hears of each new token and each failed refresh; never a secret or a token; its exceptions are ignored", async () => {
    const events: TokenEvent[] = [];
    const options = credentials({
      onTokenEvent: (event) => {
        events.push(event);
        throw new Error("a broken logger");
      },
    });
    const echo = echoThrough(options);
    await echo.echo({});
    expect(events).toEqual([{ type: "token", source: "fetched", clientId: options.clientId, expiresInSeconds: 3600 }]);

    answer = () => ({ status: 401, json: { error: "invalid_client", error_description: `bad secret ${SECRET}` } });
    const failing = echoThrough({ ...options, clientSecret: SECRET, scope: "other" });
    const error = await failing.echo({}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthenticationError);
    expectNoSecret(error, [SECRET]);
    expect(events[1]).toMatchObject({
      type: "refresh-failed",
      clientId: options.clientId,
      errorClass: "AuthenticationError",
      background: false,
      message: expect.stringMatching(/answered HTTP 401: invalid_client \(bad secret \[redacted\]\)/),
    });
    expectCleanEvents(events);
  });
});

describe("the Redis token store", () => {
  let redisServer: RedisServer;
  let redis: Redis;
  const clients: Redis[] = [];
  const newRedis = (url = redisServer.url) => {
    const client = new Redis(url, { connectTimeout: 500, maxRetriesPerRequest: 1 });
    client.on("error", () => {});
    clients.push(client);
    return client;
  };
  beforeAll(async () => {
    redisServer = await startRedisServer();
    redis = newRedis();
  }, 30_000);
  afterAll(() => {
    for (const client of clients) client.disconnect();
    redisServer.child.kill("SIGCONT");
    redisServer.child.kill("SIGKILL");
  });

  // A process of a fleet, in this one: a store instance of its own (its own
  // Redis connection, its own in-process cache).
  // Each member connects to Redis on its first command: under a loaded CI run
  // that can exceed the store's default 100 ms bound, and the member would
  // then (rightly) give up on Redis and fetch its own token. These tests are
  // about coordination, so a member's commands get 1 s unless a test says
  // otherwise (the bound itself is tested on its own, below).
  function member(options: GatewayOptions, events: TokenEvent[] = [], storeOptions = {}) {
    const tokenStore = createRedisTokenStore(newRedis(), { pollIntervalMs: 20, commandTimeoutMs: 1_000, ...storeOptions });
    return echoThrough({ ...options, tokenStore, onTokenEvent: (e) => events.push(e) });
  }

  const keyOf = (options: GatewayOptions) => `connect-gateway:token:${tokenStoreKey(resolveGatewayOptions(options, {}))}`;

  it("8 processes on a cold cache make exactly one token request between them", async () => {
    answer = okAnswer(150);
    const options = credentials();
    const script = fileURLToPath(new URL("../support/token-store-worker.ts", import.meta.url));
    const children: ChildProcess[] = [];
    try {
      const lines = await Promise.all(
        Array.from({ length: 8 }, async () => {
          const child = spawn(process.execPath, ["--conditions=connect-gateway-source", "--import", "tsx", script], {
            env: {
              ...process.env,
              REDIS_URL: redisServer.url,
              APPCENTER_URL: endpoint.url,
              GATEWAY_URL: gateway.baseUrl,
              CLIENT_ID: options.clientId,
              CLIENT_SECRET: SECRET,
            },
            stdio: ["pipe", "pipe", "inherit"],
          });
          children.push(child);
          const reader = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
          expect((await reader.next()).value).toBe("ready");
          return { child, reader };
        }),
      );
      const before = tokenRequests();
      const calls = seen.length;
      for (const { child } of lines) child.stdin!.write("go\n");
      const results = await Promise.all(
        lines.map(async ({ reader }) => JSON.parse((await reader.next()).value as string) as { ok: boolean; events: TokenEvent[] }),
      );
      expect(results.map((r) => r.ok)).toEqual(Array(8).fill(true));
      expect(tokenRequests()).toBe(before + 1);
      expect(new Set(seen.slice(calls))).toEqual(new Set([`Bearer ${issuedTokens.at(-1)}`]));
      const sources = results.flatMap((r) => r.events.map((e) => (e.type === "token" ? e.source : e.type)));
      expect(sources.sort()).toEqual(["fetched", ...Array(7).fill("store")]);
      expectCleanEvents(results.flatMap((r) => r.events));
      // Stored with a TTL: the token's expiry.
      const ttl = await redis.pttl(keyOf(options));
      expect(ttl).toBeGreaterThan(3_500_000);
      expect(ttl).toBeLessThanOrEqual(3_600_000);
    } finally {
      for (const child of children) child.kill("SIGKILL");
    }
  }, 60_000);

  it("a lock whose holder died costs its lease, not a hang: then one process requests the token for all", async () => {
    const options = credentials();
    // A holder took the lock and died: it never writes a token.
    await redis.set(`${keyOf(options)}:lock`, "dead-holder", "PX", 800);
    const before = tokenRequests();
    const events: TokenEvent[][] = [[], [], []];
    const started = performance.now();
    await Promise.all(events.map((e) => member(options, e).echo({})));
    const elapsed = performance.now() - started;
    // First what happened (a Redis failure would show here), then when.
    expect(events.flat().map((e) => (e.type === "token" ? e.source : e.type)).sort()).toEqual(["fetched", "store", "store"]);
    expect(tokenRequests()).toBe(before + 1);
    expect(elapsed).toBeGreaterThan(700);
    expect(elapsed).toBeLessThan(3000);
  });

  it("a wait longer than maxWaitMs ends with a token request of the process's own", async () => {
    const options = credentials();
    await redis.set(`${keyOf(options)}:lock`, "stuck-holder", "PX", 60_000);
    const before = tokenRequests();
    const events: TokenEvent[] = [];
    const started = performance.now();
    await member(options, events, { maxWaitMs: 300 }).echo({});
    expect(performance.now() - started).toBeLessThan(1500);
    expect(tokenRequests()).toBe(before + 1);
    expect(events.map((e) => e.type)).toEqual(["store-failed", "token"]);
    expect(events[0]).toMatchObject({ operation: "wait" });
  });

  it("a frozen Redis (SIGSTOP) costs the command budget: the call succeeds with a token of its own", async () => {
    const options = credentials();
    const events: TokenEvent[] = [];
    const echo = member(options, events, { commandTimeoutMs: 100 });
    await redis.ping(); // connected before the freeze
    const before = tokenRequests();
    redisServer.child.kill("SIGSTOP");
    try {
      const started = performance.now();
      await echo.echo({});
      expect(performance.now() - started).toBeLessThan(1000);
      expect(tokenRequests()).toBe(before + 1);
      expect(events[0]).toMatchObject({ type: "store-failed", operation: "get", message: expect.stringMatching(/within 100 ms/) });
      expect(events.at(-1)).toMatchObject({ type: "token", source: "fetched" });
      expectCleanEvents(events);
    } finally {
      redisServer.child.kill("SIGCONT");
    }
  });

  it("a dead Redis (killed) costs the command budget: the call succeeds with a token of its own", async () => {
    const doomed = await startRedisServer();
    try {
      const options = credentials();
      const events: TokenEvent[] = [];
      const echo = echoThrough({
        ...options,
        tokenStore: createRedisTokenStore(newRedis(doomed.url), { commandTimeoutMs: 100 }),
        onTokenEvent: (e) => events.push(e),
      });
      doomed.child.kill("SIGKILL");
      await sleep(50);
      const before = tokenRequests();
      const started = performance.now();
      await echo.echo({});
      expect(performance.now() - started).toBeLessThan(1000);
      expect(tokenRequests()).toBe(before + 1);
      expect(events.map((e) => e.type)).toEqual(["store-failed", "token"]);
      expectCleanEvents(events);
    } finally {
      doomed.child.kill("SIGKILL");
    }
  });

  it.each([
    ["not JSON", "{{{"],
    ["JSON of the wrong shape", JSON.stringify({ token: "x" })],
    ["a token with a line break", JSON.stringify({ accessToken: "a\r\nb", issuedAt: Date.now(), expiresAt: Date.now() + 60_000 })],
    ["an expired token", JSON.stringify({ accessToken: "old", issuedAt: Date.now() - 120_000, expiresAt: Date.now() - 60_000 })],
  ])("%s in the Redis key is ignored: a token request of its own, which replaces it", async (_, garbage) => {
    const options = credentials();
    await redis.set(keyOf(options), garbage, "PX", 60_000);
    const before = tokenRequests();
    const events: TokenEvent[] = [];
    await member(options, events).echo({});
    expect(tokenRequests()).toBe(before + 1);
    expect(seen.at(-1)).toBe(`Bearer ${issuedTokens.at(-1)}`);
    expect(JSON.parse((await redis.get(keyOf(options)))!)).toMatchObject({ accessToken: issuedTokens.at(-1) });
    expect(events.at(-1)).toMatchObject({ type: "token", source: "fetched" });
    expectCleanEvents(events);
  });

  it("a token another process stored is used (source store), and a 401 to it makes one new request for the fleet", async () => {
    const options = credentials();
    const aEvents: TokenEvent[] = [];
    const bEvents: TokenEvent[] = [];
    const a = member(options, aEvents);
    const b = member(options, bEvents);
    const before = tokenRequests();
    await a.echo({});
    await b.echo({});
    expect(tokenRequests()).toBe(before + 1);
    expect(bEvents).toMatchObject([{ type: "token", source: "store" }]);
    // The gateway now refuses that token: each process gets a 401, one of them a new token, the other takes it.
    const stale = seen.at(-1)!;
    refused.add(stale);
    try {
      await a.echo({});
      await b.echo({});
      expect(tokenRequests()).toBe(before + 2);
      expect(seen.slice(-4)).toEqual([stale, `Bearer ${issuedTokens.at(-1)}`, stale, `Bearer ${issuedTokens.at(-1)}`]);
      expect(aEvents.map((e) => e.type === "token" && e.source)).toEqual(["fetched", "fetched"]);
      expect(bEvents.map((e) => e.type === "token" && e.source)).toEqual(["store", "store"]);
    } finally {
      refused.delete(stale);
    }
  });

  it("a connection that lost answers without closing is made again: a read never returns another key's token", async () => {
    const proxy = await startAnswerLosingProxy(Number(new URL(redisServer.url).port));
    const viaProxy = new Redis(proxy.url, { connectTimeout: 500, maxRetriesPerRequest: 0 });
    viaProxy.on("error", () => {});
    clients.push(viaProxy);
    try {
      await new Promise((resolve) => viaProxy.once("ready", resolve));
      const store = createRedisTokenStore(viaProxy, { keyPrefix: "desync-test:", commandTimeoutMs: 100 });
      const now = Date.now();
      const tokenOf = (name: string) => ({ accessToken: `token-of-${name}`, issuedAt: now, expiresAt: now + 60_000 });
      await store.set("a", tokenOf("a"));
      await store.set("b", tokenOf("b"));
      // Three reads whose answers are lost; then the proxy passes answers again.
      proxy.swallow = true;
      await Promise.allSettled([store.get("a"), store.get("a"), store.get("a")]);
      proxy.swallow = false;
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      // Past a second the next command notices, and the connection is made again.
      await Promise.allSettled([store.get("b")]);
      await new Promise((resolve) => (viaProxy.status === "ready" ? resolve(undefined) : viaProxy.once("ready", resolve)));
      for (let i = 0; i < 10; i++) {
        const name = i % 2 === 0 ? "a" : "b";
        const read = await Promise.resolve(store.get(name)).catch(() => undefined);
        expect([i, name, read?.accessToken]).toEqual([i, name, `token-of-${name}`]);
      }
    } finally {
      proxy.close();
    }
  });

  it("refuses a client without get() and set()", () => {
    expect(() => createRedisTokenStore({} as never)).toThrow(/client\.get/);
    expect(() => createRedisTokenStore(redis, { commandTimeoutMs: 0 })).toThrow(/commandTimeoutMs/);
  });
});
