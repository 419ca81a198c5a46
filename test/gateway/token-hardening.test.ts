// Hardening of token validation: `exp` required, malformed scope claims refused,
// introspection audience / issuer / token type checks, single-flight and
// negative caching of introspection, and a cooldown after a failed JWKS fetch.
// Real servers on loopback throughout: an oidc-provider OAuth2 server, a
// counting proxy in front of its introspection endpoint, a JWKS server.
import { createServer } from "node:http";
import { exportJWK, generateKeyPair, SignJWT, type JWK } from "jose";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createGateway, parseRoutesFile, type Gateway } from "../../packages/gateway/src/index.js";
import { gatewayConfigFromEnv } from "../../packages/gateway/src/gateway-env.js";
import type { TokenValidationOptions } from "../../packages/gateway/src/token-verifier.js";
import { startOAuth2Server, type OAuth2Server } from "../../src/testing/index.js";
import { startIntrospectionProxy, type IntrospectionProxy } from "../support/introspection-proxy.js";
import { clientCredentialsToken } from "../support/client-credentials.js";
import { closeServer, HMAC_SECRET, JWT_SECRET, listen, SEED_AUDIENCE, SEED_ISSUER, seedToken, startRecordingBackend, type RecordingBackend } from "../support/gateway.js";

const TEST_TIMEOUT = 20_000;
const routesYaml = `version: "1.0"
routes:
  - path: /api/v1/agents
    method: GET
    proxy_upstream: $UP
`;
const service = { clientId: "billing", clientSecret: "billing-secret-value", scopes: ["read", "write"] };
const introspector = { clientId: "gateway", clientSecret: "gateway-introspection-secret" };

let backend: RecordingBackend;
beforeAll(async () => {
  backend = await startRecordingBackend();
});
afterAll(async () => {
  await backend.close();
});

async function startGateway(tokens: TokenValidationOptions): Promise<Gateway> {
  const gateway = createGateway({
    routes: parseRoutesFile(routesYaml, { source: "routes.yaml", env: { UP: backend.url } }),
    hmacSecret: HMAC_SECRET,
    tokens,
    logger: false,
  });
  await gateway.listen();
  return gateway;
}

