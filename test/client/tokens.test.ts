import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { AuthenticationError, ConnectionError, createGatewayClient, createGatewayTransport, type GatewayTransportOptions } from "../../src/client/index.js";
import { resolveGatewayOptions } from "../../src/client/gateway-options.js";
import { createTokenManager } from "../../src/client/token-manager.js";
import { basicAuthorization } from "../../src/core/client-secret-basic.js";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import { startBackend, type TestBackend } from "../support/connect-backend.js";
import { expectNoSecret } from "../support/no-secret.js";
import { startOAuth2Server, type OAuth2Server } from "../../src/testing/oauth2-server.js";
import { recordingAgent } from "../support/recording-agent.js";
import {
  closedPortUrl,
  startTokenEndpoint,
  type TestTokenEndpoint,
  type TokenEndpointAnswer,
} from "../support/token-endpoint.js";
import { createMemoryTokenStore } from "../../src/client/token-store.js";

// A secret that only survives RFC 6749 Appendix B encoding done right.
const SECRET = "Sx+/:%2B% tok3n secret/";
const client = { clientId: "billing svc:1", clientSecret: SECRET, scopes: ["read"] };
// The secret as given, URL-encoded, and inside the Basic credentials.
const SECRETS = [SECRET, encodeURIComponent(SECRET), basicAuthorization(client.clientId, SECRET).slice("Basic ".length)];

let oauth: OAuth2Server;
let backend: TestBackend;
beforeAll(async () => {
  [oauth, backend] = await Promise.all([
    startOAuth2Server({ clients: [client], accessTokenTtlSeconds: 3600 }),
    startBackend({ httpVersion: "1.1" }),
  ]);
});
afterAll(() => Promise.all([oauth.close(), backend.close()]));

function transportOptions(extra: Partial<GatewayTransportOptions> = {}): GatewayTransportOptions {
  return {
    clientId: client.clientId,
    clientSecret: client.clientSecret,
    gatewayUrl: backend.url,
    appcenterUrl: oauth.issuer,
    tokenPath: "/token",
    // A token cache of each transport's own: these tests count its token requests.
    tokenStore: createMemoryTokenStore(),
    ...extra,
  } as GatewayTransportOptions;
}

/** A controllable monotonic clock, in seconds for readability. */
function clock() {
  let ms = 1_000_000;
  return { now: () => ms, advance: (s: number) => (ms += s * 1000) };
}

describe("the token request", () => {
  it("form-encodes id and secret (Appendix B) before base64: the real oidc-provider accepts them", async () => {
    const echo = createClient(EchoService, createGatewayTransport(transportOptions({ scope: "read" })));
    await echo.echo({ text: "hi" });
    expect(backend.requests.at(-1)?.authorization).toMatch(/^Bearer \S+$/);
    const decoded = Buffer.from(basicAuthorization(client.clientId, SECRET).slice(6), "base64").toString();
    expect(decoded).toBe("billing+svc%3A1:Sx%2B%2F%3A%252B%25+tok3n+secret%2F");
  });

  it("posts grant_type=client_credentials (and scope) as a form with client_secret_basic", async () => {
    const endpoint = await startTokenEndpoint(() => ({ json: { access_token: "t", token_type: "bearer", expires_in: 60 } }));
    try {
      const tokens = createTokenManager(
        resolveGatewayOptions({ ...client, appcenterUrl: endpoint.url, gatewayUrl: endpoint.url, tokenPath: "/oauth/token", scope: ["a", "b"] }, {}),
      );
      expect(await tokens.getToken()).toBe("t");
      expect(endpoint.requests).toEqual([
        {
          path: "/oauth/token",
          authorization: basicAuthorization(client.clientId, SECRET),
          contentType: "application/x-www-form-urlencoded",
          body: "grant_type=client_credentials&scope=a+b",
        },
      ]);
    } finally {
      await endpoint.close();
    }
  });
});

