// An HTTP/2 RST_STREAM from the server mid-response (INTERNAL_ERROR, or a
// CANCEL the caller did not ask for) — directly, or an upstream reset relayed
// by a gateway — reaches the caller as a ConnectionError (Unavailable), as an
// HTTP/1.1 connection reset does; never Internal. The caller's own abort
// stays Canceled.
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { pipeline } from "node:stream";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConnectionError, createGatewayTransport, type GatewayTransportOptions } from "../../src/client/index.js";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import { startTokenEndpoint, type TestTokenEndpoint } from "../support/token-endpoint.js";

const { NGHTTP2_INTERNAL_ERROR, NGHTTP2_CANCEL } = http2.constants;

// More than HTTP/2's default 64 KiB window: part of it is still queued when the
// server resets, so the RST_STREAM cannot trail a clean END_STREAM.
const PART = 100_000;

/** What the misbehaving server does once it has answered headers and part of a body. */
type Misbehaviour = { readonly reset: number } | { readonly hang: true };

interface H2Server {
  readonly url: string;
  readonly streams: http2.ServerHttp2Stream[];
  close(): Promise<void>;
}

async function listen(server: http2.Http2Server): Promise<H2Server & { server: http2.Http2Server }> {
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => sessions.add(s));
  const streams: http2.ServerHttp2Stream[] = [];
  server.on("stream", (s) => streams.push(s));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    server,
    streams,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A real node:http2 server: response headers, part of a body, then the misbehaviour. */
async function startResettingServer(misbehaviour: Misbehaviour): Promise<H2Server> {
  const server = http2.createServer();
  server.on("stream", (stream, headers) => {
    stream.on("error", () => {}); // our own RST_STREAM(INTERNAL_ERROR) is reported to us too
    const contentType = String(headers["content-type"] ?? "");
    const streaming = contentType.startsWith("application/connect+") || contentType.startsWith("application/grpc");
    stream.respond({ ":status": 200, "content-type": contentType });
    // An envelope announcing 1 MB, or a unary body, cut short.
    const part = Buffer.alloc(PART, 0x0a);
    if (streaming) part.set([0, 0, 0x0f, 0x42, 0x40]);
    stream.write(part);
    if ("reset" in misbehaviour) stream.close(misbehaviour.reset);
  });
  return listen(server);
}

/** A minimal HTTP/2 gateway: forwards each stream upstream and pipes the answer back, errors included. */
async function startRelay(upstreamUrl: string): Promise<H2Server> {
  const upstream = http2.connect(upstreamUrl);
  upstream.on("error", () => {});
  const server = http2.createServer();
  server.on("stream", (down, headers) => {
    down.on("error", () => {});
    const { ":method": method, ":path": path, "content-type": contentType } = headers;
    const up = upstream.request({ ":method": method, ":path": path, "content-type": contentType });
    up.on("response", (h) => down.respond({ ":status": h[":status"], "content-type": h["content-type"] }));
    pipeline(down, up, () => {});
    // The upstream's reset destroys the downstream stream: RST_STREAM to the client, as a Node proxy does.
    pipeline(up, down, () => {});
  });
  const relay = await listen(server);
  return { ...relay, close: () => relay.close().then(() => void upstream.close()) };
}

let tokens: TestTokenEndpoint;
beforeAll(async () => {
  tokens = await startTokenEndpoint(() => ({ json: { access_token: "tok", token_type: "bearer", expires_in: 3600 } }));
});
afterAll(() => tokens.close());

function echoClient(gatewayUrl: string, protocol: "connect" | "grpc") {
  const options = {
    clientId: "resets",
    clientSecret: "resets-secret",
    appcenterUrl: tokens.url,
    gatewayUrl,
    protocol,
    httpVersion: "2",
  } as GatewayTransportOptions;
  return createClient(EchoService, createGatewayTransport(options));
}

