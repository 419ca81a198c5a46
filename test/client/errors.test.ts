import { Code, ConnectError, createCallbackClient, createClient } from "@connectrpc/connect";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  AuthenticationError,
  ConnectionError,
  createGatewayClient,
  createGatewayTransport,
  GatewayError,
  GatewayResponseError,
  gatewayCall,
  SessionTokenExpiredError,
  createMemoryTokenStore,
  type GatewayTransportOptions,
} from "../../src/client/index.js";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import { startBackend, type TestBackend } from "../support/connect-backend.js";
import { expectNoSecret } from "../support/no-secret.js";
import { closedPortUrl } from "../support/token-endpoint.js";
import { startOAuth2Server, type OAuth2Server } from "../../src/testing/oauth2-server.js";

const SECRET = "zz-Distinctive-Client-Secret-42";
const client = { clientId: "errors", clientSecret: SECRET, scopes: ["read"] };

describe("instanceof is exact both ways", () => {
  const errors = {
    GatewayError: new GatewayError("g"),
    AuthenticationError: new AuthenticationError("a"),
    ConnectionError: new ConnectionError("c", Code.Unavailable),
    SessionTokenExpiredError: new SessionTokenExpiredError(),
    GatewayResponseError: new GatewayResponseError("r", 404, {}, new Headers()),
  };
  const classes = { GatewayError, AuthenticationError, ConnectionError, SessionTokenExpiredError, GatewayResponseError };

  it.each(Object.entries(errors))("%s", (name, error) => {
    expect(error).toBeInstanceOf(ConnectError);
    expect(error).toBeInstanceOf(GatewayError);
    expect(ConnectError.from(error)).toBe(error); // Connect keeps it as is: code and class survive
    for (const [other, cls] of Object.entries(classes)) {
      if (other === "GatewayError") continue;
      expect(error instanceof cls, `${name} instanceof ${other}`).toBe(name === other);
    }
  });

  it("a plain ConnectError is none of them", () => {
    const plain = new ConnectError("x", Code.Unauthenticated);
    for (const cls of Object.values(classes)) expect(plain instanceof cls).toBe(false);
  });

  it("codes follow SPEC §3", () => {
    expect(errors.AuthenticationError.code).toBe(Code.Unauthenticated);
    expect(errors.SessionTokenExpiredError.code).toBe(Code.Unauthenticated);
    expect(errors.GatewayResponseError.code).toBe(Code.Unimplemented);
  });
});

describe("errors reaching the caller through real calls", () => {
  let oauth: OAuth2Server;
  let backend: TestBackend;
  let h2: TestBackend;
  let logged: string[];
  beforeAll(async () => {
    oauth = await startOAuth2Server({ clients: [client] });
    // Per-call routes pick the misbehaviour: /backend/slow/… is late, /backend/forbidden/… answers 403,
    // /backend/down/… answers 503 as the gateway does when the backend behind it is down.
    const slow = async (r: { path: string }) => {
      if (r.path.startsWith("/backend/slow/")) await new Promise((res) => setTimeout(res, 1500));
      if (r.path.startsWith("/backend/down/")) return 503;
      return r.path.startsWith("/backend/forbidden/") ? 403 : undefined;
    };
    [backend, h2] = await Promise.all([
      startBackend({ httpVersion: "1.1", intercept: slow }),
      startBackend({ httpVersion: "2", intercept: slow }),
    ]);
  });
  afterAll(() => Promise.all([oauth.close(), backend.close(), h2.close()]));
  beforeAll(() => {
    logged = [];
    for (const level of ["log", "info", "warn", "error", "debug"] as const) {
      vi.spyOn(console, level).mockImplementation((...args: unknown[]) => void logged.push(args.map(String).join(" ")));
    }
  });
  afterEach(() => {
    for (const line of logged) expect(line).not.toContain(SECRET);
  });

  const options = (extra: Partial<GatewayTransportOptions>) =>
    ({ ...client, appcenterUrl: oauth.issuer, tokenPath: "/token", ...extra }) as GatewayTransportOptions;

  it.each(["1.1", "2"] as const)("gateway unreachable over HTTP/%s → ConnectionError, code Unavailable", async (httpVersion) => {
    const echo = createClient(EchoService, createGatewayTransport(options({ gatewayUrl: await closedPortUrl(), httpVersion })));
    const error = await echo.echo({}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error).toBeInstanceOf(ConnectError);
    expect(error).not.toBeInstanceOf(AuthenticationError);
    expect((error as ConnectError).code).toBe(Code.Unavailable);
    expect((error as Error).message).toMatch(/unreachable \(ECONNREFUSED\)/);
    expectNoSecret(error, [SECRET]);
  });

  it.each([
    ["1.1", () => backend],
    ["2", () => h2],
  ] as const)("a call past its deadline over HTTP/%s → ConnectionError, code DeadlineExceeded", async (httpVersion, b) => {
    const echo = createClient(EchoService, createGatewayTransport(options({ gatewayUrl: b().url, httpVersion, timeoutMs: 300 })));
    await echo.echo({}); // token cached
    const error = await echo.echo({}, { ...gatewayCall({ service: "slow" }), timeoutMs: 200 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectError).code).toBe(Code.DeadlineExceeded);
    const token = b().requests.at(-1)?.authorization?.slice("Bearer ".length) ?? "";
    expect(token.length).toBeGreaterThan(10);
    expectNoSecret(error, [SECRET, token]);
  });

  it.each([
    ["1.1", () => backend],
    ["2", () => h2],
  ] as const)("the gateway answering 503 over HTTP/%s (backend down) → ConnectionError, code Unavailable", async (httpVersion, b) => {
    const echo = createClient(EchoService, createGatewayTransport(options({ gatewayUrl: b().url, httpVersion })));
    const error = await echo.echo({}, gatewayCall({ service: "down" })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectError).code).toBe(Code.Unavailable);
    expect((error as Error).message).toMatch(/answered that the backend is unavailable/);
  });

  it("keeps class and code through the callback client too", async () => {
    const echo = createCallbackClient(EchoService, createGatewayTransport(options({ gatewayUrl: await closedPortUrl() })));
    const error = await new Promise((resolve) => echo.echo({}, (err) => resolve(err)));
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectError).code).toBe(Code.Unavailable);
  });

  it("a backend error answer stays a plain ConnectError (not a ConnectionError) and carries no token", async () => {
    const echo = createClient(EchoService, createGatewayTransport(options({ gatewayUrl: backend.url })));
    const error = await echo.echo({}, gatewayCall({ service: "forbidden" })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.PermissionDenied);
    expect(error).not.toBeInstanceOf(GatewayError);
    const token = backend.requests.at(-1)?.authorization?.slice("Bearer ".length) ?? "";
    expect(token.length).toBeGreaterThan(10);
    expectNoSecret(error, [SECRET, token]);
  });
});

