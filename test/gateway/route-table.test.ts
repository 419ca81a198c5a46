// The gateway's own route table (one fastify route for every forwarding
// route): it matches exactly what fastify's router would, minus what the
// parameter guard refuses; a request it matches nothing for is a 404 before
// its token, its body or the rate limit; and one dispatcher serves every
// upstream, choosing HTTP/1.1 or h2c by route, not by origin.
import { request, type IncomingMessage, type ServerResponse } from "node:http";
import Fastify from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDualProtocolServer } from "../../packages/gateway/src/dual-protocol-server.js";
import type { Gateway } from "../../packages/gateway/src/index.js";
import { createRouteParameterGuard } from "../../packages/gateway/src/route-parameters.js";
import { RouteTable } from "../../packages/gateway/src/route-table.js";
import {
  captureLogs,
  closeInTurn,
  hasValidSignature,
  route,
  routesFileText,
  seedToken,
  startGatewayWithBackend,
  startSeedGateway,
  type RecordingBackend,
} from "../support/gateway.js";
import { rawRequest } from "../support/raw-request.js";

const PATTERNS: ReadonlyArray<readonly [string, string]> = [
  ["GET", "/api/v1/users/:id"],
  ["GET", "/api/v1/users/admin"],
  ["DELETE", "/api/v1/users/:id"],
  ["GET", "/api/v1/users/:id/posts/:post"],
  ["GET", "/api/v1/files/:name.:format"],
  ["GET", "/api/v1/ranges/:from-:to"],
  ["POST", "/api/v1/orders"],
  ["GET", "/backend/echo/*"],
  ["POST", "/backend/echo/*"],
];

const REQUESTS: readonly string[] = [
  "/api/v1/users/42",
  "/api/v1/users/42?x=1&y=%zz",
  "/api/v1/users/admin",
  "/api/v1/users/ADMIN",
  "/api/v1/users/Admin?q",
  "/api/v1/users/%61dmin",
  "/api/v1/users/%41DMIN",
  "/api/v1/users/",
  "/api/v1/users",
  "/api/v1/users/42/",
  "/api/v1//users/42",
  "/API/v1/users/42",
  "/api/v1/users/a%2Fb",
  "/api/v1/users/caf%C3%A9",
  "/api/v1/users/x;y",
  `/api/v1/users/${"x".repeat(100)}`,
  `/api/v1/users/${"x".repeat(101)}`,
  "/api/v1/users/42/posts/7",
  "/api/v1/users//posts/7",
  "/api/v1/users/42/posts/",
  "/api/v1/files/report.pdf",
  "/api/v1/files/report.",
  "/api/v1/files/.pdf",
  "/api/v1/ranges/1-9",
  "/api/v1/orders",
  "/api/v1/orders/",
  "/backend/echo/",
  "/backend/echo/svc.v1.Echo/Say",
  "/backend/echo",
  "/backend/echoes/x",
  "/backend/Echo/x",
  "/health",
  "/",
];

describe("RouteTable", () => {
  it("matches what fastify's router matches, less what the parameter guard refuses", async () => {
    const app = Fastify();
    for (const [method, url] of PATTERNS) {
      app.route({ method: method as "GET", url, handler: async (request) => ({ pattern: request.routeOptions.url, params: request.params }) });
    }
    app.setNotFoundHandler(async (_request, reply) => reply.code(404).send({ pattern: null }));
    const table = new RouteTable(
      PATTERNS.map(([method, pattern], line) => ({ pattern, methods: [method], target: pattern, line })),
      "routes.yaml",
    );
    const guard = createRouteParameterGuard(PATTERNS.map(([, pattern]) => pattern));
    const differences: unknown[] = [];
    let matched = 0;
    for (const method of ["GET", "POST", "DELETE", "PUT"]) {
      for (const url of REQUESTS) {
        const answer = await app.inject({ method: method as "GET", url });
        // Not found, or refused by the router (fastify: 414 for a parameter over maxParamLength).
        const viaFastify = (answer.statusCode === 200 ? answer.json() : { pattern: null }) as { pattern: string | null; params?: Record<string, string> };
        const expected =
          viaFastify.pattern === null || guard(viaFastify.pattern, viaFastify.params ?? {}) !== undefined
            ? null
            : { pattern: viaFastify.pattern, params: viaFastify.params };
        const found = table.find(method, url);
        const actual = found === undefined ? null : { pattern: found.store.target, params: { ...found.params } };
        if (JSON.stringify(actual) !== JSON.stringify(expected)) differences.push({ method, url, expected, actual });
        if (actual !== null) matched++;
      }
    }
    await app.close();
    expect(differences).toEqual([]);
    // The list exercises both outcomes.
    expect(matched).toBeGreaterThan(15);
  });

  it("takes 10,000 routes and finds the last one", () => {
    const table = new RouteTable(
      Array.from({ length: 10_000 }, (_, i) => ({ pattern: `/api/v1/r${i}/items/:id`, methods: ["GET"], target: i, line: i + 3 })),
      "routes.yaml",
    );
    expect(table.find("GET", "/api/v1/r9999/items/7")?.store.target).toBe(9999);
    expect(table.find("GET", "/api/v1/r10000/items/7")).toBeUndefined();
  });

  it("names the routes file and the line of a pattern the router cannot take beside the others", () => {
    // The routes file refuses these itself; the table is the last line of defence.
    const build = () =>
      new RouteTable(
        [
          { pattern: "/a/:id", methods: ["GET"], target: 1, line: 3 },
          { pattern: "/a/:key", methods: ["GET"], target: 2, line: 7 },
        ],
        "routes.yaml",
      );
    expect(build).toThrow(expect.objectContaining({ name: "RoutesFileError", problems: [expect.objectContaining({ line: 7 })] }));
  });
});

