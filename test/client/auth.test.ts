import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  AuthenticationError,
  createGatewayClient,
  createGatewayTransport,
  gatewayCall,
  GatewayError,
  SessionTokenExpiredError,
  withUserToken,
  type GatewayTransportOptions,
  type SessionOptions,
} from "../../src/client/index.js";
import { resolveGatewayOptions } from "../../src/client/gateway-options.js";
import { createTokenManager } from "../../src/client/token-manager.js";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import { startBackend, type BackendRequest, type TestBackend } from "../support/connect-backend.js";
import { startTokenEndpoint, type TestTokenEndpoint } from "../support/token-endpoint.js";
import { expectNoSecret } from "../support/no-secret.js";
import { startOAuth2Server, type OAuth2Server } from "../../src/testing/oauth2-server.js";
import { createMemoryTokenStore } from "../../src/client/token-store.js";

const client = { clientId: "auth-tests", clientSecret: "auth-secret", scopes: ["read"] };

let oauth: OAuth2Server;
let intercept: (r: BackendRequest) => number | undefined;
const backends: Record<"1.1" | "2", TestBackend> = {} as never;
beforeAll(async () => {
  oauth = await startOAuth2Server({ clients: [client] });
  for (const v of ["1.1", "2"] as const) backends[v] = await startBackend({ httpVersion: v, intercept: (r) => intercept(r) });
});
afterAll(() => Promise.all([oauth.close(), backends["1.1"].close(), backends["2"].close()]));
beforeEach(() => {
  intercept = () => undefined;
});

const setups = [
  { protocol: "connect", httpVersion: "1.1" },
  { protocol: "grpc", httpVersion: "2" },
] as const;

describe.each(setups)("401 handling, $protocol over HTTP/$httpVersion", (setup) => {
  const backend = () => backends[setup.httpVersion];
  const echoClient = () =>
    createClient(
      EchoService,
      createGatewayTransport({
        ...client,
        gatewayUrl: backend().url,
        appcenterUrl: oauth.issuer,
        tokenPath: "/token",
        // A token cache of each transport's own: these tests count its token requests and 401 retries.
        tokenStore: createMemoryTokenStore(),
        ...setup,
      } as GatewayTransportOptions),
    );
  const since = (n: number) => backend().requests.slice(n);

  it("a 401 on the service token: one refresh, one retry with the new token", async () => {
    const echo = echoClient();
    await echo.echo({}); // warm the cache
    const stale = backend().requests.at(-1)?.authorization;
    intercept = (r) => (r.authorization === stale ? 401 : undefined);
    const start = backend().requests.length;
    const tokenRequests = oauth.tokenRequests;
    expect((await echo.echo({ text: "retried" })).text).toBe("retried");
    const seen = since(start).map((r) => r.authorization);
    expect(seen).toHaveLength(2);
    expect(seen[0]).toBe(stale);
    expect(seen[1]).not.toBe(stale);
    expect(oauth.tokenRequests).toBe(tokenRequests + 1);
  });

  it("a backend that always answers 401 gets exactly two calls, and the caller gets Unauthenticated", async () => {
    const echo = echoClient();
    intercept = () => 401;
    const start = backend().requests.length;
    const error = await echo.echo({}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.Unauthenticated);
    expect(error).not.toBeInstanceOf(AuthenticationError); // the gateway's answer, not a token failure
    expect(since(start)).toHaveLength(2);
  });

  it("a stream is never retried (it cannot be replayed)", async () => {
    const echo = echoClient();
    await echo.echo({});
    intercept = () => 401;
    const start = backend().requests.length;
    const error = await (async () => {
      for await (const _ of echo.echoStream({ text: "s", repeat: 2 })) void _;
    })().catch((e: unknown) => e);
    expect((error as ConnectError).code).toBe(Code.Unauthenticated);
    expect(since(start)).toHaveLength(1);
  });

  it("a 401 on a forwarded user token goes straight to the caller; the service token is untouched", async () => {
    const echo = echoClient();
    await echo.echo({});
    intercept = (r) => (r.authorization === "Bearer expired-user-token" ? 401 : undefined);
    const start = backend().requests.length;
    const tokenRequests = oauth.tokenRequests;
    const serviceToken = backend().requests.at(-1)?.authorization;
    const error = await echo.echo({}, gatewayCall({ userToken: "expired-user-token" })).catch((e: unknown) => e);
    expect((error as ConnectError).code).toBe(Code.Unauthenticated);
    expect(error).not.toBeInstanceOf(AuthenticationError);
    expect(since(start)).toHaveLength(1);
    await echo.echo({}); // the service token is still cached: not invalidated by the user's 401
    expect(backend().requests.at(-1)?.authorization).toBe(serviceToken);
    expect(oauth.tokenRequests).toBe(tokenRequests);
  });

  it("user-token calls on a cold transport never fetch a service token", async () => {
    const echo = echoClient();
    const tokenRequests = oauth.tokenRequests;
    await echo.echo({}, gatewayCall({ userToken: "user-a" }));
    await withUserToken("user-b", () => echo.echo({}));
    expect(since(backend().requests.length - 2).map((r) => r.authorization)).toEqual(["Bearer user-a", "Bearer user-b"]);
    expect(oauth.tokenRequests).toBe(tokenRequests);
  });

  it("forwards a user token per call and via withUserToken; the per-call one wins; no token request", async () => {
    const echo = echoClient();
    await echo.echo({});
    const serviceToken = backend().requests.at(-1)?.authorization;
    const tokenRequests = oauth.tokenRequests;
    const user = await oauth.issueUserToken({ sub: "u-1" });
    await echo.echo({}, gatewayCall({ userToken: user }));
    expect(backend().requests.at(-1)?.authorization).toBe(`Bearer ${user}`);
    await withUserToken("scoped-user", () => echo.echo({}));
    expect(backend().requests.at(-1)?.authorization).toBe("Bearer scoped-user");
    await withUserToken("scoped-user", () => echo.echo({}, gatewayCall({ userToken: "per-call-user" })));
    expect(backend().requests.at(-1)?.authorization).toBe("Bearer per-call-user");
    await echo.echo({});
    expect(backend().requests.at(-1)?.authorization).toBe(serviceToken);
    expect(oauth.tokenRequests).toBe(tokenRequests);
  });
});