describe("caching", () => {
  it("fetches lazily on the first call, then reuses the cached token", async () => {
    const before = oauth.tokenRequests;
    const echo = createClient(EchoService, createGatewayTransport(transportOptions()));
    expect(oauth.tokenRequests).toBe(before);
    await echo.echo({});
    await echo.echo({});
    await echo.echo({});
    expect(oauth.tokenRequests).toBe(before + 1);
    const seen = backend.requests.slice(-3).map((r) => r.authorization);
    expect(new Set(seen).size).toBe(1);
  });

  it("1,000 concurrent calls on a cold cache make exactly one token request, and all succeed", async () => {
    const before = oauth.tokenRequests;
    const seenBefore = backend.requests.length;
    const echo = createClient(EchoService, createGatewayTransport(transportOptions()));
    const answers = await Promise.all(Array.from({ length: 1000 }, (_, i) => echo.echo({ text: String(i) })));
    expect(answers.map((a) => a.text)).toEqual(Array.from({ length: 1000 }, (_, i) => String(i)));
    expect(oauth.tokenRequests).toBe(before + 1);
    // Every call carried that one token.
    const bearers = new Set(backend.requests.slice(seenBefore).map((r) => r.authorization));
    expect(backend.requests.length - seenBefore).toBe(1000);
    expect([...bearers]).toEqual([expect.stringMatching(/^Bearer \S+$/)]);
  });

  it("refreshes before expiry against the real server (2 s tokens: the margin is capped at 1 s)", async () => {
    const shortLived = await startOAuth2Server({ clients: [client], accessTokenTtlSeconds: 2 });
    try {
      const echo = createClient(
        EchoService,
        createGatewayTransport(transportOptions({ appcenterUrl: shortLived.issuer, refreshMarginSeconds: 300 })),
      );
      await echo.echo({});
      const first = backend.requests.at(-1)?.authorization;
      expect(shortLived.tokenRequests).toBe(1);
      // Margin = min(300, 2/2) = 1 s: after 1.1 s the token is still valid but due.
      await new Promise((r) => setTimeout(r, 1100));
      await echo.echo({});
      expect(backend.requests.at(-1)?.authorization).toBe(first); // no caller waited
      // The background refresh lands shortly after; no further token request is made meanwhile.
      await expect
        .poll(async () => (await echo.echo({}), backend.requests.at(-1)?.authorization), { timeout: 5000 })
        .not.toBe(first);
      expect(shortLived.tokenRequests).toBe(2);
    } finally {
      await shortLived.close();
    }
  });
});