async function call(gateway: Gateway, token: string) {
  const res = await fetch(`${gateway.url}/api/v1/agents`, {
    headers: { authorization: `Bearer ${token}` },
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

const hs256 = { secret: JWT_SECRET, issuer: SEED_ISSUER, audience: SEED_AUDIENCE };

function unexpiringSeedToken(key: Parameters<SignJWT["sign"]>[0], alg: string, claims: { iss: string; aud: string }, kid?: string) {
  return new SignJWT({ client_id: "svc", scopes: ["read"] })
    .setProtectedHeader({ alg, ...(kid && { kid }) })
    .setIssuedAt()
    .setIssuer(claims.iss)
    .setAudience(claims.aud)
    .sign(key);
}

describe("JWT expiry", () => {
  it("refuses an HS256 or JWKS-verified JWT without exp with 401, never forwarded", { timeout: TEST_TIMEOUT }, async () => {
    const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
    const keys: JWK[] = [{ ...(await exportJWK(publicKey)), kid: "k", alg: "RS256" }];
    const jwksServer = createServer((_req, res) => res.setHeader("content-type", "application/json").end(JSON.stringify({ keys })));
    const issuer = `http://127.0.0.1:${await listen(jwksServer)}`;
    const gateway = await startGateway({ hs256, jwks: { url: `${issuer}/jwks`, issuer, audience: "api" } });
    try {
      const before = backend.requests.length;
      const tokens = [
        await unexpiringSeedToken(new TextEncoder().encode(JWT_SECRET), "HS256", { iss: SEED_ISSUER, aud: SEED_AUDIENCE }),
        await unexpiringSeedToken(privateKey, "RS256", { iss: issuer, aud: "api" }, "k"),
      ];
      for (const token of tokens) {
        const { status, body } = await call(gateway, token);
        expect([status, body.error.code]).toEqual([401, "UNAUTHORIZED"]);
        expect(body.error.message).toMatch(/exp/);
      }
      expect(backend.requests.length).toBe(before);
      // The same keys with an exp are fine.
      expect((await call(gateway, await seedToken())).status).toBe(200);
    } finally {
      await gateway.close();
      await closeServer(jwksServer);
    }
  });

  it("allows exp within the configured clock leeway, and no further", { timeout: TEST_TIMEOUT }, async () => {
    const lenient = await startGateway({ hs256, clockToleranceSeconds: 30 });
    const strict = await startGateway({ hs256, clockToleranceSeconds: 0 });
    try {
      const expired10s = await seedToken({}, { ttlSeconds: -10 });
      expect((await call(lenient, expired10s)).status).toBe(200);
      expect((await call(strict, expired10s)).body.error.code).toBe("EXPIRED_TOKEN");
      expect((await call(lenient, await seedToken({}, { ttlSeconds: -60 }))).body.error.code).toBe("EXPIRED_TOKEN");
    } finally {
      await Promise.all([lenient.close(), strict.close()]);
    }
  });
});

describe("scope claims", () => {
  let gateway: Gateway;
  beforeAll(async () => {
    gateway = await startGateway({ hs256 });
  });
  afterAll(async () => {
    await gateway.close();
  });

  it("refuses odd whitespace, control characters and non-string elements in scope / scopes", { timeout: TEST_TIMEOUT }, async () => {
    const malformed: Record<string, unknown>[] = [
      { scopes: undefined, scope: "read  write" },
      { scopes: undefined, scope: " read" },
      { scopes: undefined, scope: "read " },
      { scopes: undefined, scope: "read\twrite" },
      { scopes: undefined, scope: "read\nwrite" },
      { scopes: undefined, scope: "read\r\nx-injected: 1" },
      { scopes: undefined, scope: "read\u00a0write" },
      { scopes: undefined, scope: "read\u0000" },
      { scopes: undefined, scope: "re\u007fad" },
      { scopes: ["read", 5] },
      { scopes: ["read", null] },
      { scopes: ["read", { admin: true }] },
      { scopes: ["read write"] },
      { scopes: ["read", ""] },
      { scopes: ["read\u0001"] },
      { scopes: "read\twrite" },
      { scopes: ["read"], scope: "read\u000bwrite" },
    ];
    const before = backend.requests.length;
    for (const claims of malformed) {
      const { status, body } = await call(gateway, await seedToken(claims));
      expect([claims, status, body.error.code, body.error.message]).toEqual([
        claims,
        401,
        "UNAUTHORIZED",
        "Token carries a malformed scope claim",
      ]);
    }
    expect(backend.requests.length).toBe(before);
  });

  it("still accepts well-formed scope strings and arrays", { timeout: TEST_TIMEOUT }, async () => {
    for (const [claims, forwarded] of [
      [{ scopes: undefined, scope: "read write:agents" }, "read write:agents"],
      [{ scopes: ["read", "write:agents"] }, "read write:agents"],
      [{ scopes: [] }, undefined],
      [{ scopes: undefined, scope: "" }, undefined],
    ] as const) {
      expect((await call(gateway, await seedToken(claims))).status).toBe(200);
      const header = backend.requests.at(-1)!.headers["x-user-scopes"];
      expect(header || undefined).toBe(forwarded);
    }
  });
});

describe("introspection", () => {
  let opaque: OAuth2Server;
  /** Counts introspection requests and rewrites answers on their way back to the gateway (its `rewrite`). */
  let proxy: IntrospectionProxy;

  beforeAll(async () => {
    opaque = await startOAuth2Server({ clients: [service, introspector], tokenFormat: "opaque" });
    // Holds each introspection request a while, so that concurrent calls overlap with it.
    proxy = await startIntrospectionProxy(opaque.introspectionUrl, 150);
  });
  afterAll(async () => {
    await Promise.all([opaque.close(), proxy.close()]);
  });

  const opaqueToken = () => clientCredentialsToken(opaque.tokenUrl, service, "read");

  const introspection = (extra: Partial<NonNullable<TokenValidationOptions["introspection"]>> = {}) => ({
    introspection: { url: proxy.url, clientId: introspector.clientId, clientSecret: introspector.clientSecret, ...extra },
  });

  async function withGateway(tokens: TokenValidationOptions, run: (gateway: Gateway) => Promise<void>) {
    const gateway = await startGateway(tokens);
    try {
      await run(gateway);
    } finally {
      proxy.rewrite = undefined;
      await gateway.close();
    }
  }

  it("introspects a token once for 15 concurrent calls", { timeout: TEST_TIMEOUT }, async () => {
    await withGateway(introspection(), async (gateway) => {
      const token = await opaqueToken();
      const before = proxy.count;
      const results = await Promise.all(Array.from({ length: 15 }, () => call(gateway, token)));
      expect(results.map((r) => r.status)).toEqual(Array(15).fill(200));
      expect(proxy.count - before).toBe(1);
    });
  });

  it("remembers an inactive token briefly: repeated and concurrent bad calls introspect once", { timeout: TEST_TIMEOUT }, async () => {
    await withGateway(introspection(), async (gateway) => {
      const before = proxy.count;
      const bad = "an-opaque-token-nobody-issued-0123456789";
      const results = await Promise.all(Array.from({ length: 15 }, () => call(gateway, bad)));
      for (let i = 0; i < 3; i++) results.push(await call(gateway, bad));
      expect(results.map((r) => [r.status, r.body.error.code])).toEqual(Array(18).fill([401, "UNAUTHORIZED"]));
      expect(proxy.count - before).toBe(1);
      // Another bad token is asked about on its own.
      expect((await call(gateway, `${bad}-other`)).status).toBe(401);
      expect(proxy.count - before).toBe(2);
    });
    // With the negative cache disabled, each call asks again.
    await withGateway(introspection({ negativeCacheMs: 0 }), async (gateway) => {
      const before = proxy.count;
      for (let i = 0; i < 2; i++) expect((await call(gateway, "yet-another-unknown-token")).status).toBe(401);
      expect(proxy.count - before).toBe(2);
    });
  });

  it("enforces the configured issuer", { timeout: TEST_TIMEOUT }, async () => {
    const token = await opaqueToken();
    await withGateway(introspection({ issuer: "http://someone-else.example" }), async (gateway) => {
      const { status, body } = await call(gateway, token);
      expect([status, body.error.code]).toEqual([401, "UNAUTHORIZED"]);
    });
    await withGateway(introspection({ issuer: opaque.issuer }), async (gateway) => {
      expect((await call(gateway, token)).status).toBe(200);
    });
  });

  it("enforces the configured audience against aud (string or array)", { timeout: TEST_TIMEOUT }, async () => {
    const before = backend.requests.length;
    for (const [aud, expected] of [
      ["urn:another-api", 401],
      [["urn:x", "urn:y"], 401],
      [undefined, 401],
      ["urn:my-api", 200],
      [["urn:x", "urn:my-api"], 200],
    ] as const) {
      const token = await opaqueToken();
      await withGateway(introspection({ audience: ["urn:my-api", "urn:also-mine"] }), async (gateway) => {
        proxy.rewrite = (b) => ({ ...b, aud });
        expect([aud, (await call(gateway, token)).status]).toEqual([aud, expected]);
      });
    }
    expect(backend.requests.length).toBe(before + 2);
  });

  it("refuses a refresh token", { timeout: TEST_TIMEOUT }, async () => {
    const token = await opaqueToken();
    await withGateway(introspection(), async (gateway) => {
      proxy.rewrite = (b) => ({ ...b, token_type: "refresh_token" });
      const { status, body } = await call(gateway, token);
      expect([status, body.error.code]).toEqual([401, "UNAUTHORIZED"]);
    });
  });

  it("applies the clock leeway to an introspected exp", { timeout: TEST_TIMEOUT }, async () => {
    const now = Math.floor(Date.now() / 1000);
    for (const [exp, expected] of [
      [now - 3, 200],
      [now - 60, 401],
    ] as const) {
      const token = await opaqueToken();
      await withGateway({ ...introspection(), clockToleranceSeconds: 10 }, async (gateway) => {
        proxy.rewrite = (b) => ({ ...b, exp });
        const { status, body } = await call(gateway, token);
        expect(status).toBe(expected);
        if (expected === 401) expect(body.error.code).toBe("EXPIRED_TOKEN");
      });
    }
  });

  it("refuses an introspected exp or nbf that is not a number, and a token before its nbf (with the leeway)", { timeout: TEST_TIMEOUT }, async () => {
    const now = Math.floor(Date.now() / 1000);
    for (const [claims, expected] of [
      [{ exp: String(now + 3600) }, "Token introspection answered an exp that is not a number"],
      [{ exp: null }, "Token introspection answered an exp that is not a number"],
      [{ nbf: "0" }, "Token introspection answered an nbf that is not a number"],
      [{ nbf: now + 60 }, "Token is not valid yet (nbf)"],
      [{ nbf: now + 3 }, 200],
    ] as const) {
      const token = await opaqueToken();
      await withGateway({ ...introspection(), clockToleranceSeconds: 10 }, async (gateway) => {
        proxy.rewrite = (b) => ({ ...b, ...claims });
        const { status, body } = await call(gateway, token);
        expect([claims, status, body.error?.message]).toEqual(expected === 200 ? [claims, 200, undefined] : [claims, 401, expected]);
      });
    }
  });

  it("reads INTROSPECTION_AUDIENCE and INTROSPECTION_ISSUER", () => {
    const env = {
      GATEWAY_HMAC_SECRET: HMAC_SECRET,
      INTROSPECTION_URL: "http://127.0.0.1:1/introspect",
      INTROSPECTION_CLIENT_ID: "g",
      INTROSPECTION_CLIENT_SECRET: "s",
    };
    expect(gatewayConfigFromEnv("routes.yaml", env).tokens.introspection).not.toHaveProperty("audience");
    const config = gatewayConfigFromEnv("routes.yaml", {
      ...env,
      INTROSPECTION_AUDIENCE: "urn:my-api",
      INTROSPECTION_ISSUER: "https://auth.example",
    });
    expect(config.tokens.introspection).toMatchObject({ audience: "urn:my-api", issuer: "https://auth.example" });
    expect(gatewayConfigFromEnv("r", { ...env, INTROSPECTION_AUDIENCE: "a, b" }).tokens.introspection?.audience).toEqual(["a", "b"]);
  });
});

describe("JWKS failures", () => {
  it("fetches a failing key set once for 15 concurrent calls, and not again within the cooldown", { timeout: TEST_TIMEOUT }, async () => {
    const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
    const keys: JWK[] = [{ ...(await exportJWK(publicKey)), kid: "k", alg: "RS256" }];
    let answer: [number, string] = [500, "oops"];
    let fetches = 0;
    const jwksServer = createServer((_req, res) => {
      fetches++;
      // Slow enough that the calls overlap, quick enough to leave the burst's tail for after it.
      setTimeout(() => res.writeHead(answer[0], { "content-type": "application/json" }).end(answer[1]), 20);
    });
    const issuer = `http://127.0.0.1:${await listen(jwksServer)}`;
    const sign = () =>
      new SignJWT({ client_id: "svc" })
        .setProtectedHeader({ alg: "RS256", kid: "k" })
        .setIssuer(issuer)
        .setAudience("api")
        .setExpirationTime("5m")
        .sign(privateKey);
    try {
      for (const failing of [[500, "oops"], [200, "not json"]] as [number, string][]) {
        answer = failing;
        fetches = 0;
        const gateway = await startGateway({ jwks: { url: `${issuer}/jwks`, issuer, audience: "api", failureCooldownMs: 400 } });
        try {
          const tokens = await Promise.all(Array.from({ length: 15 }, sign));
          const results = await Promise.all(tokens.map((t) => call(gateway, t)));
          expect(results.map((r) => [r.status, r.body.error.code])).toEqual(Array(15).fill([503, "SERVICE_UNAVAILABLE"]));
          expect([failing, fetches]).toEqual([failing, 1]);
          // Within the cooldown: answered at once, no fetch.
          expect((await call(gateway, await sign())).status).toBe(503);
          expect(fetches).toBe(1);
          // After it, with the key set back, the next call fetches again and passes.
          answer = [200, JSON.stringify({ keys })];
          await new Promise((resolve) => setTimeout(resolve, 500));
          expect((await call(gateway, await sign())).status).toBe(200);
          expect(fetches).toBe(2);
        } finally {
          await gateway.close();
        }
      }
      // The default cooldown (5 s) holds well past a short wait.
      answer = [500, "oops"];
      fetches = 0;
      const gateway = await startGateway({ jwks: { url: `${issuer}/jwks`, issuer, audience: "api" } });
      try {
        expect((await call(gateway, await sign())).status).toBe(503);
        await new Promise((resolve) => setTimeout(resolve, 300));
        answer = [200, JSON.stringify({ keys })];
        expect((await call(gateway, await sign())).status).toBe(503);
        expect(fetches).toBe(1);
      } finally {
        await gateway.close();
      }
    } finally {
      await closeServer(jwksServer);
    }
  });
});

describe("JWKS endpoint failing after keys were fetched", () => {
  it("keeps verifying tokens of known keys against the last key set: a made-up kid, or keys past maxAgeMs, cost no one else a 503", { timeout: TEST_TIMEOUT }, async () => {
    const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
    const keys = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: "k", alg: "RS256" }] });
    let failing = false;
    let fetches = 0;
    const jwksServer = createServer((_req, res) => {
      fetches++;
      if (failing) res.writeHead(500).end("down");
      else res.writeHead(200, { "content-type": "application/json" }).end(keys);
    });
    const issuer = `http://127.0.0.1:${await listen(jwksServer)}`;
    const sign = (kid: string) =>
      new SignJWT({ client_id: "svc", jti: Math.random().toString(36) })
        .setProtectedHeader({ alg: "RS256", kid })
        .setIssuer(issuer)
        .setAudience("api")
        .setExpirationTime("5m")
        .sign(privateKey);
    // cacheMs 0: every call verifies its token against the key set.
    const jwks = { url: `${issuer}/jwks`, issuer, audience: "api", refetchCooldownMs: 0, failureCooldownMs: 5_000 };
    const gateway = await startGateway({ cacheMs: 0, jwks });
    const stale = await startGateway({ cacheMs: 0, jwks: { ...jwks, maxAgeMs: 200 } });
    try {
      expect((await call(gateway, await sign("k"))).status).toBe(200);
      expect((await call(stale, await sign("k"))).status).toBe(200);
      failing = true;
      // A made-up kid makes the gateway refetch; the fetch fails: that token gets 503…
      const madeUp = await call(gateway, await sign("made-up"));
      expect([madeUp.status, madeUp.body.error.code]).toEqual([503, "SERVICE_UNAVAILABLE"]);
      // …and within the failure cooldown, tokens of the cached key still pass, without a fetch.
      const fetched = fetches;
      for (let i = 0; i < 3; i++) expect((await call(gateway, await sign("k"))).status).toBe(200);
      expect(fetches).toBe(fetched);
      // Keys past maxAgeMs while the endpoint fails: the last set still verifies known keys.
      await new Promise((resolve) => setTimeout(resolve, 300));
      for (let i = 0; i < 3; i++) expect((await call(stale, await sign("k"))).status).toBe(200);
      expect((await call(stale, await sign("other"))).status).toBe(503);
    } finally {
      await Promise.all([gateway.close(), stale.close()]);
      await closeServer(jwksServer);
    }
  });
});

