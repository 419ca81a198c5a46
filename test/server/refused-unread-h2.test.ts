// Over HTTP/2, a request answered before its body was read to the end —
// refused on its headers, declaring or sending more than maxBodyBytes — must
// have its stream ended once the answer is out (RST_STREAM NO_ERROR, RFC 9113
// §8.1). Left half-open, the caller's upload waits on flow control for good
// and the stream counts against the session's limits: a gateway's pooled
// session, shared by every caller, would end up refusing new streams.
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGatewayAuth } from "../../src/server/index.js";
import { echoRoutes, type Observed } from "../support/echo-routes.js";
import { signedHeadersV2 } from "../support/signed-headers.js";

const SECRET = "refused-unread-secret-77";
const ECHO = "/example.v1.EchoService/Echo";
const MAX = 64 * 1024;
// bodyTimeoutMs 1 s: what a refused request still sends is dropped for that long, then its stream is reset.
const auth = createGatewayAuth({ hmacSecret: SECRET, maxBodyBytes: MAX, bodyTimeoutMs: 1000, exposeRejectionReason: true });
const observed: Observed = { calls: 0, messages: 0 };
let handled = 0;
let nodeServer: http2.Http2Server;
let connectServer: http2.Http2Server;
const sessions = new Set<http2.ServerHttp2Session>();

beforeAll(async () => {
  nodeServer = http2.createServer(async (req, res) => {
    if ((await auth.verifyNodeRequest(req, res)) === undefined) return;
    handled++;
    res.end("{}");
  });
  connectServer = http2.createServer(connectNodeAdapter(auth.connectOptions({ routes: echoRoutes(observed) })));
  for (const server of [nodeServer, connectServer]) {
    server.on("session", (s) => {
      sessions.add(s);
      s.on("close", () => sessions.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  }
});

afterAll(async () => {
  for (const s of sessions) s.destroy();
  for (const server of [nodeServer, connectServer]) await new Promise((resolve) => server.close(resolve));
});

interface Outcome {
  readonly status: number;
  /** The server ended the stream (the caller never ended its side). */
  readonly closedByServer: boolean;
  readonly rstCode: number | undefined;
}

/**
 * Sends the head, then `firstBytes` of body, and never ends the request:
 * what the server answered, and whether it ended the stream within 3 s.
 */
function upload(server: http2.Http2Server, headers: Record<string, string>, firstBytes: number): Promise<Outcome> {
  const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  session.on("error", () => {});
  return new Promise<Outcome>((resolve) => {
    const stream = session.request({ ":method": "POST", ":path": ECHO, ...headers });
    let status = 0;
    const done = (closedByServer: boolean) => {
      clearTimeout(timer);
      resolve({ status, closedByServer, rstCode: stream.rstCode });
      session.destroy();
    };
    const timer = setTimeout(() => done(false), 3000);
    stream.on("response", (h) => (status = Number(h[":status"])));
    stream.on("error", () => {});
    stream.on("close", () => done(true));
    stream.resume();
    stream.write(Buffer.alloc(firstBytes, 0x61));
  });
}

const signed = (body: Buffer, extra: Record<string, string> = {}) => ({
  ...Object.fromEntries(signedHeadersV2(SECRET, { method: "POST", path: ECHO, body, contentType: "application/json" })),
  ...extra,
});
const big = Buffer.alloc(1024 * 1024, 0x61);

describe("over HTTP/2, a request refused with its body unread has its stream ended after the answer", () => {
  it.each([
    ["auth.verifyNodeRequest", () => nodeServer, 413],
    ["Connect", () => connectServer, 429],
  ])("%s: a body growing past maxBodyBytes", async (_label, server, status) => {
    const before = { handled, calls: observed.calls };
    const outcome = await upload(server(), signed(big), MAX + 16 * 1024);
    expect(outcome).toEqual({ status, closedByServer: true, rstCode: http2.constants.NGHTTP2_NO_ERROR });
    expect({ handled, calls: observed.calls }).toEqual(before);
  });

  it.each([
    ["auth.verifyNodeRequest", () => nodeServer, 413],
    ["Connect", () => connectServer, 429],
  ])("%s: a Content-Length over maxBodyBytes, refused before reading", async (_label, server, status) => {
    const outcome = await upload(server(), signed(big, { "content-length": String(big.byteLength) }), 1024);
    expect(outcome).toEqual({ status, closedByServer: true, rstCode: http2.constants.NGHTTP2_NO_ERROR });
  });

  it.each([
    ["auth.verifyNodeRequest", () => nodeServer, 403],
    ["Connect", () => connectServer, 403],
  ])("%s: headers that fail the check (no signature at all)", async (_label, server, status) => {
    const outcome = await upload(server(), { "content-type": "application/json" }, 1024);
    expect(outcome).toEqual({ status, closedByServer: true, rstCode: http2.constants.NGHTTP2_NO_ERROR });
  });
});

describe("a caller that goes on sending the whole body after the refusal", () => {
  it("Connect over HTTP/2: the body is read to its end and dropped, so the client gets the refusal's code, every time", async () => {
    const { Http2SessionManager } = await import("@connectrpc/connect-node");
    const { createClient, ConnectError, Code } = await import("@connectrpc/connect");
    const { createTestGatewayTransport } = await import("../../src/testing/index.js");
    const { EchoService } = await import("../../examples/gen/example/v1/example_pb.js");
    const baseUrl = `http://127.0.0.1:${(connectServer.address() as AddressInfo).port}`;
    const sessionManager = new Http2SessionManager(baseUrl);
    try {
      const echo = createClient(
        EchoService,
        createTestGatewayTransport({ baseUrl, hmacSecret: SECRET, identity: { clientId: "svc" }, httpVersion: "2", sessionManager }),
      );
      // Twenty 1 MiB messages on one session: each refused with its code, none leaving the session wedged.
      for (let i = 0; i < 20; i++) {
        const error = await echo.echo({ text: "x".repeat(1024 * 1024) }, { timeoutMs: 5_000 }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(ConnectError);
        expect([i, (error as InstanceType<typeof ConnectError>).code]).toEqual([i, Code.ResourceExhausted]);
      }
      expect((await echo.echo({ text: "small" })).text).toBe("small");
    } finally {
      sessionManager.abort();
    }
  });
});
