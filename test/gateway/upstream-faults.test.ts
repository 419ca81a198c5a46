// Faulty h2c upstreams must fail only their own calls: the gateway process
// (this very vitest process) has to survive every one of them. An unhandled
// 'error' event on an upstream HTTP/2 session would fail this file with an
// unhandled error, and the calls made afterwards prove the gateway still serves.
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { Agent as HttpAgent, createServer as createHttpServer, request as httpRequest } from "node:http";
import { connect, constants as http2Constants, createServer as createHttp2Server, type ClientHttp2Session, type Http2Session } from "node:http2";
import { createServer as createNetServer, type Socket } from "node:net";
import { Duplex, PassThrough, Writable } from "node:stream";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import { type Gateway } from "../../packages/gateway/src/index.js";
import {
  captureLogs,
  closeInTurn,
  listen,
  type RecordingBackend,
  rejectionOf,
  routesFileText,
  seedToken,
  startRecordingBackend,
  startSeedGateway,
  unusedPort,
} from "../support/gateway.js";

/** A POST through the gateway, with a bounded wait. */
function post(url: string, token: string, timeoutMs = 5_000, body: string | Buffer = "{}"): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        timeout: timeoutMs,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer from ${url} within ${timeoutMs}ms`)));
    req.on("error", reject);
    req.end(body);
  });
}

/** An h2c upstream in its own process: holds every call to a path with `hold` (and every gRPC call), answers the rest. */
const childUpstream = `
const http2 = require("node:http2");
const server = http2.createServer((req, res) => {
  req.resume();
  req.on("end", () => {
    process.stdout.write("got " + req.url + "\\n");
    if (req.url.includes("hold") || String(req.headers["content-type"]).startsWith("application/grpc")) return;
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ ok: true, pid: process.pid }));
  });
});
server.listen(Number(process.argv[1]), "127.0.0.1", () => process.stdout.write("ready\\n"));
`;

async function startChild(port: number): Promise<{ child: ChildProcess; received: () => number }> {
  const child = spawn(process.execPath, ["-e", childUpstream, String(port)], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout!.setEncoding("utf8");
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("child upstream did not start")), 10_000);
    child.stdout!.on("data", (chunk: string) => {
      out += chunk;
      if (out.includes("ready\n")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", () => reject(new Error("child upstream exited")));
  });
  await ready;
  return { child, received: () => out.split("\n").filter((l) => l.startsWith("got ")).length };
}

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: timed out`)), ms))),
  ]);
}

/**
 * A raw HTTP/1.1 upstream on a TCP server: `answer` writes whatever it likes
 * for the request-target of each request's first bytes (of each connection's
 * first request only, with `firstOnly`). `close` destroys its connections.
 */