describe("the margin rule (controllable clock)", () => {
  let endpoint: TestTokenEndpoint;
  let answer: (body: URLSearchParams) => TokenEndpointAnswer;
  let issued = 0;
  // Counts token requests as they start: "no request" needs no waiting.
  const recorder = recordingAgent();
  const started = () => recorder.ports.length;
  beforeAll(async () => {
    endpoint = await startTokenEndpoint((r) => answer(new URLSearchParams(r.body)));
  });
  afterAll(async () => {
    recorder.agent.destroy();
    await endpoint.close();
  });
  const ok = (expires_in?: number, extra: object = {}) => () => ({
    json: { access_token: `tok-${++issued}`, token_type: "Bearer", ...(expires_in && { expires_in }), ...extra },
  });

  function manager(time: ReturnType<typeof clock>, extra: object = {}) {
    const urls = { appcenterUrl: endpoint.url, gatewayUrl: endpoint.url };
    return createTokenManager({
      ...resolveGatewayOptions({ ...client, ...urls, agent: recorder.agent, ...extra }, {}),
      now: time.now,
    });
  }

  /** A manager on a clock of its own, its first token (`expires_in` seconds, or none) already fetched. */
  async function fetchedOnce(expiresIn: number | undefined, extra: object = {}) {
    answer = ok(expiresIn);
    const time = clock();
    const tokens = manager(time, extra);
    return { time, tokens, first: await tokens.getToken() };
  }

  it("refreshes refreshMarginSeconds before expiry, in the background, once", async () => {
    const { time, tokens, first } = await fetchedOnce(100, { refreshMarginSeconds: 30 });
    const start = started();
    time.advance(69.9);
    expect(tokens.getToken()).toBe(first); // cached: returned synchronously
    expect(started()).toBe(start);
    time.advance(0.2); // 70.1 s: inside the 30 s margin, still valid
    const during = [tokens.getToken(), tokens.getToken(), tokens.getToken()];
    expect(during).toEqual([first, first, first]); // nobody waits
    expect(started()).toBe(start + 1); // one background refresh for the three
    await expect.poll(() => tokens.getToken()).not.toBe(first);
    expect(started()).toBe(start + 1);
  });

  it("never uses a margin larger than half the lifetime", async () => {
    const { time, tokens, first } = await fetchedOnce(10, { refreshMarginSeconds: 300 });
    const start = started();
    time.advance(4.9);
    expect(tokens.getToken()).toBe(first);
    expect(started()).toBe(start); // a 300 s margin would refresh on every call
    time.advance(0.2); // 5.1 s: past half the 10 s lifetime
    expect(tokens.getToken()).toBe(first);
    expect(started()).toBe(start + 1);
    await expect.poll(() => tokens.getToken()).not.toBe(first);
  });

  it("makes callers wait for a new token once expired; falls back to the default lifetime without expires_in", async () => {
    const { time, tokens, first } = await fetchedOnce(undefined, { refreshMarginSeconds: 0, defaultTokenLifetimeSeconds: 60 });
    time.advance(59);
    expect(tokens.getToken()).toBe(first);
    time.advance(2);
    const [a, b] = await Promise.all([tokens.getToken(), tokens.getToken()]);
    expect(a).not.toBe(first);
    expect(b).toBe(a);
  });

  it("keeps the still-valid token when a background refresh fails, and tries again after a pause that doubles", async () => {
    const { time, tokens, first } = await fetchedOnce(100, { refreshMarginSeconds: 30 });
    const failures: number[] = [];
    answer = () => (failures.push(1), { status: 503, raw: "down" });
    time.advance(80);
    const start = started();
    expect(tokens.getToken()).toBe(first);
    expect(started()).toBe(start + 1);
    await expect.poll(() => failures.length).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    // Calls keep the valid token; within the pause after the failure, none starts a request.
    for (let i = 0; i < 50; i++) expect(tokens.getToken()).toBe(first);
    expect(started()).toBe(start + 1);
    time.advance(1.01); // the first pause (1 s) is over: one more try, which fails too
    expect(tokens.getToken()).toBe(first);
    expect(started()).toBe(start + 2);
    await expect.poll(() => failures.length).toBe(2);
    await new Promise((resolve) => setTimeout(resolve, 20));
    time.advance(1.5); // the second pause is 2 s
    for (let i = 0; i < 20; i++) expect(tokens.getToken()).toBe(first);
    expect(started()).toBe(start + 2);
    answer = ok(100);
    time.advance(0.6);
    expect(tokens.getToken()).toBe(first);
    expect(started()).toBe(start + 3);
    await expect.poll(() => tokens.getToken()).not.toBe(first);
  });

  it("uses the refresh_token grant when one was issued, and client_credentials when it is refused", async () => {
    answer = (body) =>
      body.get("grant_type") === "refresh_token" && body.get("refresh_token") === "rt-1"
        ? ok(100, { refresh_token: "rt-2" })()
        : body.get("grant_type") === "refresh_token"
          ? { status: 400, json: { error: "invalid_grant" } }
          : ok(100, { refresh_token: "rt-1" })();
    const time = clock();
    const tokens = manager(time, { refreshMarginSeconds: 0 });
    await tokens.getToken();
    const start = endpoint.requests.length;
    time.advance(101);
    await tokens.getToken();
    expect(endpoint.requests.slice(start).map((r) => r.body)).toEqual(["grant_type=refresh_token&refresh_token=rt-1"]);
    time.advance(101); // rt-2 is refused: start over with client_credentials
    const third = await tokens.getToken();
    expect(third).toMatch(/^tok-/);
    expect(endpoint.requests.slice(start + 1).map((r) => new URLSearchParams(r.body).get("grant_type"))).toEqual([
      "refresh_token",
      "client_credentials",
    ]);
  });

  it("invalidate(token) drops the token only if it is still the cached one", async () => {
    const { tokens, first } = await fetchedOnce(100);
    tokens.invalidate("some-older-token");
    expect(await tokens.getToken()).toBe(first);
    tokens.invalidate(first);
    expect(await tokens.getToken()).not.toBe(first);
  });
});

