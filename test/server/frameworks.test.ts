import { Code, createClient } from "@connectrpc/connect";
import { expressConnectMiddleware } from "@connectrpc/connect-express";
import { fastifyConnectPlugin } from "@connectrpc/connect-fastify";
import express from "express";
import Fastify, { type FastifyInstance } from "fastify";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGatewayAuth, currentUser, type VerifiedNodeRequest } from "../../src/server/index.js";
import { createTestGatewayTransport } from "../../src/testing/index.js";
import { EchoService } from "../../gen/example/v1/example_pb.js";
import { echoRoutes, type Observed } from "./echo-routes.js";
import { rawRequest } from "./raw-request.js";
import { signedHeaders } from "./signed-headers.js";

const SECRET = "frameworks-secret";
const auth = createGatewayAuth({ hmacSecret: SECRET, exposeRejectionReason: true, resolveUser: (id) => ({ name: `user ${id.userId}` }) });
const identity = { clientId: "web-app", userId: "sub-42", scopes: ["read"] };

const payload = Buffer.from(JSON.stringify({ amount: 12, note: "caf\u00e9" }));
const json: [string, string] = ["content-type", "application/json"];

function signedPost(port: number, path: string, body = payload, secret = SECRET, type: [string, string] = json) {
  return rawRequest(port, { method: "POST", path, headers: [type, ...signedHeaders(secret, { method: "POST", path, body }, identity)], body });
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port)));
}