function rawUpstream(answer: (path: string, socket: Socket) => void, options: { firstOnly?: boolean } = {}) {
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
    socket[options.firstOnly ? "once" : "on"]("data", (data: Buffer) => answer(data.toString("latin1").split(" ")[1] ?? "", socket));
  });
  return {
    server,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe("faulty h2c upstreams", () => {
  let gateway: Gateway;
  let token: string;
  let healthy: RecordingBackend;
  const garbageSockets = new Set<Socket>();
  // Answers whatever it is sent with bytes that are not HTTP/2.
  const garbage = createNetServer((socket) => {
    garbageSockets.add(socket);
    socket.on("error", () => {});
    socket.on("close", () => garbageSockets.delete(socket));
    socket.once("data", () => socket.write("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello\r\n\r\nnot http/2 at all"));
  });
  // Answers each call, then sends GOAWAY(INTERNAL_ERROR) on the session it came on.
  const goawaySessions = new Set<Http2Session>();
  const goaway = createHttp2Server((req, res) => {
    // Taken now: the stream lets go of its session once it closes.
    const session = req.stream.session;
    req.resume();
    req.on("end", () => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ ok: true }));
    });
    res.on("finish", () => {
      if (session && !session.destroyed) session.goaway(http2Constants.NGHTTP2_INTERNAL_ERROR);
    });
  });
  goaway.on("session", (session: Http2Session) => {
    goawaySessions.add(session);
    session.on("error", () => {});
  });
  // Starts an answer, then its session dies halfway through the body; or, on
  // a path ending in /cut, closes the stream with RST_STREAM(NO_ERROR) before
  // END_STREAM (a clean-looking end of a body cut short).
  const midwaySessions = new Set<Http2Session>();
  const midway = createHttp2Server((req, res) => {
    const session = req.stream.session;
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      const cut = req.url.endsWith("/cut") ? () => req.stream.close(http2Constants.NGHTTP2_NO_ERROR) : () => session?.destroy();
      res.write(Buffer.alloc(1024, 1), () => setTimeout(cut, 20));
    });
  });
  midway.on("session", (session: Http2Session) => {
    midwaySessions.add(session);
    session.on("error", () => {});
  });
  let killedPort: number;
  let child: { child: ChildProcess; received: () => number } | undefined;

  beforeAll(async () => {
    healthy = await startRecordingBackend({ http2: true });
    const [garbagePort, goawayPort, midwayPort] = await Promise.all([listen(garbage), listen(goaway), listen(midway)]);
    killedPort = await unusedPort();
    const h2c = (upstream: string) => ({ upstream, http2: true });
    const onPort = (port: number) => h2c(`http://127.0.0.1:${port}`);
    gateway = await startSeedGateway(
      routesFileText({
        backends: { healthy: h2c(healthy.url), garbage: onPort(garbagePort), killed: onPort(killedPort), goaway: onPort(goawayPort), midway: onPort(midwayPort) },
      }),
    );
    token = await seedToken({ client_id: "svc", user_id: undefined });
  });
  afterAll(async () => {
    child?.child.kill("SIGKILL");
    await gateway?.close();
    for (const socket of garbageSockets) socket.destroy();
    for (const session of [...goawaySessions, ...midwaySessions]) session.destroy();
    await Promise.all([
      healthy?.close(),
      new Promise((resolve) => garbage.close(resolve)),
      new Promise((resolve) => goaway.close(resolve)),
      new Promise((resolve) => midway.close(resolve)),
    ]);
  });

  it("answers 503 / Unavailable for an upstream that answers bytes that are not HTTP/2, and keeps serving", async () => {
    const rest = await post(`${gateway.url}/backend/garbage/pkg.S/M`, token);
    expect(rest.status).toBe(503);
    const grpc = createClient(EchoService, createGrpcTransport({ baseUrl: `${gateway.url}/backend/garbage`, interceptors: [bearer(token)] }));
    const failure = await withTimeout(rejectionOf(grpc.echo({ text: "x" }, { timeoutMs: 5_000 })), 8_000, "gRPC call");
    expect(failure.code).toBe(Code.Unavailable);
    // Again: a fresh session fails the same way, and nothing else is affected.
    expect((await post(`${gateway.url}/backend/garbage/pkg.S/M`, token)).status).toBe(503);
    expect((await post(`${gateway.url}/backend/healthy/pkg.S/M`, token)).status).toBe(200);
    expect((await fetch(`${gateway.url}/health`, { signal: AbortSignal.timeout(5_000) })).status).toBe(200);
  });

  it("fails the calls in flight when an upstream is SIGKILLed, and recovers once it is back on the same port", async () => {
    child = await startChild(killedPort);
    const first = await post(`${gateway.url}/backend/killed/ok`, token);
    expect([first.status, JSON.parse(first.body).pid]).toEqual([200, child.child.pid]);

    const grpc = createClient(EchoService, createGrpcTransport({ baseUrl: `${gateway.url}/backend/killed`, interceptors: [bearer(token)] }));
    const held = Array.from({ length: 8 }, (_, i) => post(`${gateway.url}/backend/killed/hold/${i}`, token, 8_000));
    const heldGrpc = rejectionOf(grpc.echo({ text: "x" }, { timeoutMs: 8_000 }));
    await until(() => child!.received() >= 1 + 8 + 1);
    const exited = once(child.child, "exit");
    child.child.kill("SIGKILL");
    await withTimeout(exited, 5_000, "child exit");

    const results = await withTimeout(Promise.all(held), 10_000, "held calls");
    expect(results.map((r) => r.status)).toEqual(Array(8).fill(503));
    expect((await withTimeout(heldGrpc, 10_000, "held gRPC call")).code).toBe(Code.Unavailable);
    // Down: still a clean 503, and the gateway keeps serving other routes.
    expect((await post(`${gateway.url}/backend/killed/ok`, token)).status).toBe(503);
    expect((await post(`${gateway.url}/backend/healthy/pkg.S/M`, token)).status).toBe(200);

    child = await startChild(killedPort);
    const again = await post(`${gateway.url}/backend/killed/ok`, token);
    expect([again.status, JSON.parse(again.body).pid]).toEqual([200, child.child.pid]);
  });

  it("resets the caller's response when the upstream dies after the answer started", async () => {
    for (let i = 0; i < 2; i++) {
      const call = await startedCall(`${gateway.url}/backend/midway/pkg.S/M`, token);
      // The headers (and the first bytes) went out: the caller sees a broken answer, not a clean end.
      expect(call).toMatchObject({ status: 200, ending: "reset" });
    }
    expect((await post(`${gateway.url}/backend/healthy/pkg.S/M`, token)).status).toBe(200);
  });

  it.each([
    ["its session dies", "M"],
    ["it closes the stream with RST_STREAM(NO_ERROR) before END_STREAM", "cut"],
  ])("resets an HTTP/2 caller's stream (never a clean end) when, after the answer started, %s", async (_, method) => {
    const session = connect(gateway.url);
    session.on("error", () => {});
    try {
      for (let i = 0; i < 2; i++) {
        const outcome = await new Promise<{ status: number; bytes: number; ended: boolean; rstCode: number | undefined }>((resolve) => {
          const stream = session.request({ ":method": "POST", ":path": `/backend/midway/pkg.S/${method}`, authorization: `Bearer ${token}`, "content-type": "application/octet-stream" });
          let status = 0;
          let bytes = 0;
          let ended = false;
          stream.on("response", (headers) => (status = Number(headers[":status"])));
          stream.on("data", (c: Buffer) => (bytes += c.length));
          stream.on("end", () => (ended = true));
          stream.on("error", () => {});
          stream.on("close", () => resolve({ status, bytes, ended, rstCode: stream.rstCode }));
          stream.end("x");
        });
        // The first 1 KiB arrived, then a reset: a truncated answer must not pass for a complete one.
        expect(outcome).toMatchObject({ status: 200, ended: false, rstCode: http2Constants.NGHTTP2_INTERNAL_ERROR });
      }
    } finally {
      session.close();
    }
  });

  it("opens a new session after an upstream sends GOAWAY", async () => {
    for (let i = 0; i < 3; i++) {
      const before = goawaySessions.size;
      const res = await post(`${gateway.url}/backend/goaway/pkg.S/M`, token);
      expect(res.status).toBe(200);
      // Each call came on a session of its own: the one told to go away was not reused.
      expect(goawaySessions.size).toBe(before + 1);
      // The GOAWAY follows the response's last frame; let it land before the next call.
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect((await post(`${gateway.url}/backend/healthy/pkg.S/M`, token)).status).toBe(200);
  });
});

