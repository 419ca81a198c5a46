import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, Http2SessionManager, type ConnectNodeAdapterOptions } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGatewayAuth } from "../../src/server/index.js";
import { createTestGatewayTransport } from "../../src/testing/index.js";
import { echoRoutes, messages, observingInterceptor, type Observed } from "../support/echo-routes.js";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import { startServer, type RunningServer } from "../support/loopback-server.js";
import { nodeClient, tamperingTransport, type Protocol } from "../support/transports.js";

const hmacSecret = "protocols-secret";
const user = { clientId: "web-app", userId: "sub-42", email: "ada@example.com", scopes: ["read", "write"] };
const caller = { clientId: "web-app", userId: "sub-42", email: "ada@example.com", scopes: ["read", "write"], isServiceRequest: false };

// Every protocol connect-node serves, on the HTTP versions it supports.
const matrix: [Protocol, "1.1" | "2"][] = [
  ["connect", "1.1"],
  ["connect", "2"],
  ["grpc", "2"],
  ["grpc-web", "1.1"],
  ["grpc-web", "2"],
];

const flipLastByte = (b: Buffer) => {
  const copy = Buffer.from(b);
  copy[copy.length - 1] = (copy[copy.length - 1] as number) ^ 0x01;
  return copy;
};

/**
 * A connectNodeAdapter server behind createGatewayAuth, with an interceptor
 * counting what it sees, started and stopped around the enclosing describe.
 */
function echoServer(httpVersion: "1.1" | "2") {
  const served = {
    observed: { calls: 0, messages: 0 } as Observed,
    sessions: [] as Http2SessionManager[],
    server: undefined as unknown as RunningServer,
  };
  beforeAll(async () => {
    const auth = createGatewayAuth({ hmacSecret, exposeRejectionReason: true });
    const options = auth.connectOptions({ routes: echoRoutes(served.observed), interceptors: [observingInterceptor(served.observed)] });
    served.server = await startServer(connectNodeAdapter(options), httpVersion);
  });
  afterAll(async () => {
    for (const s of served.sessions) s.abort();
    await served.server.close();
  });
  return served;
}

describe.each(matrix)("%s over HTTP/%s", (protocol, httpVersion) => {
  const served = echoServer(httpVersion);
  const { observed } = served;

  const client = (change: { hmacSecret?: string; tamper?: (b: Buffer) => Buffer } = {}) => {
    const { baseUrl } = served.server;
    const inner = nodeClient(baseUrl, httpVersion, served.sessions);
    return createClient(EchoService, tamperingTransport({ protocol, baseUrl, inner, hmacSecret, identity: user, ...change }));
  };
  const tampered = () => client({ tamper: flipLastByte });

  async function rejected(call: () => Promise<unknown>): Promise<void> {
    const before = structuredClone(observed);
    const err = await call().then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.PermissionDenied);
    expect(err?.rawMessage).toBe("invalid_signature");
    // Neither the interceptor nor the handler ran, nor saw a message.
    expect(observed).toEqual(before);
  }

  async function drain(stream: AsyncIterable<unknown>): Promise<void> {
    for await (const _ of stream) {
      // a rejected stream must not yield
    }
  }

  it("unary: verified; the interceptor and the handler see the message and the identity", async () => {
    const before = structuredClone(observed);
    const res = await client().echo({ text: "hi" });
    expect(res.text).toBe("hi");
    expect(res.caller).toMatchObject(caller);
    expect(observed.intercepted?.messages).toBe((before.intercepted?.messages ?? 0) + 1);
  });

  it("server streaming: every answer carries the identity", async () => {
    const texts: string[] = [];
    for await (const r of client().echoStream({ text: "x", repeat: 3 })) {
      expect(r.caller).toMatchObject(caller);
      texts.push(r.text);
    }
    expect(texts).toEqual(["x", "x", "x"]);
  });

  it("client streaming: all messages reach the interceptor and the handler", async () => {
    const before = structuredClone(observed);
    const res = await client().collect(messages("a", "b", "c"));
    expect(res.text).toBe("abc");
    expect(res.caller).toMatchObject(caller);
    expect(observed.intercepted?.messages).toBe((before.intercepted?.messages ?? 0) + 3);
  });

  it("unary with a tampered body: PermissionDenied, the handler never runs", async () => {
    await rejected(() => tampered().echo({ text: "pay 10" }));
  });

  it("server streaming with a tampered body: PermissionDenied, the handler never runs", async () => {
    await rejected(() => drain(tampered().echoStream({ text: "x", repeat: 2 })));
  });

  it("client streaming with a tampered body: PermissionDenied, no side effect", async () => {
    await rejected(() => tampered().collect(messages("a", "b")));
  });

  // connect-node refuses bidi over HTTP/1.1 (HTTP 505), whatever the server does.
  if (httpVersion === "2") {
    it("bidi: messages reach the handler once the client has sent them all", async () => {
      const texts: string[] = [];
      for await (const r of client().chat(messages("1", "2"))) texts.push(r.text);
      expect(texts).toEqual(["1", "2"]);
    });

    it("bidi with a tampered body: PermissionDenied, no side effect", async () => {
      await rejected(() => drain(tampered().chat(messages("a"))));
    });
  }

  it("signed with another secret: PermissionDenied", async () => {
    await rejected(() => client({ hmacSecret: "not-it" }).echo({ text: "hi" }));
  });
});

