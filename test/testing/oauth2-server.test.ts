import { createRemoteJWKSet, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startOAuth2Server, type OAuth2Server } from "../../src/testing/oauth2-server.js";

const client = { clientId: "billing", clientSecret: "s3cr+t/:% x", scopes: ["read", "write"] };

function basic(id: string, secret: string): string {
  const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, "+");
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString("base64")}`;
}

async function token(server: OAuth2Server, secret = client.clientSecret, scope?: string) {
  const body = new URLSearchParams({ grant_type: "client_credentials" });
  if (scope) body.set("scope", scope);
  const res = await fetch(server.tokenUrl, {
    method: "POST",
    headers: { authorization: basic(client.clientId, secret) },
    body,
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe("startOAuth2Server (jwt)", () => {
  let server: OAuth2Server;
  beforeAll(async () => {
    server = await startOAuth2Server({ clients: [client], accessTokenTtlSeconds: 120 });
  });
  afterAll(() => server.close());

  it("issues client_credentials JWTs verifiable through its JWKS, and counts token requests", async () => {
    const before = server.tokenRequests;
    const { status, json } = await token(server, client.clientSecret, "read");
    expect(status).toBe(200);
    expect(json).toMatchObject({ token_type: "Bearer", expires_in: 120, scope: "read" });
    const { payload } = await jwtVerify(String(json.access_token), createRemoteJWKSet(new URL(server.jwksUrl)), {
      issuer: server.issuer,
      audience: server.audience,
    });
    expect(payload).toMatchObject({ client_id: "billing", scope: "read" });
    expect(server.tokenRequests).toBe(before + 1);
  });

  it("answers a wrong secret with invalid_client", async () => {
    const { status, json } = await token(server, "wrong");
    expect(status).toBe(401);
    expect(json.error).toBe("invalid_client");
  });

  it("mints user tokens with the same key", async () => {
    const jwt = await server.issueUserToken({ sub: "user-1", email: "a@b.c", scopes: ["read"] });
    const { payload } = await jwtVerify(jwt, createRemoteJWKSet(new URL(server.jwksUrl)), {
      issuer: server.issuer,
      audience: server.audience,
    });
    expect(payload).toMatchObject({ sub: "user-1", email: "a@b.c", scope: "read", client_id: "web-app" });
  });
});

describe("startOAuth2Server (a client without scopes)", () => {
  it("issues it scope-less tokens", async () => {
    const server = await startOAuth2Server({ clients: [{ clientId: "plain", clientSecret: "p" }] });
    try {
      const res = await fetch(server.tokenUrl, {
        method: "POST",
        headers: { authorization: basic("plain", "p") },
        body: new URLSearchParams({ grant_type: "client_credentials" }),
      });
      expect(res.status).toBe(200);
      expect(await res.json()).not.toHaveProperty("scope");
    } finally {
      await server.close();
    }
  });
});

describe("startOAuth2Server (opaque)", () => {
  it("issues opaque tokens that introspection recognises", async () => {
    const server = await startOAuth2Server({ clients: [client], tokenFormat: "opaque" });
    try {
      const { json } = await token(server, client.clientSecret, "write");
      const access = String(json.access_token);
      expect(access.split(".")).toHaveLength(1);
      const res = await fetch(server.introspectionUrl, {
        method: "POST",
        headers: { authorization: basic(client.clientId, client.clientSecret) },
        body: new URLSearchParams({ token: access }),
      });
      expect(await res.json()).toMatchObject({ active: true, client_id: "billing", scope: "write" });
    } finally {
      await server.close();
    }
  });
});

describe("startOAuth2Server's console", () => {
  it("drops oidc-provider's two expected start-up warnings and nothing else", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    try {
      const server = await startOAuth2Server({ clients: [client] });
      console.warn("a warning of the caller's own");
      await server.close();
      expect(warn.mock.calls.map((args) => String(args[0]))).toEqual(["a warning of the caller's own"]);
    } finally {
      warn.mockRestore();
    }
  });
});
