import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGatewayAuth } from "../../src/server/index.js";
import { createTestGatewayTransport } from "../../src/testing/index.js";
import { echoRoutes, type Observed } from "./echo-routes.js";
import { EchoService } from "../../gen/example/v1/example_pb.js";
import { startServer, type RunningServer } from "./servers.js";
import { nodeClient, tamperingTransport, type Protocol } from "./transports.js";

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

const last = (b: Buffer) => {
  const copy = Buffer.from(b);
  copy[copy.length - 1] = (copy[copy.length - 1] as number) ^ 0x01;
  return copy;
};

describe.each(matrix)("%s over HTTP/%s", (protocol, httpVersion) => {
  const observed: Observed = { calls: 0, messages: 0 };
  const sessions: Http2SessionManager[] = [];
  let server: RunningServer;
  beforeAll(async () => {
    const auth = createGatewayAuth({ hmacSecret, exposeRejectionReason: true });
    server = await startServer(connectNodeAdapter(auth.connectOptions({ routes: echoRoutes(observed) })), httpVersion);
  });
  afterAll(async () => {
    for (const s of sessions) s.abort();
    await server.close();
  });

  const signed = () =>
    createClient(
      EchoService,
      tamperingTransport({ protocol, baseUrl: server.baseUrl, inner: nodeClient(server.baseUrl, httpVersion, sessions), hmacSecret, identity: user }),
    );
  const tampered = () =>
    createClient(
      EchoService,
      tamperingTransport({ protocol, baseUrl: server.baseUrl, inner: nodeClient(server.baseUrl, httpVersion, sessions), hmacSecret, identity: user, tamper: last }),
    );
  const wrongSecret = () =>
    createClient(
      EchoService,
      tamperingTransport({ protocol, baseUrl: server.baseUrl, inner: nodeClient(server.baseUrl, httpVersion, sessions), hmacSecret: "not-it", identity: user }),
    );

  async function rejected(call: () => Promise<unknown>): Promise<ConnectError> {
    const before = { ...observed };
    const err = await call().then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.PermissionDenied);
    expect(err?.rawMessage).toBe("invalid_signature");
    // The handler never ran, and never saw a message.
    expect(observed).toEqual(before);
    return err as ConnectError;
  }

  it("unary: verified, and the handler sees the identity", async () => {
    const res = await signed().echo({ text: "hi" });
    expect(res.text).toBe("hi");
    expect(res.caller).toMatchObject(caller);
  });

  it("server streaming: every answer carries the identity", async () => {
    const texts: string[] = [];
    for await (const r of signed().echoStream({ text: "x", repeat: 3 })) {
      expect(r.caller).toMatchObject(caller);
      texts.push(r.text);
    }
    expect(texts).toEqual(["x", "x", "x"]);
  });

  it("client streaming: all messages reach the handler", async () => {
    async function* parts() {
      yield { text: "a" };
      yield { text: "b" };
      yield { text: "c" };
    }
    const res = await signed().collect(parts());
    expect(res.text).toBe("abc");
    expect(res.caller).toMatchObject(caller);
  });

  it("unary with a tampered body: PermissionDenied, the handler never runs", async () => {
    await rejected(() => tampered().echo({ text: "pay 10" }));
  });

  it("server streaming with a tampered body: PermissionDenied, the handler never runs", async () => {
    await rejected(async () => {
      for await (const _ of tampered().echoStream({ text: "x", repeat: 2 })) {
        // must not yield
      }
    });
  });

  it("client streaming with a tampered body: PermissionDenied, no side effect", async () => {
    async function* parts() {
      yield { text: "a" };
      yield { text: "b" };
    }
    await rejected(() => tampered().collect(parts()));
  });

  // connect-node refuses bidi over HTTP/1.1 (HTTP 505), whatever the server does.
  if (httpVersion === "2") {
    it("bidi: messages reach the handler once the client has sent them all", async () => {
      async function* parts() {
        yield { text: "1" };
        yield { text: "2" };
      }
      const texts: string[] = [];
      for await (const r of signed().chat(parts())) texts.push(r.text);
      expect(texts).toEqual(["1", "2"]);
    });

    it("bidi with a tampered body: PermissionDenied, no side effect", async () => {
      async function* parts() {
        yield { text: "a" };
      }
      await rejected(async () => {
        for await (const _ of tampered().chat(parts())) {
          // must not yield
        }
      });
    });
  }

  it("signed with another secret: PermissionDenied", async () => {
    await rejected(() => wrongSecret().echo({ text: "hi" }));
  });
});

describe.each(["1.1", "2"] as const)("Connect GET (useHttpGet) over HTTP/%s: the query is signed, the body hash is the empty one", (httpVersion) => {
  const observed: Observed = { calls: 0, messages: 0 };
  const sessions: Http2SessionManager[] = [];
  let server: RunningServer;
  beforeAll(async () => {
    const auth = createGatewayAuth({ hmacSecret, exposeRejectionReason: true });
    server = await startServer(connectNodeAdapter(auth.connectOptions({ routes: echoRoutes(observed) })), httpVersion);
  });
  afterAll(async () => {
    for (const s of sessions) s.abort();
    await server.close();
  });

  const client = (secret: string) => {
    const sessionManager = new Http2SessionManager(server.baseUrl);
    sessions.push(sessionManager);
    return createClient(
      EchoService,
      createTestGatewayTransport({ baseUrl: server.baseUrl, hmacSecret: secret, identity: user, useHttpGet: true, httpVersion, sessionManager }),
    );
  };

  it("is served through GET and verified", async () => {
    const res = await client(hmacSecret).echo({ text: "by get" });
    expect(observed.lastMethod).toBe("GET");
    expect(res.text).toBe("by get");
    expect(res.caller).toMatchObject(caller);
  });

  it("is refused when signed with another secret", async () => {
    const before = observed.calls;
    await expect(client("nope").echo({ text: "x" })).rejects.toMatchObject({ code: Code.PermissionDenied });
    expect(observed.calls).toBe(before);
  });
});