describe("h2c upstreams that answer before reading the body, or ask the gateway to calm down", () => {
  let gateway: Gateway;
  let token: string;
  const sessions = new Set<Http2Session>();
  let openStreams = 0;
  // Answers 413 to /big without reading a byte of the body (as a service
  // with a smaller maxBodyBytes does); reads and answers everything else.
  const early = createHttp2Server((req, res) => {
    if (req.url.includes("/big")) {
      res.writeHead(413, { "content-type": "application/json" });
      res.end('{"message":"too large"}');
      return;
    }
    req.resume();
    req.on("end", () => res.end('{"ok":true}'));
  });
  early.on("stream", (stream) => {
    openStreams++;
    stream.on("close", () => openStreams--);
  });
  // Its first session resets every stream with ENHANCE_YOUR_CALM (as Node
  // does past a session's limits); later sessions answer.
  let calmSessions = 0;
  const calm = createHttp2Server();
  calm.on("session", (session: Http2Session) => {
    calmSessions++;
    session.on("error", () => {});
    sessions.add(session);
  });
  let poisoned: Http2Session | undefined;
  calm.on("stream", (stream) => {
    poisoned ??= stream.session;
    if (stream.session === poisoned) {
      stream.on("error", () => {}); // its own reset, reported on the stream
      stream.close(http2Constants.NGHTTP2_ENHANCE_YOUR_CALM);
      return;
    }
    stream.resume();
    stream.on("end", () => {
      stream.respond({ ":status": 200, "content-type": "application/json" });
      stream.end('{"ok":true}');
    });
  });
  early.on("session", (session: Http2Session) => {
    sessions.add(session);
    session.on("error", () => {});
  });

  beforeAll(async () => {
    const [earlyPort, calmPort] = await Promise.all([listen(early), listen(calm)]);
    gateway = await startSeedGateway(
      routesFileText({
        backends: {
          early: { upstream: `http://127.0.0.1:${earlyPort}`, http2: true },
          calm: { upstream: `http://127.0.0.1:${calmPort}`, http2: true },
        },
      }),
    );
    token = await seedToken({ client_id: "svc", user_id: undefined });
  });
  afterAll(async () => {
    await gateway?.close();
    for (const session of sessions) session.destroy();
    await Promise.all([new Promise((resolve) => early.close(resolve)), new Promise((resolve) => calm.close(resolve))]);
  });

  it("thirty 1 MiB uploads answered 413 unread leave the session serving every caller, no stream left open", async () => {
    const upload = Buffer.alloc(1024 * 1024, 0x61);
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push((await post(`${gateway.url}/backend/early/pkg.S/big`, token, 10_000, upload)).status);
    expect(statuses).toEqual(new Array(30).fill(413));
    for (let i = 0; i < 3; i++) expect(await post(`${gateway.url}/backend/early/pkg.S/small`, token)).toEqual({ status: 200, body: '{"ok":true}' });
    await until(() => openStreams === 0);
  });

  it("a session whose streams are reset with ENHANCE_YOUR_CALM is replaced: the next call gets through", async () => {
    expect((await post(`${gateway.url}/backend/calm/pkg.S/M`, token)).status).toBe(503);
    expect(await post(`${gateway.url}/backend/calm/pkg.S/M`, token)).toEqual({ status: 200, body: '{"ok":true}' });
    expect(calmSessions).toBe(2);
  });
});