describe("the last key set, while the JWKS endpoint stays away", () => {
  it("stands in for an hour at most after the endpoint last answered: then tokens get 503", { timeout: TEST_TIMEOUT }, async () => {
    const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
    const keys = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: "k", alg: "RS256" }] });
    let failing = false;
    const jwksServer = createServer((_req, res) => {
      if (failing) res.writeHead(500).end("down");
      else res.writeHead(200, { "content-type": "application/json" }).end(keys);
    });
    const issuer = `http://127.0.0.1:${await listen(jwksServer)}`;
    const sign = () =>
      new SignJWT({ client_id: "svc", jti: Math.random().toString(36) })
        .setProtectedHeader({ alg: "RS256", kid: "k" })
        .setIssuer(issuer)
        .setAudience("api")
        .setExpirationTime("5m")
        .sign(privateKey);
    const gateway = await startGateway({ cacheMs: 0, jwks: { url: `${issuer}/jwks`, issuer, audience: "api", failureCooldownMs: 1_000 } });
    vi.useFakeTimers({ toFake: ["Date"], now: Date.now() });
    try {
      expect((await call(gateway, await sign())).status).toBe(200);
      failing = true;
      vi.setSystemTime(Date.now() + 59 * 60_000); // keys past maxAgeMs: refreshed, which fails; the last set stands in
      expect((await call(gateway, await sign())).status).toBe(200);
      vi.setSystemTime(Date.now() + 2 * 60_000); // 61 minutes after the endpoint last answered
      const late = await call(gateway, await sign());
      expect([late.status, late.body.error.code]).toEqual([503, "SERVICE_UNAVAILABLE"]);
    } finally {
      vi.useRealTimers();
      await gateway.close();
      await closeServer(jwksServer);
    }
  });
});

