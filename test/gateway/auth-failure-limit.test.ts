// The per-client-IP budget of failed authentications, spent BEFORE a token is
// validated: a spray of made-up bearer tokens must not turn into as many
// introspection requests. Real servers on loopback throughout: an
// oidc-provider OAuth2 server issuing opaque tokens, a counting proxy in front
// of its introspection endpoint, a recording backend, real gateways — and a
// real redis-server for the shared (multi-instance) budget.
import type { ChildProcess } from "node:child_process";
import { request as httpRequest } from "node:http";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { gatewayConfigFromEnv } from "../../packages/gateway/src/gateway-env.js";
import { createGateway, GatewayConfigError, parseRoutesFile, type Gateway, type GatewayConfig } from "../../packages/gateway/src/index.js";
import { startOAuth2Server, type OAuth2Server } from "../../src/testing/index.js";
import { HMAC_SECRET, readyStatus, route, routesFileText, startRecordingBackend, type RecordingBackend } from "../support/gateway.js";
import { startRedisServer } from "../support/redis-server.js";
import { startIntrospectionProxy, type IntrospectionProxy } from "../support/introspection-proxy.js";
import { clientCredentialsToken } from "../support/client-credentials.js";

const TEST_TIMEOUT = 30_000;
const routesYaml = routesFileText({
  public_paths: ["/api/v1/docs"],
  routes: [route("GET", "/api/v1/agents"), route("GET", "/api/v1/docs")],
});
const service = { clientId: "billing", clientSecret: "billing-secret-value", scopes: ["read", "write"] };
const introspector = { clientId: "gateway", clientSecret: "gateway-introspection-secret" };

let oauth: OAuth2Server;
let proxy: IntrospectionProxy;
let backend: RecordingBackend;
const gateways: Gateway[] = [];
const children: ChildProcess[] = [];

beforeAll(async () => {
  backend = await startRecordingBackend();
  oauth = await startOAuth2Server({ clients: [service, introspector], tokenFormat: "opaque" });
  // Counts introspection requests, and holds each a little.
  proxy = await startIntrospectionProxy(oauth.introspectionUrl, 30);
});
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.close()));
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});
afterAll(async () => {
  await Promise.all([oauth.close(), proxy.close(), backend.close()]);
});

async function startGateway(options: Partial<GatewayConfig> = {}, cacheMs?: number): Promise<Gateway> {
  const gateway = createGateway({
    routes: parseRoutesFile(routesYaml, { source: "routes.yaml", env: { UP: backend.url } }),
    hmacSecret: HMAC_SECRET,
    tokens: {
      introspection: { url: proxy.url, clientId: introspector.clientId, clientSecret: introspector.clientSecret },
      ...(cacheMs !== undefined && { cacheMs }),
    },
    logger: false,
    ...options,
  });
  gateways.push(gateway);
  await gateway.listen();
  return gateway;
}

/** createGateway's checks alone: nothing listens. */
function startGatewayConfigOnly(options: Partial<GatewayConfig>): void {
  createGateway({
    routes: parseRoutesFile(routesYaml, { source: "routes.yaml", env: { UP: "http://127.0.0.1:9" } }),
    hmacSecret: HMAC_SECRET,
    tokens: { introspection: { url: "http://127.0.0.1:9", clientId: introspector.clientId, clientSecret: introspector.clientSecret } },
    logger: false,
    ...options,
  });
}

const validToken = () => clientCredentialsToken(oauth.tokenUrl, service, "read");

let fakes = 0;
/** A made-up opaque token: well-formed, never issued. */
const madeUpToken = () => `made-up-${++fakes}-${Math.random().toString(36).slice(2)}`;

interface Answer {
  readonly status: number;
  readonly retryAfter: string | undefined;
  readonly code: string | undefined;
}

/**
 * GET `path` with `token` (none when undefined), from the local address
 * `from` (all of 127.0.0.0/8 is loopback: a second client IP).
 */
function call(gateway: Gateway, token: string | undefined, path = "/api/v1/agents", from = "127.0.0.1"): Promise<Answer> {
  const url = new URL(path, gateway.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      {
        localAddress: from,
        agent: false,
        headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
        timeout: 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const body = Buffer.concat(chunks).toString("utf8");
          let code: string | undefined;
          try {
            code = (JSON.parse(body) as { error?: { code?: string } }).error?.code;
          } catch {
            code = undefined;
          }
          const retryAfter = res.headers["retry-after"];
          resolve({ status: res.statusCode ?? 0, retryAfter: typeof retryAfter === "string" ? retryAfter : undefined, code });
        });
      },
    );
    req.on("error", reject);
    req.end();
  });
}