describe("a route whose HTTP version does not match its upstream's", () => {
  it("gets a 503, and the log line says which way to fix the route", async () => {
    const h2Only = await startRecordingBackend({ http2: true });
    const h1Only = await startRecordingBackend();
    const logs = captureLogs();
    const gateway = await startSeedGateway(
      routesFileText({
        backends: {
          h2only: { upstream: h2Only.url }, // should say http2: true
          h1only: { upstream: h1Only.url, http2: true }, // should not
        },
      }),
      {},
      { logger: { level: "warn", stream: logs.stream } },
    );
    try {
      const token = await seedToken({ client_id: "svc", user_id: undefined });
      expect((await post(`${gateway.url}/backend/h2only/pkg.S/M`, token)).status).toBe(503);
      expect((await post(`${gateway.url}/backend/h1only/pkg.S/M`, token)).status).toBe(503);
      const causes = logs.lines().map((line) => String(line.cause ?? ""));
      expect(causes.some((c) => c.includes("add http2: true to its route or backend"))).toBe(true);
      expect(causes.some((c) => c.includes("remove http2: true from its route or backend"))).toBe(true);
    } finally {
      await closeInTurn(gateway, h2Only, h1Only);
    }
  });
});

describe("an HTTP/1.1 upstream's trailers", () => {
  it("are not relayed, and neither is the Trailer header that announces them; an h2c upstream's are both", async () => {
    const h1 = createHttpServer((req, res) => {
      req.resume();
      res.writeHead(200, { "content-type": "application/json", trailer: "x-checksum" });
      res.write('{"a":1}');
      res.addTrailers({ "x-checksum": "abc" });
      res.end();
    });
    const h2 = createHttp2Server();
    h2.on("session", (session: Http2Session) => session.on("error", () => {}));
    h2.on("stream", (stream) => {
      stream.resume();
      stream.respond({ ":status": 200, "content-type": "application/json", trailer: "x-checksum" }, { waitForTrailers: true });
      stream.once("wantTrailers", () => stream.sendTrailers({ "x-checksum": "abc" }));
      stream.end('{"a":1}');
    });
    const [h1Port, h2Port] = await Promise.all([listen(h1), listen(h2)]);
    const gateway = await startSeedGateway(
      routesFileText({
        backends: { one: { upstream: `http://127.0.0.1:${h1Port}` }, two: { upstream: `http://127.0.0.1:${h2Port}`, http2: true } },
      }),
    );
    try {
      const token = await seedToken({ client_id: "svc", user_id: undefined });
      const fetchOver2 = (backend: string) =>
        new Promise<{ trailerHeader: unknown; trailers: unknown; body: string }>((resolve, reject) => {
          const session = connect(gateway.url);
          session.on("error", reject);
          const stream = session.request({ ":path": `/backend/${backend}/x`, authorization: `Bearer ${token}`, te: "trailers" });
          let trailerHeader: unknown;
          let trailers: unknown;
          let body = "";
          stream.on("response", (h) => (trailerHeader = h["trailer"]));
          stream.on("trailers", (t) => (trailers = { ...t }));
          stream.setEncoding("utf8");
          stream.on("data", (c: string) => (body += c));
          stream.on("close", () => {
            session.close();
            resolve({ trailerHeader, trailers, body });
          });
        });
      expect(await fetchOver2("one")).toEqual({ trailerHeader: undefined, trailers: undefined, body: '{"a":1}' });
      expect(await fetchOver2("two")).toMatchObject({ trailerHeader: "x-checksum", trailers: { "x-checksum": "abc" }, body: '{"a":1}' });
    } finally {
      await gateway.close();
      await Promise.all([new Promise((resolve) => h1.close(resolve)), new Promise((resolve) => h2.close(resolve))]);
    }
  });
});

/** A call whose answer starts: its status, the body bytes received, and how it ended. */
function startedCall(url: string, token: string): Promise<{ status: number; bytes: number; ending: "end" | "reset" }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => req.destroy(new Error("the call neither ended nor was reset in time")), 5_000);
    const req = httpRequest(url, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/octet-stream" } }, (res) => {
      let bytes = 0;
      const done = (ending: "end" | "reset") => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, bytes, ending });
      };
      res.on("data", (c: Buffer) => (bytes += c.length));
      res.on("end", () => done("end"));
      res.on("error", () => done("reset"));
      res.on("aborted", () => done("reset"));
    });
    req.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.end("x");
  });
}

function bearer(token: string) {
  return (next: Parameters<import("@connectrpc/connect").Interceptor>[0]) =>
    (req: Parameters<ReturnType<import("@connectrpc/connect").Interceptor>>[0]) => {
      req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    };
}