describe("token endpoint failures", () => {
  let endpoint: TestTokenEndpoint;
  let answer: () => TokenEndpointAnswer;
  beforeAll(async () => {
    endpoint = await startTokenEndpoint(() => answer());
  });
  afterAll(() => endpoint.close());
  afterEach(() => {
    answer = () => ({ json: { access_token: "fine", token_type: "bearer", expires_in: 60 } });
  });

  const failures: [string, () => TokenEndpointAnswer, RegExp][] = [
    ["HTTP 500", () => ({ status: 500, raw: "<html>boom</html>" }), /answered HTTP 500/],
    // Usually a wrong tokenPath (an OAuth2 server at /token, the client at /oauth/token): the message says where to look.
    ["HTTP 404", () => ({ status: 404, raw: "Not Found" }), /answered HTTP 404 — nothing answers at that path: check tokenPath \(default GATEWAY_TOKEN_PATH/],
    [
      "400 invalid_client",
      () => ({ status: 400, json: { error: "invalid_client", error_description: "client authentication failed" } }),
      /HTTP 400: invalid_client \(client authentication failed\)/,
    ],
    ["a non-JSON body", () => ({ raw: "not json" }), /not a JSON object/],
    ["no access_token", () => ({ json: { token_type: "bearer", expires_in: 60 } }), /no "access_token"/],
    ["a token_type other than bearer", () => ({ json: { access_token: "x", token_type: "mac" } }), /"token_type" "mac"/],
    ["a negative expires_in", () => ({ json: { access_token: "x", token_type: "bearer", expires_in: -1 } }), /expires_in/],
    // Cached, it would fail every call for its lifetime (a header cannot carry it).
    ["an access_token with a line break", () => ({ json: { access_token: "eyJ.abc\n", token_type: "bearer", expires_in: 3600 } }), /cannot travel in a header/],
    ["an access_token beyond ASCII", () => ({ json: { access_token: "tok\u00e9n", token_type: "bearer" } }), /cannot travel in a header/],
    ["an access_token longer than a header can carry", () => ({ json: { access_token: "x".repeat(20_000), token_type: "bearer" } }), /"access_token" of 20000 characters \(at most 16384\)/],
    ["a token_type that is not a string", () => ({ json: { access_token: "x", token_type: { toString: 1 } } }), /"token_type" \{"toString":1\} where "bearer"/],
    ["a token_type in an array", () => ({ json: { access_token: "x", token_type: ["bearer"] } }), /"token_type" \["bearer"\] where "bearer"/],
    [
      "an answer slower than timeoutMs",
      () => ({ delayMs: 3000, json: { access_token: "late", token_type: "bearer" } }),
      /did not answer in time/,
    ],
  ];

  it.each(failures)("%s: every waiting call rejects with AuthenticationError; the next call tries again", async (_, fail, message) => {
    answer = fail;
    const echo = createClient(EchoService, createGatewayTransport(transportOptions({ appcenterUrl: endpoint.url, timeoutMs: 400 })));
    const start = endpoint.requests.length;
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => echo.echo({})));
    expect(endpoint.requests.length).toBe(start + 1);
    for (const r of results) {
      expect(r.status).toBe("rejected");
      const error = (r as PromiseRejectedResult).reason as unknown;
      expect(error).toBeInstanceOf(AuthenticationError);
      expect(error).toBeInstanceOf(ConnectError);
      expect((error as ConnectError).code).toBe(Code.Unauthenticated);
      expect((error as Error).message).toMatch(message);
      expectNoSecret(error, SECRETS);
    }
    answer = () => ({ json: { access_token: "fine", token_type: "bearer", expires_in: 60 } });
    await echo.echo({});
    expect(endpoint.requests.length).toBe(start + 2);
    expect(backend.requests.at(-1)?.authorization).toBe("Bearer fine");
  });

  it("surfaces the OAuth2 error fields on the error", async () => {
    answer = () => ({ status: 401, json: { error: "invalid_client", error_description: `bad secret ${SECRET}` } });
    const echo = createClient(EchoService, createGatewayTransport(transportOptions({ appcenterUrl: endpoint.url })));
    const error = await echo.echo({}).catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 401, oauthError: "invalid_client", oauthErrorDescription: "bad secret [redacted]" });
    expectNoSecret(error, SECRETS);
  });

  it("never lets an echoed secret into the error: cut at 300 characters, base64 in an echoed header, or as token_type", async () => {
    const basic = basicAuthorization(client.clientId, SECRET);
    const echoes: Array<[string, () => TokenEndpointAnswer]> = [
      // The secret crosses the 300-character cut: not even its prefix may survive.
      ["a long description", () => ({ status: 401, json: { error: "invalid_client", error_description: `${"x".repeat(290)}${SECRET}` } })],
      ["the echoed Authorization header", () => ({ status: 401, json: { error: "invalid_client", error_description: `got ${basic}` } })],
      ["token_type", () => ({ json: { access_token: "x", token_type: SECRET } })],
      ["token_type, base64", () => ({ json: { access_token: "x", token_type: basic } })],
      ["the error code itself", () => ({ status: 400, json: { error: `${SECRET}` } })],
    ];
    for (const [what, echo] of echoes) {
      answer = echo;
      const transport = createGatewayTransport(transportOptions({ appcenterUrl: endpoint.url }));
      const error = await createClient(EchoService, transport).echo({}).catch((e: unknown) => e);
      expect([what, error instanceof AuthenticationError]).toEqual([what, true]);
      expectNoSecret(error, [...SECRETS, SECRET.slice(0, 8), basic.slice(6, 20)]);
    }
  });

  it("an answer over the size limit says the endpoint answered, not that it could not be reached", async () => {
    const big = await startTokenEndpoint(() => ({ json: { access_token: "x", token_type: "bearer", padding: "p".repeat(300_000) } }));
    try {
      const transport = createGatewayTransport(transportOptions({ appcenterUrl: big.url }));
      const error = (await createClient(EchoService, transport).echo({}).catch((e: unknown) => e)) as AuthenticationError;
      expect(error).toBeInstanceOf(AuthenticationError);
      expect(error.message).toMatch(/answered, but the answer is larger than \d+ bytes/);
      expect(error.message).not.toMatch(/could not be reached/);
    } finally {
      await big.close();
    }
  });

  it("an answer cut short says the endpoint answered, not that it could not be reached", async () => {
    const { createServer } = await import("node:http");
    const cutter = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { "content-type": "application/json", "content-length": "100" });
      res.write('{"access_token":');
      setTimeout(() => res.socket?.end(), 20);
    });
    await new Promise<void>((resolve) => cutter.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = cutter.address() as { port: number };
      const transport = createGatewayTransport(transportOptions({ appcenterUrl: `http://127.0.0.1:${port}` }));
      const error = (await createClient(EchoService, transport).echo({}).catch((e: unknown) => e)) as AuthenticationError;
      expect(error).toBeInstanceOf(AuthenticationError);
      expect(error.message).toMatch(/answered, but the answer \(HTTP 200\) was cut short \(ECONNRESET\)/);
      expect(error.message).not.toMatch(/could not be reached/);
      expectNoSecret(error, SECRETS);
    } finally {
      cutter.closeAllConnections();
      await new Promise((resolve) => cutter.close(resolve));
    }
  });

  it("a refused connection rejects every waiting call with AuthenticationError; the next call tries again", async () => {
    const appcenterUrl = await closedPortUrl();
    const port = Number(new URL(appcenterUrl).port);
    const recorder = recordingAgent();
    const echo = createClient(EchoService, createGatewayTransport(transportOptions({ appcenterUrl, agent: recorder.agent })));
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => echo.echo({})));
    expect(recorder.ports).toEqual([port]); // one connection attempt for the five calls
    for (const r of results) {
      const error = (r as PromiseRejectedResult).reason as ConnectError;
      expect(error).toBeInstanceOf(AuthenticationError);
      expect(error.code).toBe(Code.Unauthenticated);
      expect(error.message).toMatch(/could not be reached \(ECONNREFUSED\)/);
      expectNoSecret(error, SECRETS);
    }
    // The token endpoint comes up on that port: the failure was not cached.
    const revived = await startTokenEndpoint(() => ({ json: { access_token: "revived", token_type: "bearer" } }), port);
    try {
      await echo.echo({});
      expect(backend.requests.at(-1)?.authorization).toBe("Bearer revived");
    } finally {
      recorder.agent.destroy();
      await revived.close();
    }
  });
});

