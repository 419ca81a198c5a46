// Slow and stalled clients on the gateway's own port: each fault is injected
// for real, over a raw TCP socket or a node:http2 client on loopback, with
// short bounds so the tests run fast. Each would hang (or wait Node's 300 s)
// without the gateway's connection limits.
import { connect as http2Connect, constants as http2Constants, type ClientHttp2Session } from "node:http2";
import { connect as netConnect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGateway, GatewayConfigError, parseRoutesFile, type Gateway, type GatewayConfig } from "../../packages/gateway/src/index.js";
import { gatewayConfigFromEnv } from "../../packages/gateway/src/gateway-env.js";
import { HMAC_SECRET, JWT_SECRET, SEED_AUDIENCE, SEED_ISSUER, startRecordingBackend, type RecordingBackend } from "../support/gateway.js";
import { within } from "../support/within.js";

const HEADERS_TIMEOUT_MS = 300;
const REQUEST_TIMEOUT_MS = 500;
const IDLE_TIMEOUT_MS = 400;
const MAX_STREAMS = 7;
// What a bound may overrun by on a loaded machine (Node checks HTTP/1.1
// timeouts every headersTimeout / 4).
const SLACK_MS = 700;

let backend: RecordingBackend;
let gateway: Gateway;
let host: string;
let port: number;

const baseConfig = (routes: GatewayConfig["routes"]): GatewayConfig => ({
  routes,
  hmacSecret: HMAC_SECRET,
  tokens: { hs256: { secret: JWT_SECRET, issuer: SEED_ISSUER, audience: SEED_AUDIENCE } },
  rateLimit: false,
  logger: false,
});

beforeAll(async () => {
  backend = await startRecordingBackend();
  const routes = parseRoutesFile(`version: "1.0"\nbackends:\n  up:\n    upstream: ${backend.url}\n    auth_required: false\n`, {
    source: "inline",
  });
  gateway = createGateway({
    ...baseConfig(routes),
    headersTimeoutMs: HEADERS_TIMEOUT_MS,
    requestTimeoutMs: REQUEST_TIMEOUT_MS,
    http2IdleTimeoutMs: IDLE_TIMEOUT_MS,
    http2MaxConcurrentStreams: MAX_STREAMS,
  });
  const url = new URL(await gateway.listen());
  host = url.hostname;
  port = Number(url.port);
});

afterAll(async () => {
  await gateway.close();
  await backend.close();
});

/** A raw TCP connection to the gateway, with what it received and when it closed. */
async function rawSocket(): Promise<{ socket: Socket; received: () => string; closed: Promise<number> }> {
  const socket = netConnect(port, host);
  socket.on("error", () => {});
  let received = "";
  socket.on("data", (chunk: Buffer) => (received += chunk.toString("latin1")));
  const closed = new Promise<number>((resolve) => socket.once("close", () => resolve(Date.now())));
  await within(new Promise((resolve) => socket.once("connect", resolve)), 2_000, "connect");
  return { socket, received: () => received, closed };
}

/** An HTTP/2 session to the gateway, connected (SETTINGS exchanged). */
async function http2Session(): Promise<ClientHttp2Session> {
  const session = http2Connect(`http://${host}:${port}`);
  session.on("error", () => {});
  await within(new Promise((resolve) => session.once("remoteSettings", resolve)), 2_000, "HTTP/2 settings");
  return session;
}

/** GET `path` on `session`: the status, or the reset code when the stream was reset. */
function get(session: ClientHttp2Session, path: string, headers: Record<string, string> = {}): Promise<{ status?: number; rstCode?: number }> {
  return within(
    new Promise((resolve) => {
      const stream = session.request({ ":path": path, ":method": "GET", ...headers });
      stream.on("error", () => {});
      let status: number | undefined;
      stream.on("response", (h) => (status = Number(h[":status"])));
      stream.resume();
      stream.once("close", () => resolve(status === undefined ? { rstCode: stream.rstCode } : { status }));
    }),
    2_000,
    `GET ${path}`,
  );
}