describe.each(["1.1", "2"] as const)("Connect GET (useHttpGet) over HTTP/%s: the query is signed, the body hash is the empty one", (httpVersion) => {
  const served = echoServer(httpVersion);

  const client = (secret: string) => {
    const sessionManager = new Http2SessionManager(served.server.baseUrl);
    served.sessions.push(sessionManager);
    const { baseUrl } = served.server;
    return createClient(
      EchoService,
      createTestGatewayTransport({ baseUrl, hmacSecret: secret, identity: user, useHttpGet: true, httpVersion, sessionManager }),
    );
  };

  it("is served through GET and verified", async () => {
    const res = await client(hmacSecret).echo({ text: "by get" });
    expect(served.observed.lastMethod).toBe("GET");
    expect(res.text).toBe("by get");
    expect(res.caller).toMatchObject(caller);
  });

  it("is refused when signed with another secret", async () => {
    const before = structuredClone(served.observed);
    await expect(client("nope").echo({ text: "x" })).rejects.toMatchObject({ code: Code.PermissionDenied });
    expect(served.observed).toEqual(before);
  });
});

describe("defence in depth: the body iterator alone releases nothing unverified", () => {
  const observed: Observed = { calls: 0, messages: 0 };
  const sessions: Http2SessionManager[] = [];
  let server: RunningServer;
  beforeAll(async () => {
    const auth = createGatewayAuth({ hmacSecret, exposeRejectionReason: true });
    // Misuse on purpose: the verifying requestGate is dropped.
    const wired: ConnectNodeAdapterOptions = auth.connectOptions({ routes: echoRoutes(observed) });
    const { requestGate: _dropped, ...options } = wired;
    server = await startServer(connectNodeAdapter(options), "2");
  });
  afterAll(async () => {
    for (const s of sessions) s.abort();
    await server.close();
  });

  it.each(["connect", "grpc"] as const)("%s client streaming, tampered: the handler starts but gets no message", async (protocol) => {
    const inner = nodeClient(server.baseUrl, "2", sessions);
    const tampered = tamperingTransport({ protocol, baseUrl: server.baseUrl, inner, hmacSecret, identity: user, tamper: flipLastByte });
    const err = await createClient(EchoService, tampered)
      .collect(messages("a", "b"))
      .catch((e: unknown) => ConnectError.from(e));
    expect(err).toMatchObject({ code: Code.PermissionDenied, rawMessage: "invalid_signature" });
    expect(observed.calls).toBeGreaterThan(0);
    expect(observed.messages).toBe(0);
  });
});

describe("verification leaves Node's request objects as Node made them", () => {
  // Connect releases read the body in different ways (2.2 async-iterates the
  // request, 2.3 calls req.iterator()): verification that replaced one of
  // those methods lost every body on the other. Nothing may be overridden.
  const watched: (string | symbol)[] = [Symbol.asyncIterator, "iterator", "read", "on", "once", "pipe", "resume", "push"];

  it.each(["1.1", "2"] as const)("HTTP/%s: no method of the request is replaced, and the call is answered", async (httpVersion) => {
    const auth = createGatewayAuth({ hmacSecret, exposeRejectionReason: true });
    const handler = connectNodeAdapter(auth.connectOptions({ routes: echoRoutes({ calls: 0, messages: 0 }) }));
    const overridden: (string | symbol)[] = [];
    const sessions: Http2SessionManager[] = [];
    const server = await startServer((req, res) => {
      res.once("finish", () => overridden.push(...watched.filter((name) => Object.hasOwn(req, name))));
      handler(req, res);
    }, httpVersion);
    try {
      const inner = nodeClient(server.baseUrl, httpVersion, sessions);
      const transport = tamperingTransport({ protocol: "connect", baseUrl: server.baseUrl, inner, hmacSecret, identity: user });
      const answer = await createClient(EchoService, transport).echo({ text: "untouched" });
      expect(answer.text).toContain("untouched");
      expect(overridden).toEqual([]);
    } finally {
      for (const s of sessions) s.abort();
      await server.close();
    }
  });
});
