import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { expressConnectMiddleware } from "@connectrpc/connect-express";
import { fastifyConnectPlugin } from "@connectrpc/connect-fastify";
import express, { type Express } from "express";
import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import { connect as tcpConnect, type AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGatewayAuth, currentUser, type VerifiedNodeRequest } from "../../src/server/index.js";
import { createTestGatewayTransport } from "../../src/testing/index.js";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import { echoRoutes, messages, type Observed } from "../support/echo-routes.js";
import { rawRequest, rawSocket } from "../support/raw-request.js";
import { signedHeaders } from "../support/signed-headers.js";
import { startServer, type RunningServer } from "../support/loopback-server.js";

const SECRET = "frameworks-secret";
const auth = createGatewayAuth({ hmacSecret: SECRET, exposeRejectionReason: true, resolveUser: (id) => ({ name: `user ${id.userId}` }) });
const identity = { clientId: "web-app", userId: "sub-42", scopes: ["read"] };

const payload = Buffer.from(JSON.stringify({ amount: 12, note: "caf\u00e9" }));
const json: [string, string] = ["content-type", "application/json"];

function signedPost(port: number, path: string, body = payload, secret = SECRET, type: [string, string] = json) {
  return rawRequest(port, { method: "POST", path, headers: [type, ...signedHeaders(secret, { method: "POST", path, body }, identity)], body });
}

/** The payload signed as is, then changed on the wire. */
function tamperedPost(port: number, path: string) {
  const headers = [json, ...signedHeaders(SECRET, { method: "POST", path, body: payload }, identity)];
  return rawRequest(port, { method: "POST", path, headers, body: Buffer.from(payload.toString().replace("12", "99")) });
}

function signedGet(port: number, path: string, signedPath = path) {
  return rawRequest(port, { method: "GET", path, headers: signedHeaders(SECRET, { method: "GET", path: signedPath }, identity) });
}

/** An EchoService client signing like the gateway, with `secret`. */
function echoClient(baseUrl: string, secret = SECRET, useBinaryFormat = true) {
  return createClient(EchoService, createTestGatewayTransport({ baseUrl, hmacSecret: secret, identity, useBinaryFormat }));
}

/** Serves the Express app `setup` builds on loopback around the enclosing describe. */
function expressServer(setup: (app: Express) => void): { readonly server: RunningServer } {
  const served = { server: undefined as unknown as RunningServer };
  beforeAll(async () => {
    const app = express();
    setup(app);
    served.server = await startServer(app);
  });
  afterAll(() => served.server.close());
  return served;
}

/** Serves the Fastify instance `setup` builds on loopback around the enclosing describe. */
function fastifyServer(setup: (app: FastifyInstance) => Promise<void>): { port: number; baseUrl: string } {
  const served = { port: 0, baseUrl: "" };
  let app: FastifyInstance;
  beforeAll(async () => {
    app = Fastify();
    await setup(app);
    await app.listen({ port: 0, host: "127.0.0.1" });
    served.port = (app.server.address() as AddressInfo).port;
    served.baseUrl = `http://127.0.0.1:${served.port}`;
  });
  afterAll(() => app.close());
  return served;
}

const gatewayOf = (req: FastifyRequest) => (req as unknown as { gateway: Omit<VerifiedNodeRequest, "body"> }).gateway;