describe("requests the route table matches nothing for", () => {
  const logs = captureLogs();
  let backend: RecordingBackend;
  let gateway: Gateway;
  let port: number;

  beforeAll(async () => {
    ({ backend, gateway } = await startGatewayWithBackend(
      routesFileText({ routes: [route("GET", "/api/v1/items/{id}", { scopes: ["read"] }), route("POST", "/api/v1/items")] }),
      { rateLimit: { max: 2, timeWindowMs: 60_000 }, logger: { level: "info", stream: logs.stream } },
    ));
    port = Number(new URL(gateway.url).port);
  });
  afterAll(() => closeInTurn(gateway, backend));

  it("are 404 before any token is asked for, with a request id, never counted by the rate limit, never forwarded", async () => {
    for (const path of ["/api/v1/nothing", "/api/v1/items/", "/api/v1/items/42/", "/API/v1/items/42", `/api/v1/items/${"9".repeat(101)}`]) {
      const response = await fetch(`${gateway.url}${path}`, { headers: { "x-request-id": "unmatched-1" } });
      expect([path, response.status, response.headers.get("x-request-id")]).toEqual([path, 404, "unmatched-1"]);
      await response.arrayBuffer();
    }
    // A method the path has no route for.
    const put = await fetch(`${gateway.url}/api/v1/items/42`, { method: "PUT", body: "x" });
    expect(put.status).toBe(404);
    expect(backend.requests).toEqual([]);
    // Two calls the limit allows: the 404s took nothing from the budget.
    const token = await seedToken({ scopes: ["read"] });
    for (let i = 0; i < 2; i++) {
      const ok = await fetch(`${gateway.url}/api/v1/items/${i}`, { headers: { authorization: `Bearer ${token}` } });
      expect(ok.status).toBe(200);
      await ok.arrayBuffer();
    }
    expect(backend.requests.map((r) => r.url)).toEqual(["/api/v1/items/0", "/api/v1/items/1"]);
  });

  it("under /backend/<name>/, asks whether the name is a backend (echoing it only when spelled as one)", async () => {
    const message = async (path: string) => ((await (await fetch(`${gateway.url}${path}`)).json()) as { error: { message: string } }).error.message;
    expect(await message("/backend/greeter/greeter.v1.GreeterService/Greet")).toBe(
      'No route matches this request (is "greeter" a backend of the routes file? Connect calls go to /backend/<name>/<package.Service>/<Method>)',
    );
    // Not a possible backend name: nothing of it is echoed.
    expect(await message("/backend/%3Cscript%3E/x")).toBe("No route matches this request");
    expect(await message("/api/v1/nothing")).toBe("No route matches this request");
  });

  it("never reads the body of a POST no route takes", async () => {
    // The body never comes: a gateway that waited for it would not answer.
    const status = await new Promise<number | undefined>((resolve, reject) => {
      const req = request(
        { host: "127.0.0.1", port, method: "POST", path: "/api/v1/elsewhere", agent: false, headers: { "content-length": "1000000", "content-type": "application/json" } },
        (res) => {
          res.resume();
          resolve(res.statusCode);
          req.destroy();
        },
      );
      req.on("error", reject);
      req.write("{");
    });
    expect(status).toBe(404);
  });

  it("are logged without a route", async () => {
    const response = await fetch(`${gateway.url}/api/v1/unknown`, { headers: { "x-request-id": "unmatched-log" } });
    expect(response.status).toBe(404);
    await response.arrayBuffer();
    await new Promise((resolve) => setTimeout(resolve, 20));
    const lines = logs.lines().filter((line) => line.reqId === "unmatched-log" && line.msg === "request completed");
    expect(lines).toEqual([expect.objectContaining({ statusCode: 404, path: "/api/v1/unknown" })]);
    expect(lines[0]).not.toHaveProperty("route");
  });
});