describe("session mode", () => {
  let endpoint: TestTokenEndpoint;
  let backend: TestBackend;
  beforeAll(async () => {
    backend = backends["1.1"];
    endpoint = await startTokenEndpoint((r) =>
      r.path === "/oauth/token"
        ? { json: { access_token: "cc-token", token_type: "bearer", expires_in: 3600 } }
        : r.path === "/session/exchange" && r.authorization === "Bearer cc-token" && JSON.parse(r.body).code === "one-time"
          ? { json: { access_token: "session-token", expires_in: 60 } }
          : r.path === "/session/leaky" // echoes what it was sent, as careless servers do
            ? { status: 400, json: { error: "invalid_grant", error_description: `${r.authorization} ${r.body}` } }
            : { status: 400, json: { error: "invalid_grant", error_description: "code already used" } },
    );
  });
  afterAll(() => endpoint.close());

  const session = { code: "one-time", exchangePath: "/session/exchange" };
  const echoInSession = (options: SessionOptions = session) =>
    createClient(
      EchoService,
      createGatewayTransport({ ...client, gatewayUrl: backend.url, appcenterUrl: endpoint.url, session: options }),
    );

  it("exchanges the code exactly once (client_credentials token, then POST { code }), for concurrent calls", async () => {
    const echo = echoInSession();
    const start = endpoint.requests.length;
    await Promise.all(Array.from({ length: 20 }, () => echo.echo({})));
    await echo.echo({});
    expect(endpoint.requests.slice(start).map((r) => [r.path, r.authorization?.split(" ")[0], r.body])).toEqual([
      ["/oauth/token", "Basic", "grant_type=client_credentials"],
      ["/session/exchange", "Bearer", '{"code":"one-time"}'],
    ]);
    expect(endpoint.requests.at(-1)?.contentType).toBe("application/json");
    expect(backend.requests.at(-1)?.authorization).toBe("Bearer session-token");
  });

  it("fails with SessionTokenExpiredError once the session token expires, without spending the code again", async () => {
    let ms = 0;
    const tokens = createTokenManager({
      ...resolveGatewayOptions({ ...client, appcenterUrl: endpoint.url, gatewayUrl: endpoint.url, session }, {}),
      now: () => ms,
    });
    expect(await tokens.getToken()).toBe("session-token");
    const start = endpoint.requests.length;
    ms += 59_000;
    expect(await tokens.getToken()).toBe("session-token"); // no refresh: the code is single-use
    ms += 2_000;
    const error = await Promise.resolve().then(() => tokens.getToken()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SessionTokenExpiredError);
    expect(error).toBeInstanceOf(GatewayError);
    expect((error as ConnectError).code).toBe(Code.Unauthenticated);
    expect(endpoint.requests.length).toBe(start);
  });

  it("a 401 on the session token ends the session: the retry finds SessionTokenExpiredError", async () => {
    const echo = echoInSession();
    intercept = (r) => (r.authorization === "Bearer session-token" ? 401 : undefined);
    await expect(echo.echo({})).rejects.toBeInstanceOf(SessionTokenExpiredError);
  });

  it("an exchange endpoint echoing the bearer token and the code: neither reaches the error", async () => {
    const echo = echoInSession({ code: "secret-one-time-code", exchangePath: "/session/leaky" });
    const error = await echo.echo({}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect((error as Error).message).toMatch(/invalid_grant \(Bearer \[redacted\] \{"code":"\[redacted\]"\}\)/);
    expectNoSecret(error, ["cc-token", "secret-one-time-code", client.clientSecret]);
  });

  it("a failed exchange spends the code: later calls say so instead of sending it again", async () => {
    const echo = echoInSession({ ...session, code: "wrong" });
    await expect(echo.echo({})).rejects.toThrow(/invalid_grant \(code already used\)/);
    const start = endpoint.requests.length;
    const again = await echo.echo({}).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(AuthenticationError);
    expect((again as Error).message).toMatch(/single-use/);
    expect(endpoint.requests.length).toBe(start);
  });
});

describe("a retry after a 401 keeps the call's deadline", () => {
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  let slow: TestBackend;
  let stale: string | undefined;
  beforeAll(async () => {
    // Each answer takes 400 ms; the first token a call used is refused (401).
    slow = await startBackend({
      httpVersion: "1.1",
      intercept: async (r) => {
        await sleep(400);
        return r.authorization === stale ? 401 : undefined;
      },
    });
  });
  afterAll(() => slow.close());

  const options = () => ({
    ...client,
    gatewayUrl: slow.url,
    appcenterUrl: oauth.issuer,
    tokenPath: "/token",
    tokenStore: createMemoryTokenStore(),
    retry: false,
  });

  async function timed(run: () => Promise<unknown>): Promise<{ ms: number; error: unknown }> {
    const started = performance.now();
    try {
      await run();
      return { ms: performance.now() - started, error: undefined };
    } catch (error) {
      return { ms: performance.now() - started, error };
    }
  }

  it("Connect: the retry gets what the first attempt left, and the call ends at its deadline", async () => {
    const echo = createClient(EchoService, createGatewayTransport(options() as GatewayTransportOptions));
    await echo.echo({}); // warm the cache
    stale = slow.requests.at(-1)?.authorization;
    const { ms, error } = await timed(() => echo.echo({ text: "late" }, { timeoutMs: 600 }));
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.DeadlineExceeded);
    // Two 400 ms attempts would take 800 ms and more; the deadline ends the call at 600 ms.
    expect(ms).toBeLessThan(780);
    expect(slow.requests.at(-1)?.authorization).not.toBe(stale); // it was retried, with a new token
  });

  it("Connect: the transport's own timeoutMs is the deadline of a call that gives none, retry included", async () => {
    const echo = createClient(EchoService, createGatewayTransport({ ...options(), timeoutMs: 600 } as GatewayTransportOptions));
    await echo.echo({}); // warm the cache
    stale = slow.requests.at(-1)?.authorization;
    const { ms, error } = await timed(() => echo.echo({ text: "late" }));
    expect((error as ConnectError).code).toBe(Code.DeadlineExceeded);
    expect(ms).toBeLessThan(780);
    // The retry was sent with what was left of the call's 600 ms, not 600 ms again.
    const retried = slow.requests.at(-1);
    expect(retried?.authorization).not.toBe(stale);
    expect(Number(retried?.timeoutMs)).toBeLessThan(300);
  });

  it("REST: the same", async () => {
    const rest = createGatewayClient(options());
    await rest.post("/example.v1.EchoService/Echo", { body: {} });
    stale = slow.requests.at(-1)?.authorization;
    const { ms, error } = await timed(() => rest.post("/example.v1.EchoService/Echo", { body: { text: "late" }, timeoutMs: 600 }));
    expect((error as ConnectError).code).toBe(Code.DeadlineExceeded);
    expect(ms).toBeLessThan(780);
  });
});
