// A caller on the gateway→service hop can send headers that pass every check
// made before the body (they take no secret), then trickle the body: the
// verifier must stop waiting after bodyTimeoutMs, over HTTP/1.1 and HTTP/2,
// answer, close what it can, and never run a handler.
import * as http from "node:http";
import * as http2 from "node:http2";
import { connect as tcpConnect, type AddressInfo } from "node:net";
import { Code } from "@connectrpc/connect";
import { codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { fastifyConnectPlugin } from "@connectrpc/connect-fastify";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { unwatchDeadline, watchDeadline, watchedDeadlines, type DeadlineWatch } from "../../src/server/body-deadlines.js";
import { createGatewayAuth } from "../../src/server/index.js";
import { echoRoutes, type Observed } from "../support/echo-routes.js";
import { signedHeadersV2 } from "../support/signed-headers.js";

const SECRET = "body-timeout-secret-31";
const ECHO = "/example.v1.EchoService/Echo";
const TIMEOUT_MS = 400;
const body = Buffer.from(JSON.stringify({ text: "hello, slowly" }));
const headers = () => signedHeadersV2(SECRET, { method: "POST", path: ECHO, body, contentType: "application/json" });

const observed: Observed = { calls: 0, messages: 0 };
let handled = 0;
const auth = createGatewayAuth({ hmacSecret: SECRET, bodyTimeoutMs: TIMEOUT_MS, exposeRejectionReason: true });

let nodeServer: http.Server;
let connectH1: http.Server;
let connectH2: http2.Http2Server;
let fastify: FastifyInstance;
let fastifyConnect: FastifyInstance;
const h2Sessions = new Set<http2.ServerHttp2Session>();
const port = (server: { address(): unknown }) => (server.address() as AddressInfo).port;

beforeAll(async () => {
  nodeServer = http.createServer(async (req, res) => {
    const verified = await auth.verifyNodeRequest(req, res);
    if (verified === undefined) return;
    handled++;
    res.end("{}");
  });
  connectH1 = http.createServer(connectNodeAdapter(auth.connectOptions({ routes: echoRoutes(observed) })));
  connectH2 = http2.createServer(connectNodeAdapter(auth.connectOptions({ routes: echoRoutes(observed) })));
  connectH2.on("session", (s) => {
    h2Sessions.add(s);
    s.on("close", () => h2Sessions.delete(s));
  });
  for (const server of [nodeServer, connectH1, connectH2]) {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  }
  // Fastify parses the JSON itself, through the plugin's hashing stream; a
  // slow hook of the service's own runs between the parse and the verdict.
  fastify = Fastify();
  fastify.addHook("preValidation", async (req) => {
    if (req.headers["x-slow-hook"] !== undefined) await new Promise((resolve) => setTimeout(resolve, TIMEOUT_MS + 400));
  });
  await fastify.register(auth.fastify);
  fastify.post(ECHO, async () => {
    handled++;
    return { ok: true };
  });
  await fastify.listen({ port: 0, host: "127.0.0.1" });
  // Connect routes on Fastify: Fastify leaves their bodies to the plugin, which reads them in preValidation.
  fastifyConnect = Fastify();
  await fastifyConnect.register(auth.fastify);
  await fastifyConnect.register(fastifyConnectPlugin, auth.connectOptions({ routes: echoRoutes(observed) }));
  await fastifyConnect.listen({ port: 0, host: "127.0.0.1" });
});

afterAll(async () => {
  await fastify.close();
  await fastifyConnect.close();
  for (const session of h2Sessions) session.destroy();
  for (const server of [nodeServer, connectH1, connectH2]) {
    if ("closeAllConnections" in server) server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

afterEach(async () => {
  // Every read that ended, whichever way, left the watch list.
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(watchedDeadlines()).toBe(0);
});

/**
 * Writes the head and the first half of the body on a raw connection, then
 * nothing more; returns what the server sent and whether it closed the
 * connection, within `waitMs`.
 */
function stallHttp1(serverPort: number, waitMs = 8000): Promise<{ text: string; closedByServer: boolean; afterMs: number }> {
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = tcpConnect(serverPort, "127.0.0.1");
    let text = "";
    let answeredAt = 0;
    const done = (closedByServer: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ text, closedByServer, afterMs: answeredAt - started });
    };
    const timer = setTimeout(() => done(false), waitMs);
    socket.on("data", (d: Buffer) => {
      answeredAt ||= performance.now();
      text += d.toString("latin1");
    });
    socket.on("end", () => done(true));
    socket.on("error", () => done(true));
    const lines = [`POST ${ECHO} HTTP/1.1`, `Host: 127.0.0.1:${serverPort}`, `Content-Length: ${body.byteLength}`];
    for (const [name, value] of headers()) lines.push(`${name}: ${value}`);
    socket.write(`${lines.join("\r\n")}\r\n\r\n`);
    socket.write(body.subarray(0, body.byteLength >> 1));
  });
}

