import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as http from "node:http";
import type { ClientHttp2Session } from "node:http2";
import { connect as tcpConnect } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createGatewayAuth, type GatewayRejectionEvent } from "../../src/server/index.js";
import { bodySha256, checkGatewayHeaders, stringToSign } from "../../src/signing/index.js";
import { echoRoutes, type Observed } from "../support/echo-routes.js";
import { rawRequest, rawSocket } from "../support/raw-request.js";
import { signedHeaders } from "../support/signed-headers.js";
import { startServer, type RunningServer } from "../support/loopback-server.js";

const SECRET = "rejections-secret-\u00e9-9f8e7d";
const ECHO = "/example.v1.EchoService/Echo";
const body = Buffer.from(JSON.stringify({ text: "hello" }));
const json: [string, string] = ["content-type", "application/json"];

const events: GatewayRejectionEvent[] = [];
const observed: Observed = { calls: 0, messages: 0 };
const servers: RunningServer[] = [];
let connect: RunningServer;
let plain: RunningServer;
let production: RunningServer;

beforeAll(async () => {
  const options = { hmacSecret: SECRET, exposeRejectionReason: true, onRejection: (e: GatewayRejectionEvent) => void events.push(e) };
  const auth = createGatewayAuth(options);
  connect = await startServer(connectNodeAdapter(auth.connectOptions({ routes: echoRoutes(observed) })));
  plain = await startServer(async (req, res) => {
    const verified = await auth.verifyNodeRequest(req, res);
    if (verified) res.end("ok");
  });
  const prod = createGatewayAuth({ hmacSecret: SECRET, exposeRejectionReason: false });
  production = await startServer(connectNodeAdapter(prod.connectOptions({ routes: echoRoutes(observed) })));
  servers.push(connect, plain, production);
});
afterAll(async () => {
  for (const s of servers) await s.close();
});
afterEach(() => {
  events.length = 0;
});

function post(server: RunningServer, headers: [string, string][], payload: Buffer = body, path = ECHO) {
  return rawRequest(server.port, { method: "POST", path, headers: [json, ...headers], body: payload });
}

const valid = () => signedHeaders(SECRET, { method: "POST", path: ECHO, body });
const without = (name: string) => valid().filter(([n]) => n !== name);
const replacing = (name: string, value: string) => valid().map(([n, v]): [string, string] => (n === name ? [n, value] : [n, v]));

async function expectRejected(headers: [string, string][], reason: string, payload?: Buffer) {
  const calls = observed.calls;
  const viaConnect = await post(connect, headers, payload);
  expect(viaConnect.status).toBe(403);
  expect(JSON.parse(viaConnect.body)).toEqual({ code: "permission_denied", message: reason });
  const viaNode = await post(plain, headers, payload);
  expect(viaNode.status).toBe(403);
  expect(JSON.parse(viaNode.body)).toEqual({ message: reason });
  expect(observed.calls).toBe(calls);
  expect(events.map((e) => e.reason)).toEqual([reason, reason]);
  // A signature that did not match also carries the canonical request the service computed (outside production).
  const canonical = reason === "invalid_signature" ? { canonicalRequest: expect.stringMatching(/^POST\|\d+\|/) } : {};
  expect(events[0]).toEqual({ reason, method: "POST", fullpath: ECHO, ...canonical });
}

