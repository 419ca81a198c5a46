// End to end, one process, real everything: oidc-provider issues tokens, the
// gateway validates them through its JWKS and signs, the example Connect
// backend verifies with createGatewayAuth and answers with the identity it saw,
// and the client is createGatewayTransport — plus one client nobody here
// wrote: `buf curl`.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import { ConnectionError, gatewayCall, withUserToken } from "../../src/client/index.js";
import { startDevStack, type DevStack } from "../../examples/dev/dev-stack.js";
import { exampleClientTransport } from "../../examples/dev/client-tour.js";
import { captureLogs, ECHO_BACKENDS, rejectionOf, unusedPort } from "../support/gateway.js";
import { signedHeaders } from "../support/signed-headers.js";

const run = promisify(execFile);
const repoRoot = new URL("../../", import.meta.url).pathname;

describe("end to end", () => {
  let stack: DevStack;
  let echo: Client<typeof EchoService>;
  const dir = mkdtempSync(join(tmpdir(), "connect-gateway-e2e-"));
  const logs = captureLogs();
  const tokensSent: string[] = [];

  beforeAll(async () => {
    const routesFile = join(dir, "routes.yaml");
    writeFileSync(
      routesFile,
      `version: "1.0"
routes:
  - path: /api/v1/agents
    method: POST
    proxy_upstream: $AGENTS_SERVICE_URL
    scopes: [write:agents]
backends:
${ECHO_BACKENDS}  gone:
    upstream: http://127.0.0.1:${await unusedPort()}
    http2: true
`,
    );
    stack = await startDevStack({ routesFile, gatewayPort: 0, oauthPort: 0, logger: { level: "info", stream: logs.stream } });
    echo = createClient(EchoService, exampleClientTransport(stack));
  });
  afterAll(async () => {
    await stack?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("service call: the client's own token; the backend sees the client and no user", async () => {
    const res = await echo.echo({ text: "hi" });
    expect(res.text).toBe("hi");
    expect(res.caller).toMatchObject({ clientId: "example-client", userId: "", isServiceRequest: true, scopes: ["read"] });
  });

  it("forwarded user token: the user's identity reaches the handler", async () => {
    const token = await stack.oauth.issueUserToken({ sub: "user-7", email: "grace@example.com", scopes: ["read", "write"] });
    tokensSent.push(token);
    const res = await withUserToken(token, () => echo.echo({ text: "as Grace" }));
    expect(res.caller).toMatchObject({
      clientId: "web-app",
      userId: "user-7",
      email: "grace@example.com",
      scopes: ["read", "write"],
      isServiceRequest: false,
    });
    const streamed: string[] = [];
    for await (const m of echo.echoStream({ text: "s", repeat: 2 }, gatewayCall({ userToken: token }))) {
      expect(m.caller?.userId).toBe("user-7");
      streamed.push(m.text);
    }
    expect(streamed).toEqual(["s 1", "s 2"]);
  });

  it("REST route: the seed's envelope for a missing scope, the user's identity at the REST backend", async () => {
    const post = async (token: string, body: string) => {
      const res = await fetch(`${stack.gateway.url}/api/v1/agents`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body,
      });
      return { status: res.status, body: (await res.json()) as Record<string, any> };
    };
    const reader = await stack.oauth.issueUserToken({ sub: "user-8", scopes: ["read"] });
    const writer = await stack.oauth.issueUserToken({ sub: "user-9", scopes: ["write:agents"] });
    tokensSent.push(reader, writer);
    const refused = await post(reader, '{"name":"Grace"}');
    expect([refused.status, refused.body.error.code, refused.body.metadata.success]).toEqual([403, "INSUFFICIENT_SCOPE", false]);
    expect(await post(writer, '{"name":"Grace"}')).toMatchObject({ status: 201, body: { name: "Grace", created_by: "user-9" } });
    expect((await post(writer, "not json")).status).toBe(400);
  });

  it("missing scope: PermissionDenied from the gateway", async () => {
    const error = await rejectionOf(echo.echo({ text: "x" }, gatewayCall({ service: "echo-admin" })));
    expect(error).toBeInstanceOf(ConnectError);
    expect([error.code, error.rawMessage]).toEqual([Code.PermissionDenied, "Token lacks required scope: admin"]);
  });

  it("expired user token: Unauthenticated, passed to the caller", async () => {
    const expired = await stack.oauth.issueUserToken({ sub: "user-7", ttlSeconds: -60 });
    tokensSent.push(expired);
    const error = await rejectionOf(echo.echo({ text: "x" }, gatewayCall({ userToken: expired })));
    expect([error.code, error.rawMessage]).toEqual([Code.Unauthenticated, "Token has expired"]);
  });

  it("forged call straight to the backend, bypassing the gateway: PermissionDenied", async () => {
    const direct = createClient(EchoService, createConnectTransport({ baseUrl: stack.echo.url, httpVersion: "2" }));
    const headers = {
      "x-client-id": "example-client",
      "x-user-id": "admin",
      "x-gateway-timestamp": String(Math.floor(Date.now() / 1000)),
      "x-gateway-signature": "0".repeat(64),
    };
    const error = await rejectionOf(direct.echo({ text: "let me in" }, { headers }));
    expect(error.code).toBe(Code.PermissionDenied);
    expect((await rejectionOf(direct.echo({ text: "no headers at all" }))).code).toBe(Code.PermissionDenied);
  });

  it("a request signed with v1 only (the gateway's v2 headers stripped) is refused: the example backends require v2", async () => {
    const direct = createClient(EchoService, createConnectTransport({ baseUrl: stack.echo.url, httpVersion: "2", useBinaryFormat: false }));
    const body = new TextEncoder().encode(JSON.stringify({ text: "downgraded" }));
    const headers = signedHeaders(stack.hmacSecret, { method: "POST", path: "/example.v1.EchoService/Echo", body }, { clientId: "example-client", userId: "ada" });
    const error = await rejectionOf(direct.echo({ text: "downgraded" }, { headers }));
    expect(error.code).toBe(Code.PermissionDenied);
    expect(error.rawMessage).toMatch(/signature_v2_required|v2/);
  });

  it("backend down or gateway down: ConnectionError, code Unavailable", async () => {
    // retry: false — one request, so the gateway logs the down backend once (Echo is idempotent: retried by default).
    const error = await rejectionOf(echo.echo({ text: "x" }, gatewayCall({ service: "gone", retry: false })));
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error.code).toBe(Code.Unavailable);
    expect(error.cause).toMatchObject({ code: Code.Unavailable, rawMessage: "Upstream service is unavailable" });
    // The request id the gateway logged it under, to find why (down, or misconfigured).
    const requestId = /\(request id ([\w-]+): the gateway's log says why\)/.exec(error.message)?.[1];
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(logs.lines().some((line) => line.reqId === requestId && line.msg === "Upstream service is unavailable")).toBe(true);
    const unreachable = createClient(EchoService, exampleClientTransport(stack, `http://127.0.0.1:${await unusedPort()}`));
    const down = await rejectionOf(unreachable.echo({ text: "x" }));
    expect(down).toBeInstanceOf(ConnectionError);
    expect(down.code).toBe(Code.Unavailable);
  });

  it("buf curl, a client nobody here wrote, gets the backend's answer (Connect over HTTP/1.1, gRPC over h2c)", async () => {
    const tokenResponse = await fetch(stack.oauth.tokenUrl, {
      method: "POST",
      headers: {
        authorization: `Basic ${Buffer.from(`${stack.client.clientId}:${stack.client.clientSecret}`).toString("base64")}`,
      },
      body: new URLSearchParams({ grant_type: "client_credentials", scope: "read" }),
    });
    const token = ((await tokenResponse.json()) as { access_token: string }).access_token;
    tokensSent.push(token);
    const url = `${stack.gateway.url}/backend/echo/example.v1.EchoService/Echo`;
    for (const protocolArgs of [[], ["--protocol", "grpc", "--http2-prior-knowledge"]]) {
      const { stdout } = await run(
        "npx",
        ["--no-install", "buf", "curl", "--schema", ".", ...protocolArgs, "-H", `Authorization: Bearer ${token}`, "--data", '{"text":"hi"}', url],
        { cwd: repoRoot, timeout: 15_000 },
      );
      expect(JSON.parse(stdout)).toMatchObject({
        text: "hi",
        caller: { clientId: "example-client", scopes: ["read"], isServiceRequest: true },
      });
    }
    const refused = await run("npx", ["--no-install", "buf", "curl", "--schema", ".", "--data", '{"text":"hi"}', url], {
      cwd: repoRoot,
      timeout: 15_000,
    }).then(
      () => "",
      (e: { stderr: string }) => e.stderr,
    );
    expect(refused).toContain("unauthenticated");
  });

  it("logs each request without a token or secret, and a down backend in one line", () => {
    const lines = logs.text().trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
    // One line per request, when it is answered, with every fact of it.
    const requests = lines.filter((l) => l.msg === "request completed");
    expect(requests.length).toBeGreaterThan(5);
    for (const line of requests) {
      expect(line).toMatchObject({
        level: 30,
        reqId: expect.any(String),
        method: expect.any(String),
        path: expect.stringMatching(/^\/[^?]*$/),
        statusCode: expect.any(Number),
        durationMs: expect.any(Number),
      });
    }
    expect(new Set(requests.map((l) => l.reqId)).size).toBe(requests.length);
    expect(lines.filter((l) => l.msg === "incoming request")).toEqual([]);
    expect(lines.filter((l) => l.level === 40)).toEqual([
      // Which upstream: its origin and backend, where whoever runs the gateway looks.
      expect.objectContaining({
        code: "SERVICE_UNAVAILABLE",
        cause: "ECONNREFUSED",
        upstream: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+( \(backend [\w-]+\))?$/),
        msg: "Upstream service is unavailable",
      }),
    ]);
    const text = logs.text();
    expect(tokensSent.length).toBeGreaterThan(2);
    for (const secret of [...tokensSent, stack.client.clientSecret, stack.hmacSecret]) expect(text).not.toContain(secret);
  });
});