describe("a gateway URL that answers HTTP/2 only (h2c), called over HTTP/1.1", () => {
  it("fails with a GatewayError that says to use httpVersion \"2\", over Connect and REST, not a raw parse error", async () => {
    const { createServer } = await import("node:http2");
    const h2only = createServer((_req, res) => res.end());
    await new Promise<void>((resolve) => h2only.listen(0, "127.0.0.1", resolve));
    const gatewayUrl = `http://127.0.0.1:${(h2only.address() as { port: number }).port}`;
    const options = { gatewayUrl, appcenterUrl: gatewayUrl, clientId: "c", clientSecret: "s", retry: false } as const;
    try {
      const echo = createClient(EchoService, createGatewayTransport(options));
      const connectError = await echo.echo({}, gatewayCall({ userToken: "a-user-token" })).then(
        () => undefined,
        (e: unknown) => e,
      );
      const restError = await createGatewayClient(options).get("/api/v1/x", { userToken: "a-user-token" }).then(
        () => undefined,
        (e: unknown) => e,
      );
      for (const error of [connectError, restError]) {
        expect(error).toBeInstanceOf(GatewayError);
        expect((error as ConnectError).code).toBe(Code.Internal);
        expect((error as ConnectError).rawMessage).toContain('did not answer in HTTP/1.1: if it serves HTTP/2 only (cleartext h2c, http2.createServer), use httpVersion: "2"');
      }
    } finally {
      h2only.close();
    }
  });
});

describe("an https:// gateway URL for a gateway that answers plain HTTP", () => {
  it("fails with a GatewayError that says to use http://, over Connect (HTTP/1.1 and HTTP/2) and REST, not OpenSSL's 'wrong version number'", async () => {
    const { createServer } = await import("node:http");
    const plain = createServer((_req, res) => res.end());
    await new Promise<void>((resolve) => plain.listen(0, "127.0.0.1", resolve));
    const gatewayUrl = `https://127.0.0.1:${(plain.address() as { port: number }).port}`;
    const options = { gatewayUrl, appcenterUrl: gatewayUrl, clientId: "c", clientSecret: "s", retry: false } as const;
    try {
      const failure = (promise: Promise<unknown>) => promise.then(() => undefined, (e: unknown) => e);
      const errors = [
        await failure(createClient(EchoService, createGatewayTransport(options)).echo({}, gatewayCall({ userToken: "a-user-token" }))),
        await failure(createClient(EchoService, createGatewayTransport({ ...options, httpVersion: "2" })).echo({}, gatewayCall({ userToken: "a-user-token" }))),
        await failure(createGatewayClient(options).get("/api/v1/x", { userToken: "a-user-token" })),
      ];
      for (const error of errors) {
        expect(error).toBeInstanceOf(GatewayError);
        expect((error as ConnectError).code).toBe(Code.Internal);
        expect((error as ConnectError).rawMessage).toContain("did not answer in TLS: if it serves plain HTTP");
        expect((error as ConnectError).rawMessage).not.toContain("wrong version number");
      }
    } finally {
      plain.closeAllConnections();
      plain.close();
    }
  });
});