// An upstream whose answer starts (status and headers) and then fails before
// its first body byte: nothing has reached the caller yet, so the caller gets
// the gateway's answer for an upstream failure — 503, or 504 when the body
// stalls past the route's timeout — never a 500 that blames the gateway.
describe("an h2c upstream whose stream fails between two messages", () => {
  // Two whole EchoStreamResponse messages ({ text: "hi 1" }, { text: "hi 2" }), then the stream reset.
  const message = (text: string) => {
    const payload = Buffer.concat([Buffer.from([0x0a, text.length]), Buffer.from(text)]);
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(payload.length, 1);
    return Buffer.concat([prefix, payload]);
  };
  const upstream = createHttp2Server();
  upstream.on("session", (session: Http2Session) => session.on("error", () => {}));
  upstream.on("stream", (stream) => {
    stream.on("error", () => {});
    stream.resume();
    stream.respond({ ":status": 200, "content-type": "application/grpc" });
    stream.write(Buffer.concat([message("hi 1"), message("hi 2")]));
    // destroy() resets the stream (RST_STREAM INTERNAL_ERROR) without ending it first, as close() would.
    setTimeout(() => stream.destroy(new Error("the upstream fails")), 50);
  });
  let gateway: Gateway;
  let token: string;
  const logs = captureLogs();
  beforeAll(async () => {
    const port = await listen(upstream);
    gateway = await startSeedGateway(routesFileText({ backends: { failing: { upstream: `http://127.0.0.1:${port}`, http2: true } } }), {}, { logger: { level: "info", stream: logs.stream } });
    token = await seedToken({ client_id: "svc", user_id: undefined });
  });
  afterAll(async () => {
    await gateway?.close();
    await new Promise((resolve) => upstream.close(resolve));
  });

  it("the caller gets the whole messages, then Unavailable in its protocol — not a reset it cannot read; the log names the upstream", async () => {
    const client = createClient(EchoService, createGrpcTransport({ baseUrl: `${gateway.url}/backend/failing`, interceptors: [bearer(token)] }));
    const texts: string[] = [];
    const failure = await (async () => {
      for await (const answer of client.echoStream({ text: "hi", repeat: 5 })) texts.push(answer.text);
    })().then(() => undefined, (e: unknown) => e);
    expect(texts).toEqual(["hi 1", "hi 2"]);
    expect(failure).toMatchObject({ code: Code.Unavailable, rawMessage: "the upstream service failed in the middle of the stream" });
    const warning = logs.lines().find((line) => String(line.msg).startsWith("upstream failed mid-stream, between two messages"));
    expect(warning).toMatchObject({ level: 40, upstream: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+ \(backend failing\)$/) });
  });
});

describe("an h2c upstream connection that goes silent", () => {
  // The upstream's first connection is accepted and never read nor answered
  // (a wedged worker); every later one is served by a healthy HTTP/2 server.
  const healthy = createHttp2Server((req, res) => {
    req.resume();
    // A slow handler: its connection stays healthy (PINGs are answered by the HTTP/2 stack).
    const delay = req.url.endsWith("/slow") ? 1_000 : 0;
    setTimeout(() => res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}'), delay);
  });
  healthy.on("session", (session: Http2Session) => session.on("error", () => {}));
  const sockets: Socket[] = [];
  const front = createNetServer((socket) => {
    socket.on("error", () => {});
    sockets.push(socket);
    if (sockets.length === 1) return; // the silent one
    healthy.emit("connection", socket);
  });
  let gateway: Gateway;
  let token: string;

  beforeAll(async () => {
    const port = await listen(front);
    gateway = await startSeedGateway(
      routesFileText({ backends: { h2: { upstream: `http://127.0.0.1:${port}`, http2: true, timeout: "400ms" } } }),
    );
    token = await seedToken({ client_id: "svc", user_id: undefined });
  });
  afterAll(async () => {
    await gateway?.close();
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => front.close(resolve));
  });

  it("is replaced once it has stayed silent for 2 s: the next calls get through on a fresh connection; a slow call on a healthy one keeps it", async () => {
    const started = Date.now();
    const first = await post(`${gateway.url}/backend/h2/pkg.S/M`, token);
    expect([first.status, JSON.parse(first.body).error?.code]).toEqual([504, "GATEWAY_TIMEOUT"]);
    // Not before: an upstream merely slow to connect gets that long (see the next test).
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, 2_100 - (Date.now() - started))));
    for (let i = 0; i < 3; i++) {
      const next = await post(`${gateway.url}/backend/h2/pkg.S/M`, token);
      expect([next.status, next.body]).toEqual([200, '{"ok":true}']);
    }
    expect(sockets.length).toBe(2); // one fresh connection, reused
    // A call that times out on a healthy connection: the connection answers its PING, and stays.
    expect((await post(`${gateway.url}/backend/h2/pkg.S/slow`, token)).status).toBe(504);
    await new Promise((resolve) => setTimeout(resolve, 2_300));
    expect((await post(`${gateway.url}/backend/h2/pkg.S/M`, token)).status).toBe(200);
    expect(sockets.length).toBe(2);
  });

  it("an upstream slow to connect (its SETTINGS after 300 ms, longer than the route's timeout) is not given up on", async () => {
    // A relay that holds each connection 300 ms before passing it on to the healthy server.
    const delayed = createNetServer((socket) => {
      socket.on("error", () => {});
      socket.pause();
      setTimeout(() => {
        healthy.emit("connection", socket);
        socket.resume();
      }, 300);
    });
    const port = await listen(delayed);
    const slowGateway = await startSeedGateway(
      routesFileText({ backends: { h2: { upstream: `http://127.0.0.1:${port}`, http2: true, timeout: "200ms" } } }),
    );
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) {
        const call = post(`${slowGateway.url}/backend/h2/pkg.S/M`, token);
        await new Promise((resolve) => setTimeout(resolve, 150));
        statuses.push((await call).status);
      }
      // The first call waits for the connection past its timeout; the later ones are served on it.
      expect(statuses.slice(1)).toEqual([200, 200, 200, 200]);
    } finally {
      await slowGateway.close();
      await new Promise((resolve) => delayed.close(resolve));
    }
  });

  it("so is one that answered before, then stops answering even PINGs", async () => {
    // A relay in front of the healthy server: connections it has frozen pass nothing either way any more.
    const frozen = new Set<Socket>();
    const relayed: Socket[] = [];
    const relay = createNetServer((socket) => {
      socket.on("error", () => {});
      relayed.push(socket);
      const upstream = new PassThrough();
      socket.on("data", (chunk: Buffer) => {
        if (!frozen.has(socket)) upstream.write(chunk);
      });
      const duplex = Duplex.from({ readable: upstream, writable: new Writable({ write: (chunk, _, done) => (frozen.has(socket) ? done() : socket.write(chunk, done)) }) });
      healthy.emit("connection", duplex);
    });
    const port = await listen(relay);
    const relayGateway = await startSeedGateway(
      routesFileText({ backends: { h2: { upstream: `http://127.0.0.1:${port}`, http2: true, timeout: "400ms" } } }),
    );
    try {
      expect((await post(`${relayGateway.url}/backend/h2/pkg.S/M`, token)).status).toBe(200);
      expect(relayed.length).toBe(1);
      frozen.add(relayed[0] as Socket);
      expect((await post(`${relayGateway.url}/backend/h2/pkg.S/M`, token)).status).toBe(504);
      // Its PING goes unanswered for 2 s: then the connection is dropped, and the next call opens another.
      await until(() => (relayed[0] as Socket).destroyed, 5_000);
      expect((await post(`${relayGateway.url}/backend/h2/pkg.S/M`, token)).status).toBe(200);
      expect(relayed.length).toBe(2);
    } finally {
      await relayGateway.close();
      for (const socket of relayed) socket.destroy();
      await new Promise((resolve) => relay.close(resolve));
    }
  });
});

