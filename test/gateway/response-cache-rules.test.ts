// What the gateway's response cache must never store or serve: private or
// uncacheable answers, answers that vary on what the key does not cover,
// answers to cookie-carrying requests, and answers an unkeyed request header
// could have shaped (cache poisoning). Real backend and gateway on loopback.
import { request as httpRequest, type ServerResponse } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gateway } from "../../packages/gateway/src/index.js";
import {
  closeInTurn,
  route,
  routesFileText,
  seedToken,
  startGatewayWithBackend,
  startRecordingBackend,
  startSeedGateway,
  type RecordedRequest,
  type RecordingBackend,
} from "../support/gateway.js";
import { rawRequest } from "../support/raw-request.js";

const yaml = routesFileText({
  routes: [
    route("GET", "/api/v1/items", { cache_ttl: "60s" }),
    route("GET", "/public/items", { auth_required: false, cache_ttl: "60s" }),
    route("GET", "/api/v1/slow-items", { cache_ttl: "60s", timeout: "1s" }),
  ],
});

let backend: RecordingBackend;
let gateway: Gateway;
let token: string;

beforeAll(async () => {
  ({ backend, gateway } = await startGatewayWithBackend(yaml));
  token = await seedToken({ user_id: "cache-rules-user" });
});
afterAll(() => closeInTurn(gateway, backend));

/** The backend answers a 200 JSON body numbered by its hit count, with `headers`, and whatever `extra` adds. */
function answerWith(headers: Record<string, string> = {}, extra?: (req: RecordedRequest, res: ServerResponse) => Record<string, unknown>) {
  backend.respond = (req, res) => {
    for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ n: backend.requests.length, ...extra?.(req, res) }));
  };
}

async function get(path: string, headers: Record<string, string> = {}, auth = true) {
  const res = await fetch(gateway.url + path, { headers: { ...(auth && { authorization: `Bearer ${token}` }), ...headers } });
  return { status: res.status, headers: res.headers, cache: res.headers.get("x-cache"), body: await res.text() };
}

function hits(path: string): number {
  return backend.requests.filter((r) => r.url === path).length;
}

/** Two identical GETs: [x-cache of each], backend hits. */
async function twice(path: string, headers: Record<string, string> = {}) {
  const first = await get(path, headers);
  const second = await get(path, headers);
  return { caches: [first.cache, second.cache], hits: hits(path) };
}

const notStored = { caches: [null, null], hits: 2 };
const stored = { caches: ["MISS", "HIT"], hits: 1 };

describe("answers the cache never stores", () => {
  it("Cache-Control with private, no-store or no-cache, in any case, with or without arguments", async () => {
    const values = [
      "private",
      "Private",
      "max-age=60, private",
      'private="set-cookie", max-age=60',
      'private="set-cookie, x-token"',
      "no-store",
      "public, NO-STORE",
      "no-cache",
      'no-cache="set-cookie"',
      'max-age=60, community="a,b", no-cache',
    ];
    for (const [i, value] of values.entries()) {
      answerWith({ "cache-control": value });
      expect({ value, ...(await twice(`/api/v1/items?cc=${i}`)) }).toEqual({ value, ...notStored });
    }
  });

  it("directive names are matched whole, never as substrings or inside quoted arguments", async () => {
    const values = ["x-no-store-ish", "max-age=60, x-private-thing", 'max-age=60, ext="no-store, private"', "public, max-age=60"];
    for (const [i, value] of values.entries()) {
      answerWith({ "cache-control": value });
      expect({ value, ...(await twice(`/api/v1/items?cc-ok=${i}`)) }).toEqual({ value, ...stored });
    }
  });

  it("Pragma: no-cache without Cache-Control (with Cache-Control, Pragma is ignored)", async () => {
    answerWith({ pragma: "no-cache" });
    expect(await twice("/api/v1/items?pragma=alone")).toEqual(notStored);
    answerWith({ pragma: "no-cache", "cache-control": "max-age=60" });
    expect(await twice("/api/v1/items?pragma=with-cc")).toEqual(stored);
  });

  it("Vary naming any header outside the key, or *; Vary on Accept and Accept-Encoding is fine", async () => {
    for (const [i, vary] of ["*", "Origin", "Accept, Cookie", "X-Original-URL", "accept-language"].entries()) {
      answerWith({ vary });
      expect({ vary, ...(await twice(`/api/v1/items?vary=${i}`)) }).toEqual({ vary, ...notStored });
    }
    answerWith({ vary: "Accept-Encoding, accept" });
    expect(await twice("/api/v1/items?vary=keyed")).toEqual(stored);
  });

  it("anything but a 200, and answers that set a cookie", async () => {
    backend.respond = (_req, res) => res.writeHead(404, { "content-type": "application/json" }).end("{}");
    expect(await twice("/api/v1/items?status=404")).toEqual(notStored);
    answerWith({ "set-cookie": "session=abc" });
    expect(await twice("/api/v1/items?set-cookie")).toEqual(notStored);
  });
});

