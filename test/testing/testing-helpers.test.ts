import { Code, createClient, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { spawn } from "node:child_process";
import type * as http from "node:http";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import { createGatewayAuth, gatewayIdentity, requireUser } from "../../src/server/index.js";
import { bodySha256, EMPTY_BODY_SHA256, fullpathOf, gatewayKeyId, signGatewayRequest, signGatewayRequestV2 } from "../../src/signing/index.js";
import { ConfigurationError } from "../../src/errors/index.js";
import { createTestGatewayTransport, gatewayHeadersFor } from "../../src/testing/index.js";
import { rawRequest } from "../support/raw-request.js";
import { startServer, type RunningServer } from "../support/loopback-server.js";

// A service test as a user of the package writes it: the real server wiring,
// called through createTestGatewayTransport, which signs like the gateway.

const users = new Map([["sub-42", { name: "Ada" }]]);

function routes(router: import("@connectrpc/connect").ConnectRouter) {
  router.service(EchoService, {
    async echo(req, ctx: HandlerContext) {
      const user = await requireUser<{ name: string }>(ctx);
      const identity = ctx.values.get(gatewayIdentity);
      return { text: `${user.name}: ${req.text}`, caller: { clientId: identity?.clientId ?? "", email: identity?.email ?? "" } };
    },
  });
}

describe("createTestGatewayTransport: a service test through the real verification path", () => {
  const hmacSecret = "service-test-secret";
  let server: RunningServer;
  let baseUrl: string;
  beforeAll(async () => {
    const auth = createGatewayAuth({ hmacSecret, resolveUser: (id) => users.get(id.userId ?? "") });
    server = await startServer(connectNodeAdapter(auth.connectOptions({ routes })));
    baseUrl = server.baseUrl;
  });
  afterAll(() => server.close());

  it("calls the service as a signed-in user", async () => {
    const client = createClient(EchoService, createTestGatewayTransport({ baseUrl, hmacSecret, identity: { clientId: "web-app", userId: "sub-42" } }));
    const res = await client.echo({ text: "hello" });
    expect(res.text).toBe("Ada: hello");
    expect(res.caller?.clientId).toBe("web-app");
  });

  it("signs an e-mail address in any script as the gateway does (UTF-8 octets), and the service reads it back", async () => {
    const identity = { clientId: "web-app", userId: "sub-42", email: "用户@例子.中国", firstName: "Zoë" };
    const client = createClient(EchoService, createTestGatewayTransport({ baseUrl, hmacSecret, identity }));
    const res = await client.echo({ text: "hi" });
    expect(res.caller?.email).toBe("用户@例子.中国");
    const h2 = await startServer(connectNodeAdapter(createGatewayAuth({ hmacSecret, resolveUser: (id) => users.get(id.userId ?? "") }).connectOptions({ routes })), "2");
    try {
      const overH2 = createClient(EchoService, createTestGatewayTransport({ baseUrl: h2.baseUrl, hmacSecret, identity, httpVersion: "2" }));
      expect((await overH2.echo({ text: "hi" })).caller?.email).toBe("用户@例子.中国");
    } finally {
      await h2.close();
    }
  });

  it("a service call (no user) gets Unauthenticated from requireUser", async () => {
    const client = createClient(EchoService, createTestGatewayTransport({ baseUrl, hmacSecret, identity: { clientId: "billing" } }));
    await expect(client.echo({ text: "x" })).rejects.toMatchObject({ code: Code.Unauthenticated });
  });

  it("is refused by the real verifier when its secret is not the server's", async () => {
    const client = createClient(EchoService, createTestGatewayTransport({ baseUrl, hmacSecret: "other", identity: { clientId: "web-app", userId: "sub-42" } }));
    await expect(client.echo({ text: "x" })).rejects.toMatchObject({ code: Code.PermissionDenied });
  });

  it("signs exactly what the gateway would (method, target, body bytes) and strips caller-set identity headers", async () => {
    // Recompute the signature of a captured request with the pure signing API.
    const captured: { method: string; target: string; body: Buffer; headers: http.IncomingHttpHeaders }[] = [];
    const probe = await startServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        captured.push({ method: req.method ?? "", target: req.url ?? "", body: Buffer.concat(chunks), headers: req.headers });
        res.writeHead(404).end();
      });
    });
    try {
      const client = createClient(EchoService, createTestGatewayTransport({ baseUrl: probe.baseUrl, hmacSecret, identity: { clientId: "web-app", userId: "sub-42" }, now: () => 1_700_000_000_000 }));
      // Headers only the gateway may set: the gateway strips them, so does the helper.
      const smuggled = { "x-user-scopes": "admin", "x-user-id": "sub-1", "x-org-id": "7", "x-gateway-debug": "1" };
      await client.echo({ text: "bytes" }, { headers: smuggled }).catch(() => undefined);
      const [c] = captured;
      expect(c?.headers["x-user-id"]).toBe("sub-42");
      expect(Object.keys(c?.headers ?? {}).filter((n) => n.startsWith("x-")).sort()).toEqual([
        "x-client-id",
        "x-gateway-request-id",
        "x-gateway-signature",
        "x-gateway-signature-v2",
        "x-gateway-timestamp",
        "x-user-id",
      ]);
      expect(c?.headers["x-gateway-timestamp"]).toBe("1700000000");
      expect(c?.body.length).toBeGreaterThan(0);
      const expected = signGatewayRequest(hmacSecret, {
        method: c?.method ?? "",
        timestamp: "1700000000",
        clientId: "web-app",
        userId: "sub-42",
        fullpath: fullpathOf(c?.target ?? ""),
        bodySha256: bodySha256(c?.body ?? Buffer.alloc(0)),
      });
      expect(c?.headers["x-gateway-signature"]).toBe(expected);
      // v2 as well: over the content type and the identity headers too, with a fresh request id.
      const [keyId, signatureV2] = String(c?.headers["x-gateway-signature-v2"]).split(":");
      expect(keyId).toBe(gatewayKeyId(hmacSecret));
      expect(signatureV2).toBe(
        signGatewayRequestV2(hmacSecret, {
          keyId: keyId ?? "",
          method: c?.method ?? "",
          requestTarget: c?.target ?? "",
          timestamp: "1700000000",
          requestId: String(c?.headers["x-gateway-request-id"]),
          bodySha256: bodySha256(c?.body ?? Buffer.alloc(0)),
          contentType: c?.headers["content-type"],
          contentEncoding: undefined,
          identity: { "x-client-id": "web-app", "x-user-id": "sub-42" },
        }),
      );
      expect(expected).not.toBe(signGatewayRequest(hmacSecret, { method: "POST", timestamp: "1700000000", clientId: "web-app", userId: "sub-42", fullpath: c?.target ?? "", bodySha256: EMPTY_BODY_SHA256 }));
    } finally {
      await probe.close();
    }
  });
});