describe("rejection reasons (Connect: PermissionDenied / HTTP 403; plain Node: 403 JSON)", () => {
  it("accepts the honest request on both servers", async () => {
    expect((await post(connect, valid())).status).toBe(200);
    expect((await post(plain, valid())).status).toBe(200);
  });

  for (const name of ["x-gateway-timestamp", "x-gateway-signature", "x-client-id"]) {
    it(`missing_gateway_headers without ${name}`, () => expectRejected(without(name), "missing_gateway_headers"));
  }

  it("missing_gateway_headers when a required header is empty", () =>
    expectRejected(replacing("x-client-id", ""), "missing_gateway_headers"));

  // 33 s, not 31: the same headers go to two servers, and a loaded machine may
  // take a second between signing and the second check (the exact 30/31 s edge
  // is tested with a fixed clock in test/signing).
  it("timestamp_out_of_window, 33 s in the past and 33 s in the future", async () => {
    const now = Date.now() / 1000;
    for (const skew of [-33, 33]) {
      await expectRejected(signedHeaders(SECRET, { method: "POST", path: ECHO, body }, undefined, now + skew), "timestamp_out_of_window");
      events.length = 0;
    }
  });

  it("invalid_signature when the body, the path or the identity changed", async () => {
    await expectRejected(valid(), "invalid_signature", Buffer.from(JSON.stringify({ text: "hellO" })));
    events.length = 0;
    await expectRejected(replacing("x-user-id", "sub-43"), "invalid_signature");
  });

  it("invalid_signature reports the canonical request the service computed, to compare with the gateway's", async () => {
    const changed = Buffer.from(JSON.stringify({ text: "hellO" }));
    const headers = valid();
    await expectRejected(headers, "invalid_signature", changed);
    const ts = headers.find(([n]) => n === "x-gateway-timestamp")?.[1] as string;
    // What the service hashed (the changed body), in the v1 form — never the secret or the signature.
    expect(events[0]?.canonicalRequest).toBe(
      stringToSign({ method: "POST", timestamp: ts, clientId: "web-app", userId: "sub-42", fullpath: ECHO, bodySha256: bodySha256(changed) }),
    );
    const signature = headers.find(([n]) => n === "x-gateway-signature")?.[1] as string;
    for (const secretish of [SECRET, signature]) expect(JSON.stringify(events)).not.toContain(secretish);
    // In production (exposeRejectionReason off) it is not even computed.
    const productionEvents: GatewayRejectionEvent[] = [];
    const prod = createGatewayAuth({ hmacSecret: SECRET, exposeRejectionReason: false, onRejection: (e) => void productionEvents.push(e) });
    const server = await startServer(connectNodeAdapter(prod.connectOptions({ routes: echoRoutes(observed) })));
    try {
      expect((await post(server, valid(), changed)).status).toBe(403);
      expect(productionEvents).toEqual([{ reason: "invalid_signature", method: "POST", fullpath: ECHO }]);
    } finally {
      await server.close();
    }
  });

  it("invalid_signature for an upper-case, short or non-hex signature", async () => {
    const signature = valid().find(([n]) => n === "x-gateway-signature")?.[1] as string;
    for (const bad of [signature.toUpperCase(), signature.slice(0, 63), `${signature}0`, "z".repeat(64)]) {
      await expectRejected(replacing("x-gateway-signature", bad), "invalid_signature");
      events.length = 0;
    }
  });

  it("malformed_gateway_headers for a non-digit timestamp", async () => {
    const ts = valid().find(([n]) => n === "x-gateway-timestamp")?.[1] as string;
    for (const bad of [`${ts}.0`, `+${ts}`, "1e9", "0x10"]) {
      await expectRejected(replacing("x-gateway-timestamp", bad), "malformed_gateway_headers");
      events.length = 0;
    }
  });

  it("malformed_gateway_headers for a '|' inside the client id or user id", async () => {
    for (const identity of [{ clientId: "web|app" }, { clientId: "web", userId: "sub|42" }]) {
      // The honest signer refuses such ids, so forge the headers by hand.
      const headers = valid().map(([n, v]): [string, string] => {
        if (n === "x-client-id") return [n, identity.clientId];
        if (n === "x-user-id") return [n, identity.userId ?? v];
        return [n, v];
      });
      await expectRejected(headers, "malformed_gateway_headers");
      events.length = 0;
    }
  });

  it.each(["X-Gateway-Signature", "X-Gateway-Timestamp", "X-Client-Id", "X-User-Id", "X-User-Scopes", "X-User-Email"])(
    "malformed_gateway_headers when %s is repeated (even with the same value)",
    async (name) => {
      const headers = valid();
      const existing = headers.find(([n]) => n === name.toLowerCase());
      headers.push([name, existing?.[1] ?? "admin"]);
      await expectRejected(headers, "malformed_gateway_headers");
    },
  );

  it("CR, LF and NUL inside ids never reach a handler: Node refuses them on the wire, the check refuses them anyway", async () => {
    for (const bad of ["a\r", "a\n", "a\u0000"]) {
      const res = await rawSocket(connect.port, `POST ${ECHO} HTTP/1.1\r\nHost: x\r\nX-Client-Id: ${bad}\r\nContent-Length: 0\r\n\r\n`);
      expect(res.startsWith("HTTP/1.1 400")).toBe(true);
      const raw = ["x-gateway-timestamp", "1700000000", "x-gateway-signature", "0".repeat(64), "x-client-id", "web", "x-user-id", `sub${bad}`];
      expect(checkGatewayHeaders(raw, { nowSeconds: 1700000000, maxSkewSeconds: 30 })).toEqual({ ok: false, reason: "malformed_gateway_headers" });
    }
  });
});