describe("a public root and a root placeholder route", () => {
  let backend: RecordingBackend;
  let gateway: Gateway;
  let port: number;

  beforeAll(async () => {
    ({ backend, gateway } = await startGatewayWithBackend(
      routesFileText({ routes: [route("GET", "/", { auth_required: false }), route("GET", "/{page}", { scopes: ["admin"] })] }),
    ));
    port = Number(new URL(gateway.url).port);
  });
  afterAll(() => closeInTurn(gateway, backend));

  it("refuses the request-target `*` (400), which the router took for the public `/` and URL parsing forwarded as `/*`", async () => {
    for (const method of ["GET", "OPTIONS"]) {
      const res = await rawRequest(port, { method, path: "*", headers: [] });
      expect([method, res.status, JSON.parse(res.body).error?.message]).toEqual([method, 400, "Malformed request target"]);
    }
    const root = await rawRequest(port, { method: "GET", path: "/", headers: [] });
    expect(root.status).toBe(200);
    expect(backend.requests.map((r) => r.url)).toEqual(["/"]);
  });

  it("leaves /health and /ready to the gateway, whatever route pattern would match them", async () => {
    for (const path of ["/health", "/ready", "/health?probe=1"]) {
      const res = await rawRequest(port, { method: "GET", path, headers: [] });
      expect([path, res.status]).toEqual([path, 200]);
    }
    // The placeholder route still takes every other page, with its scope.
    expect((await rawRequest(port, { method: "GET", path: "/about", headers: [] })).status).toBe(401);
    expect(backend.requests.map((r) => r.url)).toEqual(["/"]);
  });
});

describe("one upstream origin, two protocols", () => {
  it("forwards a backend's calls over h2c and a route's over HTTP/1.1 to the same server", async () => {
    const seen: Array<{ url: string; httpVersion: string; signed: boolean }> = [];
    const upstream = createDualProtocolServer(
      (req: IncomingMessage, res: ServerResponse) => {
        const chunks: Buffer[] = [];
        req.on("data", (chunk: Buffer) => chunks.push(chunk));
        req.on("end", () => {
          const recorded = { method: req.method ?? "", url: req.url ?? "", headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks) };
          seen.push({ url: recorded.url, httpVersion: req.httpVersion, signed: hasValidSignature(recorded) });
          res.setHeader("content-type", "application/json");
          res.end(JSON.stringify({ ok: true }));
        });
      },
      { headersTimeoutMs: 5_000, requestTimeoutMs: 5_000, http2IdleTimeoutMs: 5_000, sendTimeoutMs: 5_000, http2MaxConcurrentStreams: 100 },
    );
    await new Promise<void>((resolve) => upstream.server.listen(0, "127.0.0.1", resolve));
    const address = upstream.server.address() as { port: number };
    const url = `http://127.0.0.1:${address.port}`;
    const gateway = await startSeedGateway(
      routesFileText({
        routes: [route("POST", "/api/v1/rest", { auth_required: false })],
        backends: { grpc: { upstream: "$UP", http2: true, auth_required: false } },
      }),
      { UP: url },
      { rateLimit: false },
    );
    try {
      for (const path of ["/api/v1/rest", "/backend/grpc/svc.v1.Echo/Say", "/api/v1/rest"]) {
        const response = await fetch(`${gateway.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
        expect([path, response.status]).toEqual([path, 200]);
        await response.arrayBuffer();
      }
      expect(seen).toEqual([
        { url: "/api/v1/rest", httpVersion: "1.1", signed: true },
        { url: "/svc.v1.Echo/Say", httpVersion: "2.0", signed: true },
        { url: "/api/v1/rest", httpVersion: "1.1", signed: true },
      ]);
    } finally {
      await gateway.close();
      upstream.destroyConnections();
      await new Promise((resolve) => upstream.server.close(resolve));
    }
  });
});
