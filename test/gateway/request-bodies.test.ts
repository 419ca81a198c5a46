// Request bodies through the gateway, for real on loopback: sent in many small
// pieces (HTTP/1.1 chunked encoding, HTTP/2 DATA frames), they reach HTTP/1.1
// and h2c upstreams byte for byte, signed, with their exact Content-Length;
// an empty one is forwarded as none; one over the limit is refused as soon as
// it passes it; a large one streaming in leaves the gateway free to answer
// other calls; and a body refused by an h2c upstream (REFUSED_STREAM) is sent
// again.
import { randomBytes } from "node:crypto";
import { connect as connectTcp } from "node:net";
import { request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import { connect as http2Connect, constants as http2Constants, type IncomingHttpHeaders as Http2Headers } from "node:http2";
import { setImmediate as nextTurn } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gateway } from "../../packages/gateway/src/index.js";
import {
  closeInTurn,
  hasValidSignature,
  startRecordingBackend,
  startSeedGateway,
  type RecordedRequest,
  type RecordingBackend,
} from "../support/gateway.js";
import { startServer, type RunningServer } from "../support/loopback-server.js";
import { within } from "../support/within.js";

const yaml = `version: "1.0"
backends:
  up:
    upstream: $UP
    auth_required: false
  up2:
    upstream: $UP2
    http2: true
    auth_required: false
  flaky:
    upstream: $FLAKY
    http2: true
    auth_required: false
`;

const MiB = 1024 * 1024;
const SMALL_LIMIT = 64 * 1024;

let backend: RecordingBackend;
let h2Backend: RecordingBackend;
let flaky: RunningServer;
const flakyRequests: RecordedRequest[] = [];
let refusedStreams = 0;
let gateway: Gateway;
let smallLimitGateway: Gateway;

beforeAll(async () => {
  backend = await startRecordingBackend();
  h2Backend = await startRecordingBackend({ http2: true });
  // Refuses every other stream unprocessed (RST_STREAM REFUSED_STREAM), before reading its body.
  let streams = 0;
  flaky = await startServer(((req: IncomingMessage, res: ServerResponse) => {
    if (streams++ % 2 === 0) {
      refusedStreams++;
      (req as unknown as { stream: { close(code: number): void } }).stream.close(http2Constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      flakyRequests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks) });
      res.end("ok");
    });
  }) as never, "2");
  const env = { UP: backend.url, UP2: h2Backend.url, FLAKY: flaky.baseUrl };
  gateway = await startSeedGateway(yaml, env, { bodyLimit: 9 * MiB, rateLimit: false });
  smallLimitGateway = await startSeedGateway(yaml, env, { bodyLimit: SMALL_LIMIT, rateLimit: false });
});

afterAll(async () => {
  await closeInTurn(gateway, smallLimitGateway, backend, h2Backend, flaky);
});

interface Answer {
  readonly status: number;
  readonly body: string;
}

/** `size` random bytes cut into pieces of 1 byte to 3 KiB, with a 20 KiB one now and then. */
function piecesOf(size: number): { body: Buffer; pieces: Buffer[] } {
  const body = randomBytes(size);
  const pieces: Buffer[] = [];
  for (let at = 0, i = 0; at < size; i++) {
    const length = i % 50 === 49 ? 20_000 : 1 + ((i * 977) % 3000);
    pieces.push(body.subarray(at, at + length));
    at += length;
  }
  return { body, pieces };
}

/**
 * POSTs `pieces` over HTTP/1.1 with chunked encoding (no Content-Length), one
 * write each, yielding to the event loop every `yieldEvery` pieces (or
 * waiting `delayMs` after each); `sent.count` says how many were written,
 * `onAnswer` is called when the answer's headers arrive, and writing stops
 * there. The answer, once complete.
 */
