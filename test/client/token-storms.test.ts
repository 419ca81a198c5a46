// The 401 rule under load: a 401 invalidates only the token the failed call
// used, so a burst of calls holding a stale token costs exactly one token
// request; and a sustained 401 storm is held to one forced refresh per
// FORCED_REFRESH_BACKOFF_MS instead of one token request per call.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { AuthenticationError, createGatewayTransport, gatewayCall } from "../../src/client/index.js";
import { resolveGatewayOptions } from "../../src/client/gateway-options.js";
import { BACKGROUND_RETRY_MIN_MS, createTokenManager, FORCED_REFRESH_BACKOFF_MS, RETRY_AFTER_MAX_MS } from "../../src/client/token-manager.js";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import { startBackend, type BackendRequest, type TestBackend } from "../support/connect-backend.js";
import { startTokenEndpoint, type TestTokenEndpoint } from "../support/token-endpoint.js";
import { createMemoryTokenStore } from "../../src/client/token-store.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let endpoint: TestTokenEndpoint;
let backend: TestBackend;
let issued = 0;
let intercept: (r: BackendRequest) => number | undefined | Promise<number | undefined>;
beforeAll(async () => {
  [endpoint, backend] = await Promise.all([
    // Every token request gets a new token: tok-1, tok-2, …
    startTokenEndpoint(() => ({ json: { access_token: `tok-${++issued}`, token_type: "bearer", expires_in: 3600 } })),
    startBackend({ httpVersion: "1.1", intercept: (r) => intercept(r) }),
  ]);
});
afterAll(() => Promise.all([endpoint.close(), backend.close()]));
beforeEach(() => {
  intercept = () => undefined;
});

const echoClient = () =>
  createClient(
    EchoService,
    createGatewayTransport({
      clientId: "storm",
      clientSecret: "storm-secret",
      appcenterUrl: endpoint.url,
      gatewayUrl: backend.url,
      // A token cache of each transport's own: these tests count its token requests.
      tokenStore: createMemoryTokenStore(),
    }),
  );

describe("50 concurrent calls whose stale token gets a 401 at random moments", () => {
  it("make exactly one new token request, and all succeed with the new token", async () => {
    const echo = echoClient();
    await echo.echo({ text: "warm" });
    const stale = backend.requests.at(-1)!.authorization!;
    const tokensBefore = endpoint.requests.length;
    const callsBefore = backend.requests.length;
    // The gateway starts refusing the cached token; each refusal comes 0–150 ms late, so some
    // arrive before the new token does and most after it is cached.
    intercept = async (r) => {
      if (r.authorization !== stale) return undefined;
      await sleep(Math.random() * 150);
      return 401;
    };
    const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => echo.echo({ text: `c${i}` })));
    const failed = results.filter((r) => r.status === "rejected").map((r) => String((r as PromiseRejectedResult).reason));
    expect(failed).toEqual([]);
    expect(endpoint.requests.length - tokensBefore).toBe(1);
    const seen = backend.requests.slice(callsBefore).map((r) => r.authorization);
    const fresh = seen.filter((a) => a !== stale);
    expect(new Set(fresh).size).toBe(1); // every retry used the one new token
    expect(fresh).toHaveLength(50);
  });
});

describe("a retry after a 401, within the call's deadline", () => {
  it("is sent with what is left of timeoutMs, in whole milliseconds (Connect refuses a fractional timeout)", async () => {
    const echo = echoClient();
    await echo.echo({ text: "warm" }, { timeoutMs: 5_000 });
    const stale = backend.requests.at(-1)!.authorization!;
    intercept = async (r) => {
      if (r.authorization !== stale) return undefined;
      await sleep(7.3);
      return 401;
    };
    expect(await echo.echo({ text: "retried" }, { timeoutMs: 5_000 })).toMatchObject({ text: "retried" });
  });
});