describe("bodyTimeoutMs", () => {
  it.each([
    ["auth.verifyNodeRequest", () => port(nodeServer), '{"message":"request body not received within bodyTimeoutMs (400 ms)"}'],
    ["Connect over HTTP/1.1", () => port(connectH1), '"code":"deadline_exceeded"'],
    ["Fastify's own body parser", () => port(fastify.server), '{"message":"request body not received within bodyTimeoutMs (400 ms)"}'],
    ["Fastify with Connect routes (fastifyConnectPlugin)", () => port(fastifyConnect.server), '{"message":"request body not received within bodyTimeoutMs (400 ms)"}'],
  ])("%s: a stalled body is refused after the timeout and the connection is closed", async (label, serverPort, expected) => {
    const before = { handled, calls: observed.calls, messages: observed.messages };
    const { text, closedByServer, afterMs } = await stallHttp1(serverPort());
    // 408 in the table; Connect writes DeadlineExceeded as its own HTTP status.
    const status = label.startsWith("Connect") ? codeToHttpStatus(Code.DeadlineExceeded) : 408;
    expect(text.slice(0, 12)).toBe(`HTTP/1.1 ${status}`);
    expect(text).toMatch(/\r\nconnection: close\r\n/i);
    expect(text).toContain(expected);
    expect(closedByServer).toBe(true);
    // Not before the timeout; after it within a sweep interval, plus what a loaded machine adds.
    expect(afterMs).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
    expect(afterMs).toBeLessThan(TIMEOUT_MS + 4000);
    expect({ handled, calls: observed.calls, messages: observed.messages }).toEqual(before);
  });

  it("Connect over HTTP/2: a stalled stream ends with deadline_exceeded, the session stays usable", async () => {
    const session = http2.connect(`http://127.0.0.1:${port(connectH2)}`);
    session.on("error", () => {});
    try {
      const before = { calls: observed.calls, messages: observed.messages };
      const started = performance.now();
      const answer = await new Promise<{ status: number; text: string; closedAfterAnswer: boolean }>((resolve, reject) => {
        const stream = session.request({
          ":method": "POST",
          ":path": ECHO,
          "content-length": String(body.byteLength),
          ...Object.fromEntries(headers()),
        });
        let status = 0;
        let text = "";
        stream.on("response", (h) => (status = Number(h[":status"])));
        stream.on("data", (c: Buffer) => (text += c.toString()));
        // The server ends the stream, its request side included: the caller cannot go on trickling.
        stream.on("close", () => resolve({ status, text, closedAfterAnswer: true }));
        stream.on("end", () => setTimeout(() => resolve({ status, text, closedAfterAnswer: stream.closed }), 500));
        stream.on("error", reject);
        stream.write(body.subarray(0, body.byteLength >> 1));
      });
      expect(performance.now() - started).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
      expect(answer.status).toBe(codeToHttpStatus(Code.DeadlineExceeded));
      expect(answer.closedAfterAnswer).toBe(true);
      expect(JSON.parse(answer.text)).toMatchObject({ code: "deadline_exceeded" });
      expect({ calls: observed.calls, messages: observed.messages }).toEqual(before);
      // The same session still serves a request that sends its body.
      const ok = await new Promise<number>((resolve, reject) => {
        const stream = session.request({ ":method": "POST", ":path": ECHO, ...Object.fromEntries(headers()) });
        stream.on("response", (h) => resolve(Number(h[":status"])));
        stream.on("error", reject);
        stream.resume();
        stream.end(body);
      });
      expect(ok).toBe(200);
    } finally {
      session.destroy();
    }
  });

  it("bounds the body only: a body that arrived in time waits for a slow hook of the service's own", async () => {
    const before = handled;
    const flat = [["host", `127.0.0.1:${port(fastify.server)}`], ...headers(), ["content-length", String(body.byteLength)], ["x-slow-hook", "1"]].flat();
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ port: port(fastify.server), host: "127.0.0.1", method: "POST", path: ECHO, headers: flat, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end(body);
    });
    expect(status).toBe(200);
    expect(handled).toBe(before + 1);
  });

  it.each([
    ["a caller that resets mid-body", "application/json", true],
    ["a content type Fastify has no parser for (its own 415)", "application/x-unknown", false],
  ])("Fastify: %s leaves nothing watched until the timeout", async (_label, contentType, reset) => {
    const socket = tcpConnect(port(fastify.server), "127.0.0.1");
    socket.on("error", () => {});
    const answered = new Promise<string>((resolve) => {
      let text = "";
      socket.on("data", (d: Buffer) => (text += d.toString("latin1")));
      socket.on("close", () => resolve(text));
    });
    const lines = [`POST ${ECHO} HTTP/1.1`, `Host: 127.0.0.1`, `Content-Type: ${contentType}`, `Content-Length: ${body.byteLength}`];
    for (const [name, value] of headers()) if (name !== "content-type") lines.push(`${name}: ${value}`);
    socket.write(`${lines.join("\r\n")}\r\n\r\n`);
    socket.write(reset ? body.subarray(0, body.byteLength >> 1) : body);
    await new Promise((resolve) => setTimeout(resolve, 50));
    if (reset) socket.destroy();
    else expect((await Promise.race([answered, new Promise<string>((r) => setTimeout(() => r("HTTP/1.1 415"), 1_000))])).slice(0, 12)).toBe("HTTP/1.1 415");
    socket.destroy();
    // Released at once, not at the 400 ms timeout (afterEach checks again).
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(watchedDeadlines()).toBe(0);
  });

  it("lets a body through that arrives in pieces, all within the timeout", async () => {
    const before = handled;
    const status = await new Promise<number>((resolve, reject) => {
      const flat = [["host", `127.0.0.1:${port(nodeServer)}`], ...headers(), ["content-length", String(body.byteLength)]].flat();
      const req = http.request({ port: port(nodeServer), host: "127.0.0.1", method: "POST", path: ECHO, headers: flat, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      let at = 0;
      const step = () => {
        if (at >= body.byteLength) return void req.end();
        req.write(body.subarray(at, at + 4));
        at += 4;
        setTimeout(step, TIMEOUT_MS / 20);
      };
      step();
    });
    expect(status).toBe(200);
    expect(handled).toBe(before + 1);
  });
});