function stop(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

describe("Express: auth.express() before the routes", () => {
  let server: Server;
  let port: number;
  const observed: Observed = { calls: 0, messages: 0 };
  beforeAll(async () => {
    const app = express();
    app.use(auth.express());
    app.use(express.json()); // after auth: sees a finished body and leaves req.body alone
    app.post("/api/payments", async (req, res) => {
      const gateway = req.gateway as VerifiedNodeRequest;
      res.json({ body: req.body, raw: gateway.body.toString("utf8"), userId: gateway.identity?.userId, user: await currentUser(gateway) });
    });
    app.post("/api/upload", (req, res) => {
      res.json({ isBuffer: Buffer.isBuffer(req.body), length: (req.body as Buffer).length });
    });
    app.get("/api/items", (req, res) => {
      res.json({ query: req.query, clientId: req.gateway?.identity?.clientId });
    });
    // Connect routes in the same app, wired with connectOptions.
    app.use(expressConnectMiddleware(auth.connectOptions({ routes: echoRoutes(observed) })));
    server = app.listen(0, "127.0.0.1");
    await new Promise((r) => server.once("listening", r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => stop(server));

  it("accepts a signed JSON request; the handler gets the parsed body, the raw bytes and the identity", async () => {
    const res = await signedPost(port, "/api/payments");
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({
      body: { amount: 12, note: "caf\u00e9" },
      raw: payload.toString("utf8"),
      userId: "sub-42",
      user: { name: "user sub-42" },
    });
  });

  it("hands a non-JSON body over as the exact Buffer", async () => {
    const bytes = Buffer.from([0, 255, 1, 254, 2]);
    const res = await signedPost(port, "/api/upload", bytes, SECRET, ["content-type", "application/octet-stream"]);
    expect(JSON.parse(res.body)).toEqual({ isBuffer: true, length: 5 });
  });

  it("signs a GET with its query as sent", async () => {
    const path = "/api/items?q=a%20b&page=2";
    const res = await rawRequest(port, { method: "GET", path, headers: signedHeaders(SECRET, { method: "GET", path }, identity) });
    expect(JSON.parse(res.body)).toEqual({ query: { q: "a b", page: "2" }, clientId: "web-app" });
  });

  it("refuses a tampered body and a wrong secret with 403 before the route", async () => {
    const tampered = await rawRequest(port, {
      method: "POST",
      path: "/api/payments",
      headers: [json, ...signedHeaders(SECRET, { method: "POST", path: "/api/payments", body: payload }, identity)],
      body: Buffer.from(payload.toString().replace("12", "99")),
    });
    expect(tampered.status).toBe(403);
    expect(JSON.parse(tampered.body)).toEqual({ message: "invalid_signature" });
    expect((await signedPost(port, "/api/payments", payload, "wrong")).status).toBe(403);
    const unsigned = await rawRequest(port, { method: "POST", path: "/api/payments", headers: [json], body: payload });
    expect(JSON.parse(unsigned.body)).toEqual({ message: "missing_gateway_headers" });
  });

  it("lets connect-express routes behind it take the identity and bytes it verified (unary JSON and binary, streams)", async () => {
    const baseUrl = `http://127.0.0.1:${port}`;
    for (const useBinaryFormat of [true, false]) {
      const client = createClient(EchoService, createTestGatewayTransport({ baseUrl, hmacSecret: SECRET, identity, useBinaryFormat }));
      const res = await client.echo({ text: "hi" });
      expect(res.text).toBe("hi");
      expect(res.caller?.userId).toBe("sub-42");
      async function* parts() {
        yield { text: "a" };
        yield { text: "b" };
      }
      expect((await client.collect(parts())).text).toBe("ab");
    }
    const calls = observed.calls;
    const wrong = createClient(EchoService, createTestGatewayTransport({ baseUrl, hmacSecret: "wrong", identity }));
    await expect(wrong.echo({ text: "hi" })).rejects.toMatchObject({ code: Code.PermissionDenied });
    expect(observed.calls).toBe(calls);
  });
});

describe("Express: a body parser mounted before auth.express()", () => {
  let server: Server;
  let port: number;
  let reached = 0;
  beforeAll(async () => {
    const app = express();
    app.use(express.json());
    app.use(auth.express());
    app.post("/api/payments", (_req, res) => {
      reached++;
      res.json({ ok: true });
    });
    server = app.listen(0, "127.0.0.1");
    await new Promise((r) => server.once("listening", r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => stop(server));

  it("answers 500 telling the developer to mount auth first, and never passes the request on", async () => {
    const res = await signedPost(port, "/api/payments");
    expect(res.status).toBe(500);
    expect(JSON.parse(res.body)).toEqual({ message: expect.stringContaining("Mount the gateway middleware before any body parser") });
    expect(reached).toBe(0);
  });
});

describe("Express: connect-express with connectOptions and no other middleware", () => {
  let server: Server;
  let port: number;
  const observed: Observed = { calls: 0, messages: 0 };
  beforeAll(async () => {
    const app = express();
    app.use(expressConnectMiddleware(auth.connectOptions({ routes: echoRoutes(observed) })));
    server = app.listen(0, "127.0.0.1");
    await new Promise((r) => server.once("listening", r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => stop(server));

  it("verifies and hands the identity to the handler; refuses the wrong secret", async () => {
    const baseUrl = `http://127.0.0.1:${port}`;
    const res = await createClient(EchoService, createTestGatewayTransport({ baseUrl, hmacSecret: SECRET, identity })).echo({ text: "hi" });
    expect(res.caller?.userId).toBe("sub-42");
    const calls = observed.calls;
    await expect(createClient(EchoService, createTestGatewayTransport({ baseUrl, hmacSecret: "wrong", identity })).echo({ text: "hi" })).rejects.toMatchObject({ rawMessage: "invalid_signature" });
    expect(observed.calls).toBe(calls);
  });
});

describe("Fastify: app.register(auth.fastify)", () => {
  let app: FastifyInstance;
  let port: number;
  let reached = 0;
  beforeAll(async () => {
    app = Fastify();
    await app.register(async (rest) => {
      await rest.register(auth.fastify);
      rest.post("/api/payments", async (req) => {
        reached++;
        const gateway = (req as unknown as { gateway: Omit<VerifiedNodeRequest, "body"> }).gateway;
        return { body: req.body, userId: gateway.identity?.userId, user: await currentUser(gateway) };
      });
      rest.get("/api/items", async (req) => ({ query: req.query, clientId: (req as unknown as { gateway: Omit<VerifiedNodeRequest, "body"> }).gateway.identity?.clientId }));
    });
    await app.listen({ port: 0, host: "127.0.0.1" });
    port = (app.server.address() as AddressInfo).port;
  });
  afterAll(() => app.close());

  it("accepts a signed JSON request; the handler gets the parsed body and the identity", async () => {
    const res = await signedPost(port, "/api/payments");
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ body: { amount: 12, note: "caf\u00e9" }, userId: "sub-42", user: { name: "user sub-42" } });
  });

  it("verifies a bodyless GET against the empty body hash", async () => {
    const path = "/api/items?q=a%20b";
    const res = await rawRequest(port, { method: "GET", path, headers: signedHeaders(SECRET, { method: "GET", path }, identity) });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ query: { q: "a b" }, clientId: "web-app" });
    const other = await rawRequest(port, { method: "GET", path: "/api/items?q=c", headers: signedHeaders(SECRET, { method: "GET", path }, identity) });
    expect(other.status).toBe(403);
  });

  it("refuses a tampered body, missing headers and a wrong secret before the handler", async () => {
    const before = reached;
    const tampered = await rawRequest(port, {
      method: "POST",
      path: "/api/payments",
      headers: [json, ...signedHeaders(SECRET, { method: "POST", path: "/api/payments", body: payload }, identity)],
      body: Buffer.from(payload.toString().replace("12", "99")),
    });
    expect(tampered.status).toBe(403);
    expect(JSON.parse(tampered.body)).toEqual({ message: "invalid_signature" });
    const unsigned = await rawRequest(port, { method: "POST", path: "/api/payments", headers: [json], body: payload });
    expect(JSON.parse(unsigned.body)).toEqual({ message: "missing_gateway_headers" });
    expect((await signedPost(port, "/api/payments", payload, "wrong")).status).toBe(403);
    expect(reached).toBe(before);
  });
});

describe("Fastify: auth.fastify and connect-fastify on the same instance", () => {
  let app: FastifyInstance;
  let baseUrl: string;
  const observed: Observed = { calls: 0, messages: 0 };
  beforeAll(async () => {
    app = Fastify();
    await app.register(auth.fastify);
    await app.register(fastifyConnectPlugin, auth.connectOptions({ routes: echoRoutes(observed) }));
    app.post("/api/ping", async (req) => ({ body: req.body }));
    await app.listen({ port: 0, host: "127.0.0.1" });
    baseUrl = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });
  afterAll(() => app.close());

  it("Connect routes take the identity and bytes the plugin verified; REST routes still work", async () => {
    const client = createClient(EchoService, createTestGatewayTransport({ baseUrl, hmacSecret: SECRET, identity }));
    expect((await client.echo({ text: "hi" })).caller?.userId).toBe("sub-42");
    async function* parts() {
      yield { text: "a" };
      yield { text: "b" };
    }
    expect((await client.collect(parts())).text).toBe("ab");
    const port = Number(new URL(baseUrl).port);
    expect(JSON.parse((await signedPost(port, "/api/ping")).body)).toEqual({ body: { amount: 12, note: "caf\u00e9" } });
    const calls = observed.calls;
    const wrong = createClient(EchoService, createTestGatewayTransport({ baseUrl, hmacSecret: "wrong", identity }));
    await expect(wrong.echo({ text: "hi" })).rejects.toMatchObject({ code: Code.PermissionDenied });
    expect(observed.calls).toBe(calls);
  });
});

describe("Fastify: connect-fastify with connectOptions", () => {
  let app: FastifyInstance;
  let baseUrl: string;
  const observed: Observed = { calls: 0, messages: 0 };
  beforeAll(async () => {
    app = Fastify();
    await app.register(fastifyConnectPlugin, auth.connectOptions({ routes: echoRoutes(observed) }));
    await app.listen({ port: 0, host: "127.0.0.1" });
    baseUrl = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });
  afterAll(() => app.close());

  it("verifies unary and client-streaming calls and hands the identity to handlers", async () => {
    const client = createClient(EchoService, createTestGatewayTransport({ baseUrl, hmacSecret: SECRET, identity }));
    expect((await client.echo({ text: "hi" })).caller?.userId).toBe("sub-42");
    async function* parts() {
      yield { text: "a" };
      yield { text: "b" };
    }
    expect((await client.collect(parts())).text).toBe("ab");
  });

  it("refuses a wrong secret before any handler runs", async () => {
    const calls = observed.calls;
    const client = createClient(EchoService, createTestGatewayTransport({ baseUrl, hmacSecret: "wrong", identity }));
    await expect(client.echo({ text: "hi" })).rejects.toMatchObject({ rawMessage: "invalid_signature" });
    expect(observed.calls).toBe(calls);
  });
});