// HTTP/2 frames (RFC 9113 §4.1): an empty SETTINGS, its ACK, a PING.
const SETTINGS = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
const SETTINGS_ACK = Buffer.from([0, 0, 0, 4, 1, 0, 0, 0, 0]);
const PING = Buffer.from([0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);

describe("slow and stalled clients", () => {
  it("closes a connection whose HTTP/2 preface stalls half-way, within headersTimeoutMs", async () => {
    const { socket, closed } = await rawSocket();
    const sentAt = Date.now();
    socket.write("PRI * HTTP/2.0\r\n"); // half of "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", then nothing
    const closedAt = await within(closed, HEADERS_TIMEOUT_MS + SLACK_MS, "the stalled preface's socket stayed open");
    expect(closedAt - sentAt).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 50);
  });

  it("closes an idle HTTP/2 session with GOAWAY after http2IdleTimeoutMs", async () => {
    const session = await http2Session();
    try {
      expect((await get(session, "/health")).status).toBe(200);
      const doneAt = Date.now();
      const goaway = new Promise<number>((resolve) => session.once("goaway", (code: number) => resolve(code)));
      const closed = new Promise<number>((resolve) => session.once("close", () => resolve(Date.now())));
      expect(await within(goaway, IDLE_TIMEOUT_MS + SLACK_MS, "no GOAWAY on the idle session")).toBe(http2Constants.NGHTTP2_NO_ERROR);
      const closedAt = await within(closed, 1_000, "the idle session did not close");
      expect(closedAt - doneAt).toBeGreaterThanOrEqual(IDLE_TIMEOUT_MS - 50);
    } finally {
      session.destroy();
    }
  });

  it("frees an idle HTTP/2 connection whose client ignores GOAWAY and never closes its side, a second after", async () => {
    // A client that keeps its half of the connection open (allowHalfOpen) and ignores what it reads.
    const socket = netConnect({ port, host, allowHalfOpen: true });
    socket.on("error", () => {});
    socket.resume();
    let endedAt = 0;
    socket.once("end", () => (endedAt = Date.now()));
    const closed = new Promise<number>((resolve) => socket.once("close", () => resolve(Date.now())));
    await within(new Promise((resolve) => socket.once("connect", resolve)), 2_000, "connect");
    socket.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), SETTINGS, SETTINGS_ACK]));
    // A PING now and then: once the gateway has destroyed the connection, a write is answered with a reset.
    const pings = setInterval(() => socket.write(PING), 100);
    try {
      const closedAt = await within(closed, IDLE_TIMEOUT_MS + 1_000 + SLACK_MS, "the half-closed HTTP/2 connection was never freed");
      expect(endedAt).toBeGreaterThan(0); // the gateway ended its side first (GOAWAY, then FIN)
      expect(closedAt - endedAt).toBeGreaterThanOrEqual(1_000 - 50);
    } finally {
      clearInterval(pings);
      socket.destroy();
    }
  });

  it("answers 408 to an HTTP/2 stream whose body stalls; the session and its other streams go on", async () => {
    const session = await http2Session();
    try {
      const stalled = session.request({
        ":path": "/backend/up/upload",
        ":method": "POST",
        "content-type": "application/octet-stream",
        "content-length": "100",
      });
      stalled.on("error", () => {});
      stalled.write("only a part of the body");
      const startedAt = Date.now();
      const outcome = new Promise<{ status?: number; rstCode: number; at: number }>((resolve) => {
        let status: number | undefined;
        stalled.on("response", (h) => (status = Number(h[":status"])));
        stalled.resume();
        stalled.once("close", () => resolve({ status, rstCode: stalled.rstCode, at: Date.now() }));
      });
      // Another stream on the same session, while the first one stalls.
      expect((await get(session, "/health")).status).toBe(200);
      const { status, at } = await within(outcome, REQUEST_TIMEOUT_MS + SLACK_MS, "the stalled stream stayed open");
      expect(status).toBe(408);
      expect(at - startedAt).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 50);
      // The session survives, and the call never reached the backend.
      expect((await get(session, "/health")).status).toBe(200);
      expect(backend.requests.some((r) => r.url === "/upload")).toBe(false);
    } finally {
      session.destroy();
    }
  });

  it("answers 408 and closes an HTTP/1.1 connection whose headers stall, within headersTimeoutMs", async () => {
    const { socket, received, closed } = await rawSocket();
    const sentAt = Date.now();
    socket.write("GET /health HTTP/1.1\r\nHost: gateway\r\nX-Slow: "); // never finished
    const closedAt = await within(closed, HEADERS_TIMEOUT_MS + SLACK_MS, "the stalled headers' socket stayed open");
    expect(received()).toMatch(/^HTTP\/1\.1 408 /);
    expect(closedAt - sentAt).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 50);
  });

  it("answers 408 and closes an HTTP/1.1 connection whose body stalls, within requestTimeoutMs", async () => {
    const { socket, received, closed } = await rawSocket();
    const sentAt = Date.now();
    socket.write(
      "POST /backend/up/upload HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\nonly a part",
    );
    const closedAt = await within(closed, REQUEST_TIMEOUT_MS + SLACK_MS, "the stalled body's socket stayed open");
    expect(received()).toMatch(/^HTTP\/1\.1 408 /);
    expect(closedAt - sentAt).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 50);
    expect(backend.requests.some((r) => r.url === "/upload")).toBe(false);
  });

  it("advertises and enforces http2MaxConcurrentStreams and a 64 KiB header list", async () => {
    const session = await http2Session();
    try {
      expect(session.remoteSettings.maxConcurrentStreams).toBe(MAX_STREAMS);
      expect(session.remoteSettings.maxHeaderListSize).toBe(64 * 1024);
      // More streams than allowed at once: all are served (the client queues
      // the extra ones), never more than MAX_STREAMS open on the gateway.
      const results = await Promise.all(Array.from({ length: MAX_STREAMS * 2 }, () => get(session, "/health")));
      expect(results.every((r) => r.status === 200)).toBe(true);
      // An oversized header block: that stream is refused, nothing crashes.
      const big = await get(session, "/health", { "x-big": "a".repeat(70 * 1024) });
      expect(big.status === 431 || big.rstCode !== undefined).toBe(true);
      expect(big.status).not.toBe(200);
    } finally {
      session.destroy();
    }
    const fresh = await http2Session();
    try {
      expect((await get(fresh, "/health")).status).toBe(200);
    } finally {
      fresh.destroy();
    }
  });

  it("refuses a peer opening more streams than advertised", async () => {
    // A raw HTTP/2 client that ignores the advertised limit (Node's own client
    // would queue the extra stream): MAX_STREAMS + 1 requests whose bodies stay
    // open. The one past the limit is refused (RST_STREAM REFUSED_STREAM, or
    // the whole connection with GOAWAY PROTOCOL_ERROR), never served.
    const { socket, closed } = await rawSocket();
    const frames: { type: number; streamId: number; code: number }[] = [];
    let buffered = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 9 && buffered.length >= 9 + buffered.readUIntBE(0, 3)) {
        const length = buffered.readUIntBE(0, 3);
        const type = buffered[3] as number;
        const streamId = buffered.readUInt32BE(5) & 0x7fffffff;
        const payload = buffered.subarray(9, 9 + length);
        // RST_STREAM: the error code; GOAWAY: last stream id, then the error code.
        const code = type === 0x3 ? payload.readUInt32BE(0) : type === 0x7 ? payload.readUInt32BE(4) : 0;
        frames.push({ type, streamId, code });
        buffered = buffered.subarray(9 + length);
      }
    });
    const frame = (type: number, flags: number, streamId: number, payload: Buffer) => {
      const head = Buffer.alloc(9);
      head.writeUIntBE(payload.length, 0, 3);
      head[3] = type;
      head[4] = flags;
      head.writeUInt32BE(streamId, 5);
      return Buffer.concat([head, payload]);
    };
    const literal = (prefix: number[], value: string) => Buffer.from([...prefix, value.length, ...Buffer.from(value, "latin1")]);
    // :method POST, :scheme http (static table), :path and content-type (literal, indexed name).
    const block = Buffer.concat([
      Buffer.from([0x83, 0x86]),
      literal([0x04], "/backend/up/upload"),
      literal([0x0f, 0x10], "application/octet-stream"),
    ]);
    socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    socket.write(frame(0x4, 0, 0, Buffer.alloc(0))); // SETTINGS
    await within(
      new Promise<void>((resolve) => {
        const check = () => (frames.some((f) => f.type === 0x4) ? resolve() : setTimeout(check, 10));
        check();
      }),
      2_000,
      "the gateway's SETTINGS",
    );
    socket.write(frame(0x4, 0x1, 0, Buffer.alloc(0))); // SETTINGS ACK
    const ids = Array.from({ length: MAX_STREAMS + 1 }, (_, i) => 2 * i + 1);
    for (const id of ids) socket.write(frame(0x1, 0x4, id, block)); // HEADERS, END_HEADERS, body to follow
    const last = ids[ids.length - 1] as number;
    const refused = () =>
      frames.find((f) => (f.type === 0x3 && f.streamId === last) || (f.type === 0x7 && f.code !== 0));
    await within(
      new Promise<void>((resolve) => {
        const check = () => (refused() ? resolve() : setTimeout(check, 10));
        check();
      }),
      1_000,
      "the stream past the limit was not refused",
    );
    const refusal = refused() as { type: number; code: number };
    if (refusal.type === 0x3) {
      expect(refusal.code).toBe(http2Constants.NGHTTP2_REFUSED_STREAM);
      // The streams within the limit are not reset.
      expect(frames.filter((f) => f.type === 0x3 && f.streamId !== last)).toEqual([]);
    } else {
      expect(refusal.code).toBe(http2Constants.NGHTTP2_PROTOCOL_ERROR);
    }
    socket.destroy();
    await within(closed, 1_000, "close");
    expect(backend.requests.some((r) => r.url === "/upload")).toBe(false);
  });
});