describe("the deadline sweep", () => {
  function watch(onExpire: () => void): DeadlineWatch {
    return { deadlineAt: 0, previousWatch: undefined, nextWatch: undefined, watched: false, expire: onExpire };
  }

  it("expires what is still watched, once, in any order of unwatching, and keeps going past a throwing expire", async () => {
    const expired: string[] = [];
    const a = watch(() => expired.push("a"));
    const b = watch(() => {
      expired.push("b");
      throw new Error("a failing expire");
    });
    const c = watch(() => expired.push("c"));
    const d = watch(() => expired.push("d"));
    for (const w of [a, b, c, d]) watchDeadline(w, 50);
    watchDeadline(a, 50); // watching twice changes nothing
    expect(watchedDeadlines()).toBe(4);
    unwatchDeadline(c); // from the middle
    unwatchDeadline(c); // twice is harmless
    expect(watchedDeadlines()).toBe(3);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(expired.sort()).toEqual(["a", "b", "d"]);
    expect(watchedDeadlines()).toBe(0);
    // A watch that left the list points at nothing.
    for (const w of [a, b, c, d]) expect([w.watched, w.previousWatch, w.nextWatch]).toEqual([false, undefined, undefined]);
  });

  it("never expires a watch before its deadline", async () => {
    let expired = false;
    const w = watch(() => (expired = true));
    watchDeadline(w, 10_000);
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(expired).toBe(false);
    unwatchDeadline(w);
  });
});