describe("a Host connect-node cannot build a URL from", () => {
  // connect-node throws, uncaught in the request listener, for these: one request would end the process.
  it.each([
    ["Host: a b", "HTTP/1.1", "Host: a b\r\n"],
    ["Host: a^b", "HTTP/1.1", "Host: a^b\r\n"],
    ["Host: a:99999", "HTTP/1.1", "Host: a:99999\r\n"],
    ["no Host at all (HTTP/1.0)", "HTTP/1.0", ""],
  ])("%s: refused with 403 like any unsigned request, and the service keeps serving", async (_label, version, host) => {
    const calls = observed.calls;
    const answer = await rawSocket(
      connect.port,
      `POST ${ECHO} ${version}\r\n${host}Content-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.toString()}`,
    );
    expect(answer.split("\r\n")[0]).toMatch(/^HTTP\/1\.[01] 403 Forbidden$/);
    expect(observed.calls).toBe(calls);
    expect((await post(connect, valid())).status).toBe(200);
  });
});

describe("an HTTP/2 :authority connect-node cannot build a URL from", () => {
  it("a:99999 (nghttp2 checks its characters, not its port): an unsigned request refused with 403, a signed one served; the service keeps serving", async () => {
    const { connect: h2connect } = await import("node:http2");
    const auth = createGatewayAuth({ hmacSecret: SECRET });
    const h2 = await startServer(connectNodeAdapter(auth.connectOptions({ routes: echoRoutes(observed) })), "2");
    servers.push(h2);
    const session = h2connect(h2.baseUrl);
    session.on("error", () => {});
    const ask = (authority: string, headers: [string, string][]) =>
      new Promise<number>((resolve, reject) => {
        const stream = session.request({ ":method": "POST", ":path": ECHO, ":authority": authority, ...Object.fromEntries([json, ...headers]) });
        stream.on("response", (h) => resolve(Number(h[":status"])));
        stream.on("error", reject);
        stream.resume();
        stream.end(body);
      });
    try {
      const calls = observed.calls;
      expect(await ask("a:99999", [])).toBe(403);
      expect(observed.calls).toBe(calls);
      // The authority is not signed: a signed request is served whatever it says.
      expect(await ask("a:99999", valid())).toBe(200);
      expect(await ask(`127.0.0.1:${h2.port}`, valid())).toBe(200);
    } finally {
      session.close();
    }
  });
});