describe("callers that stop reading their answer", () => {
  const SEND_TIMEOUT_MS = 500;
  const BIG = 16 * 1024 * 1024;
  let upstream: RecordingBackend;
  let slowGateway: Gateway;
  let url: URL;

  beforeAll(async () => {
    upstream = await startRecordingBackend();
    // `/big`: more than any socket buffers hold; `/quiet`: a first piece, a pause longer than the send timeout, the rest.
    upstream.respond = (req, res) => {
      res.setHeader("content-type", "application/octet-stream");
      if (req.url.endsWith("/big")) return void res.end(Buffer.alloc(BIG, 1));
      res.write("first piece;");
      setTimeout(() => res.end("the rest"), SEND_TIMEOUT_MS * 3);
    };
    const routes = parseRoutesFile(`version: "1.0"\nbackends:\n  up:\n    upstream: ${upstream.url}\n    auth_required: false\n`, { source: "inline" });
    slowGateway = createGateway({ ...baseConfig(routes), sendTimeoutMs: SEND_TIMEOUT_MS });
    url = new URL(await slowGateway.listen());
  });
  afterAll(async () => {
    await slowGateway.close();
    await upstream.close();
  });

  it("resets an HTTP/2 stream whose caller never opens its flow-control window, after sendTimeoutMs", async () => {
    const session = http2Connect(url.origin, { settings: { initialWindowSize: 0 } });
    session.on("error", () => {});
    try {
      const stream = session.request({ ":path": "/backend/up/big" });
      stream.on("error", () => {});
      const startedAt = Date.now();
      const closed = new Promise<{ rstCode: number; at: number }>((resolve) => stream.once("close", () => resolve({ rstCode: stream.rstCode, at: Date.now() })));
      const { rstCode, at } = await within(closed, SEND_TIMEOUT_MS + 3 * SLACK_MS, "the unread stream stayed open");
      expect(rstCode).toBe(http2Constants.NGHTTP2_CANCEL);
      expect(at - startedAt).toBeGreaterThanOrEqual(SEND_TIMEOUT_MS - 50);
    } finally {
      session.destroy();
    }
  });

  it("resets such a stream even while its connection stays busy: PINGs, and another stream reading", async () => {
    const session = http2Connect(url.origin, { settings: { initialWindowSize: 0 } });
    session.on("error", () => {});
    // Activity on the connection that is not the stalled stream taking bytes.
    const pings = setInterval(() => session.ping(() => {}), 100);
    try {
      const stalled = session.request({ ":path": "/backend/up/big" });
      stalled.on("error", () => {});
      const quiet = session.request({ ":path": "/backend/up/quiet" });
      quiet.on("error", () => {});
      quiet.resume();
      const closed = new Promise<number>((resolve) => stalled.once("close", () => resolve(stalled.rstCode)));
      expect(await within(closed, SEND_TIMEOUT_MS + 3 * SLACK_MS, "the unread stream stayed open")).toBe(http2Constants.NGHTTP2_CANCEL);
    } finally {
      clearInterval(pings);
      session.destroy();
    }
  });

  it("never cuts a slow reader that keeps taking bytes, its buffers refilled to the same level each time", async () => {
    const session = http2Connect(url.origin);
    session.on("error", () => {});
    try {
      const stream = session.request({ ":path": "/backend/up/big" });
      stream.on("error", () => {});
      stream.pause();
      // 16 KiB every 50 ms, for more than four send timeouts.
      let read = 0;
      const reader = setInterval(() => {
        for (let chunk: Buffer | null, got = 0; got < 16_384 && (chunk = stream.read(Math.min(4_096, 16_384 - got)) as Buffer | null) !== null; ) {
          got += chunk.length;
          read += chunk.length;
        }
      }, 50);
      const cut = new Promise<number>((resolve) => stream.once("close", () => resolve(stream.rstCode)));
      const outcome = await Promise.race([cut.then((code) => `cut (RST_STREAM ${code}) after ${read} bytes`), new Promise((resolve) => setTimeout(resolve, SEND_TIMEOUT_MS * 4 + 500, "still reading"))]);
      clearInterval(reader);
      expect(outcome).toBe("still reading");
      expect(read).toBeGreaterThan(256 * 1024);
    } finally {
      session.destroy();
    }
  });

  it("still closes an idle HTTP/1.1 keep-alive connection after Node's keep-alive timeout", async () => {
    const socket = netConnect(Number(url.port), url.hostname);
    socket.on("error", () => {});
    await within(new Promise((resolve) => socket.once("connect", resolve)), 2_000, "connect");
    let received = "";
    socket.on("data", (chunk: Buffer) => (received += chunk.toString("latin1")));
    const closed = new Promise((resolve) => socket.once("close", resolve));
    socket.write(`GET /health HTTP/1.1\r\nhost: ${url.host}\r\n\r\n`);
    // Node's default keepAliveTimeout is 5 s; the connection, answered and idle, must not outlive it by much.
    await within(closed, 5_000 + 2 * SLACK_MS + 1_000, "the idle keep-alive connection stayed open");
    expect(received).toMatch(/^HTTP\/1\.1 200 /);
  });

  it("closes an HTTP/1.1 connection whose caller stops reading, after sendTimeoutMs", async () => {
    const socket = netConnect(Number(url.port), url.hostname);
    socket.on("error", () => {});
    await within(new Promise((resolve) => socket.once("connect", resolve)), 2_000, "connect");
    socket.write(`GET /backend/up/big HTTP/1.1\r\nhost: ${url.host}\r\n\r\n`);
    socket.pause();
    // Long enough for the buffers to fill, then the send timeout to pass.
    await new Promise((resolve) => setTimeout(resolve, SEND_TIMEOUT_MS + 2 * SLACK_MS));
    let received = 0;
    socket.on("data", (chunk: Buffer) => (received += chunk.length));
    const closed = new Promise((resolve) => socket.once("close", resolve));
    socket.resume();
    await within(closed, 5_000, "the unread connection stayed open");
    // Closed before the whole answer went out.
    expect(received).toBeGreaterThan(0);
    expect(received).toBeLessThan(BIG);
  });

  it("never cuts an answer that is only quiet for longer than sendTimeoutMs, over HTTP/2 or HTTP/1.1", async () => {
    const session = http2Connect(url.origin);
    session.on("error", () => {});
    try {
      const h2 = await within(
        new Promise<string>((resolve, reject) => {
          const stream = session.request({ ":path": "/backend/up/quiet" });
          let body = "";
          stream.setEncoding("utf8");
          stream.on("data", (c: string) => (body += c));
          stream.on("end", () => resolve(body));
          stream.on("error", reject);
        }),
        SEND_TIMEOUT_MS * 3 + 2 * SLACK_MS,
        "the quiet HTTP/2 answer",
      );
      expect(h2).toBe("first piece;the rest");
    } finally {
      session.destroy();
    }
    const h1 = await within(fetch(`${url.origin}/backend/up/quiet`).then((r) => r.text()), SEND_TIMEOUT_MS * 3 + 2 * SLACK_MS, "the quiet HTTP/1.1 answer");
    expect(h1).toBe("first piece;the rest");
  });
});

