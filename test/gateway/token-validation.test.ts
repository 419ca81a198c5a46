import { createServer } from "node:http";
import { exportJWK, generateKeyPair, SignJWT, type JWK } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGateway, parseRoutesFile, type Gateway } from "../../packages/gateway/src/index.js";
import { startOAuth2Server, type OAuth2Server } from "../../src/testing/index.js";
import { clientCredentialsToken } from "../support/client-credentials.js";
import { captureLogs, closeServer, hasValidSignature, HMAC_SECRET, JWT_SECRET, listen, route, routesFileText, SEED_AUDIENCE, SEED_ISSUER, seedToken, startRecordingBackend, unusedPort, type RecordingBackend } from "../support/gateway.js";

const routesYaml = routesFileText({
  routes: [
    route("GET", "/api/v1/agents"),
    route("POST", "/api/v1/agents", { scopes: ["write:agents"] }),
    route("GET", "/api/v1/billing", { clients: ["billing"] }),
  ],
});
const service = { clientId: "billing", clientSecret: "billing-secret-value", scopes: ["read", "write:agents"] };
// The gateway's own OAuth2 client, which authenticates its introspection requests.
const introspector = { clientId: "gateway", clientSecret: "gateway: introspection+secret/%(!)~" };

const serviceToken = (server: OAuth2Server, scope?: string) => clientCredentialsToken(server.tokenUrl, service, scope);