describe("Express: auth.express() before the routes", () => {
  const observed: Observed = { calls: 0, messages: 0 };
  const served = expressServer((app) => {
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
  });

  it("accepts a signed JSON request; the handler gets the parsed body, the raw bytes and the identity", async () => {
    const res = await signedPost(served.server.port, "/api/payments");
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
    const res = await signedPost(served.server.port, "/api/upload", bytes, SECRET, ["content-type", "application/octet-stream"]);
    expect(JSON.parse(res.body)).toEqual({ isBuffer: true, length: 5 });
  });

  it("signs a GET with its query as sent", async () => {
    const res = await signedGet(served.server.port, "/api/items?q=a%20b&page=2");
    expect(JSON.parse(res.body)).toEqual({ query: { q: "a b", page: "2" }, clientId: "web-app" });
  });

  it("refuses a tampered body and a wrong secret with 403 before the route", async () => {
    const { port } = served.server;
    const tampered = await tamperedPost(port, "/api/payments");
    expect(tampered.status).toBe(403);
    expect(JSON.parse(tampered.body)).toEqual({ message: "invalid_signature" });
    expect((await signedPost(port, "/api/payments", payload, "wrong")).status).toBe(403);
    const unsigned = await rawRequest(port, { method: "POST", path: "/api/payments", headers: [json], body: payload });
    expect(JSON.parse(unsigned.body)).toEqual({ message: "missing_gateway_headers" });
  });

  it("lets connect-express routes behind it take the identity and bytes it verified (unary JSON and binary, streams)", async () => {
    for (const useBinaryFormat of [true, false]) {
      const client = echoClient(served.server.baseUrl, SECRET, useBinaryFormat);
      const res = await client.echo({ text: "hi" });
      expect(res.text).toBe("hi");
      expect(res.caller?.userId).toBe("sub-42");
      expect((await client.collect(messages("a", "b"))).text).toBe("ab");
    }
    const calls = observed.calls;
    await expect(echoClient(served.server.baseUrl, "wrong").echo({ text: "hi" })).rejects.toMatchObject({ code: Code.PermissionDenied });
    expect(observed.calls).toBe(calls);
  });

  it("hands a gzip-encoded Connect request to the Connect route undecoded, which inflates it", async () => {
    const path = "/example.v1.EchoService/Echo";
    const body = gzipSync(JSON.stringify({ text: "zipped" }));
    const headers = [json, ["content-encoding", "gzip"] as [string, string], ...signedHeaders(SECRET, { method: "POST", path, body }, identity)];
    const res = await rawRequest(served.server.port, { method: "POST", path, headers, body });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ text: "zipped", caller: { userId: "sub-42" } });
  });
});

describe("Express: a body parser mounted before the gateway", () => {
  const observed: Observed = { calls: 0, messages: 0 };
  let reached = 0;
  const served = expressServer((app) => {
    app.use(express.json());
    app.use("/rpc", expressConnectMiddleware(auth.connectOptions({ routes: echoRoutes(observed) })));
    app.use(auth.express());
    app.post("/api/payments", (_req, res) => {
      reached++;
      res.json({ ok: true });
    });
  });

  it("auth.express(): 500 telling the developer to mount it first; the route never runs", async () => {
    const res = await signedPost(served.server.port, "/api/payments");
    expect(res.status).toBe(500);
    expect(JSON.parse(res.body)).toEqual({ message: expect.stringContaining("Mount the gateway middleware before any body parser") });
    expect(reached).toBe(0);
  });

  it("auth.connectOptions(): Internal with the same advice; the handler never sees the parsed message", async () => {
    const path = "/rpc/example.v1.EchoService/Echo";
    for (const body of [Buffer.from('{"text":"signed"}'), Buffer.from('{"text":"forged"}')]) {
      const headers = [json, ...signedHeaders(SECRET, { method: "POST", path, body: Buffer.from('{"text":"signed"}') }, identity)];
      const res = await rawRequest(served.server.port, { method: "POST", path, headers, body });
      expect(res.status).toBe(500);
      expect(JSON.parse(res.body)).toEqual({ code: "internal", message: expect.stringContaining("Mount the gateway middleware before any body parser") });
    }
    expect(observed).toEqual({ calls: 0, messages: 0 });
  });
});

describe("Express: connect-express with connectOptions and no other middleware", () => {
  const observed: Observed = { calls: 0, messages: 0 };
  const served = expressServer((app) => {
    app.use(expressConnectMiddleware(auth.connectOptions({ routes: echoRoutes(observed) })));
  });

  it("verifies and hands the identity to the handler; refuses the wrong secret", async () => {
    const res = await echoClient(served.server.baseUrl).echo({ text: "hi" });
    expect(res.caller?.userId).toBe("sub-42");
    const calls = observed.calls;
    await expect(echoClient(served.server.baseUrl, "wrong").echo({ text: "hi" })).rejects.toMatchObject({ rawMessage: "invalid_signature" });
    expect(observed.calls).toBe(calls);
  });
});