describe("a sustained 401 storm", () => {
  // The gateway refuses every token (say, its key or clock is wrong).
  const storm = gatewayCall({ service: "storm" });
  beforeEach(() => {
    intercept = (r) => (r.prefix === "/backend/storm" ? 401 : undefined);
  });

  const expectUnauthenticatedAnswer = (error: unknown) => {
    expect(error).toBeInstanceOf(ConnectError);
    expect(error).not.toBeInstanceOf(AuthenticationError);
    expect((error as ConnectError).code).toBe(Code.Unauthenticated);
  };

  it("makes one forced refresh per backoff, not one token request per call", async () => {
    const echo = echoClient();
    const tokensBefore = endpoint.requests.length;
    const callsBefore = backend.requests.length;
    const startedAt = performance.now();
    // 20 calls one after the other, then 20 at once, well within the backoff.
    for (let i = 0; i < 20; i++) expectUnauthenticatedAnswer(await echo.echo({}, storm).catch((e: unknown) => e));
    const together = await Promise.allSettled(Array.from({ length: 20 }, () => echo.echo({}, storm)));
    for (const r of together) expectUnauthenticatedAnswer((r as PromiseRejectedResult).reason);
    expect(performance.now() - startedAt).toBeLessThan(FORCED_REFRESH_BACKOFF_MS); // else the test proves nothing
    // The first token, and the one forced refresh its 401 earned. Only the first call was retried.
    expect(endpoint.requests.length - tokensBefore).toBe(2);
    expect(backend.requests.length - callsBefore).toBe(41);

    // Past the backoff, a 401 may force a refresh again: one.
    await sleep(FORCED_REFRESH_BACKOFF_MS + 50 - (performance.now() - startedAt));
    const callsThen = backend.requests.length;
    expectUnauthenticatedAnswer(await echo.echo({}, storm).catch((e: unknown) => e));
    expect(endpoint.requests.length - tokensBefore).toBe(3);
    expect(backend.requests.length - callsThen).toBe(2); // refused, refreshed, retried, refused
  });

  it("the backoff delays nothing: calls keep succeeding once the gateway accepts the token again", async () => {
    const echo = echoClient();
    expectUnauthenticatedAnswer(await echo.echo({}, storm).catch((e: unknown) => e)); // forced refresh
    expectUnauthenticatedAnswer(await echo.echo({}, storm).catch((e: unknown) => e)); // within the backoff
    const tokensBefore = endpoint.requests.length;
    expect((await echo.echo({ text: "ok" })).text).toBe("ok"); // the kept token still serves other routes
    expect(endpoint.requests.length).toBe(tokensBefore);
  });
});

describe("the token manager's backoff (controllable clock)", () => {
  it("is measured from when the forced refresh's token arrived; an older token's 401 never counts", async () => {
    let ms = 1_000_000;
    const tokens = createTokenManager({
      ...resolveGatewayOptions({ clientId: "c", clientSecret: "s", appcenterUrl: endpoint.url, gatewayUrl: endpoint.url }, {}),
      now: () => ms,
    });
    const first = await tokens.getToken();
    expect(tokens.invalidate(first)).toBe(true); // the first forced refresh
    const second = await tokens.getToken();
    expect(second).not.toBe(first);
    expect(tokens.invalidate(first)).toBe(true); // an older token: nothing forced, a retry gets `second`
    expect(tokens.getToken()).toBe(second);
    ms += FORCED_REFRESH_BACKOFF_MS - 1;
    expect(tokens.invalidate(second)).toBe(false); // kept: no retry
    expect(tokens.getToken()).toBe(second);
    ms += 1;
    expect(tokens.invalidate(second)).toBe(true);
    const third = await tokens.getToken();
    expect(third).not.toBe(second);
    expect(tokens.invalidate(third)).toBe(false);
  });
});