function chunkedPost(
  url: string,
  path: string,
  pieces: readonly Buffer[],
  options: { yieldEvery?: number; delayMs?: number; contentType?: string; onAnswer?: () => void; sent?: { count: number } } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = httpRequest(
      `${url}${path}`,
      { method: "POST", headers: { "content-type": options.contentType ?? "application/octet-stream" } },
      (res) => {
        answered = true;
        options.onAnswer?.();
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        res.on("error", reject);
      },
    );
    req.on("error", (e) => (answered ? undefined : reject(e)));
    void (async () => {
      for (let i = 0; i < pieces.length; i++) {
        if (answered || req.destroyed) return;
        if (!req.write(pieces[i])) await new Promise((r) => req.once("drain", r));
        if (options.sent) options.sent.count = i + 1;
        if (options.delayMs !== undefined) await new Promise((r) => setTimeout(r, options.delayMs));
        else if (i % (options.yieldEvery ?? 16) === 0) await nextTurn();
      }
      req.end();
    })();
  });
}

/** POSTs `pieces` on an HTTP/2 stream (no content-length), a DATA frame each, as {@link chunkedPost} does; the answer, once complete. */
async function http2Post(
  url: string,
  path: string,
  pieces: readonly Buffer[],
  options: { delayMs?: number; sent?: { count: number } } = {},
): Promise<Answer> {
  const session = http2Connect(url);
  session.on("error", () => {});
  try {
    return await new Promise<Answer>((resolve, reject) => {
      const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/octet-stream" });
      let status = 0;
      let body = "";
      stream.on("response", (headers: Http2Headers) => (status = Number(headers[":status"])));
      stream.setEncoding("utf8");
      stream.on("data", (c: string) => (body += c));
      stream.on("end", () => resolve({ status, body }));
      stream.on("error", reject);
      void (async () => {
        for (let i = 0; i < pieces.length; i++) {
          if (status !== 0 || stream.destroyed) return;
          if (!stream.write(pieces[i])) await new Promise((r) => stream.once("drain", r));
          if (options.sent) options.sent.count = i + 1;
          if (options.delayMs !== undefined) await new Promise((r) => setTimeout(r, options.delayMs));
          else if (i % 16 === 0) await nextTurn();
        }
        stream.end();
      })();
    });
  } finally {
    session.close();
  }
}

function expectForwardedIntact(forwarded: RecordedRequest | undefined, body: Buffer): void {
  expect(forwarded).toBeDefined();
  expect(forwarded!.body.length).toBe(body.length);
  expect(forwarded!.body.equals(body)).toBe(true);
  expect(forwarded!.headers["content-length"]).toBe(String(body.length));
  expect(forwarded!.headers["transfer-encoding"]).toBeUndefined();
  expect(hasValidSignature(forwarded!)).toBe(true);
}

