// Calls cut when the drain timeout of a graceful close expires: a real Connect
// or gRPC client (connect-node, over HTTP/2 and HTTP/1.1) whose call has no
// answer yet must see Code.Unavailable, "try again elsewhere", not
// Code.Canceled. (A server stream whose answer has started is reset, see
// shutdown.test.ts: no reset code reads as Unavailable in connect-node.)
import { createServer as createHttp2Server, type Http2Session } from "node:http2";
import { Code, ConnectError, createClient, type ConnectRouter, type Transport } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import { createGateway, parseRoutesFile, type Gateway } from "../../packages/gateway/src/index.js";
import { HMAC_SECRET, JWT_SECRET, listen, SEED_AUDIENCE, SEED_ISSUER } from "./helpers.js";

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
      await untilGone(ctx.signal);
      return { text: req.text };
    },
    async *echoStream(req, ctx) {
      yield { text: `${req.text} 1` };
      await untilGone(ctx.signal);
    },
    async collect() {
      return { text: "" };
    },
    async *chat() {},
  });
}

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

/** A gateway in front of the backend, drainTimeoutMs DRAIN_MS. */
async function startGateway(): Promise<Gateway> {
  const gateway = createGateway({
    routes: parseRoutesFile(`version: "1.0"\nbackends:\n  echo:\n    upstream: ${backendUrl}\n    http2: true\n    auth_required: false\n`, {
      source: "inline",
    }),
    hmacSecret: HMAC_SECRET,
    tokens: { hs256: { secret: JWT_SECRET, issuer: SEED_ISSUER, audience: SEED_AUDIENCE } },
    rateLimit: false,
    logger: false,
    drainTimeoutMs: DRAIN_MS,
  });
  await gateway.listen();
  return gateway;
}

/** Bounds a promise: rejects with `what` after `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    promise.then(
      (v) => (clearTimeout(timer), resolve(v)),
      (e: unknown) => (clearTimeout(timer), reject(e)),
    );
  });
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
      await within(new Promise((resolve) => setTimeout(resolve, 150)), 1_000, "pause");
      const closing = gateway.close();
      const error = await within(call, DRAIN_MS + 1_500, "the call did not end");
      expect(error?.code).toBe(Code.Unavailable);
      await within(closing, 2_000, "close() did not resolve");
    });
  }
});