describe("Express: connect-express mounted under a path (app.use(\"/rpc\", …)), no other middleware", () => {
  const observed: Observed = { calls: 0, messages: 0 };
  const served = expressServer((app) => {
    app.use("/rpc", expressConnectMiddleware(auth.connectOptions({ routes: echoRoutes(observed) })));
  });
  const ECHO = "/example.v1.EchoService/Echo";
  const body = Buffer.from(JSON.stringify({ text: "hi" }));
  const post = (signedPath: string, sentPath: string) =>
    rawRequest(served.server.port, {
      method: "POST",
      path: sentPath,
      headers: [json, ...signedHeaders(SECRET, { method: "POST", path: signedPath, body }, identity)],
      body,
    });

  it("verifies the request-target as received (the mount included), not the url Express rewrote", async () => {
    expect((await post(`/rpc${ECHO}`, `/rpc${ECHO}`)).status).toBe(200);
    const calls = observed.calls;
    // Signed for another target: the mount prefix is part of what must match.
    for (const sent of [`/rpc${ECHO}`, `/RPC${ECHO}`]) {
      const refused = await post(ECHO, sent);
      expect([sent, refused.status, JSON.parse(refused.body).message]).toEqual([sent, 403, "invalid_signature"]);
    }
    expect(observed.calls).toBe(calls);
  });
});

describe("Fastify: a resolveUser that fails", () => {
  const failing = createGatewayAuth({
    hmacSecret: SECRET,
    resolveUser: (id) => {
      if (id.userId === "banned") throw new ConnectError("this user is banned", Code.PermissionDenied);
      throw new Error("connect ECONNREFUSED postgres://app:Sup3rS3cret@db:5432/users");
    },
  });
  const served = fastifyServer(async (app) => {
    await app.register(async (rest) => {
      await rest.register(failing.fastify);
      rest.post("/api/me", async (req) => ({ user: await currentUser(gatewayOf(req)) }));
    });
  });

  it("its error's text never reaches the caller through Fastify's own error handler; a ConnectError it throws keeps its code", async () => {
    const res = await signedPost(served.port, "/api/me");
    expect(res.status).toBe(500);
    expect(res.body).not.toContain("Sup3rS3cret");
    expect(res.body).not.toContain("ECONNREFUSED");
    expect(JSON.parse(res.body).message).toContain("resolving the request's user failed");
    const banned = await rawRequest(served.port, {
      method: "POST",
      path: "/api/me",
      headers: [json, ...signedHeaders(SECRET, { method: "POST", path: "/api/me", body: payload }, { ...identity, userId: "banned" })],
      body: payload,
    });
    expect(JSON.parse(banned.body).message).toContain("this user is banned");
  });
});

describe("Fastify: app.register(auth.fastify)", () => {
  let reached = 0;
  const served = fastifyServer(async (app) => {
    await app.register(async (rest) => {
      await rest.register(auth.fastify);
      rest.post("/api/payments", async (req) => {
        reached++;
        const gateway = gatewayOf(req);
        return { body: req.body, userId: gateway.identity?.userId, user: await currentUser(gateway) };
      });
      rest.get("/api/items", async (req) => ({ query: req.query, clientId: gatewayOf(req).identity?.clientId }));
    });
  });

  it("accepts a signed JSON request; the handler gets the parsed body and the identity", async () => {
    const res = await signedPost(served.port, "/api/payments");
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ body: { amount: 12, note: "caf\u00e9" }, userId: "sub-42", user: { name: "user sub-42" } });
  });

  it("verifies a bodyless GET against the empty body hash", async () => {
    const res = await signedGet(served.port, "/api/items?q=a%20b");
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ query: { q: "a b" }, clientId: "web-app" });
    expect((await signedGet(served.port, "/api/items?q=c", "/api/items?q=a%20b")).status).toBe(403);
  });

  it("refuses missing headers while the body is still unsent (onRequest, before any read)", async () => {
    const res = await rawSocket(
      served.port,
      'POST /api/payments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{"amo',
    );
    expect(res).toMatch(/^HTTP\/1.1 403/);
    expect(res).toContain("missing_gateway_headers");
  });

  it("refuses a tampered body, missing headers and a wrong secret before the handler", async () => {
    const before = reached;
    const tampered = await tamperedPost(served.port, "/api/payments");
    expect(tampered.status).toBe(403);
    expect(JSON.parse(tampered.body)).toEqual({ message: "invalid_signature" });
    const unsigned = await rawRequest(served.port, { method: "POST", path: "/api/payments", headers: [json], body: payload });
    expect(JSON.parse(unsigned.body)).toEqual({ message: "missing_gateway_headers" });
    expect((await signedPost(served.port, "/api/payments", payload, "wrong")).status).toBe(403);
    expect(reached).toBe(before);
  });
});