describe("createTestGatewayTransport over HTTP/2 in a test process", () => {
  it("leaves no connection that keeps the process alive once the service's server is closed (Node.js 22 waits for it)", async () => {
    const script = fileURLToPath(new URL("./fixtures/h2-test-then-close.mts", import.meta.url));
    const child = spawn(process.execPath, ["--conditions=connect-gateway-source", "--import", "tsx", script], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const killer = setTimeout(() => child.kill("SIGKILL"), 8_000);
    const [code, signal] = await new Promise<[number | null, string | null]>((resolve) => child.on("exit", (c, s) => resolve([c, s])));
    clearTimeout(killer);
    expect({ code, signal, output: output.trim() }).toEqual({ code: 0, signal: null, output: "hi" });
  });
});

describe("createTestGatewayTransport's mistakes, said when it is made or with the fix", () => {
  it("a missing or bad identity, secret or baseUrl: a ConfigurationError naming the option, at construction", () => {
    const good = { baseUrl: "http://127.0.0.1:1", hmacSecret: "s3cret-value", identity: { clientId: "web-app" } };
    const cases: [Record<string, unknown>, string][] = [
      [{ ...good, identity: undefined }, "identity"],
      [{ ...good, identity: { userId: "sub-42" } }, "identity"],
      [{ ...good, hmacSecret: "" }, "hmacSecret"],
      [{ ...good, hmacSecret: undefined }, "hmacSecret"],
      [{ ...good, baseUrl: "127.0.0.1:8080" }, "baseUrl"],
    ];
    for (const [options, option] of cases) {
      const error = (() => {
        try {
          createTestGatewayTransport(options as never);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(error).toBeInstanceOf(ConfigurationError);
      expect([option, (error as ConfigurationError).option]).toEqual([option, option]);
      expect(String(error)).not.toContain("s3cret-value");
    }
  });

  it("HTTP/1.1 to a service that serves HTTP/2 only: the error says to pass httpVersion \"2\"", async () => {
    const auth = createGatewayAuth({ hmacSecret: "h2-only-secret" });
    const h2 = await startServer(connectNodeAdapter(auth.connectOptions({ routes })), "2");
    try {
      const echo = createClient(EchoService, createTestGatewayTransport({ baseUrl: h2.baseUrl, hmacSecret: "h2-only-secret", identity: { clientId: "web-app" } }));
      const error = await echo.echo({ text: "hi" }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: Code.Internal });
      expect(String(error)).toContain('did not answer in HTTP/1.1: if it serves HTTP/2 only (cleartext h2c, http2.createServer), pass httpVersion: "2" to createTestGatewayTransport');
    } finally {
      await h2.close();
    }
  });
});

describe("gatewayHeadersFor with skipVerification", () => {
  let server: RunningServer;
  beforeAll(async () => {
    const auth = createGatewayAuth({ skipVerification: true, resolveUser: (id) => users.get(id.userId ?? "") });
    server = await startServer(async (req, res) => {
      const verified = await auth.verifyNodeRequest(req, res);
      if (!verified) return;
      const user = await requireUser<{ name: string }>(verified).catch(() => undefined);
      res.writeHead(user ? 200 : 401, { "content-type": "application/json" }).end(JSON.stringify({ identity: verified.identity ?? null, user: user ?? null }));
    });
  });
  afterAll(() => server.close());

  async function get(headers: Record<string, string>) {
    const res = await rawRequest(server.port, { method: "GET", path: "/projects", headers: Object.entries(headers) });
    return { status: res.status, body: JSON.parse(res.body) as unknown };
  }

  it("builds the identity headers, omitting what the user does not have", () => {
    expect(gatewayHeadersFor({ userId: "sub-42", email: "ada@example.com", scopes: ["read", "write"] })).toEqual({
      "x-client-id": "test-client",
      "x-user-id": "sub-42",
      "x-user-email": "ada@example.com",
      "x-user-scopes": "read write",
    });
    expect(gatewayHeadersFor({ userId: "sub-1", firstName: "A", lastName: "B" }, { clientId: "mobile-app" })).toEqual({
      "x-client-id": "mobile-app",
      "x-user-id": "sub-1",
      "x-user-first-name": "A",
      "x-user-last-name": "B",
    });
  });

  it("returns {} for no user, like the gem's helper", () => {
    expect(gatewayHeadersFor(null)).toEqual({});
    expect(gatewayHeadersFor(undefined)).toEqual({});
  });

  it("signs in the user on a skipVerification server, without any signature", async () => {
    const res = await get(gatewayHeadersFor({ userId: "sub-42", scopes: ["read"] }));
    expect(res).toEqual({
      status: 200,
      body: { identity: {
          clientId: "test-client",
          userId: "sub-42",
          scopes: ["read"],
          isServiceRequest: false,
          signature: "none",
          signedFields: [],
          untrustedFields: [],
        },
        user: { name: "Ada" } },
    });
  });

  it("an anonymous request stays anonymous (no identity, requireUser refuses)", async () => {
    expect(await get(gatewayHeadersFor(null))).toEqual({ status: 401, body: { identity: null, user: null } });
  });
});
