// readMaxBytes: the client never buffers more than it allows for one answer
// (default 4 MiB) — neither a Connect message nor a REST body — and stops
// reading as soon as it is exceeded.
import type { IncomingMessage, ServerResponse } from "node:http";
import type * as http2 from "node:http2";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigurationError,
  createGatewayClient,
  createGatewayTransport,
  GatewayResponseError,
  type GatewayTransportOptions,
} from "../../src/client/index.js";
import { DEFAULT_READ_MAX_BYTES } from "../../src/client/gateway-options.js";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import { startServer } from "../support/loopback-server.js";
import { startTokenEndpoint, type TestTokenEndpoint } from "../support/token-endpoint.js";

const MiB = 1024 * 1024;
const HUGE = 64 * MiB;

/** What the garbage server saw of one answer: how much it wrote before the client hung up. */
interface Sent {
  written: number;
  total: number;
  /** Set when the connection closed; `finished` tells whether everything had been written by then. */
  closed?: Promise<{ finished: boolean; written: number }>;
}

interface GarbageServer {
  readonly url: string;
  readonly sent: Sent[];
  close(): Promise<void>;
}

type Res = ServerResponse | http2.Http2ServerResponse;

// Writes `total` bytes of 'A' in 64 KiB chunks, honouring backpressure.
function writeGarbage(res: Res, total: number, sent: Sent): void {
  const chunk = Buffer.alloc(64 * 1024, 0x41);
  const write = () => {
    while (sent.written < total) {
      if (res.destroyed) return;
      const part = chunk.subarray(0, Math.min(chunk.length, total - sent.written));
      sent.written += part.length;
      if (!(res as ServerResponse).write(part)) return void res.once("drain", write);
    }
    res.end();
  };
  write();
}

/**
 * A server answering `total` bytes of garbage (200) to anything, as a Connect
 * unary answer or a JSON REST answer, with or without content-length.
 */
async function startGarbageServer(
  total: number,
  options: { httpVersion?: "1.1" | "2"; contentLength?: boolean } = {},
): Promise<GarbageServer> {
  const sent: Sent[] = [];
  const handler = (req: IncomingMessage | http2.Http2ServerRequest, res: Res) => {
    const entry: Sent = { written: 0, total };
    entry.closed = new Promise((resolve) =>
      res.once("close", () => resolve({ finished: res.writableFinished, written: entry.written })),
    );
    sent.push(entry);
    req.resume();
    const connect = String(req.headers["content-type"] ?? "").startsWith("application/proto");
    res.writeHead(200, {
      "content-type": connect ? "application/proto" : "application/json",
      ...(options.contentLength && { "content-length": String(total) }),
    });
    writeGarbage(res, total, entry);
  };
  const server = await startServer(handler, options.httpVersion);
  return { url: server.baseUrl, sent, close: () => server.close() };
}

/** Runs `test` against a garbage server ({@link startGarbageServer}), closed after it whatever happens. */
async function withGarbageServer(
  total: number,
  options: Parameters<typeof startGarbageServer>[1],
  test: (server: GarbageServer) => Promise<void>,
): Promise<void> {
  const server = await startGarbageServer(total, options);
  try {
    await test(server);
  } finally {
    await server.close();
  }
}

let tokens: TestTokenEndpoint;
beforeAll(async () => {
  tokens = await startTokenEndpoint(() => ({ json: { access_token: "tok", token_type: "bearer", expires_in: 3600 } }));
});
afterAll(() => tokens.close());

const base = (gatewayUrl: string) => ({
  clientId: "limits",
  clientSecret: "limits-secret",
  appcenterUrl: tokens.url,
  gatewayUrl,
});

/** The server stopped before writing it all: the client hung up instead of reading (and buffering) the rest. */
async function expectHungUpEarly(sent: Sent | undefined): Promise<void> {
  expect(sent).toBeDefined();
  const closed = await sent!.closed!;
  expect(closed.finished).toBe(false);
  expect(closed.written).toBeLessThan(sent!.total / 2);
}