describe("messages in production", () => {
  it("says Forbidden instead of the reason, with the same code", async () => {
    for (const headers of [without("x-client-id"), replacing("x-gateway-signature", "0".repeat(64))]) {
      const res = await post(production, headers);
      expect(res.status).toBe(403);
      expect(JSON.parse(res.body)).toEqual({ code: "permission_denied", message: "Forbidden" });
    }
  });

  it("defaults from NODE_ENV: Forbidden when production, the reason otherwise", async () => {
    const before = process.env.NODE_ENV;
    try {
      process.env.NODE_ENV = "production";
      const prod = createGatewayAuth({ hmacSecret: SECRET });
      process.env.NODE_ENV = "test";
      const dev = createGatewayAuth({ hmacSecret: SECRET });
      const a = await startServer(async (req, res) => void (await prod.verifyNodeRequest(req, res)));
      const b = await startServer(async (req, res) => void (await dev.verifyNodeRequest(req, res)));
      servers.push(a, b);
      expect(JSON.parse((await post(a, without("x-client-id"))).body)).toEqual({ message: "Forbidden" });
      expect(JSON.parse((await post(b, without("x-client-id"))).body)).toEqual({ message: "missing_gateway_headers" });
    } finally {
      process.env.NODE_ENV = before;
    }
  });
});

describe("configuration of the window and the secrets", () => {
  it("maxSkewSeconds is configurable, both directions", async () => {
    const auth = createGatewayAuth({ hmacSecret: SECRET, maxSkewSeconds: 5, exposeRejectionReason: true });
    const server = await startServer(async (req, res) => {
      if (await auth.verifyNodeRequest(req, res)) res.end("ok");
    });
    servers.push(server);
    const now = Math.floor(Date.now() / 1000);
    const at = (skew: number) => post(server, signedHeaders(SECRET, { method: "POST", path: ECHO, body }, undefined, now + skew));
    expect((await at(-4)).status).toBe(200);
    expect((await at(4)).status).toBe(200);
    expect(JSON.parse((await at(-7)).body)).toEqual({ message: "timestamp_out_of_window" });
    expect(JSON.parse((await at(7)).body)).toEqual({ message: "timestamp_out_of_window" });
  });

  it("rotation: requests signed with either of two secrets verify, a third does not", async () => {
    const auth = createGatewayAuth({ hmacSecret: ["new-secret", "old-secret"], exposeRejectionReason: true });
    const server = await startServer(connectNodeAdapter(auth.connectOptions({ routes: echoRoutes(observed) })));
    servers.push(server);
    const signedWith = (s: string) => post(server, signedHeaders(s, { method: "POST", path: ECHO, body }));
    expect((await signedWith("new-secret")).status).toBe(200);
    expect((await signedWith("old-secret")).status).toBe(200);
    expect((await signedWith("other-secret")).status).toBe(403);
  });

  it("an onRejection hook that throws does not change the answer", async () => {
    const auth = createGatewayAuth({ hmacSecret: SECRET, exposeRejectionReason: true, onRejection: () => { throw new Error("log sink down"); } });
    const server = await startServer(connectNodeAdapter(auth.connectOptions({ routes: echoRoutes(observed) })));
    servers.push(server);
    const res = await post(server, without("x-client-id"));
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toEqual({ code: "permission_denied", message: "missing_gateway_headers" });
  });
});

describe("rejected before the body is read", () => {
  // The request announces 1 MB but sends 5 bytes and never the rest: an
  // answer can only come from a server that did not wait for the body.
  const unfinished = (headers: string) =>
    `POST ${ECHO} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n${headers}\r\n{"tex`;

  for (const [name, server] of [["connectNodeAdapter", () => connect], ["verifyNodeRequest", () => plain]] as const) {
    it(`${name}: missing headers get their 403 while the body is still unsent`, async () => {
      const res = await rawSocket(server().port, unfinished(""));
      expect(res).toMatch(/^HTTP\/1.1 403/);
      expect(res).toContain("missing_gateway_headers");
    });

    it(`${name}: an out-of-window timestamp gets its 403 while the body is still unsent`, async () => {
      const headers = signedHeaders(SECRET, { method: "POST", path: ECHO, body }, undefined, Date.now() / 1000 - 3600);
      const res = await rawSocket(server().port, unfinished(headers.map(([n, v]) => `${n}: ${v}\r\n`).join("")));
      expect(res).toMatch(/^HTTP\/1.1 403/);
      expect(res).toContain("timestamp_out_of_window");
    });
  }
});