async function call(gateway: Gateway, path: string, token?: string, method = "GET") {
  const res = await fetch(gateway.url + path, {
    method,
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

describe("token validation", () => {
  let backend: RecordingBackend;
  let oauth: OAuth2Server;
  let opaque: OAuth2Server;
  let gateway: Gateway;
  let introspections = 0;
  // Counts the gateway's introspection requests on their way to the real endpoint.
  const introspectionCounter = createServer(async (req, res) => {
    introspections++;
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const answer = await fetch(opaque.introspectionUrl, {
      method: "POST",
      headers: { authorization: String(req.headers.authorization), "content-type": String(req.headers["content-type"]) },
      body: Buffer.concat(chunks),
    });
    res.writeHead(answer.status, { "content-type": "application/json" }).end(await answer.text());
  });
  const logs = captureLogs();
  const tokensSeen: string[] = [];

  beforeAll(async () => {
    backend = await startRecordingBackend();
    oauth = await startOAuth2Server({ clients: [service] });
    opaque = await startOAuth2Server({ clients: [service, introspector], tokenFormat: "opaque" });
    gateway = createGateway({
      routes: parseRoutesFile(routesYaml, { source: "routes.yaml", env: { UP: backend.url } }),
      hmacSecret: HMAC_SECRET,
      tokens: {
        hs256: { secret: JWT_SECRET, issuer: SEED_ISSUER, audience: SEED_AUDIENCE },
        jwks: { url: oauth.jwksUrl, issuer: oauth.issuer, audience: oauth.audience },
        introspection: {
          url: `http://127.0.0.1:${await listen(introspectionCounter)}/introspect`,
          clientId: introspector.clientId,
          clientSecret: introspector.clientSecret,
        },
      },
      logger: { level: "debug", stream: logs.stream },
    });
    await gateway.listen();
  });
  afterAll(async () => {
    await gateway.close();
    await Promise.all([backend.close(), oauth.close(), opaque.close(), closeServer(introspectionCounter)]);
  });

  const remember = (token: string) => (tokensSeen.push(token), token);

  it("accepts the seed's HS256 token and forwards its claims as the seed's headers, signed", async () => {
    const token = remember(await seedToken());
    const { status } = await call(gateway, "/api/v1/agents", token);
    expect(status).toBe(200);
    const forwarded = backend.requests.at(-1)!;
    expect(forwarded.headers).toMatchObject({
      "x-client-id": SEED_ISSUER,
      "x-user-id": "user-uuid",
      "x-user-email": "user@example.com",
      "x-user-scopes": "read write write:agents",
      "x-org-id": "org-uuid",
      "x-user-role": "user",
    });
    expect(hasValidSignature(forwarded)).toBe(true);
    expect(hasValidSignature(forwarded, "another-secret-another-secret")).toBe(false);
  });

  it("answers an expired token with EXPIRED_TOKEN in the seed's envelope", async () => {
    const { status, body } = await call(gateway, "/api/v1/agents", remember(await seedToken({}, { ttlSeconds: -60 })));
    expect(status).toBe(401);
    expect(body.error).toMatchObject({ code: "EXPIRED_TOKEN", message: "Token has expired" });
    expect(body.error.request_id).toMatch(/./);
    expect(body.metadata.success).toBe(false);
    expect(new Date(body.metadata.timestamp).getTime()).not.toBeNaN();
  });

  it("refuses wrong secret, issuer, audience, alg none, garbage and a missing token with UNAUTHORIZED", async () => {
    const unsigned = [
      Buffer.from(JSON.stringify({ alg: "none" })).toString("base64url"),
      Buffer.from(JSON.stringify({ user_id: "u", iss: SEED_ISSUER, aud: SEED_AUDIENCE })).toString("base64url"),
      "",
    ].join(".");
    const bad = [
      await seedToken({}, { secret: "a-completely-different-secret-0123456789" }),
      await seedToken({}, { issuer: "someone-else" }),
      await seedToken({}, { audience: "another-api" }),
      unsigned,
      "not-a-token",
      undefined,
    ];
    for (const token of bad) {
      if (token) remember(token);
      const { status, body } = await call(gateway, "/api/v1/agents", token);
      expect([status, body.error.code]).toEqual([401, "UNAUTHORIZED"]);
    }
  });

  it("verifies OAuth2 client_credentials JWTs through the JWKS: a service call has no X-User-Id", async () => {
    const token = remember(await serviceToken(oauth, "read write:agents"));
    expect((await call(gateway, "/api/v1/agents", token, "POST")).status).toBe(200);
    const forwarded = backend.requests.at(-1)!;
    expect(forwarded.headers["x-client-id"]).toBe("billing");
    expect(forwarded.headers["x-user-id"]).toBeUndefined();
    expect(forwarded.headers["x-user-scopes"]).toBe("read write:agents");
    expect(hasValidSignature(forwarded)).toBe(true);
  });

  it("maps an end-user token's OIDC claims to the identity headers", async () => {
    const token = remember(
      await oauth.issueUserToken({ sub: "user-42", email: "ada@example.com", givenName: "Ada", familyName: "Lovelace", scopes: ["read"] }),
    );
    expect((await call(gateway, "/api/v1/agents", token)).status).toBe(200);
    expect(backend.requests.at(-1)!.headers).toMatchObject({
      "x-client-id": "web-app",
      "x-user-id": "user-42",
      "x-user-email": "ada@example.com",
      "x-user-first-name": "Ada",
      "x-user-last-name": "Lovelace",
      "x-user-scopes": "read",
    });
    const expired = remember(await oauth.issueUserToken({ sub: "user-42", ttlSeconds: -30 }));
    expect((await call(gateway, "/api/v1/agents", expired)).body.error.code).toBe("EXPIRED_TOKEN");
  });

  it("enforces route scopes (INSUFFICIENT_SCOPE) and client allow-lists (FORBIDDEN)", async () => {
    const readOnly = remember(await serviceToken(oauth, "read"));
    const before = backend.requests.length;
    const scoped = await call(gateway, "/api/v1/agents", readOnly, "POST");
    expect([scoped.status, scoped.body.error.code]).toEqual([403, "INSUFFICIENT_SCOPE"]);
    expect(scoped.body.error.message).toContain("write:agents");
    const user = remember(await oauth.issueUserToken({ sub: "u", scopes: ["write:agents"] }));
    const forbidden = await call(gateway, "/api/v1/billing", user);
    expect([forbidden.status, forbidden.body.error.code]).toEqual([403, "FORBIDDEN"]);
    expect(backend.requests.length).toBe(before);
    expect((await call(gateway, "/api/v1/billing", readOnly)).status).toBe(200);
  });

  it("a token verified and cached is held to each route's rules all the same, on every call", async () => {
    const token = remember(await serviceToken(oauth, "read"));
    const before = backend.requests.length;
    // The first call verifies it (and caches it); the next ones take the cached path.
    for (let i = 0; i < 3; i++) {
      expect((await call(gateway, "/api/v1/agents", token)).status).toBe(200);
      const scoped = await call(gateway, "/api/v1/agents", token, "POST");
      expect([scoped.status, scoped.body.error.code]).toEqual([403, "INSUFFICIENT_SCOPE"]);
    }
    const user = remember(await oauth.issueUserToken({ sub: "cached-user", scopes: ["read"] }));
    for (let i = 0; i < 3; i++) {
      expect((await call(gateway, "/api/v1/agents", user)).status).toBe(200);
      const forbidden = await call(gateway, "/api/v1/billing", user);
      expect([forbidden.status, forbidden.body.error.code]).toEqual([403, "FORBIDDEN"]);
    }
    expect(backend.requests.slice(before).map((r) => [r.method, r.url, r.headers["x-user-id"]])).toEqual([
      ...Array(3).fill(["GET", "/api/v1/agents", undefined]),
      ...Array(3).fill(["GET", "/api/v1/agents", "cached-user"]),
    ]);
  });

  it("checks opaque tokens through RFC 7662 introspection with the gateway's own credentials", async () => {
    const token = remember(await serviceToken(opaque, "read"));
    expect(token.split(".")).toHaveLength(1);
    const before = introspections;
    expect((await call(gateway, "/api/v1/agents", token)).status).toBe(200);
    expect((await call(gateway, "/api/v1/agents", token)).status).toBe(200);
    expect(introspections).toBe(before + 1); // the second call used the verified-token cache
    expect(backend.requests.at(-1)!.headers).toMatchObject({ "x-client-id": "billing", "x-user-scopes": "read" });
    const { status, body } = await call(gateway, "/api/v1/agents", "an-opaque-token-nobody-issued");
    expect([status, body.error.code]).toEqual([401, "UNAUTHORIZED"]);
  });

  it("never writes a token or secret into its logs", () => {
    const text = logs.text();
    expect(text).toContain("request completed");
    for (const token of tokensSeen) expect(text).not.toContain(token);
    for (const secret of [HMAC_SECRET, JWT_SECRET, introspector.clientSecret]) expect(text).not.toContain(secret);
  });
});

/** A JWKS endpoint serving `published` as it is at each fetch, counting the fetches. */
async function publishKeys(published: readonly JWK[]) {
  let count = 0;
  const jwksServer = createServer((_req, res) => {
    count++;
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ keys: published }));
  });
  const issuer = `http://127.0.0.1:${await listen(jwksServer)}`;
  return { jwksServer, issuer, fetches: () => count };
}