function expectRetryAfterWithin(answer: Answer, maxSeconds: number) {
  expect(answer.status).toBe(429);
  expect(answer.code).toBe("RATE_LIMITED");
  expect(answer.retryAfter).toMatch(/^[0-9]+$/);
  expect(Number(answer.retryAfter)).toBeGreaterThanOrEqual(1);
  expect(Number(answer.retryAfter)).toBeLessThanOrEqual(maxSeconds);
}

describe("failed-authentication budget per client IP (default 20 per minute)", () => {
  it("lets 200 made-up tokens from one IP cost at most 20 introspections; the rest get 429 with Retry-After", { timeout: TEST_TIMEOUT }, async () => {
    const gateway = await startGateway();
    const forwardedBefore = backend.requests.length;
    const before = proxy.count;
    const answers: Answer[] = [];
    // In concurrent batches: the budget must hold while validations are in flight.
    for (let batch = 0; batch < 4; batch++) {
      answers.push(...(await Promise.all(Array.from({ length: 50 }, () => call(gateway, madeUpToken())))));
    }
    expect(proxy.count - before).toBeLessThanOrEqual(20);
    const refused = answers.filter((a) => a.status === 429);
    expect(answers.filter((a) => a.status === 401)).toHaveLength(proxy.count - before);
    expect(refused.length).toBeGreaterThanOrEqual(180);
    for (const answer of refused) expectRetryAfterWithin(answer, 60);
    // Still refused afterwards, still without introspection.
    expectRetryAfterWithin(await call(gateway, madeUpToken()), 60);
    expect(proxy.count - before).toBeLessThanOrEqual(20);
    expect(backend.requests.length).toBe(forwardedBefore);
  });

  it("keeps serving a token verified before the IP went over budget; a never-seen valid token waits for the window", { timeout: TEST_TIMEOUT }, async () => {
    const gateway = await startGateway();
    const known = await validToken();
    expect((await call(gateway, known)).status).toBe(200);
    for (let i = 0; i < 20; i++) expect((await call(gateway, madeUpToken())).status).toBe(401);
    const before = proxy.count;
    expectRetryAfterWithin(await call(gateway, madeUpToken()), 60);
    // In the verified-token cache: it costs no validation, so it passes.
    const again = await call(gateway, known);
    expect(again.status).toBe(200);
    // Valid, but not known yet: telling it from a made-up one would take the
    // very validation the budget saves, so it is refused until the window ends.
    expectRetryAfterWithin(await call(gateway, await validToken()), 60);
    expect(proxy.count).toBe(before);
  });

  it("keeps a token in continuous use working after the verified-token cache let it go: validated again, without spending", { timeout: TEST_TIMEOUT }, async () => {
    const gateway = await startGateway({}, 300);
    const known = await validToken();
    expect((await call(gateway, known)).status).toBe(200);
    for (let i = 0; i < 20; i++) expect((await call(gateway, madeUpToken())).status).toBe(401);
    expectRetryAfterWithin(await call(gateway, madeUpToken()), 60);
    for (let round = 0; round < 3; round++) {
      // Past the cache lifetime: the token is validated again (one introspection), not refused unvalidated.
      await new Promise((resolve) => setTimeout(resolve, 400));
      const before = proxy.count;
      expect((await call(gateway, known)).status).toBe(200);
      expect(proxy.count - before).toBe(1);
    }
    // The IP is over budget all along.
    expectRetryAfterWithin(await call(gateway, madeUpToken()), 60);
  });

  it("counts calls without a token to a protected route (never validated), not anonymous calls to a public one", { timeout: TEST_TIMEOUT }, async () => {
    const gateway = await startGateway();
    const before = proxy.count;
    for (let i = 0; i < 20; i++) expect((await call(gateway, undefined)).status).toBe(401);
    expect(proxy.count).toBe(before);
    expectRetryAfterWithin(await call(gateway, undefined), 60);
    expectRetryAfterWithin(await call(gateway, madeUpToken()), 60);
    expect(proxy.count).toBe(before);
    expect((await call(gateway, undefined, "/api/v1/docs")).status).toBe(200);
  });

  it("does not count successful authentications", { timeout: TEST_TIMEOUT }, async () => {
    // No verified-token cache: every call of the valid token is validated, and must not spend the budget.
    const gateway = await startGateway({}, 0);
    const token = await validToken();
    for (let i = 0; i < 30; i++) expect((await call(gateway, token)).status).toBe(200);
    for (let i = 0; i < 20; i++) expect((await call(gateway, madeUpToken())).status).toBe(401);
    expectRetryAfterWithin(await call(gateway, madeUpToken()), 60);
    // Without the cache, no token is known-valid: a valid one is refused too.
    expect((await call(gateway, token)).status).toBe(429);
  });

  it("one fresh valid token on 64 concurrent calls takes one unit, not 64: every call passes", { timeout: TEST_TIMEOUT }, async () => {
    const gateway = await startGateway();
    const token = await validToken();
    const answers = await Promise.all(Array.from({ length: 64 }, () => call(gateway, token)));
    expect(answers.map((a) => a.status).filter((s) => s !== 200)).toEqual([]);
  });

  it("keeps one budget per client IP", { timeout: TEST_TIMEOUT }, async () => {
    const gateway = await startGateway();
    for (let i = 0; i < 20; i++) expect((await call(gateway, madeUpToken())).status).toBe(401);
    expect((await call(gateway, madeUpToken())).status).toBe(429);
    const before = proxy.count;
    expect((await call(gateway, madeUpToken(), "/api/v1/agents", "127.0.0.2")).status).toBe(401);
    expect(proxy.count - before).toBe(1);
    expect((await call(gateway, await validToken(), "/api/v1/agents", "127.0.0.2")).status).toBe(200);
  });

  it("behind a trusted proxy (trustProxy): one budget per address its X-Forwarded-For names; nobody else can choose theirs", { timeout: TEST_TIMEOUT }, async () => {
    const gateway = await startGateway({ trustProxy: ["127.0.0.2"], authFailureLimit: { max: 2, timeWindowMs: 60_000 } });
    const via = (from: string, forwardedFor: string, token = madeUpToken()) =>
      new Promise<number>((resolve, reject) => {
        const req = httpRequest(new URL("/api/v1/agents", gateway.url), {
          localAddress: from,
          agent: false,
          headers: { authorization: `Bearer ${token}`, "x-forwarded-for": forwardedFor },
        }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
        req.end();
      });
    // Through the load balancer (127.0.0.2): each caller it names has its own budget.
    expect([await via("127.0.0.2", "198.51.100.7"), await via("127.0.0.2", "198.51.100.7"), await via("127.0.0.2", "198.51.100.7")]).toEqual([401, 401, 429]);
    expect(await via("127.0.0.2", "198.51.100.8")).toBe(401);
    // And the upstream is told that caller's address.
    expect(await via("127.0.0.2", "198.51.100.9", await validToken())).toBe(200);
    expect(backend.requests.at(-1)?.headers["x-forwarded-for"]).toBe("198.51.100.9");
    // A caller that is not a trusted proxy: its X-Forwarded-For is ignored, it is counted under its own address.
    expect([await via("127.0.0.1", "203.0.113.1"), await via("127.0.0.1", "203.0.113.2"), await via("127.0.0.1", "203.0.113.3")]).toEqual([401, 401, 429]);
  });

  it("trustProxy: a bad entry is refused naming the option and the variable", () => {
    for (const bad of [["10.0.0.0/33"], ["not-an-address"], "10.0.0.1", [""]]) {
      expect(() => startGatewayConfigOnly({ trustProxy: bad as never })).toThrow(/`trustProxy` must be a list of proxy addresses, CIDR ranges or "loopback".*GATEWAY_TRUST_PROXY/);
    }
    const config = gatewayConfigFromEnv("routes.yaml", { GATEWAY_HMAC_SECRET: HMAC_SECRET, JWT_SECRET: "j".repeat(32), GATEWAY_TRUST_PROXY: "10.0.0.0/8, loopback" });
    expect(config.trustProxy).toEqual(["10.0.0.0/8", "loopback"]);
  });

  it("gives the budget back when the window ends (authFailureLimit option)", { timeout: TEST_TIMEOUT }, async () => {
    const gateway = await startGateway({ authFailureLimit: { max: 3, timeWindowMs: 1_500 } });
    for (let i = 0; i < 3; i++) expect((await call(gateway, madeUpToken())).status).toBe(401);
    expectRetryAfterWithin(await call(gateway, madeUpToken()), 2);
    await new Promise((resolve) => setTimeout(resolve, 1_600));
    expect((await call(gateway, await validToken())).status).toBe(200);
    expect((await call(gateway, madeUpToken())).status).toBe(401);
  });

  it("an introspection endpoint that fails (503, 429) is left alone for a second: a spray of made-up tokens cannot keep it busy", { timeout: TEST_TIMEOUT }, async () => {
    const gateway = await startGateway({ authFailureLimit: { max: 10 } });
    for (const status of [503, 429]) {
      proxy.failWith = status;
      const before = proxy.count;
      const started = Date.now();
      try {
        for (let round = 0; round < 30; round++) {
          const answers = await Promise.all(Array.from({ length: 10 }, () => call(gateway, madeUpToken())));
          for (const answer of answers) expect(answer.status).toBe(503);
        }
      } finally {
        proxy.failWith = undefined;
      }
      // At most one round of 10 concurrent calls per second reaches the endpoint (300 did before).
      const seconds = Math.ceil((Date.now() - started) / 1_000);
      expect(proxy.count - before).toBeLessThanOrEqual(10 * (seconds + 1));
      expect(proxy.count - before).toBeLessThan(100);
      // Once the pause is over, the endpoint is asked again: a valid token passes.
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      expect((await call(gateway, await validToken())).status).toBe(200);
    }
  });

  it("is off with authFailureLimit: false", { timeout: TEST_TIMEOUT }, async () => {
    const gateway = await startGateway({ authFailureLimit: false });
    const answers = await Promise.all(Array.from({ length: 30 }, () => call(gateway, madeUpToken())));
    expect(answers.every((a) => a.status === 401)).toBe(true);
  });
});

describe("failed-authentication budget in Redis", () => {
  async function startRedis(): Promise<{ url: string; child: ChildProcess }> {
    const server = await startRedisServer();
    children.push(server.child);
    return server;
  }


  it("is shared by the gateway instances of one Redis", { timeout: TEST_TIMEOUT }, async () => {
    const { url } = await startRedis();
    const config = { rateLimit: { max: 1000, redisUrl: url }, authFailureLimit: { max: 10 } };
    const first = await startGateway(config);
    const second = await startGateway(config);
    // Both have Redis before the counting starts (fail-open otherwise).
    for (const g of [first, second]) expect(await readyStatus(g)).toBe(200);
    const before = proxy.count;
    for (let i = 0; i < 10; i++) expect((await call(i % 2 === 0 ? first : second, madeUpToken())).status).toBe(401);
    expectRetryAfterWithin(await call(first, madeUpToken()), 60);
    expectRetryAfterWithin(await call(second, madeUpToken()), 60);
    expect(proxy.count - before).toBe(10);
  });

  it("follows the rate limit's Redis failure policy: closed refuses unverified tokens with 503, unvalidated", { timeout: TEST_TIMEOUT }, async () => {
    const { url, child } = await startRedis();
    const gateway = await startGateway({ rateLimit: { max: 1000, redisUrl: url, onRedisFailure: "closed" } });
    expect(await readyStatus(gateway)).toBe(200);
    const known = await validToken();
    expect((await call(gateway, known)).status).toBe(200);
    await new Promise<void>((resolve) => {
      child.once("exit", () => resolve());
      child.kill("SIGKILL");
    });
    const before = proxy.count;
    const started = Date.now();
    const answer = await call(gateway, madeUpToken());
    expect(answer.status).toBe(503);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(proxy.count).toBe(before);
  });
});

describe("configuration", () => {
  it("reads AUTH_FAILURE_LIMIT_MAX and AUTH_FAILURE_LIMIT_WINDOW (default 20 per 1m; 0 turns it off)", () => {
    const env = { GATEWAY_HMAC_SECRET: HMAC_SECRET };
    expect(gatewayConfigFromEnv("routes.yaml", env).authFailureLimit).toEqual({ max: 20, timeWindowMs: 60_000 });
    expect(
      gatewayConfigFromEnv("routes.yaml", { ...env, AUTH_FAILURE_LIMIT_MAX: "5", AUTH_FAILURE_LIMIT_WINDOW: "30s" }).authFailureLimit,
    ).toEqual({ max: 5, timeWindowMs: 30_000 });
    expect(gatewayConfigFromEnv("routes.yaml", { ...env, AUTH_FAILURE_LIMIT_MAX: "0" }).authFailureLimit).toBe(false);
    expect(() => gatewayConfigFromEnv("routes.yaml", { ...env, AUTH_FAILURE_LIMIT_MAX: "many" })).toThrow(/AUTH_FAILURE_LIMIT_MAX/);
    expect(() => gatewayConfigFromEnv("routes.yaml", { ...env, AUTH_FAILURE_LIMIT_WINDOW: "soon" })).toThrow(/AUTH_FAILURE_LIMIT_WINDOW/);
  });

  it("refuses a bad authFailureLimit, naming the option", () => {
    const base = {
      routes: parseRoutesFile(routesYaml, { source: "routes.yaml", env: { UP: "http://127.0.0.1:1" } }),
      hmacSecret: HMAC_SECRET,
      tokens: { introspection: { url: "http://127.0.0.1:1/introspect", clientId: "gateway", clientSecret: "secret" } },
      logger: false as const,
    };
    expect(() => createGateway({ ...base, authFailureLimit: { max: 0 } })).toThrow(GatewayConfigError);
    expect(() => createGateway({ ...base, authFailureLimit: { max: 0 } })).toThrow(/authFailureLimit\.max/);
    expect(() => createGateway({ ...base, authFailureLimit: { max: 5, timeWindowMs: -1 } })).toThrow(/authFailureLimit\.timeWindowMs/);
  });
});
