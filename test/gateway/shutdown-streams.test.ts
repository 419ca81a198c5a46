// Calls cut when the drain timeout of a graceful close expires: a real Connect,
// gRPC or gRPC-web client (connect-node, over HTTP/2 and HTTP/1.1) whose call
// has no answer yet must see Code.Unavailable, "try again elsewhere", not
// Code.Canceled; and so must one reading a server stream whose answer has
// started, after every whole message relayed before the deadline. (A plain
// HTTP stream is reset, see shutdown.test.ts.)
import type { OutgoingHttpHeaders } from "node:http";
import { createServer as createHttp2Server, type Http2Session } from "node:http2";
import { PassThrough, type Readable } from "node:stream";
import { Code, ConnectError, createClient, type ConnectRouter, type Transport } from "@connectrpc/connect";
import {
  connectNodeAdapter,
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import { type Gateway } from "../../packages/gateway/src/index.js";
import { constants as http2Constants } from "node:http2";
import { EnvelopedRelay, MESSAGE_REMAINDER_WAIT_MS } from "../../packages/gateway/src/enveloped-relay.js";
import { startEchoBackend } from "../../examples/dev/example-backends.js";
import { HMAC_SECRET, listen, startSeedGateway } from "../support/gateway.js";
import { within } from "../support/within.js";

const DRAIN_MS = 300;

// The backend's calls never end by themselves: each waits for its caller to
// go away (its signal), or for the test's end.
let releaseAll: () => void = () => {};
const released = new Promise<void>((resolve) => (releaseAll = resolve));
const untilGone = (signal: AbortSignal) =>
  Promise.race([released, new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }))]);

function routes(router: ConnectRouter): void {
  router.service(EchoService, {
    async echo(req, ctx) {
      unaryCallsReceived++;
      await untilGone(ctx.signal);
      return { text: req.text };
    },
    async *echoStream(req, ctx) {
      if (req.text === TICKS) {
        ctx.signal.addEventListener("abort", () => (streamAborted = true), { once: true });
        // Large messages (each spans several HTTP/2 DATA frames and reads), one every few ms, until cancelled.
        for (let i = 1; !ctx.signal.aborted; i++) {
          yield { text: tickText(i) };
          ticksSent.push(Date.now());
          await new Promise((resolve) => setTimeout(resolve, 15));
        }
        return;
      }
      yield { text: `${req.text} 1` };
      await untilGone(ctx.signal);
    },
    async collect() {
      return { text: "" };
    },
    async *chat() {},
  });
}

// Unary calls the backend has received (and holds).
let unaryCallsReceived = 0;

// The endless server stream: message i is `tick i ` padded to TICK_BYTES.
const TICKS = "ticks";
const TICK_BYTES = 40_000;
const tickText = (i: number) => `tick ${i} `.padEnd(TICK_BYTES, "x");
// When the backend handed each tick of the current stream over (index i-1 for tick i).
let ticksSent: number[] = [];
// Whether the current stream's handler saw its call cancelled.
let streamAborted = false;

const backend = createHttp2Server(connectNodeAdapter({ routes }));
const backendSessions = new Set<Http2Session>();
backend.on("session", (session: Http2Session) => {
  backendSessions.add(session);
  session.once("close", () => backendSessions.delete(session));
});
let backendUrl: string;

beforeAll(async () => {
  backendUrl = `http://127.0.0.1:${await listen(backend)}`;
});

afterAll(async () => {
  releaseAll();
  for (const session of backendSessions) session.destroy();
  await new Promise((resolve) => backend.close(resolve));
});

/** A gateway in front of `upstream` (default: the backend) as the public h2c backend `echo`, drainTimeoutMs DRAIN_MS. */
function startGateway(upstream = backendUrl): Promise<Gateway> {
  const yaml = `version: "1.0"\nbackends:\n  echo:\n    upstream: ${upstream}\n    http2: true\n    auth_required: false\n`;
  return startSeedGateway(yaml, {}, { rateLimit: false, drainTimeoutMs: DRAIN_MS });
}