describe("a token endpoint that says it is overloaded (429, 503)", () => {
  let overloaded: TestTokenEndpoint;
  let answer: () => { status?: number; json?: unknown; headers?: Record<string, string> };
  beforeAll(async () => {
    overloaded = await startTokenEndpoint(() => answer());
  });
  afterAll(() => overloaded.close());

  const manager = (now: () => number) =>
    createTokenManager({
      ...resolveGatewayOptions({ clientId: "busy", clientSecret: "busy-secret", appcenterUrl: overloaded.url, gatewayUrl: overloaded.url }, {}),
      now,
    });
  const failure = async (tokens: ReturnType<typeof manager>) => {
    try {
      await tokens.getToken();
    } catch (e) {
      return e as AuthenticationError;
    }
    throw new Error("a token was issued");
  };

  it("is not asked again before its Retry-After: calls meanwhile fail at once, naming the wait", async () => {
    let ms = 1_000_000;
    const tokens = manager(() => ms);
    answer = () => ({ status: 429, json: { error: "slow_down" }, headers: { "retry-after": "30" } });
    const first = await failure(tokens);
    expect([first.status, first.oauthError, first.retryAfterMs]).toEqual([429, "slow_down", 30_000]);
    const before = overloaded.requests.length;
    for (let i = 0; i < 40; i++) {
      ms += 100;
      const paused = await failure(tokens);
      expect(paused).toBeInstanceOf(AuthenticationError);
      expect(paused.message).toMatch(/answered HTTP 429: slow_down; not asked again for \d+ s, as its Retry-After asked$/);
      expect(paused.message.match(/\[unauthenticated\]/g)).toHaveLength(1); // its code once, not once per wrapping
      expect(paused.message).not.toContain("busy-secret");
    }
    expect(overloaded.requests.length).toBe(before);
    // Past it, the next call asks, and gets its token.
    ms += 30_000 - 40 * 100;
    answer = () => ({ json: { access_token: "after-the-pause", token_type: "bearer", expires_in: 3600 } });
    expect(await tokens.getToken()).toBe("after-the-pause");
    expect(overloaded.requests.length).toBe(before + 1);
  });

  it("without Retry-After, pauses 1 s, then 2 s, … after each 503 in a row; a Retry-After past 5 minutes is cut to 5", async () => {
    let ms = 2_000_000;
    const tokens = manager(() => ms);
    answer = () => ({ status: 503, json: {} });
    await failure(tokens);
    let sent = overloaded.requests.length;
    ms += BACKGROUND_RETRY_MIN_MS - 1;
    expect((await failure(tokens)).message).toMatch(/after it said it is overloaded$/);
    expect(overloaded.requests.length).toBe(sent);
    ms += 1;
    await failure(tokens); // asked again: a second 503
    expect(overloaded.requests.length).toBe(sent + 1);
    sent += 1;
    ms += 2 * BACKGROUND_RETRY_MIN_MS - 1;
    await failure(tokens);
    expect(overloaded.requests.length).toBe(sent);
    ms += 1;
    answer = () => ({ status: 503, json: {}, headers: { "retry-after": "86400" } });
    await failure(tokens);
    expect(overloaded.requests.length).toBe(sent + 1);
    ms += RETRY_AFTER_MAX_MS - 1;
    await failure(tokens);
    expect(overloaded.requests.length).toBe(sent + 1);
    ms += 1;
    answer = () => ({ json: { access_token: "back", token_type: "bearer", expires_in: 3600 } });
    expect(await tokens.getToken()).toBe("back");
  });

  it("other failures pause nothing: a refused credential is asked about again on the next call", async () => {
    const tokens = manager(() => 3_000_000);
    // A Retry-After on an answer that is not 429 or 503 pauses nothing either.
    answer = () => ({ status: 401, json: { error: "invalid_client" }, headers: { "retry-after": "60" } });
    await failure(tokens);
    const sent = overloaded.requests.length;
    await failure(tokens);
    expect(overloaded.requests.length).toBe(sent + 1);
  });
});