describe("upstreams that fail between their headers and their body", () => {
  let gateway: Gateway;
  let token: string;
  // HTTP/1.1: headers, then each fault, by path.
  const h1 = rawUpstream(
    (path, socket) => {
      const head = (framing: string) => `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n${framing}\r\n\r\n`;
      if (path.endsWith("/close")) socket.end(head("content-length: 100"));
      else if (path.endsWith("/reset")) socket.write(head("content-length: 100"), () => socket.resetAndDestroy());
      else if (path.endsWith("/bad-chunk")) socket.write(`${head("transfer-encoding: chunked")}zz\r\nnot a chunk\r\n`);
      else if (path.endsWith("/stall")) socket.write(head("content-length: 100"));
    },
    { firstOnly: true },
  );
  // HTTP/2: headers, then a reset or a stall.
  const h2Sessions = new Set<Http2Session>();
  const h2 = createHttp2Server((req) => {
    // Neither reads the body nor answers: the gateway's writes wait on flow control.
    if (req.url.endsWith("/no-read")) return;
    req.resume();
    // Straight onto the stream: the headers go out now, with no body to follow.
    req.stream.respond({ ":status": 200, "content-type": "application/json" });
    // destroy() resets the stream (RST_STREAM INTERNAL_ERROR) without ending it first, as close() would.
    req.stream.on("error", () => {});
    if (req.url.endsWith("/reset")) setTimeout(() => req.stream.destroy(new Error("the upstream fails")), 10);
  });
  h2.on("session", (session: Http2Session) => {
    h2Sessions.add(session);
    session.on("error", () => {});
  });

  beforeAll(async () => {
    const [h1Port, h2Port] = await Promise.all([listen(h1.server), listen(h2)]);
    gateway = await startSeedGateway(
      routesFileText({
        backends: {
          h1: { upstream: `http://127.0.0.1:${h1Port}`, timeout: "1s" },
          h2: { upstream: `http://127.0.0.1:${h2Port}`, http2: true, timeout: "1s" },
        },
      }),
    );
    token = await seedToken({ client_id: "svc", user_id: undefined });
  });
  afterAll(async () => {
    await gateway?.close();
    for (const session of h2Sessions) session.destroy();
    await Promise.all([h1.close(), new Promise((resolve) => h2.close(resolve))]);
  });

  it.each([
    ["h1", "close", 503, "SERVICE_UNAVAILABLE"],
    ["h1", "reset", 503, "SERVICE_UNAVAILABLE"],
    ["h1", "bad-chunk", 503, "SERVICE_UNAVAILABLE"],
    ["h1", "stall", 504, "GATEWAY_TIMEOUT"],
    ["h2", "reset", 503, "SERVICE_UNAVAILABLE"],
    ["h2", "stall", 504, "GATEWAY_TIMEOUT"],
  ])("%s upstream, headers then %s: %i %s", async (backend, fault, status, code) => {
    const res = await post(`${gateway.url}/backend/${backend}/pkg.S/${fault}`, token);
    expect([res.status, JSON.parse(res.body).error?.code]).toEqual([status, code]);
  });

  it("h2 upstream that never reads a large body nor answers: 504 at the route's timeout, not twice it", async () => {
    const started = Date.now();
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(`${gateway.url}/backend/h2/pkg.S/no-read`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/octet-stream" },
      }, (answer) => {
        let body = "";
        answer.on("data", (c: Buffer) => (body += c));
        answer.on("end", () => resolve({ status: answer.statusCode ?? 0, body }));
      });
      req.on("error", reject);
      // Well past HTTP/2's initial 64 KiB window, under the gateway's 1 MiB body limit.
      req.end(Buffer.alloc(900 * 1024, 1));
    });
    expect([res.status, JSON.parse(res.body).error?.code]).toEqual([504, "GATEWAY_TIMEOUT"]);
    // The route's timeout is 1 s; its body still being written did not push the deadline back.
    expect(Date.now() - started).toBeLessThan(1_700);
  });

  it("a gRPC caller whose upstream stalls after its headers gets DeadlineExceeded, not Internal", async () => {
    // The gRPC path ends in /Echo, which the upstream answers with headers, then nothing.
    const client = createClient(EchoService, createGrpcTransport({ baseUrl: `${gateway.url}/backend/h2`, interceptors: [bearer(token)] }));
    expect((await rejectionOf(client.echo({ text: "x" }))).code).toBe(Code.DeadlineExceeded);
  });
});