const transports: [string, (baseUrl: string) => Transport][] = [
  ["Connect over HTTP/2", (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2" })],
  ["gRPC", (baseUrl) => createGrpcTransport({ baseUrl })],
  ["Connect over HTTP/1.1", (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1" })],
];

describe("calls cut by the drain timeout", () => {
  for (const [name, transport] of transports) {
    it(`${name}: a unary call not answered yet ends with Code.Unavailable`, async () => {
      const gateway = await startGateway();
      const client = createClient(EchoService, transport(`${gateway.url}/backend/echo`));
      const call = client.echo({ text: "slow" }).then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
      // The call reaches the backend, which holds it.
      const before = unaryCallsReceived;
      await within(
        (async () => {
          while (unaryCallsReceived === before) await new Promise((resolve) => setTimeout(resolve, 10));
        })(),
        5_000,
        "the call did not reach the backend",
      );
      const closing = gateway.close();
      const error = await within(call, DRAIN_MS + 1_500, "the call did not end");
      expect(error?.code).toBe(Code.Unavailable);
      await within(closing, 2_000, "close() did not resolve");
    });
  }
});

const streamTransports: [string, (baseUrl: string) => Transport][] = [
  ["gRPC", (baseUrl) => createGrpcTransport({ baseUrl })],
  ["gRPC-web over HTTP/1.1", (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" })],
  ["gRPC-web over HTTP/2", (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "2" })],
  ["Connect over HTTP/2", (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2" })],
  ["Connect over HTTP/1.1", (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1" })],
];

describe("open server streams cut by the drain timeout", () => {
  for (const [name, transport] of streamTransports) {
    it(`${name}: every whole message sent before the deadline, then Code.Unavailable`, async () => {
      ticksSent = [];
      streamAborted = false;
      const gateway = await startGateway();
      const client = createClient(EchoService, transport(`${gateway.url}/backend/echo`));
      const received: string[] = [];
      let closing: Promise<void> | undefined;
      let closedAt = 0;
      const read = (async () => {
        try {
          for await (const message of client.echoStream({ text: TICKS })) {
            received.push(message.text);
            if (received.length === 3 && closing === undefined) {
              closedAt = Date.now();
              closing = gateway.close();
            }
          }
          return undefined;
        } catch (e) {
          return ConnectError.from(e);
        }
      })();
      const error = await within(read, DRAIN_MS + 3_000, "the stream did not end");
      expect(closing).toBeDefined();
      expect(error?.code).toBe(Code.Unavailable);
      expect(error?.rawMessage).toBe("the gateway is shutting down");
      // Whole messages, in order, none missing.
      expect(received).toEqual(received.map((_, i) => tickText(i + 1)));
      // Everything the backend sent well before the deadline reached the client.
      const deadline = closedAt + DRAIN_MS;
      expect(received.length).toBeGreaterThanOrEqual(ticksSent.filter((at) => at < deadline - 100).length);
      expect(received.length).toBeGreaterThan(3);
      await within(closing as Promise<void>, 3_000, "close() did not resolve");
      // The upstream stream was cancelled, not left running.
      await within(
        (async () => {
          while (!streamAborted) await new Promise((resolve) => setTimeout(resolve, 10));
        })(),
        2_000,
        "the backend's stream was not cancelled",
      );
    });
  }
});

// The relay on its own, fed by hand: a cut in the middle of a message (which
// the end-to-end cases above rarely hit) waits for the rest of that message.
describe("EnvelopedRelay: ending a stream at a message boundary", () => {
  const envelope = (flags: number, payload: string) => {
    const body = Buffer.from(payload);
    const prefix = Buffer.alloc(5);
    prefix.writeUInt8(flags, 0);
    prefix.writeUInt32BE(body.length, 1);
    return Buffer.concat([prefix, body]);
  };
  /** The envelopes of a body: [flags, payload]. */
  const envelopes = (bytes: Buffer): [number, string][] => {
    const out: [number, string][] = [];
    for (let i = 0; i < bytes.length; ) {
      const length = bytes.readUInt32BE(i + 1);
      out.push([bytes[i] as number, bytes.subarray(i + 5, i + 5 + length).toString()]);
      i += 5 + length;
    }
    return out;
  };
  const bodyOf = (relay: Readable) =>
    new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      relay.on("data", (chunk: Buffer) => chunks.push(chunk));
      relay.once("end", () => resolve(Buffer.concat(chunks)));
      relay.once("error", reject);
    });
  const turn = () => new Promise((resolve) => setImmediate(resolve));

  for (const split of [2, 5, 9]) {
    it(`Connect: cut ${split} bytes into a message, the rest of it, then an end-stream message (unavailable)`, async () => {
      const source = new PassThrough();
      const relay = new EnvelopedRelay(source, "connect-stream", { addTrailers: () => expect.fail("no trailers") });
      const body = bodyOf(relay);
      const [m1, m2, m3] = [envelope(0, "one"), envelope(0, "two, longer"), envelope(0, "three")];
      source.write(Buffer.concat([m1, m2.subarray(0, split)]));
      await turn();
      relay.endAtMessageBoundary();
      source.write(m2.subarray(split, split + 1));
      await turn();
      source.write(Buffer.concat([m2.subarray(split + 1), m3]));
      const messages = envelopes(await body);
      expect(messages.slice(0, 2)).toEqual([
        [0, "one"],
        [0, "two, longer"],
      ]);
      expect(messages).toHaveLength(3);
      expect(messages[2]?.[0]).toBe(2);
      expect(JSON.parse(messages[2]?.[1] as string)).toMatchObject({ error: { code: "unavailable", message: "the gateway is shutting down" } });
      expect(source.destroyed).toBe(true);
    });
  }

  it("gRPC: whole messages, then grpc-status 14 in the trailers", async () => {
    const source = new PassThrough();
    const trailers: OutgoingHttpHeaders[] = [];
    const relay = new EnvelopedRelay(source, "grpc", { addTrailers: (t) => trailers.push(t) });
    const body = bodyOf(relay);
    source.write(envelope(0, "one"));
    await turn();
    relay.endAtMessageBoundary();
    source.write(envelope(0, "two"));
    expect(envelopes(await body)).toEqual([[0, "one"]]);
    // grpc-message is percent-encoded; clients decode it.
    expect(trailers).toEqual([{ "grpc-status": "14", "grpc-message": "the%20gateway%20is%20shutting%20down" }]);
  });

  it("gRPC-web: whole messages, then a trailer frame with grpc-status 14", async () => {
    const source = new PassThrough();
    const relay = new EnvelopedRelay(source, "grpc-web", { addTrailers: () => expect.fail("no trailers") });
    const body = bodyOf(relay);
    const m1 = envelope(0, "one");
    source.write(m1.subarray(0, 6));
    await turn();
    relay.endAtMessageBoundary();
    source.write(m1.subarray(6));
    const messages = envelopes(await body);
    expect(messages[0]).toEqual([0, "one"]);
    expect(messages[1]?.[0]).toBe(0x80);
    expect(messages[1]?.[1]).toContain("grpc-status: 14\r\n");
    expect(messages[1]?.[1]).toContain("grpc-message: the%20gateway%20is%20shutting%20down");
  });

  it("leaves alone a stream the upstream is ending itself", async () => {
    const source = new PassThrough();
    const relay = new EnvelopedRelay(source, "connect-stream", { addTrailers: () => expect.fail("no trailers") });
    const body = bodyOf(relay);
    const end = envelope(2, "{}");
    source.write(Buffer.concat([envelope(0, "one"), end.subarray(0, 4)]));
    await turn();
    relay.endAtMessageBoundary();
    source.end(end.subarray(4));
    expect(envelopes(await body)).toEqual([
      [0, "one"],
      [2, "{}"],
    ]);
  });

  it("fails (the caller's stream is reset, with an error code) when the rest of the message does not come in time", async () => {
    const source = new PassThrough();
    const resets: (number | undefined)[] = [];
    const relay = new EnvelopedRelay(source, "grpc", {
      addTrailers: () => expect.fail("no trailers"),
      stream: { close: (code) => void resets.push(code) },
    });
    const body = bodyOf(relay);
    source.write(envelope(0, "one").subarray(0, 7));
    await turn();
    const cutAt = Date.now();
    relay.endAtMessageBoundary();
    await expect(body).rejects.toThrow("did not finish its current message");
    expect(Date.now() - cutAt).toBeGreaterThanOrEqual(MESSAGE_REMAINDER_WAIT_MS - 5);
    expect(source.destroyed).toBe(true);
    // Never NO_ERROR (which a graceful close would otherwise give it): a client would take half a message for the end.
    expect(resets).toEqual([http2Constants.NGHTTP2_INTERNAL_ERROR]);
  });

  it("an upstream failing in the middle of a message: the failure is passed on (the caller's stream is reset)", async () => {
    const failing = new PassThrough();
    const told: Error[] = [];
    const relay = new EnvelopedRelay(failing, "grpc", { addTrailers: () => expect.fail("no trailers") }, (e) => told.push(e));
    const body = bodyOf(relay);
    failing.write(envelope(0, "one").subarray(0, 7));
    await turn();
    failing.destroy(new Error("upstream reset"));
    await expect(body).rejects.toThrow("upstream reset");
    expect(told).toEqual([]);
    // And a relay destroyed because the caller went away cancels the upstream.
    const source = new PassThrough();
    new EnvelopedRelay(source, "grpc", { addTrailers: () => {} }).destroy();
    expect(source.destroyed).toBe(true);
  });

  it("an upstream failing between two messages: the whole messages, then an error ending the caller's protocol reads", async () => {
    // gRPC: grpc-status 14 in the trailers.
    const grpcSource = new PassThrough();
    const trailers: OutgoingHttpHeaders[] = [];
    const told: Error[] = [];
    const grpc = new EnvelopedRelay(grpcSource, "grpc", { addTrailers: (t) => trailers.push(t) }, (e) => told.push(e));
    const grpcBody = bodyOf(grpc);
    grpcSource.write(envelope(0, "one"));
    await turn();
    grpcSource.destroy(new Error("upstream reset"));
    expect(envelopes(await grpcBody)).toEqual([[0, "one"]]);
    expect(trailers).toEqual([{ "grpc-status": "14", "grpc-message": "the%20upstream%20service%20failed%20in%20the%20middle%20of%20the%20stream" }]);
    expect(told.map((e) => e.message)).toEqual(["upstream reset"]);
    // Connect: an end-stream message; a stall past the route's timeout is DeadlineExceeded.
    const connectSource = new PassThrough();
    const connect = new EnvelopedRelay(connectSource, "connect-stream", { addTrailers: () => expect.fail("no trailers") });
    const connectBody = bodyOf(connect);
    connectSource.write(envelope(0, "one"));
    await turn();
    connectSource.destroy(Object.assign(new Error("Body Timeout Error"), { code: "UND_ERR_BODY_TIMEOUT" }));
    const messages = envelopes(await connectBody);
    expect(messages[0]).toEqual([0, "one"]);
    expect(JSON.parse(messages[1]?.[1] as string)).toMatchObject({ error: { code: "deadline_exceeded", message: "the upstream service stopped sending in the middle of the stream" } });
    // gRPC-web: a trailer frame; an upstream body that merely closes before its end counts as a failure too.
    const webSource = new PassThrough();
    const web = new EnvelopedRelay(webSource, "grpc-web", { addTrailers: () => expect.fail("no trailers") });
    const webBody = bodyOf(web);
    webSource.write(envelope(0, "one"));
    await turn();
    webSource.destroy();
    const frames = envelopes(await webBody);
    expect(frames[1]?.[0]).toBe(0x80);
    expect(frames[1]?.[1]).toContain("grpc-status: 14\r\n");
  });
});

// The example backend of the dev stack (`connect-gateway dev`) behind a
// gateway, closed as the dev stack closes on SIGTERM: the gateway first, then
// the backend, each with the same drain timeout.
describe("the example echo backend with an open server stream", () => {
  async function stack() {
    const echo = await startEchoBackend(HMAC_SECRET, 0, { drainTimeoutMs: DRAIN_MS });
    const gateway = await startGateway(echo.url);
    const client = createClient(EchoService, createGrpcTransport({ baseUrl: `${gateway.url}/backend/echo` }));
    return { echo, gateway, client };
  }

  /** Reads an endless echo stream; calls `onThird` at its third message; resolves with how it ended. */
  async function readStream(client: Awaited<ReturnType<typeof stack>>["client"], onThird: () => void) {
    let count = 0;
    try {
      for await (const message of client.echoStream({ text: "hi", repeat: 100_000_000 })) {
        expect(message.text).toBe(`hi ${++count}`);
        if (count === 3) onThird();
      }
      return { count, error: undefined };
    } catch (e) {
      return { count, error: ConnectError.from(e) };
    }
  }

  it("gateway then backend: the caller gets Code.Unavailable and both close within the drain timeout", async () => {
    const { echo, gateway, client } = await stack();
    let closed: Promise<number> | undefined;
    const startedAt: number[] = [];
    const outcome = await within(
      readStream(client, () => {
        startedAt.push(Date.now());
        closed = (async () => {
          await gateway.close();
          await echo.close();
          return Date.now();
        })();
      }),
      DRAIN_MS + 3_000,
      "the stream did not end",
    );
    expect(outcome.error?.code).toBe(Code.Unavailable);
    expect(outcome.count).toBeGreaterThan(3);
    const closedAt = await within(closed as Promise<number>, 3_000, "the stack did not close");
    expect(closedAt - (startedAt[0] as number)).toBeLessThan(DRAIN_MS + 1_000);
  });

  it("the backend closed under an open stream ends it within its drain timeout", async () => {
    const { echo, gateway, client } = await stack();
    let closed: Promise<number> | undefined;
    let closingAt = 0;
    const outcome = await within(
      readStream(client, () => {
        closingAt = Date.now();
        closed = echo.close().then(() => Date.now());
      }),
      DRAIN_MS + 3_000,
      "the stream did not end",
    );
    // The backend cut its stream: the gateway can only pass the failure on.
    expect(outcome.error).toBeDefined();
    const closedAt = await within(closed as Promise<number>, 3_000, "the backend did not close");
    expect(closedAt - closingAt).toBeLessThan(DRAIN_MS + 1_000);
    await within(gateway.close(), 3_000, "close() did not resolve");
  });
});