describe.each([
  ["auth.fastify and connect-fastify on the same instance", true],
  ["connect-fastify with connectOptions alone", false],
] as const)("Fastify: %s", (_name, withPlugin) => {
  const observed: Observed = { calls: 0, messages: 0 };
  const served = fastifyServer(async (app) => {
    if (withPlugin) await app.register(auth.fastify);
    await app.register(fastifyConnectPlugin, auth.connectOptions({ routes: echoRoutes(observed) }));
    app.post("/api/ping", async (req) => ({ body: req.body, userId: withPlugin ? gatewayOf(req).identity?.userId : null }));
  });

  it("verifies unary and client-streaming calls and hands the identity to handlers", async () => {
    const client = echoClient(served.baseUrl);
    expect((await client.echo({ text: "hi" })).caller?.userId).toBe("sub-42");
    expect((await client.collect(messages("a", "b"))).text).toBe("ab");
  });

  it("refuses a wrong secret before any handler runs", async () => {
    const calls = observed.calls;
    await expect(echoClient(served.baseUrl, "wrong").echo({ text: "hi" })).rejects.toMatchObject({ rawMessage: "invalid_signature" });
    expect(observed.calls).toBe(calls);
  });

  if (withPlugin) {
    it("REST routes on the same instance are verified too", async () => {
      expect(JSON.parse((await signedPost(served.port, "/api/ping")).body)).toEqual({ body: { amount: 12, note: "caf\u00e9" }, userId: "sub-42" });
      expect((await tamperedPost(served.port, "/api/ping")).status).toBe(403);
    });
  }
});