describe("answers from the authorization server too large to hold", () => {
  // Streams a JSON-looking answer of up to 64 MiB, 64 KiB at a time, as fast as it is read.
  let written = 0;
  let cutOff = 0;
  const TOTAL = 64 * 1024 * 1024;
  const huge = createServer((req, res) => {
    req.resume();
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    const declare = req.url?.includes("declared") === true;
    res.writeHead(200, { "content-type": "application/json", ...(declare && { "content-length": String(TOTAL) }) });
    res.once("close", () => {
      if (!res.writableFinished) cutOff++;
    });
    let sent = 0;
    const pump = () => {
      while (sent < TOTAL && !res.destroyed) {
        sent += chunk.length;
        written += chunk.length;
        if (!res.write(chunk)) return void res.once("drain", pump);
      }
      if (!res.destroyed) res.end();
    };
    res.write('{"keys":[], "active": true, "padding": "');
    pump();
  });
  let origin: string;
  beforeAll(async () => {
    origin = `http://127.0.0.1:${await listen(huge)}`;
  });
  afterAll(() => closeServer(huge));

  it.each(["jwks", "jwks-declared", "introspect", "introspect-declared"])(
    "%s: 503 at once, the answer dropped as it arrives",
    { timeout: TEST_TIMEOUT },
    async (endpoint) => {
      written = 0;
      cutOff = 0;
      const { privateKey } = await generateKeyPair("RS256");
      const tokens: TokenValidationOptions = endpoint.startsWith("jwks")
        ? { jwks: { url: `${origin}/${endpoint}`, issuer: origin, audience: "api", timeoutMs: 8_000 } }
        : { introspection: { url: `${origin}/${endpoint}`, clientId: "gateway", clientSecret: "s", timeoutMs: 8_000 } };
      const token = endpoint.startsWith("jwks")
        ? await new SignJWT({ client_id: "svc" }).setProtectedHeader({ alg: "RS256", kid: "k" }).setIssuer(origin).setAudience("api").setExpirationTime("5m").sign(privateKey)
        : "an-opaque-token-0123456789";
      const gateway = await startGateway(tokens);
      try {
        const started = Date.now();
        const res = await call(gateway, token);
        expect([res.status, res.body.error.code]).toEqual([503, "SERVICE_UNAVAILABLE"]);
        // Well before the 8 s timeout, and without reading (nor holding) the 64 MiB.
        expect(Date.now() - started).toBeLessThan(4_000);
        await new Promise((resolve) => setTimeout(resolve, 100));
        expect(cutOff).toBe(1);
        expect(written).toBeLessThan(TOTAL / 4);
      } finally {
        await gateway.close();
      }
    },
  );
});