describe("a gateway, backend or token endpoint that quotes the token it was sent", () => {
  it("never puts the bearer token (service or user) or the refresh token in an error: [redacted] instead", async () => {
    const { createServer } = await import("node:http");
    const { startTokenEndpoint } = await import("../support/token-endpoint.js");
    const SERVICE_TOKEN = "svc-token-quoted-back-0123456789";
    const USER_TOKEN = "user-token-quoted-back-9876543210";
    const REFRESH = "refresh-token-quoted-back-5555555";
    let refreshes = 0;
    const tokenEndpoint = await startTokenEndpoint((request) => {
      if (request.body.includes("grant_type=refresh_token")) {
        refreshes++;
        return { status: 503, json: { error: "temporarily_unavailable", error_description: `could not refresh ${REFRESH}` } };
      }
      return { json: { access_token: SERVICE_TOKEN, token_type: "bearer", expires_in: 1, refresh_token: REFRESH } };
    });
    // Answers every call with an error quoting its Authorization header: REST 400 JSON, Connect 403.
    const echoing = createServer((req, res) => {
      req.resume();
      const quoted = String(req.headers.authorization);
      // Headers quoting it too, as a WWW-Authenticate challenge might.
      res.setHeader("www-authenticate", `Bearer error="invalid_token", error_description="${quoted} refused"`);
      res.setHeader("x-rejected-credential", quoted);
      if (req.url?.startsWith("/rest")) {
        res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ error: "bad request", authorization: quoted }));
      } else if (req.url?.endsWith("/EchoStream")) {
        // A stream's error comes in its end-of-stream message, after the call has begun.
        const end = Buffer.from(JSON.stringify({ error: { code: "permission_denied", message: `refused ${quoted}` } }));
        const envelope = Buffer.alloc(5 + end.length);
        envelope.writeUInt8(0b10, 0);
        envelope.writeUInt32BE(end.length, 1);
        end.copy(envelope, 5);
        res.writeHead(200, { "content-type": String(req.headers["content-type"]) }).end(envelope); // the end-stream message is JSON in either codec
      } else {
        // And in an error detail: its debug JSON, and its bytes (a google.protobuf.StringValue of the header).
        const bytes = Buffer.concat([Buffer.from([0x0a, quoted.length]), Buffer.from(quoted)]);
        const detail = { type: "google.protobuf.StringValue", value: bytes.toString("base64").replace(/=+$/, ""), debug: { quoted: [quoted] } };
        res
          .writeHead(403, { "content-type": "application/json" })
          .end(JSON.stringify({ code: "permission_denied", message: `refused ${quoted}`, details: [detail] }));
      }
    });
    await new Promise<void>((resolve) => echoing.listen(0, "127.0.0.1", resolve));
    const gatewayUrl = `http://127.0.0.1:${(echoing.address() as { port: number }).port}`;
    try {
      const options = { gatewayUrl, appcenterUrl: tokenEndpoint.url, clientId: "c", clientSecret: SECRET, retry: false, tokenStore: createMemoryTokenStore() } as const;
      const rest = createGatewayClient(options);
      const echo = createClient(EchoService, createGatewayTransport(options));
      const errors = [
        await rest.get("/rest/x").catch((e: unknown) => e),
        await rest.get("/rest/x", { userToken: USER_TOKEN }).catch((e: unknown) => e),
        await echo.echo({}).catch((e: unknown) => e),
        await echo.echo({}, gatewayCall({ userToken: USER_TOKEN })).catch((e: unknown) => e),
        await (async () => {
          for await (const _ of echo.echoStream({ text: "x", repeat: 1 }, gatewayCall({ userToken: USER_TOKEN }))) void _;
        })().catch((e: unknown) => e),
      ];
      expect(String(errors[4])).toContain("refused Bearer [redacted]");
      expect((errors[0] as GatewayResponseError).body).toMatchObject({ authorization: "Bearer [redacted]" });
      expect(String(errors[2])).toContain("refused Bearer [redacted]");
      for (const error of errors.slice(0, 4)) {
        expect((error as ConnectError).metadata.get("x-rejected-credential")).toBe("Bearer [redacted]");
      }
      for (const error of errors.slice(2, 4)) {
        const [detail] = (error as ConnectError).details as { value: Uint8Array; debug: unknown }[];
        expect(detail?.debug).toEqual({ quoted: ["Bearer [redacted]"] });
        // The bytes keep their length, so the detail still decodes; the token's octets are masked.
        expect(Buffer.from(detail?.value ?? []).toString("latin1")).toMatch(/^\n.Bearer \*+$/s);
      }
      // The cached token expires (1 s): its refresh is answered 503, quoting the refresh token.
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      errors.push(await rest.get("/rest/x").catch((e: unknown) => e));
      expect(refreshes).toBeGreaterThan(0);
      expect(String(errors.at(-1))).toContain("could not refresh [redacted]");
      for (const error of errors) expectNoSecret(error, [SERVICE_TOKEN, USER_TOKEN, REFRESH, SECRET]);
    } finally {
      echoing.close();
      await tokenEndpoint.close();
    }
  });
});