describe("Fastify: maxBodyBytes bounds what auth.fastify reads, for Connect routes and routes Fastify parses", () => {
  const small = createGatewayAuth({ hmacSecret: SECRET, exposeRejectionReason: true, maxBodyBytes: 1024 });
  const observed: Observed = { calls: 0, messages: 0 };
  const served = fastifyServer(async (app) => {
    await app.register(small.fastify);
    await app.register(fastifyConnectPlugin, small.connectOptions({ routes: echoRoutes(observed) }));
    // A route whose JSON body Fastify parses itself.
    app.post("/api/notes", async () => {
      observed.calls++;
      return { stored: true };
    });
  });
  const path = "/example.v1.EchoService/Echo";
  const big = Buffer.from(JSON.stringify({ text: "x".repeat(2000) }));
  const headers = () => [json, ...signedHeaders(SECRET, { method: "POST", path, body: big }, identity)];

  it("413 for a declared length over the limit, before reading", async () => {
    const res = await rawRequest(served.port, { method: "POST", path, headers: headers(), body: big });
    expect(res.status).toBe(413);
  });

  it("413 for a chunked body that grows past the limit; the handler never runs", async () => {
    const head = headers().map(([n, v]) => `${n}: ${v}\r\n`).join("");
    const res = await rawSocket(
      served.port,
      `POST ${path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n${head}\r\n${big.length.toString(16)}\r\n${big.toString()}\r\n0\r\n\r\n`,
    );
    expect(res).toMatch(/^HTTP\/1.1 413/);
    expect(observed.calls).toBe(0);
    expect((await echoClient(served.baseUrl).echo({ text: "fits" })).text).toBe("fits");
  });

  it("413 for a chunked body past the limit on a route Fastify parses itself (JSON), as for a Connect route", async () => {
    const rest = "/api/notes";
    const head = [json, ...signedHeaders(SECRET, { method: "POST", path: rest, body: big }, identity)].map(([n, v]) => `${n}: ${v}\r\n`).join("");
    const calls = observed.calls;
    const res = await rawSocket(
      served.port,
      `POST ${rest} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n${head}\r\n${big.length.toString(16)}\r\n${big.toString()}\r\n0\r\n\r\n`,
    );
    expect(res).toMatch(/^HTTP\/1.1 413/);
    expect(observed.calls).toBe(calls);
    // Under the limit, the same route answers.
    const fits = Buffer.from(JSON.stringify({ text: "fits" }));
    const ok = await rawRequest(served.port, { method: "POST", path: rest, headers: [json, ...signedHeaders(SECRET, { method: "POST", path: rest, body: fits }, identity)], body: fits });
    expect([ok.status, JSON.parse(ok.body)]).toEqual([200, { stored: true }]);
  });

  it("a caller that hangs up after the 413, its body unfinished, harms nothing", async () => {
    const head = headers().map(([n, v]) => `${n}: ${v}\r\n`).join("");
    const calls = observed.calls;
    const answered = await new Promise<string>((resolve, reject) => {
      const socket = tcpConnect(served.port, "127.0.0.1");
      let text = "";
      socket.on("error", reject);
      socket.on("data", (d: Buffer) => {
        text += d.toString("latin1");
        // The answer is in: hang up mid-body (no last chunk), as a reset.
        if (text.includes("\r\n\r\n")) {
          socket.resetAndDestroy();
          resolve(text);
        }
      });
      socket.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n${head}\r\n${big.length.toString(16)}\r\n${big.toString()}\r\n`);
    });
    expect(answered).toMatch(/^HTTP\/1.1 413/);
    // The reset reached the server and was absorbed: it still serves, nothing was thrown.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await echoClient(served.baseUrl).echo({ text: "still here" })).text).toBe("still here");
    expect(observed.calls).toBe(calls + 1);
  });
});

describe("Fastify: a caller that closes after its body, while an earlier hook of the app's own runs", () => {
  it("never lets the request through unverified: the signature is checked (and refused) all the same", async () => {
    const SECRET_HERE = "fastify-close-after-body-secret-01";
    const auth = createGatewayAuth({ hmacSecret: SECRET_HERE });
    const app = Fastify();
    let handled = 0;
    // An async hook of the app's, registered first (a tenant lookup, say): the caller's FIN comes while it runs.
    app.addHook("preValidation", async () => {
      await new Promise((resolve) => setTimeout(resolve, 50));
    });
    await app.register(auth.fastify);
    app.post("/transfer", async () => {
      handled++;
      return { ok: true };
    });
    await app.listen({ port: 0, host: "127.0.0.1" });
    try {
      const port = (app.server.address() as AddressInfo).port;
      const body = Buffer.from(JSON.stringify({ amount: 1_000_000 }));
      // Signed for another body: it cannot verify.
      const head =
        `POST /transfer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n` +
        signedHeaders(SECRET_HERE, { method: "POST", path: "/transfer", body: Buffer.from("{}") }).map(([n, v]) => `${n}: ${v}\r\n`).join("") +
        "\r\n";
      for (const closeAfterBody of [false, true]) {
        await new Promise<void>((resolve) => {
          const socket = tcpConnect(port, "127.0.0.1", () => {
            socket.write(head);
            socket.write(body);
            if (closeAfterBody) setTimeout(() => socket.end(), 10);
          });
          socket.on("error", () => {});
          socket.on("close", () => resolve());
          setTimeout(() => socket.destroy(), 1_000);
        });
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(handled).toBe(0);
    } finally {
      await app.close();
    }
  });
});