describe("an HTTP/1.1 upstream that closes a kept-alive connection as the gateway reuses it", () => {
  // Answers each connection's first request (keep-alive, no `Keep-Alive: timeout` to go by),
  // and destroys the connection on its second — as an upstream closing an idle connection
  // at the moment the gateway sends on it.
  const requestsOn = new WeakMap<Socket, number>();
  let received = 0;
  const upstream = rawUpstream((_path, socket) => {
    received++;
    const n = (requestsOn.get(socket) ?? 0) + 1;
    requestsOn.set(socket, n);
    if (n > 1) return void socket.destroy();
    // No body: this answers HEADs too (the others read an empty 200).
    socket.write("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 0\r\n\r\n");
  });
  let gateway: Gateway;
  let token: string;
  beforeAll(async () => {
    const port = await listen(upstream.server);
    gateway = await startSeedGateway(routesFileText({ backends: { idle: { upstream: `http://127.0.0.1:${port}` } } }), {}, { rateLimit: false });
    token = await seedToken({ client_id: "svc", user_id: undefined });
  });
  afterAll(async () => {
    await gateway?.close();
    await upstream.close();
  });

  it("sends a GET, HEAD, PUT or DELETE once more on another connection; never a POST or PATCH", async () => {
    const call = async (method: string) => {
      const res = await fetch(`${gateway.url}/backend/idle/x`, { method, headers: { authorization: `Bearer ${token}` }, ...(["PUT", "POST", "PATCH"].includes(method) && { body: "{}" }) });
      await res.arrayBuffer();
      return res.status;
    };
    expect(await call("GET")).toBe(200); // a first connection, kept alive
    for (const method of ["GET", "PUT", "DELETE", "HEAD"]) {
      const before = received;
      expect([method, await call(method)]).toEqual([method, 200]);
      expect([method, received - before]).toEqual([method, 2]); // the reused connection, then a new one
    }
    expect(await call("GET")).toBe(200); // a connection the next call reuses (a HEAD's may not be)
    for (const method of ["POST", "PATCH"]) {
      const before = received;
      expect([method, await call(method)]).toEqual([method, 503]);
      expect([method, received - before]).toEqual([method, 1]);
      expect(await call("GET")).toBe(200); // a fresh connection again, for the next case
    }
  });
});