const calls = {
  unary: (echo: ReturnType<typeof echoClient>, signal?: AbortSignal) => echo.echo({ text: "x" }, { signal }),
  "server streaming": async (echo: ReturnType<typeof echoClient>, signal?: AbortSignal) => {
    for await (const _ of echo.echoStream({ text: "x", repeat: 3 }, { signal }));
  },
};

function expectUnavailable(error: unknown): void {
  expect(error).toBeInstanceOf(ConnectionError);
  expect((error as ConnectError).code).toBe(Code.Unavailable);
  expect((error as Error).message).toMatch(/reset the call's HTTP\/2 stream/);
}

describe.each([
  ["INTERNAL_ERROR", NGHTTP2_INTERNAL_ERROR],
  ["CANCEL", NGHTTP2_CANCEL],
] as const)("the server resets the stream mid-response with RST_STREAM %s", (_name, reset) => {
  let server: H2Server;
  beforeAll(async () => {
    server = await startResettingServer({ reset });
  });
  afterAll(() => server.close());

  it.each([
    ["connect", "unary"],
    ["connect", "server streaming"],
    ["grpc", "unary"],
    ["grpc", "server streaming"],
  ] as const)("%s %s → ConnectionError, code Unavailable", async (protocol, kind) => {
    const error = await calls[kind](echoClient(server.url, protocol)).catch((e: unknown) => e);
    expectUnavailable(error);
  });
});

describe("the server refuses the stream before running it (RST_STREAM REFUSED_STREAM, as a server shutting down does)", () => {
  let server: H2Server & { server: http2.Http2Server };
  beforeAll(async () => {
    const refusing = http2.createServer();
    refusing.on("stream", (stream) => {
      stream.on("error", () => {});
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    });
    server = await listen(refusing);
  });
  afterAll(() => server.close());

  it.each(["connect", "grpc"] as const)("%s unary → ConnectionError Unavailable that says the call never ran; an idempotent call is retried", async (protocol) => {
    const before = server.streams.length;
    const error = await calls.unary(echoClient(server.url, protocol)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectError).code).toBe(Code.Unavailable);
    expect((error as Error).message).toMatch(/refused the call's HTTP\/2 stream before running it/);
    // Echo is declared idempotent: the default policy's three attempts.
    expect(server.streams.length - before).toBe(3);
  });
});

describe("an upstream reset relayed through a gateway", () => {
  let upstream: H2Server;
  let relay: H2Server;
  beforeAll(async () => {
    upstream = await startResettingServer({ reset: NGHTTP2_INTERNAL_ERROR });
    relay = await startRelay(upstream.url);
  });
  afterAll(() => Promise.all([relay.close(), upstream.close()]));

  it.each(["unary", "server streaming"] as const)("connect %s → ConnectionError, code Unavailable", async (kind) => {
    const error = await calls[kind](echoClient(relay.url, "connect")).catch((e: unknown) => e);
    expectUnavailable(error);
    expect(upstream.streams.length).toBeGreaterThan(0); // it did go through the relay
  });
});

describe("the caller's own abort", () => {
  let server: H2Server;
  beforeAll(async () => {
    server = await startResettingServer({ hang: true });
  });
  afterAll(() => server.close());

  it.each(["unary", "server streaming"] as const)("mid-response stays Canceled (%s), and the server sees CANCEL", async (kind) => {
    const controller = new AbortController();
    const seen = server.streams.length;
    const pending = calls[kind](echoClient(server.url, "connect"), controller.signal).catch((e: unknown) => e);
    while (server.streams.length === seen) await new Promise((r) => setTimeout(r, 5));
    const stream = server.streams.at(-1)!;
    await new Promise((r) => setTimeout(r, 50)); // headers and part of the body are on their way
    controller.abort();
    const error = await pending;
    expect(error).toBeInstanceOf(ConnectError);
    expect(error).not.toBeInstanceOf(ConnectionError);
    expect((error as ConnectError).code).toBe(Code.Canceled);
    if (!stream.closed) await new Promise((r) => stream.once("close", r));
    expect(stream.rstCode).toBe(NGHTTP2_CANCEL);
  });
});