describe("requests the cache never answers", () => {
  it("a request with a Cookie is neither served from the cache nor stored", async () => {
    answerWith({}, (req) => ({ cookie: req.headers.cookie ?? null }));
    const path = "/api/v1/items?cookie=served";
    const plain = await get(path);
    expect(plain.cache).toBe("MISS");
    const withCookie = await get(path, { cookie: "session=alice" });
    expect([withCookie.cache, JSON.parse(withCookie.body).cookie]).toEqual([null, "session=alice"]);
    expect(hits(path)).toBe(2);
    const again = await get(path);
    expect([again.cache, again.body]).toEqual(["HIT", plain.body]);

    // The answer to a cookie request is never stored for the next request without one.
    const fresh = "/api/v1/items?cookie=stored";
    await get(fresh, { cookie: "session=alice" });
    const next = await get(fresh);
    expect([next.cache, JSON.parse(next.body).cookie]).toEqual(["MISS", null]);
    expect(hits(fresh)).toBe(2);
  });

  it("Cache-Control: no-cache or Pragma: no-cache skips the lookup and refreshes the entry; no-store leaves it alone", async () => {
    answerWith();
    const path = "/api/v1/items?request-directives";
    const n = (r: { body: string }) => JSON.parse(r.body).n as number;
    const first = await get(path);
    expect((await get(path)).cache).toBe("HIT");
    const noCache = await get(path, { "cache-control": "no-cache" });
    expect(noCache.cache).toBe("MISS");
    expect(n(noCache)).toBeGreaterThan(n(first));
    const afterNoCache = await get(path);
    expect([afterNoCache.cache, n(afterNoCache)]).toEqual(["HIT", n(noCache)]);

    const noStore = await get(path, { "cache-control": "No-Store" });
    expect(noStore.cache).toBeNull();
    expect(n(noStore)).toBeGreaterThan(n(noCache));
    const afterNoStore = await get(path);
    expect([afterNoStore.cache, n(afterNoStore)]).toEqual(["HIT", n(noCache)]);

    const pragma = await get(path, { pragma: "no-cache" });
    expect(pragma.cache).toBe("MISS");
    expect(n(pragma)).toBeGreaterThan(n(noStore));
    expect(hits(path)).toBe(4);
  });
});