describe("maxBodyBytes bounds what a caller can make the verifier hold", () => {
  it("refuses a declared or streamed body over the limit: 413 for plain Node, ResourceExhausted for Connect", async () => {
    const auth = createGatewayAuth({ hmacSecret: SECRET, maxBodyBytes: 1024, exposeRejectionReason: true });
    const node = await startServer(async (req, res) => {
      if (await auth.verifyNodeRequest(req, res)) res.end("ok");
    });
    const rpc = await startServer(connectNodeAdapter(auth.connectOptions({ routes: echoRoutes(observed) })));
    servers.push(node, rpc);
    const big = Buffer.from(JSON.stringify({ text: "x".repeat(2000) }));
    const headers = signedHeaders(SECRET, { method: "POST", path: ECHO, body: big });
    expect((await post(node, headers, big)).status).toBe(413);
    const viaConnect = await post(rpc, headers, big);
    expect(JSON.parse(viaConnect.body)).toMatchObject({ code: "resource_exhausted" });
    // Without content-length (chunked), the limit applies while reading.
    const chunked = await rawSocket(
      node.port,
      `POST ${ECHO} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n${headers.map(([n, v]) => `${n}: ${v}\r\n`).join("")}\r\n${big.length.toString(16)}\r\n${big.toString()}\r\n0\r\n\r\n`,
    );
    expect(chunked).toMatch(/^HTTP\/1.1 413/);
    // Within the limit, the same server accepts.
    const small = Buffer.from(JSON.stringify({ text: "ok" }));
    expect((await post(node, signedHeaders(SECRET, { method: "POST", path: ECHO, body: small }), small)).status).toBe(200);
  });
});

describe("after a 413 over HTTP/1.1, the client's next request is answered", () => {
  // One socket at a time: the refusal closes the connection of the
  // oversized body (its rest is never read); the next request must not
  // stall on it, but go out on a new one.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  afterAll(() => agent.destroy());

  function send(port: number, headers: [string, string][], body: Buffer, chunked: boolean): Promise<number> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no answer within 5 s: the connection stalled")), 5000);
      const req = http.request(
        { host: "127.0.0.1", port, method: "POST", path: ECHO, agent, headers: Object.fromEntries(headers) },
        (res) => {
          res.resume();
          res.on("end", () => {
            clearTimeout(timer);
            resolve(res.statusCode ?? 0);
          });
        },
      );
      req.on("error", reject);
      if (!chunked) req.setHeader("content-length", body.byteLength);
      req.end(body);
    });
  }

  it.each(["plain Node", "Connect"] as const)("%s: the next request on the same connection is answered", async (kind) => {
    const auth = createGatewayAuth({ hmacSecret: SECRET, maxBodyBytes: 1024 });
    const server =
      kind === "Connect"
        ? await startServer(connectNodeAdapter(auth.connectOptions({ routes: echoRoutes(observed) })))
        : await startServer(async (req, res) => {
            if (await auth.verifyNodeRequest(req, res)) res.end("{}");
          });
    servers.push(server);
    const withType = (h: [string, string][]): [string, string][] => [
      ["content-type", "application/json"],
      ...(kind === "Connect" ? ([["connect-protocol-version", "1"]] as [string, string][]) : []),
      ...h,
    ];
    const big = Buffer.from(JSON.stringify({ text: "x".repeat(64 * 1024) }));
    const refused = await send(server.port, withType(signedHeaders(SECRET, { method: "POST", path: ECHO, body: big })), big, true);
    expect(refused).toBe(kind === "Connect" ? 429 : 413);
    const small = Buffer.from(JSON.stringify({ text: "ok" }));
    const answered = await send(server.port, withType(signedHeaders(SECRET, { method: "POST", path: ECHO, body: small })), small, false);
    expect(answered).toBe(200);
  });
});

