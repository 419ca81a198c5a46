import { createServer as createHttp1Server } from "node:http";
import { createServer as createHttp2Server, type Http2Server } from "node:http2";
import { connect } from "node:net";
import { once } from "node:events";
import {
  Code,
  ConnectError,
  createClient,
  type ConnectRouter,
  type HandlerContext,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import {
  connectNodeAdapter,
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import { createGateway, parseRoutesFile, type Gateway } from "../../packages/gateway/src/index.js";
import { closeServer, HMAC_SECRET, JWT_SECRET, listen, rejectionOf, SEED_AUDIENCE, SEED_ISSUER, seedToken } from "../support/gateway.js";

// Resolved by the client once it holds the first streamed message: the
// backend sends the rest only then, so a gateway that buffered responses
// would never deliver the first one and the test would fail on its timeout.
let releaseStream: () => void = () => {};

function routes(router: ConnectRouter): void {
  const caller = (ctx: HandlerContext) => ({
    clientId: ctx.requestHeader.get("x-client-id") ?? "",
    userId: ctx.requestHeader.get("x-user-id") ?? "",
    isServiceRequest: !ctx.requestHeader.has("x-user-id"),
  });
  router.service(EchoService, {
    echo(req, ctx) {
      if (req.text === "") throw new ConnectError("text is required", Code.InvalidArgument);
      return { text: req.text, caller: caller(ctx) };
    },
    async *echoStream(req, ctx) {
      const released = new Promise<void>((resolve) => (releaseStream = resolve));
      yield { text: `${req.text} 1`, caller: caller(ctx) };
      await released;
      for (let i = 2; i <= req.repeat; i++) yield { text: `${req.text} ${i}` };
    },
    async collect(requests, ctx) {
      const texts: string[] = [];
      for await (const r of requests) texts.push(r.text);
      return { text: texts.join("+"), caller: caller(ctx) };
    },
    async *chat(requests) {
      for await (const r of requests) yield { text: r.text };
    },
  });
}

describe("protocols through the gateway", () => {
  const h2Backend: Http2Server = createHttp2Server(connectNodeAdapter({ routes }));
  const h1Backend = createHttp1Server(connectNodeAdapter({ routes }));
  let gateway: Gateway;
  let token: string;
  const bearer =
    (value: () => string): Interceptor =>
    (next) =>
    (req) => {
      req.header.set("authorization", `Bearer ${value()}`);
      return next(req);
    };

  beforeAll(async () => {
    const [h2Port, h1Port] = await Promise.all([listen(h2Backend), listen(h1Backend)]);
    gateway = createGateway({
      routes: parseRoutesFile(
        `version: "1.0"
backends:
  echo:
    upstream: http://127.0.0.1:${h2Port}
    http2: true
  echo1:
    upstream: http://127.0.0.1:${h1Port}
`,
        { source: "inline" },
      ),
      hmacSecret: HMAC_SECRET,
      tokens: { hs256: { secret: JWT_SECRET, issuer: SEED_ISSUER, audience: SEED_AUDIENCE } },
      logger: false,
    });
    await gateway.listen();
    token = await seedToken({ client_id: "svc", user_id: undefined });
  });
  afterAll(async () => {
    await gateway.close();
    await closeServer(h1Backend);
    await new Promise((resolve) => h2Backend.close(resolve));
  });

  type TransportFactory = (backend: string, token?: string) => Transport;
  const auth = (t?: string) => [bearer(() => t ?? token)];
  const transports: [string, TransportFactory][] = [
    ["Connect, HTTP/1.1 → h1 backend", (b, t) => createConnectTransport({ baseUrl: `${gateway.url}/backend/${b}1`, httpVersion: "1.1", interceptors: auth(t) })],
    ["Connect JSON, HTTP/1.1 → h2 backend", (b, t) => createConnectTransport({ baseUrl: `${gateway.url}/backend/${b}`, httpVersion: "1.1", useBinaryFormat: false, interceptors: auth(t) })],
    ["Connect, HTTP/2 → h2 backend", (b, t) => createConnectTransport({ baseUrl: `${gateway.url}/backend/${b}`, httpVersion: "2", interceptors: auth(t) })],
    ["gRPC, HTTP/2 → h2 backend", (b, t) => createGrpcTransport({ baseUrl: `${gateway.url}/backend/${b}`, interceptors: auth(t) })],
    ["gRPC-web, HTTP/1.1 → h1 backend", (b, t) => createGrpcWebTransport({ baseUrl: `${gateway.url}/backend/${b}1`, httpVersion: "1.1", interceptors: auth(t) })],
  ];

  for (const [name, transport] of transports) {
    describe(name, () => {
      it("passes unary calls, the backend's errors, and streams without buffering them", async () => {
        const client = createClient(EchoService, transport("echo"));
        const res = await client.echo({ text: "hi" });
        expect(res.text).toBe("hi");
        expect(res.caller).toMatchObject({ clientId: "svc", userId: "", isServiceRequest: true });

        const failure = await rejectionOf(client.echo({ text: "" }));
        expect(failure).toMatchObject({ code: Code.InvalidArgument, rawMessage: "text is required" });

        const texts: string[] = [];
        for await (const message of client.echoStream({ text: "tick", repeat: 3 })) {
          texts.push(message.text);
          if (texts.length === 1) releaseStream();
        }
        expect(texts).toEqual(["tick 1", "tick 2", "tick 3"]);

        async function* pieces() {
          yield { text: "a" };
          yield { text: "b" };
        }
        expect((await client.collect(pieces())).text).toBe("a+b");
      });

      it("gets the gateway's own refusals as Connect errors", async () => {
        const missing = await rejectionOf(createClient(EchoService, transport("nope")).echo({ text: "x" }));
        expect(missing.code).toBe(Code.Unimplemented);
        const refused = await rejectionOf(createClient(EchoService, transport("echo", "not-a-token")).echo({ text: "x" }));
        expect([refused.code, refused.rawMessage]).toEqual([Code.Unauthenticated, "Invalid or expired token"]);
        const stream = createClient(EchoService, transport("echo", "not-a-token")).echoStream({ text: "x", repeat: 1 });
        const streamError = await rejectionOf(
          (async () => {
            for await (const _ of stream) return;
          })(),
        );
        expect(streamError.code).toBe(Code.Unauthenticated);
      });
    });
  }

  it("survives a connection reset before its first byte, and closes with a silent connection open", async () => {
    const own = createGateway({
      routes: parseRoutesFile(`version: "1.0"\nbackends:\n  echo:\n    upstream: http://127.0.0.1:9\n`, { source: "inline" }),
      hmacSecret: HMAC_SECRET,
      tokens: { hs256: { secret: JWT_SECRET, issuer: SEED_ISSUER, audience: SEED_AUDIENCE } },
      logger: false,
    });
    const { port } = new URL(await own.listen());
    const reset = connect(Number(port), "127.0.0.1", () => reset.resetAndDestroy());
    reset.on("error", () => {});
    await once(reset, "close");
    // A reset used to be an unhandled socket error: it would have killed this process.
    expect((await fetch(`${own.url}/health`)).status).toBe(200);
    const silent = connect(Number(port), "127.0.0.1");
    silent.on("error", () => {});
    await once(silent, "connect");
    await own.close(); // used to wait for the silent client for ever
    await once(silent, "close");
  });

  it("gets Unauthenticated with grpc-status trailers-only for a gRPC call without a token", async () => {
    const client = createClient(EchoService, createGrpcTransport({ baseUrl: `${gateway.url}/backend/echo` }));
    const error = await rejectionOf(client.echo({ text: "x" }));
    expect([error.code, error.rawMessage]).toEqual([Code.Unauthenticated, "Missing or invalid token"]);
  });
});