describe("no unkeyed request header can poison an entry", () => {
  it("a header the backend reflects never reaches another caller, nor the same caller's next request", async () => {
    answerWith({}, (req, res) => {
      res.setHeader("x-reflected", String(req.headers["x-custom-tenant"] ?? "none"));
      return { tenant: req.headers["x-custom-tenant"] ?? null, forwardedHost: req.headers["x-forwarded-host"] ?? null };
    });
    const path = "/public/items?poison";
    const attacker = await get(path, { "x-custom-tenant": "evil" }, false);
    expect([attacker.cache, JSON.parse(attacker.body).tenant]).toEqual([null, "evil"]);

    const victim = await get(path, {}, false);
    const victimAgain = await get(path, {}, false);
    for (const answer of [victim, victimAgain]) {
      expect(JSON.parse(answer.body).tenant).toBeNull();
      expect(answer.headers.get("x-reflected")).toBe("none");
    }
    expect([victim.cache, victimAgain.cache]).toEqual(["MISS", "HIT"]);

    // The same caller sending the header again is forwarded, never answered from the clean entry.
    const attackerAgain = await get(path, { "x-custom-tenant": "evil" }, false);
    expect([attackerAgain.cache, JSON.parse(attackerAgain.body).tenant]).toEqual([null, "evil"]);

    // A caller's own X-Forwarded-Host never reaches the backend: the gateway sets it.
    const spoofed = await get("/public/items?xfh", { "x-forwarded-host": "evil.example" }, false);
    expect(JSON.parse(spoofed.body).forwardedHost).not.toBe("evil.example");
    expect(hits(path)).toBe(3);
  });

  it("a keyed header the caller's Connection header has the gateway drop never keys an answer made without it", async () => {
    answerWith({ vary: "Accept" }, (req) => ({ accept: req.headers["accept"] ?? null }));
    const path = "/public/items?connection-listed";
    const port = Number(new URL(gateway.url).port);
    // HTTP/1.1: `Connection: close, accept` makes Accept hop-by-hop, so the backend never sees it.
    const attacker = await rawRequest(port, { method: "GET", path, headers: [["accept", "application/json"], ["connection", "close, accept"]] });
    expect([attacker.headers["x-cache"], JSON.parse(attacker.body).accept]).toEqual([undefined, null]);
    const victim = await get(path, { accept: "application/json" }, false);
    expect([victim.cache, JSON.parse(victim.body).accept]).toEqual(["MISS", "application/json"]);
    expect(hits(path)).toBe(2);
  });

  it("an answer that varies on an unkeyed header it reflects is not stored at all", async () => {
    answerWith({ vary: "Accept-Language" }, (req) => ({ language: req.headers["accept-language"] ?? null }));
    const path = "/public/items?vary-reflected";
    expect((await get(path, { "accept-language": "fr" }, false)).cache).toBeNull();
    const other = await get(path, { "accept-language": "en" }, false);
    expect([other.cache, JSON.parse(other.body).language]).toEqual([null, "en"]);
    expect(hits(path)).toBe(2);
  });

  it("the Host a caller names (forwarded as X-Forwarded-Host) is part of the key", async () => {
    answerWith({}, (req) => ({ forwardedHost: req.headers["x-forwarded-host"] ?? null }));
    const path = "/public/items?host";
    const { port } = new URL(gateway.url);
    // Same Accept and Accept-Encoding on both requests: only the Host differs.
    const negotiated = { accept: "application/json", "accept-encoding": "identity" };
    const poisoned = await new Promise<string>((resolve, reject) => {
      const req = httpRequest({ host: "127.0.0.1", port, path, headers: { host: "evil.example", ...negotiated } }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
      });
      req.on("error", reject);
      req.end();
    });
    expect(JSON.parse(poisoned).forwardedHost).toBe("evil.example");
    const clean = await get(path, negotiated, false);
    expect(clean.cache).toBe("MISS");
    expect(JSON.parse(clean.body).forwardedHost).toBe(`127.0.0.1:${port}`);
    expect(hits(path)).toBe(2);
  });

  it("a hit never replays the per-exchange headers of the answer it was stored from", async () => {
    answerWith({ age: "30", "server-timing": "db;dur=5" });
    const path = "/api/v1/items?per-exchange";
    const miss = await get(path);
    const hit = await get(path);
    expect([miss.cache, hit.cache]).toEqual(["MISS", "HIT"]);
    expect(hit.headers.get("content-type")).toBe("application/json");
    for (const name of ["age", "server-timing", "set-cookie"]) expect({ name, value: hit.headers.get(name) }).toEqual({ name, value: null });
    expect(hit.headers.get("x-request-id")).not.toBe(miss.headers.get("x-request-id"));
    // The rate-limit counters are the hit's own, not the stored answer's.
    const remaining = (r: { headers: Headers }) => Number(r.headers.get("x-ratelimit-remaining"));
    expect(miss.headers.get("x-ratelimit-remaining")).not.toBeNull();
    expect(remaining(hit)).toBe(remaining(miss) - 1);
  });
});