describe("connection limit configuration", () => {
  const routes = { source: "test", routes: [], backends: [], publicPaths: [] } as unknown as GatewayConfig["routes"];

  it("refuses a non-positive or non-integer limit, naming the option", () => {
    for (const option of ["headersTimeoutMs", "requestTimeoutMs", "http2IdleTimeoutMs", "sendTimeoutMs", "http2MaxConcurrentStreams"] as const) {
      for (const bad of [0, -1, 1.5, Number.NaN, "100" as unknown as number]) {
        expect(() => createGateway({ ...baseConfig(routes), [option]: bad })).toThrow(GatewayConfigError);
        expect(() => createGateway({ ...baseConfig(routes), [option]: bad })).toThrow(option);
      }
    }
    expect(() => createGateway({ ...baseConfig(routes), headersTimeoutMs: 5_000, requestTimeoutMs: 1_000 })).toThrow("requestTimeoutMs");
  });

  it("reads the GATEWAY_* variables and refuses a bad one, naming it", () => {
    const env = { GATEWAY_HMAC_SECRET: HMAC_SECRET, JWT_SECRET };
    const config = gatewayConfigFromEnv("r.yaml", {
      ...env,
      GATEWAY_HEADERS_TIMEOUT_MS: "2000",
      GATEWAY_REQUEST_TIMEOUT_MS: "4000",
      GATEWAY_HTTP2_IDLE_TIMEOUT_MS: "9000",
      GATEWAY_SEND_TIMEOUT_MS: "15000",
      GATEWAY_HTTP2_MAX_CONCURRENT_STREAMS: "250",
    });
    expect(config).toMatchObject({ headersTimeoutMs: 2000, requestTimeoutMs: 4000, http2IdleTimeoutMs: 9000, sendTimeoutMs: 15000, http2MaxConcurrentStreams: 250 });
    const unset = gatewayConfigFromEnv("r.yaml", env);
    expect([unset.headersTimeoutMs, unset.requestTimeoutMs, unset.http2IdleTimeoutMs, unset.http2MaxConcurrentStreams]).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
    for (const name of [
      "GATEWAY_HEADERS_TIMEOUT_MS",
      "GATEWAY_REQUEST_TIMEOUT_MS",
      "GATEWAY_HTTP2_IDLE_TIMEOUT_MS",
      "GATEWAY_HTTP2_MAX_CONCURRENT_STREAMS",
    ]) {
      expect(() => gatewayConfigFromEnv("r.yaml", { ...env, [name]: "10s" })).toThrow(name);
      // 0 parses, and createGateway refuses it naming the option and the variable.
      expect(() => createGateway({ ...gatewayConfigFromEnv("r.yaml", { ...env, [name]: "0" }), routes })).toThrow(name);
    }
  });
});