describe("HTTP/1.1 upstreams that stall, or answer without a body", () => {
  let gateway: Gateway;
  let token: string;
  // Holds every request to `/stall` unanswered; answers the others as their
  // names say: a 304 carrying the Content-Length of the body it stands for
  // (RFC 9110 §8.6), a 204 with a Content-Length, two different Locations,
  // the same Content-Type twice.
  const upstream = rawUpstream((path, socket) => {
    if (path.endsWith("/not-modified")) socket.write('HTTP/1.1 304 Not Modified\r\netag: "v1"\r\ncontent-length: 42\r\n\r\n');
    if (path.endsWith("/no-content")) socket.write("HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n");
    if (path.endsWith("/two-locations")) socket.write("HTTP/1.1 302 Found\r\nlocation: /a\r\nlocation: /b\r\ncontent-length: 0\r\n\r\n");
    if (path.endsWith("/type-twice")) socket.write("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok");
  });
  const agent = new HttpAgent({ keepAlive: true, maxSockets: Infinity });

  function get(path: string): Promise<{ status: number; body: string; ms: number }> {
    const started = Date.now();
    return new Promise((resolve, reject) => {
      const req = httpRequest(`${gateway.url}${path}`, { headers: { authorization: `Bearer ${token}` }, agent, timeout: 10_000 }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, ms: Date.now() - started }));
        res.on("error", reject);
      });
      req.on("timeout", () => req.destroy(new Error(`no answer within 10 s`)));
      req.on("error", reject);
      req.end();
    });
  }

  /** A GET over HTTP/2 on `session`: its status, headers and how the stream closed. */
  function h2Get(session: ClientHttp2Session, path: string): Promise<{ status: number; headers: Record<string, unknown>; rstCode: number }> {
    return new Promise((resolve) => {
      const stream = session.request({ ":path": path, authorization: `Bearer ${token}` });
      let headers: Record<string, unknown> = {};
      stream.on("response", (received) => (headers = received));
      stream.on("error", () => {});
      stream.resume();
      stream.on("close", () => resolve({ status: Number(headers[":status"] ?? 0), headers, rstCode: stream.rstCode }));
    });
  }

  beforeAll(async () => {
    const port = await listen(upstream.server);
    gateway = await startSeedGateway(
      routesFileText({ backends: { slow: { upstream: `http://127.0.0.1:${port}`, timeout: "4s" } } }),
      {},
      { rateLimit: false, authFailureLimit: false, drainTimeoutMs: 300 },
    );
    token = await seedToken({ client_id: "svc", user_id: undefined });
  });
  afterAll(async () => {
    agent.destroy();
    await gateway?.close();
    await upstream.close();
  });

  it("gets every caller its 504 within the route's timeout, those queued behind 128 stalled connections too", async () => {
    // 200 connections to the gateway first, so that the calls below all arrive at once
    // (on a busy machine, opening them is what would take time).
    await Promise.all(Array.from({ length: 200 }, () => get("/health")));
    // The gateway keeps at most 128 connections to an upstream: the other 72 wait for one.
    const answers = await Promise.all(Array.from({ length: 200 }, () => get("/backend/slow/stall")));
    expect(new Set(answers.map((a) => a.status))).toEqual(new Set([504]));
    // 4 s from each call's arrival, not from when a connection came free for
    // it (which made the queued ones wait 8 s or more), with room for a busy
    // machine (5.5 s seen with a 3 s timeout under a full parallel test run).
    expect(Math.max(...answers.map((a) => a.ms))).toBeLessThan(7_500);
  });

  it("relays a 304 whose Content-Length stands for the body it does not send", async () => {
    const res = await get("/backend/slow/not-modified");
    expect([res.status, res.body]).toEqual([304, ""]);
  });

  it("relays a 204 that carries a Content-Length without it, so an HTTP/2 caller gets a well-formed answer", async () => {
    expect((await get("/backend/slow/no-content")).status).toBe(204);
    const session = connect(gateway.url);
    session.on("error", () => {});
    try {
      const answer = await h2Get(session, "/backend/slow/no-content");
      expect([answer.status, answer.headers["content-length"], answer.rstCode]).toEqual([204, undefined, http2Constants.NGHTTP2_NO_ERROR]);
    } finally {
      session.close();
    }
  });

  it("refuses an answer with two different values of a one-value field (503, over HTTP/1.1 and HTTP/2 alike); sends identical ones once", async () => {
    const h1 = await get("/backend/slow/two-locations");
    expect([h1.status, JSON.parse(h1.body).error?.code]).toEqual([503, "SERVICE_UNAVAILABLE"]);
    const session = connect(gateway.url);
    session.on("error", () => {});
    try {
      expect(await h2Get(session, "/backend/slow/two-locations")).toMatchObject({ status: 503, rstCode: http2Constants.NGHTTP2_NO_ERROR });
      const twice = await h2Get(session, "/backend/slow/type-twice");
      expect([twice.status, twice.headers["content-type"], twice.rstCode]).toEqual([200, "text/plain", http2Constants.NGHTTP2_NO_ERROR]);
    } finally {
      session.close();
    }
    const same = await get("/backend/slow/type-twice");
    expect([same.status, same.body]).toEqual([200, "ok"]);
  });

  it("closes gracefully with calls still waiting for a connection: each gets its 503, and nothing throws", async () => {
    const thrown: unknown[] = [];
    const onThrown = (error: unknown) => thrown.push(error);
    process.on("uncaughtException", onThrown);
    try {
      const calls = Array.from({ length: 160 }, () => get("/backend/slow/stall").catch((e: Error) => ({ status: 0, body: e.message, ms: 0 })));
      await new Promise((resolve) => setTimeout(resolve, 300));
      await gateway.close();
      const statuses = (await Promise.all(calls)).map((a) => a.status);
      expect(new Set(statuses)).toEqual(new Set([503]));
      await new Promise((resolve) => setTimeout(resolve, 100));
    } finally {
      process.off("uncaughtException", onThrown);
    }
    expect(thrown).toEqual([]);
  });
});