describe("a caller's abort", () => {
  let endpoint: TestTokenEndpoint;
  beforeAll(async () => {
    endpoint = await startTokenEndpoint(() => ({ delayMs: 200, status: 500, raw: "down" }));
  });
  afterAll(() => endpoint.close());

  it("rejects with Canceled while the token request runs on; its later failure is handled", async () => {
    const recorder = recordingAgent();
    const options = transportOptions({ appcenterUrl: endpoint.url, agent: recorder.agent });
    const echo = createClient(EchoService, createGatewayTransport(options));
    const early = new AbortController();
    early.abort();
    const start = endpoint.requests.length;
    await expect(echo.echo({}, { signal: early.signal })).rejects.toMatchObject({ code: Code.Canceled });
    expect(recorder.ports).toEqual([]); // an aborted call asks for no token
    const waiting = new AbortController();
    const call = echo.echo({}, { signal: waiting.signal });
    await expect.poll(() => endpoint.requests.length).toBe(start + 1);
    waiting.abort();
    await expect(call).rejects.toMatchObject({ code: Code.Canceled });
    // The token request fails after the callers left; nothing is left unhandled.
    await expect(echo.echo({})).rejects.toBeInstanceOf(AuthenticationError);
    recorder.agent.destroy();
  });
});

describe("a call's deadline while it waits for a token", () => {
  let slow: TestTokenEndpoint;
  beforeAll(async () => {
    slow = await startTokenEndpoint(() => ({ delayMs: 1_500, json: { access_token: "late", token_type: "bearer", expires_in: 3600 } }));
  });
  afterAll(() => slow.close());

  it("counts the wait: a call with timeoutMs 300 fails at its deadline, unsent; the token request goes on for the next calls", async () => {
    const options = transportOptions({ appcenterUrl: slow.url });
    const echo = createClient(EchoService, createGatewayTransport(options));
    const rest = createGatewayClient(options);
    const before = backend.requests.length;
    const started = performance.now();
    const [unary, restCall] = await Promise.all([
      echo.echo({ text: "hi" }, { timeoutMs: 300 }).catch((e: unknown) => e),
      rest.get("/anything", { timeoutMs: 300 }).catch((e: unknown) => e),
    ]);
    const took = performance.now() - started;
    for (const error of [unary, restCall]) {
      expect(error).toBeInstanceOf(ConnectionError);
      expect((error as ConnectionError).code).toBe(Code.DeadlineExceeded);
      expect((error as ConnectionError).message).toMatch(/deadline passed while it waited for a service token/);
    }
    expect(took).toBeLessThan(1_200);
    expect(backend.requests.length).toBe(before);
    // The token arrives for the calls after: one token request in all.
    expect(await echo.echo({ text: "later" }, { timeoutMs: 5_000 })).toMatchObject({ text: "later" });
    expect(slow.requests.length).toBe(1);
  });
  it("a default deadline bounds a slow token store too (it answers after 2 s): Connect and REST end at ~300 ms", async () => {
    const slowStore = { get: () => new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 2_000)), set: () => undefined };
    const options = transportOptions({ timeoutMs: 300, tokenStore: slowStore as never });
    const echo = createClient(EchoService, createGatewayTransport(options));
    const rest = createGatewayClient(options);
    for (const call of [() => echo.echo({ text: "hi" }), () => rest.get("/anything")]) {
      const started = performance.now();
      const error = await call().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConnectionError);
      expect((error as ConnectionError).code).toBe(Code.DeadlineExceeded);
      expect(performance.now() - started).toBeLessThan(1_000);
    }
  });

  it("the transport's own timeoutMs bounds a call that gives none: token wait and call together", async () => {
    // The token comes after 250 ms, the gateway answers after 300 ms: 550 ms in all, past the call's 400.
    const fresh = await startTokenEndpoint(() => ({ delayMs: 250, json: { access_token: "late", token_type: "bearer", expires_in: 3600 } }));
    const slowBackend = await startBackend({ httpVersion: "1.1", intercept: () => new Promise((resolve) => setTimeout(() => resolve(undefined), 300)) });
    try {
      const echo = createClient(
        EchoService,
        createGatewayTransport(transportOptions({ appcenterUrl: fresh.url, gatewayUrl: slowBackend.url, timeoutMs: 400 })),
      );
      const started = performance.now();
      const error = await echo.echo({ text: "hi" }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConnectionError);
      expect((error as ConnectionError).code).toBe(Code.DeadlineExceeded);
      expect(performance.now() - started).toBeLessThan(520);
      // The call was sent with what the token wait left of its 400 ms.
      expect(Number(slowBackend.requests.at(-1)?.timeoutMs)).toBeLessThanOrEqual(160);
      // A call that opts out of any deadline (timeoutMs <= 0, as in Connect) waits for its token.
      expect(await echo.echo({ text: "no deadline" }, { timeoutMs: 0 })).toMatchObject({ text: "no deadline" });
    } finally {
      await fresh.close();
      await slowBackend.close();
    }
  });
});