describe("what the cache stores", () => {
  it("the exact body of an answer the upstream sent in many small pieces, and serves it again", async () => {
    const text = JSON.stringify({ items: Array.from({ length: 400 }, (_, i) => `item-${i}`) });
    backend.respond = (_req, res) => {
      res.setHeader("content-type", "application/json");
      res.setHeader("content-length", Buffer.byteLength(text));
      // One write per 7 bytes, each on its own tick, so the gateway reads many pieces.
      let at = 0;
      const step = () => {
        if (at >= text.length) return void res.end();
        res.write(text.slice(at, at + 7));
        at += 7;
        setImmediate(step);
      };
      step();
    };
    const first = await get("/api/v1/items?pieces=1");
    const second = await get("/api/v1/items?pieces=1");
    expect([first.status, first.cache, second.cache]).toEqual([200, "MISS", "HIT"]);
    expect(first.body).toBe(text);
    expect(second.body).toBe(text);
    expect(hits("/api/v1/items?pieces=1")).toBe(1);
  });

  it("nothing, and a 504, when the body trickles in for longer than the route's timeout; the upstream answer is let go of", async () => {
    // The headers at once, then a byte every 300 ms: never a gap long enough for a body timeout.
    let upstreamClosedAt = 0;
    backend.respond = (_req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": "100" });
      const timer = setInterval(() => res.write("x"), 300);
      res.on("close", () => {
        clearInterval(timer);
        upstreamClosedAt = performance.now();
      });
    };
    const started = performance.now();
    const answer = await get("/api/v1/slow-items?trickle");
    const tookMs = performance.now() - started;
    expect([answer.status, JSON.parse(answer.body).error.code]).toEqual([504, "GATEWAY_TIMEOUT"]);
    expect(tookMs).toBeLessThan(3_000);
    await expect.poll(() => upstreamClosedAt, { timeout: 2_000, interval: 20 }).toBeGreaterThan(0);
    expect((await get("/api/v1/slow-items?trickle")).cache).toBeNull();
  });

  it("stops reading the upstream answer when the caller goes away", async () => {
    let upstreamClosedAt = 0;
    backend.respond = (_req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": "100" });
      const timer = setInterval(() => res.write("x"), 50);
      res.on("close", () => {
        clearInterval(timer);
        upstreamClosedAt = performance.now();
      });
    };
    const abort = new AbortController();
    const call = fetch(`${gateway.url}/api/v1/items?caller-leaves`, { headers: { authorization: `Bearer ${token}` }, signal: abort.signal });
    await expect.poll(() => hits("/api/v1/items?caller-leaves"), { timeout: 2_000, interval: 20 }).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const leftAt = performance.now();
    abort.abort();
    await expect(call).rejects.toThrow();
    // Long before the 5 s the upstream would take to send its 100 bytes.
    await expect.poll(() => upstreamClosedAt, { timeout: 2_000, interval: 20 }).toBeGreaterThan(0);
    expect(upstreamClosedAt - leftAt).toBeLessThan(1_000);
  });

  it("nothing, and a 503, when the upstream closes before its Content-Length", async () => {
    backend.respond = (_req, res) => {
      // Straight onto the socket: node:http would refuse to end a body short of its length.
      res.socket?.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 50\r\nconnection: close\r\n\r\n{"cut":"short"}');
      res.socket?.end();
    };
    const first = await get("/api/v1/items?cut-short=1");
    expect(first.status).toBe(503);
    // Never a body padded with whatever the buffer held: nothing was stored.
    const again = await get("/api/v1/items?cut-short=1");
    expect(again.cache).toBe(null);
    expect(hits("/api/v1/items?cut-short=1")).toBe(2);
  });
});