describe("JWKS key rotation", () => {
  it("fetches the key set once, and again only for an unknown kid", async () => {
    const keyA = await generateKeyPair("RS256", { extractable: true });
    const keyB = await generateKeyPair("ES256", { extractable: true });
    const published: JWK[] = [{ ...(await exportJWK(keyA.publicKey)), kid: "a", alg: "RS256" }];
    const { jwksServer, issuer, fetches } = await publishKeys(published);
    const backend = await startRecordingBackend();
    const gateway = createGateway({
      routes: parseRoutesFile(routesYaml, { source: "r", env: { UP: backend.url } }),
      hmacSecret: HMAC_SECRET,
      tokens: { jwks: { url: `${issuer}/jwks`, issuer, audience: "api", refetchCooldownMs: 0 } },
      logger: false,
    });
    await gateway.listen();
    const sign = (key: Parameters<SignJWT["sign"]>[0], kid: string, alg: string, claims = { iss: issuer, aud: "api" }) =>
      new SignJWT({ client_id: "svc" })
        .setProtectedHeader({ alg, kid })
        .setIssuer(claims.iss)
        .setAudience(claims.aud)
        .setExpirationTime("5m")
        .sign(key);
    try {
      expect((await call(gateway, "/api/v1/agents", await sign(keyA.privateKey, "a", "RS256"))).status).toBe(200);
      expect((await call(gateway, "/api/v1/agents", await sign(keyA.privateKey, "a", "RS256"))).status).toBe(200);
      expect(fetches()).toBe(1);
      published.push({ ...(await exportJWK(keyB.publicKey)), kid: "b", alg: "ES256" });
      expect((await call(gateway, "/api/v1/agents", await sign(keyB.privateKey, "b", "ES256"))).status).toBe(200);
      expect(fetches()).toBe(2);
      const unknown = await call(gateway, "/api/v1/agents", await sign(keyB.privateKey, "c", "ES256"));
      expect([unknown.status, unknown.body.error.code]).toEqual([401, "UNAUTHORIZED"]);
      for (const claims of [{ iss: "http://someone-else", aud: "api" }, { iss: issuer, aud: "another-api" }]) {
        const refused = await call(gateway, "/api/v1/agents", await sign(keyA.privateKey, "a", "RS256", claims));
        expect([claims, refused.status, refused.body.error.code]).toEqual([claims, 401, "UNAUTHORIZED"]);
      }
    } finally {
      await gateway.close();
      await backend.close();
      await closeServer(jwksServer);
    }
  });

  it("a key published just after the last fetch is seen at once (one early refetch); made-up kids refetch at most every 5 s and spend the budget", async () => {
    const keyA = await generateKeyPair("RS256", { extractable: true });
    const keyB = await generateKeyPair("RS256", { extractable: true });
    const published: JWK[] = [{ ...(await exportJWK(keyA.publicKey)), kid: "a", alg: "RS256" }];
    const { jwksServer, issuer, fetches } = await publishKeys(published);
    const backend = await startRecordingBackend();
    const gateway = createGateway({
      routes: parseRoutesFile(routesYaml, { source: "r", env: { UP: backend.url } }),
      hmacSecret: HMAC_SECRET,
      // The default cooldown: jose alone would not refetch for 30 s.
      tokens: { jwks: { url: `${issuer}/jwks`, issuer, audience: "api" } },
      authFailureLimit: { max: 3, timeWindowMs: 60_000 },
      logger: false,
    });
    await gateway.listen();
    const sign = (key: Parameters<SignJWT["sign"]>[0], kid: string) =>
      new SignJWT({ client_id: "svc" }).setProtectedHeader({ alg: "RS256", kid }).setIssuer(issuer).setAudience("api").setExpirationTime("5m").sign(key);
    try {
      expect((await call(gateway, "/api/v1/agents", await sign(keyA.privateKey, "a"))).status).toBe(200);
      published.push({ ...(await exportJWK(keyB.publicKey)), kid: "b", alg: "RS256" });
      // The rotated key, seconds after the last fetch: one early refetch, and the call goes through.
      expect((await call(gateway, "/api/v1/agents", await sign(keyB.privateKey, "b"))).status).toBe(200);
      expect(fetches()).toBe(2);
      // A spray of made-up kids (no key needed to send them): 401s, then the budget's 429s; no more fetches.
      const statuses: number[] = [];
      for (let i = 0; i < 8; i++) statuses.push((await call(gateway, "/api/v1/agents", await sign(keyB.privateKey, `made-up-${i}`))).status);
      expect(statuses).toEqual([401, 401, 401, 429, 429, 429, 429, 429]);
      expect(fetches()).toBe(2);
    } finally {
      await gateway.close();
      await backend.close();
      await closeServer(jwksServer);
    }
  });

  it("answers SERVICE_UNAVAILABLE, not UNAUTHORIZED, when the key set answers an error or garbage", async () => {
    const answers: [number, string][] = [
      [500, "oops"],
      [200, "not json"],
      [200, JSON.stringify({ keys: "none" })],
    ];
    let answer = answers[0]!;
    const jwksServer = createServer((_req, res) => res.writeHead(answer[0], { "content-type": "application/json" }).end(answer[1]));
    const issuer = `http://127.0.0.1:${await listen(jwksServer)}`;
    const gateway = createGateway({
      routes: parseRoutesFile(routesYaml, { source: "r", env: { UP: issuer } }),
      hmacSecret: HMAC_SECRET,
      tokens: { jwks: { url: `${issuer}/jwks`, issuer, audience: "api" } },
      logger: false,
    });
    await gateway.listen();
    try {
      const { privateKey } = await generateKeyPair("RS256");
      const jwt = await new SignJWT({ client_id: "svc" }).setProtectedHeader({ alg: "RS256", kid: "k" }).setIssuer(issuer).setAudience("api").sign(privateKey);
      for (answer of answers) {
        const { status, body } = await call(gateway, "/api/v1/agents", jwt);
        expect([answer[1], status, body.error.code]).toEqual([answer[1], 503, "SERVICE_UNAVAILABLE"]);
      }
    } finally {
      await gateway.close();
      await closeServer(jwksServer);
    }
  });

  it("answers SERVICE_UNAVAILABLE when neither the key set nor introspection can be reached", async () => {
    const port = await unusedPort();
    const gateway = createGateway({
      routes: parseRoutesFile(routesYaml, { source: "r", env: { UP: `http://127.0.0.1:${port}` } }),
      hmacSecret: HMAC_SECRET,
      tokens: {
        jwks: { url: `http://127.0.0.1:${port}/jwks`, issuer: "x", audience: "y" },
        introspection: { url: `http://127.0.0.1:${port}/introspect`, clientId: "g", clientSecret: "s" },
      },
      logger: false,
    });
    await gateway.listen();
    try {
      const { privateKey } = await generateKeyPair("RS256");
      const jwt = await new SignJWT({}).setProtectedHeader({ alg: "RS256", kid: "k" }).sign(privateKey);
      for (const token of [jwt, "opaque-token"]) {
        const { status, body } = await call(gateway, "/api/v1/agents", token);
        expect([status, body.error.code]).toEqual([503, "SERVICE_UNAVAILABLE"]);
      }
    } finally {
      await gateway.close();
    }
  });
});