describe("repeated headers over HTTP/2", () => {
  it("malformed_gateway_headers: HTTP/2 keeps both values and the check sees them", async () => {
    const { connect: h2connect } = await import("node:http2");
    const auth = createGatewayAuth({ hmacSecret: SECRET, exposeRejectionReason: true });
    const server = await startServer(connectNodeAdapter(auth.connectOptions({ routes: echoRoutes(observed) })), "2");
    servers.push(server);
    const session = h2connect(server.baseUrl);
    try {
      const send = (headers: Record<string, string | string[]>) =>
        h2Post(session, { ":method": "POST", ":path": ECHO, "content-type": "application/json", ...headers });
      const honest = Object.fromEntries(valid());
      expect((await send(honest)).status).toBe(200);
      const repeated = await send({ ...honest, "x-user-id": [honest["x-user-id"] as string, "admin"] });
      expect(repeated.status).toBe(403);
      expect(JSON.parse(repeated.body)).toEqual({ code: "permission_denied", message: "malformed_gateway_headers" });
    } finally {
      session.close();
    }
  });
});

describe("a client that goes away mid-body", () => {
  // Signed headers announcing 1000 bytes, then 5 bytes, then the socket is destroyed.
  async function cutOff(port: number): Promise<void> {
    const headers = signedHeaders(SECRET, { method: "POST", path: ECHO, body });
    const socket = tcpConnect(port, "127.0.0.1");
    await new Promise((resolve) => socket.once("connect", resolve));
    socket.write(`POST ${ECHO} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n`);
    socket.write(`${headers.map(([n, v]) => `${n}: ${v}\r\n`).join("")}\r\n{"tex`);
    await new Promise((resolve) => setTimeout(resolve, 20));
    socket.destroy();
  }

  // 0: the verifier is reading when the client leaves; 50: the request is
  // already gone when the verifier starts (a handler that awaited first).
  it.each([0, 50])("verifyNodeRequest settles with undefined (never rejects, never hangs), called after %i ms", async (delayMs) => {
    const auth = createGatewayAuth({ hmacSecret: SECRET });
    let settle: (outcome: unknown) => void = () => {};
    const outcome = new Promise((resolve) => (settle = resolve));
    const server = await startServer(async (req, res) => {
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      auth.verifyNodeRequest(req, res).then(settle, (e: unknown) => settle(`rejected: ${String(e)}`));
    });
    servers.push(server);
    await cutOff(server.port);
    expect(await outcome).toBeUndefined();
  });
});

describe("v1 and the method's case", () => {
  it("a v1 signature for POST does not pass for post or PoSt (HTTP/2 carries any case); v1 signs the upper-cased method", async () => {
    const { connect: h2connect } = await import("node:http2");
    const auth = createGatewayAuth({ hmacSecret: SECRET, exposeRejectionReason: true });
    const methods: string[] = [];
    const server = await startServer(async (req, res) => {
      if ((await auth.verifyNodeRequest(req, res)) === undefined) return;
      methods.push(req.method ?? "");
      res.end("{}");
    }, "2");
    servers.push(server);
    const session = h2connect(server.baseUrl);
    session.on("error", () => {});
    try {
      const send = (method: string) =>
        h2Post(session, { ...Object.fromEntries(valid()), ":method": method, ":path": ECHO, "content-type": "application/json" });
      for (const method of ["post", "PoSt"]) {
        const refused = await send(method);
        expect([method, refused.status, JSON.parse(refused.body).message]).toEqual([method, 403, "invalid_signature"]);
      }
      expect((await send("POST")).status).toBe(200);
      expect(methods).toEqual(["POST"]);
    } finally {
      session.close();
    }
  });
});

/** Sends `body` on `session` with `headers` (pseudo-headers included): the status and the answer's text. */
function h2Post(session: ClientHttp2Session, headers: Record<string, string | string[]>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers);
    let status = 0;
    let text = "";
    req.on("response", (h) => (status = Number(h[":status"])));
    req.on("data", (d: Buffer) => (text += d.toString()));
    req.on("end", () => resolve({ status, body: text }));
    req.on("error", reject);
    req.end(body);
  });
}