describe("whose answer a cache entry is", () => {
  it("the same user with a narrower token is not served the answer made for the wider one", async () => {
    answerWith({}, (req) => ({ scopes: req.headers["x-user-scopes"] }));
    const path = "/api/v1/items?identity=scopes";
    const wide = await get(path, { authorization: `Bearer ${await seedToken({ user_id: "cache-rules-user", scopes: ["read", "admin"] })}` });
    expect([wide.cache, JSON.parse(wide.body).scopes]).toEqual(["MISS", "read admin"]);
    const narrowToken = await seedToken({ user_id: "cache-rules-user", scopes: ["read"] });
    const narrow = await get(path, { authorization: `Bearer ${narrowToken}` });
    expect([narrow.cache, JSON.parse(narrow.body).scopes]).toEqual(["MISS", "read"]);
    // Each identity has its own entry.
    expect((await get(path, { authorization: `Bearer ${narrowToken}` })).cache).toBe("HIT");
    expect(hits(path)).toBe(2);
  });

  it("on a route that forwards the caller's token, two tokens of one identity never share an entry", async () => {
    const upstream = await startRecordingBackend();
    upstream.respond = (req, res) => {
      // The backend reads a claim the gateway does not map to a header.
      const token = String(req.headers.authorization ?? "").replace(/^Bearer /, "");
      const claims = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString()) as { product?: string };
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ product: claims.product }));
    };
    const forwarding = routesFileText({
      routes: [{ path: "/api/v1/dashboard", method: "GET", proxy_upstream: "$UP", scopes: ["read"], cache_ttl: "60s", forward_authorization: true }],
    });
    const shared = await startSeedGateway(forwarding, { UP: upstream.url });
    try {
      const call = async (token: string) => {
        const res = await fetch(shared.url + "/api/v1/dashboard", { headers: { authorization: `Bearer ${token}` } });
        return [res.headers.get("x-cache"), await res.text()];
      };
      const enterprise = await seedToken({ user_id: "dashboard-user", scopes: ["read"], product: "enterprise" });
      const free = await seedToken({ user_id: "dashboard-user", scopes: ["read"], product: "free" });
      expect(await call(enterprise)).toEqual(["MISS", '{"product":"enterprise"}']);
      expect(await call(free)).toEqual(["MISS", '{"product":"free"}']);
      // Each token keeps its own entry.
      expect(await call(enterprise)).toEqual(["HIT", '{"product":"enterprise"}']);
      expect(upstream.requests).toHaveLength(2);
    } finally {
      await closeInTurn(shared, upstream);
    }
  });

  it("two routes that forward the same target to different upstreams never serve each other's entries", async () => {
    const users = await startRecordingBackend();
    const billing = await startRecordingBackend();
    for (const [backendOf, name] of [[users, "users"], [billing, "billing"]] as const) {
      backendOf.respond = (_req, res) => {
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ from: name }));
      };
    }
    // Both forward GET /api/v1/profile, one to each upstream, under different scopes.
    const twoUpstreams = routesFileText({
      routes: [
        { path: "/v1/profile", method: "GET", proxy_upstream: "$USERS/api", scopes: ["read"], cache_ttl: "60s" },
        { path: "/api/v1/profile", method: "GET", proxy_upstream: "$BILLING", scopes: ["billing"], cache_ttl: "60s" },
      ],
    });
    const shared = await startSeedGateway(twoUpstreams, { USERS: users.url, BILLING: billing.url });
    try {
      const call = async (path: string, scopes: string[]) => {
        const res = await fetch(shared.url + path, {
          headers: { authorization: `Bearer ${await seedToken({ user_id: "profile-user", scopes })}` },
        });
        return [res.status, res.headers.get("x-cache"), await res.text()];
      };
      expect(await call("/api/v1/profile", ["read", "billing"])).toEqual([200, "MISS", '{"from":"billing"}']);
      expect(await call("/v1/profile", ["read", "billing"])).toEqual([200, "MISS", '{"from":"users"}']);
      expect(await call("/v1/profile", ["read", "billing"])).toEqual([200, "HIT", '{"from":"users"}']);
      expect(users.requests.map((r) => r.url)).toEqual(["/api/v1/profile"]);
      expect(billing.requests.map((r) => r.url)).toEqual(["/api/v1/profile"]);
    } finally {
      await closeInTurn(shared, users, billing);
    }
  });
});