describe("Connect calls", () => {
  it("the default is 4 MiB", () => {
    expect(DEFAULT_READ_MAX_BYTES).toBe(4 * MiB);
  });

  it.each(["1.1", "2"] as const)("a 64 MiB answer over HTTP/%s fails with ResourceExhausted naming readMaxBytes, unread", async (httpVersion) => {
    await withGarbageServer(HUGE, { httpVersion }, async (server) => {
      const options = { ...base(server.url), httpVersion } as GatewayTransportOptions;
      const echo = createClient(EchoService, createGatewayTransport(options));
      const error = await echo.echo({ text: "x" }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConnectError);
      expect((error as ConnectError).code).toBe(Code.ResourceExhausted);
      expect((error as Error).message).toMatch(new RegExp(`readMaxBytes.*${DEFAULT_READ_MAX_BYTES}`));
      await expectHungUpEarly(server.sent[0]);
    });
  });

  it("a configured readMaxBytes is passed to connect-node", async () => {
    await withGarbageServer(4096, {}, async (server) => {
      const echo = createClient(EchoService, createGatewayTransport({ ...base(server.url), readMaxBytes: 1000 }));
      const error = await echo.echo({ text: "x" }).catch((e: unknown) => e);
      expect((error as ConnectError).code).toBe(Code.ResourceExhausted);
      expect((error as Error).message).toMatch(/readMaxBytes 1000/);
    });
  });
});

describe("REST calls", () => {
  it.each([
    ["chunked", false],
    ["announced by content-length", true],
  ] as const)("a 64 MiB answer (%s) fails with a GatewayResponseError naming readMaxBytes, unread", async (_name, contentLength) => {
    await withGarbageServer(HUGE, { contentLength }, async (server) => {
      const api = createGatewayClient(base(server.url));
      const error = await api.get("/api/v1/huge").catch((e: unknown) => e);
      expect(error).toBeInstanceOf(GatewayResponseError);
      expect((error as GatewayResponseError).code).toBe(Code.ResourceExhausted);
      expect((error as GatewayResponseError).status).toBe(200);
      expect((error as GatewayResponseError).body).toBeUndefined();
      expect((error as Error).message).toMatch(/GET \/api\/v1\/huge answered HTTP 200 with a body larger than readMaxBytes \(4194304 bytes\)/);
      await expectHungUpEarly(server.sent[0]);
    });
  });

  it("honours a configured readMaxBytes, up to and including the limit", async () => {
    await withGarbageServer(1001, {}, async (server) => {
      const error = await createGatewayClient({ ...base(server.url), readMaxBytes: 1000 })
        .get("/x")
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(GatewayResponseError);
      expect((error as Error).message).toMatch(/readMaxBytes \(1000 bytes\)/);
      // 1001 bytes within a 1001-byte limit: read, then refused only for not being JSON.
      const within = await createGatewayClient({ ...base(server.url), readMaxBytes: 1001 })
        .get("/x")
        .catch((e: unknown) => e);
      expect((within as GatewayResponseError).code).toBe(Code.Internal);
      expect((within as Error).message).toMatch(/a body that is not JSON/);
    });
  });
});

describe("the option is checked like the others", () => {
  it.each([0, -1, 1.5, Number.NaN, 2 ** 32, "4096"])("readMaxBytes %s → ConfigurationError", (value) => {
    for (const create of [createGatewayTransport, createGatewayClient] as const) {
      let error: unknown;
      try {
        create({ ...base("http://127.0.0.1:1"), readMaxBytes: value as number });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ConfigurationError);
      expect((error as Error).message).toMatch(/readMaxBytes/);
      expect((error as Error).message).toMatch(/whole number from 1 to 4294967295/);
    }
  });

  it("accepts 1 and 2³²−1", () => {
    for (const readMaxBytes of [1, 2 ** 32 - 1]) {
      expect(() => createGatewayTransport({ ...base("http://127.0.0.1:1"), readMaxBytes })).not.toThrow();
      expect(() => createGatewayClient({ ...base("http://127.0.0.1:1"), readMaxBytes })).not.toThrow();
    }
  });
});