describe("request bodies", () => {
  it.each([
    ["small HTTP/1.1 chunks", chunkedPost],
    ["HTTP/2 DATA frames", http2Post],
  ] as const)("forwards a body sent in many %s byte for byte, signed, with its exact Content-Length", async (_, post) => {
    const { body, pieces } = piecesOf(600_000);
    expect(pieces.length).toBeGreaterThan(300);
    for (const [service, upstream] of [
      ["up", backend],
      ["up2", h2Backend],
    ] as const) {
      const answer = await post(gateway.url, `/backend/${service}/upload`, pieces);
      expect([service, answer.status]).toEqual([service, 200]);
      expectForwardedIntact(upstream.requests.at(-1), body);
    }
  });

  it("forwards an HTTP/2 body sent with neither Content-Type nor Content-Length, as HTTP/1.1's chunked one, never dropped", async () => {
    for (const [service, upstream] of [
      ["up", backend],
      ["up2", h2Backend],
    ] as const) {
      const session = http2Connect(gateway.url);
      session.on("error", () => {});
      try {
        const status = await new Promise<number>((resolve, reject) => {
          // No content-type, no content-length: only the open stream says a body follows.
          const stream = session.request({ ":method": "POST", ":path": `/backend/${service}/untyped` });
          let answered = 0;
          stream.on("response", (h: Http2Headers) => (answered = Number(h[":status"])));
          stream.resume();
          stream.on("end", () => resolve(answered));
          stream.on("error", reject);
          stream.end(Buffer.from("important-payload"));
        });
        expect([service, status]).toEqual([service, 200]);
        const forwarded = upstream.requests.at(-1)!;
        expect([service, forwarded.url, forwarded.body.toString(), forwarded.headers["content-type"]]).toEqual([
          service,
          "/untyped",
          "important-payload",
          "application/octet-stream",
        ]);
        expect(hasValidSignature(forwarded)).toBe(true);
      } finally {
        session.close();
      }
    }
  });

  it("forwards an empty body as none, signed as empty, whatever its content type", async () => {
    for (const [service, upstream] of [
      ["up", backend],
      ["up2", h2Backend],
    ] as const) {
      for (const contentType of ["application/json", "application/octet-stream"]) {
        const answer = await new Promise<number>((resolve, reject) => {
          const req = httpRequest(`${gateway.url}/backend/${service}/empty`, {
            method: "POST",
            headers: { "content-type": contentType, "content-length": "0" },
          });
          req.on("response", (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode ?? 0));
          });
          req.on("error", reject);
          req.end();
        });
        expect([service, contentType, answer]).toEqual([service, contentType, 200]);
        const forwarded = upstream.requests.at(-1)!;
        expect([service, contentType, forwarded.url, forwarded.body.toString()]).toEqual([service, contentType, "/empty", ""]);
        expect(hasValidSignature(forwarded)).toBe(true);
      }
    }
  });

  it("refuses a body over the limit sent slowly with 413 as soon as it passes the limit, long before it is all sent", async () => {
    const before = backend.requests.length + h2Backend.requests.length;
    const pieces = Array.from({ length: 200 }, () => randomBytes(8 * 1024)); // 1.6 MiB, 8 KiB every 10 ms
    const overLimitAt = SMALL_LIMIT / (8 * 1024) + 1;
    for (const send of [
      (sent: { count: number }) => chunkedPost(smallLimitGateway.url, "/backend/up/upload", pieces, { delayMs: 10, sent }),
      (sent: { count: number }) => http2Post(smallLimitGateway.url, "/backend/up2/upload", pieces, { delayMs: 10, sent }),
    ]) {
      const sent = { count: 0 };
      const answer = await within(send(sent), 5_000, "no answer to the oversized body");
      expect([answer.status, JSON.parse(answer.body).error.code]).toEqual([413, "PAYLOAD_TOO_LARGE"]);
      expect(sent.count).toBeGreaterThanOrEqual(overLimitAt);
      expect(sent.count).toBeLessThan(overLimitAt + 60);
    }
    expect(backend.requests.length + h2Backend.requests.length).toBe(before);
  });

  it("refuses a declared Content-Length over the limit before any of the body is sent", async () => {
    const status = await within(
      new Promise<number>((resolve, reject) => {
        const req = httpRequest(`${smallLimitGateway.url}/backend/up/upload`, {
          method: "POST",
          headers: { "content-type": "application/octet-stream", "content-length": String(SMALL_LIMIT + 1) },
        });
        req.on("response", (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
          req.destroy();
        });
        req.on("error", reject);
        req.flushHeaders(); // headers only: not a byte of the body
      }),
      5_000,
      "no answer before the body",
    );
    expect(status).toBe(413);
  });

  it("HTTP/1.1: a request answered before its body is in (here: no route) has its connection closed, not read to the end", async () => {
    const { port } = new URL(smallLimitGateway.url);
    for (const path of ["/no/such/route"]) {
      const outcome = await within(
        new Promise<{ status: string; closedAfterMs: number }>((resolve, reject) => {
          // Declares 100 GiB and keeps sending until the gateway closes the connection.
          const socket = connectTcp(Number(port), "127.0.0.1", () => {
            socket.write(`POST ${path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/octet-stream\r\nContent-Length: ${100 * 1024 * MiB}\r\n\r\n`);
            const piece = Buffer.alloc(64 * 1024);
            const pump = () => {
              while (!socket.destroyed && socket.write(piece));
              if (!socket.destroyed) socket.once("drain", pump);
            };
            pump();
          });
          let head = "";
          let answeredAt = 0;
          socket.on("data", (c: Buffer) => {
            head += c.toString("latin1");
            if (answeredAt === 0 && head.includes("\r\n\r\n")) answeredAt = performance.now();
          });
          socket.on("error", () => {});
          socket.on("close", () => resolve({ status: head.split("\r\n")[0] ?? "", closedAfterMs: performance.now() - answeredAt }));
          setTimeout(() => reject(new Error("the connection stayed open")), 8_000).unref();
        }),
        10_000,
        "the gateway kept reading the body",
      );
      expect(outcome.status).toMatch(/^HTTP\/1\.1 404 /);
      expect(outcome.closedAfterMs).toBeLessThan(2_000);
    }
  });

  it.each([
    ["a gRPC-web call over the body limit (its error is an HTTP 200)", "/backend/up/pkg.v1.Service/Method", "application/grpc-web+proto", 200],
    ["a call to no route", "/no/such/route", "application/octet-stream", 404],
    ["a REST call over the body limit", "/backend/up/upload", "application/json", 413],
  ])(
    "HTTP/1.1: %s, answered early, is never reset while its (20 MiB) upload is under way: the caller gets the answer and the connection afterwards",
    async (_label, path, contentType, status) => {
      const { port } = new URL(smallLimitGateway.url);
      const outcome = await within(
        new Promise<{ first: string; second: string; error: string | undefined }>((resolve) => {
          const socket = connectTcp(Number(port), "127.0.0.1");
          let text = "";
          let error: string | undefined;
          socket.on("error", (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
          socket.on("close", () => resolve({ first: text, second: "", error: error ?? "closed" }));
          socket.on("data", (c: Buffer) => {
            text += c.toString("latin1");
            // Once all of it is sent, a second request on the same connection.
            const answers = text.split("HTTP/1.1 ").length - 1;
            if (answers === 2 && text.endsWith("}")) {
              socket.removeAllListeners("close");
              socket.destroy();
              const [first = "", second = ""] = text.split(/(?=HTTP\/1\.1 )/);
              resolve({ first, second, error });
            }
          });
          socket.write(`POST ${path} HTTP/1.1\r\nHost: gw\r\nContent-Type: ${contentType}\r\nContent-Length: ${20 * MiB}\r\n\r\n`);
          const piece = Buffer.alloc(256 * 1024);
          let left = 20 * MiB;
          const pump = () => {
            while (left > 0 && !socket.destroyed) {
              left -= piece.length;
              if (!socket.write(piece)) return void socket.once("drain", pump);
            }
            if (!socket.destroyed) {
              socket.write("GET /no/such/route HTTP/1.1\r\nHost: gw\r\n\r\n");
            }
          };
          pump();
        }),
        15_000,
        "no answers",
      );
      expect(outcome.error).toBeUndefined();
      expect(outcome.first.split("\r\n")[0]).toBe(`HTTP/1.1 ${status} ${status === 200 ? "OK" : status === 404 ? "Not Found" : "Payload Too Large"}`);
      expect(outcome.second.split("\r\n")[0]).toBe("HTTP/1.1 404 Not Found");
    },
  );

  it("HTTP/1.1: a request without a body refused at once keeps its connection (keep-alive)", async () => {
    const { port } = new URL(smallLimitGateway.url);
    const answer = await within(
      new Promise<string>((resolve, reject) => {
        const socket = connectTcp(Number(port), "127.0.0.1", () => socket.write("GET /no/such/route HTTP/1.1\r\nHost: gw\r\n\r\n"));
        let text = "";
        socket.on("data", (c: Buffer) => {
          text += c.toString("latin1");
          if (text.includes("\r\n\r\n") && text.endsWith("}")) {
            socket.destroy();
            resolve(text);
          }
        });
        socket.on("error", reject);
      }),
      5_000,
      "no answer",
    );
    expect(answer.split("\r\n")[0]).toMatch(/^HTTP\/1\.1 404 /);
    expect(answer.toLowerCase()).not.toContain("connection: close");
  });

  it("HTTP/2: a body over the limit gets its 413, then (Node 24) RST_STREAM(NO_ERROR): the client stops sending, the session stays usable", async () => {
    // Node.js 22 sends no RST_STREAM(NO_ERROR) after a complete answer (and CANCEL would hide the
    // answer from Connect and gRPC clients): there the gateway leaves the upload to the request timeout.
    const resets = Number(process.versions.node.split(".")[0]) >= 24;
    const session = http2Connect(smallLimitGateway.url);
    session.on("error", () => {});
    try {
      const outcome = await within(
        new Promise<{ status: number; rstCode: number; closedAfterMs: number }>((resolve) => {
          const stream = session.request({ ":method": "POST", ":path": "/backend/up2/upload", "content-type": "application/octet-stream" });
          let status = 0;
          let answeredAt = 0;
          stream.on("response", (h: Http2Headers) => {
            status = Number(h[":status"]);
            answeredAt = performance.now();
            if (!resets) stream.close(http2Constants.NGHTTP2_CANCEL);
          });
          stream.on("error", () => {});
          stream.resume();
          const piece = Buffer.alloc(16 * 1024);
          const pump = () => {
            while (!stream.destroyed && !stream.closed && stream.write(piece));
            if (!stream.destroyed && !stream.closed) stream.once("drain", pump);
          };
          pump();
          stream.on("close", () => resolve({ status, rstCode: stream.rstCode ?? -1, closedAfterMs: performance.now() - answeredAt }));
        }),
        10_000,
        "the stream stayed open after its 413",
      );
      expect(outcome.status).toBe(413);
      if (resets) {
        expect(outcome.rstCode).toBe(http2Constants.NGHTTP2_NO_ERROR);
        expect(outcome.closedAfterMs).toBeLessThan(2_000);
      }
      const again = await new Promise<number>((resolve, reject) => {
        const stream = session.request({ ":method": "POST", ":path": "/backend/up2/upload", "content-type": "application/octet-stream" });
        stream.on("response", (h: Http2Headers) => resolve(Number(h[":status"])));
        stream.on("error", reject);
        stream.resume();
        stream.end("small");
      });
      expect(again).toBe(200);
    } finally {
      session.close();
    }
  });

  it("answers other calls while an 8 MiB body streams in", async () => {
    const body = randomBytes(8 * MiB);
    const pieces = Array.from({ length: 128 }, (_, i) => body.subarray(i * 65536, (i + 1) * 65536));
    let bigAnswered = false;
    const sent = { count: 0 };
    const big = chunkedPost(gateway.url, "/backend/up/big", pieces, { yieldEvery: 1, sent, onAnswer: () => (bigAnswered = true) });
    const halfSent = (async () => {
      while (sent.count < 64) await new Promise((r) => setTimeout(r, 1));
    })();
    await within(Promise.race([halfSent, big]), 10_000, "half of the big body sent");
    expect(bigAnswered).toBe(false);
    const small = await within(chunkedPost(gateway.url, "/backend/up2/small", [Buffer.from("small")]), 5_000, "the small call");
    expect(small.status).toBe(200);
    expect(bigAnswered).toBe(false);
    expect((await big).status).toBe(200);
    expectForwardedIntact(
      backend.requests.findLast((r) => r.url === "/big"),
      body,
    );
  });

  it("sends a buffered body again, intact, when an h2c upstream refuses its stream (REFUSED_STREAM)", async () => {
    const { body, pieces } = piecesOf(300_000);
    const refusedBefore = refusedStreams;
    const answer = await chunkedPost(gateway.url, "/backend/flaky/retried", pieces);
    expect(answer.status).toBe(200);
    expect(refusedStreams).toBe(refusedBefore + 1);
    expectForwardedIntact(flakyRequests.at(-1), body);
  });
});
