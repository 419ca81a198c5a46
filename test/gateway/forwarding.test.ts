import { randomBytes } from "node:crypto";
import { createServer, request as httpRequest } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGateway, parseRoutesFile, type Gateway } from "../../packages/gateway/src/index.js";
import { bodySha256 } from "../../src/signing/index.js";
import { closeServer, gatewayHeaderNames, hasValidSignature, HMAC_SECRET, JWT_SECRET, listen, SEED_AUDIENCE, SEED_ISSUER, seedToken, startRecordingBackend, unusedPort, SIGNED_GATEWAY_HEADERS, type RecordingBackend, DOCS_AND_AGENT_ROUTES } from "../support/gateway.js";

const yaml = `version: "1.0"
public_paths: [/api/v1/docs]
routes:
${DOCS_AND_AGENT_ROUTES}  - path: /api/v1/slow
    method: GET
    proxy_upstream: $SLOW
    timeout: 300ms
  - path: /api/v1/down
    method: POST
    proxy_upstream: $DOWN
backends:
  echo:
    upstream: $UP/base
  down:
    upstream: $DOWN
  h2:
    upstream: $UP2
    http2: true
`;

/** Sends exactly the request-target given (fetch would normalise it). */
function rawRequest(
  url: string,
  target: string,
  options: { method?: string; headers?: Record<string, string | string[]>; body?: Buffer } = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    // Node frames a GET or DELETE body only when told its length.
    const length = options.body && { "content-length": String(options.body.length) };
    const req = httpRequest(url + target, { method: options.method ?? "GET", headers: { ...options.headers, ...length } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.path = target;
    req.on("error", reject);
    req.end(options.body);
  });
}

describe("forwarding", () => {
  let backend: RecordingBackend;
  let h2Backend: RecordingBackend;
  let gateway: Gateway;
  let token: string;
  const neverAnswers = createServer(() => {});
  let downUrl: string;

  beforeAll(async () => {
    backend = await startRecordingBackend();
    h2Backend = await startRecordingBackend({ http2: true });
    const slowPort = await listen(neverAnswers);
    downUrl = `http://127.0.0.1:${await unusedPort()}`;
    gateway = createGateway({
      routes: parseRoutesFile(yaml, {
        source: "routes.yaml",
        env: { UP: backend.url, UP2: h2Backend.url, SLOW: `http://127.0.0.1:${slowPort}`, DOWN: downUrl },
      }),
      hmacSecret: HMAC_SECRET,
      tokens: { hs256: { secret: JWT_SECRET, issuer: SEED_ISSUER, audience: SEED_AUDIENCE } },
      bodyLimit: 64 * 1024,
      corsOrigins: ["https://app.example.com"],
      logger: false,
    });
    await gateway.listen();
    token = await seedToken();
  });
  afterAll(async () => {
    await gateway.close();
    await Promise.all([backend.close(), h2Backend.close(), closeServer(neverAnswers)]);
  });

  it("strips every identity header a client sends and sets the gateway's own (spoofing)", async () => {
    const serviceToken = await seedToken({ user_id: undefined, org_id: undefined, role: undefined, email: undefined, client_id: "svc" });
    const res = await rawRequest(gateway.url, "/api/v1/agents/7", {
      method: "PUT",
      headers: {
        authorization: `Bearer ${serviceToken}`,
        "x-user-id": "admin",
        "X-User-Email": "root@example.com",
        "x-client-id": "trusted-service",
        "x-gateway-timestamp": "1",
        "x-gateway-signature": "0".repeat(64),
        "x-org-id": "other-org",
        "x-user-role": "admin",
        "x-user-scopes": "admin",
        "content-type": "application/json",
      },
      body: Buffer.from("{}"),
    });
    expect(res.status).toBe(200);
    const forwarded = backend.requests.at(-1)!;
    expect(forwarded.headers["x-client-id"]).toBe("svc");
    for (const header of ["x-user-id", "x-user-email", "x-org-id", "x-user-role"]) {
      expect(forwarded.headers[header]).toBeUndefined();
    }
    expect(forwarded.headers["x-user-scopes"]).toBe("read write write:agents");
    expect(gatewayHeaderNames(forwarded)).toEqual(SIGNED_GATEWAY_HEADERS);
    expect(hasValidSignature(forwarded)).toBe(true);
  });

  it("strips /backend/<service>, keeps the query, and signs the forwarded target and exact body bytes", async () => {
    const body = randomBytes(4096);
    const res = await rawRequest(gateway.url, "/backend/echo/pkg.v1.Service/Method?b=%20x&a=1", {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/proto" },
      body,
    });
    expect(res.status).toBe(200);
    const forwarded = backend.requests.at(-1)!;
    expect(forwarded.url).toBe("/base/pkg.v1.Service/Method?b=%20x&a=1");
    expect(forwarded.body.equals(body)).toBe(true);
    expect(bodySha256(forwarded.body)).toBe(bodySha256(body));
    expect(forwarded.headers["content-type"]).toBe("application/proto");
    expect(hasValidSignature(forwarded)).toBe(true);
  });

  it("forwards to an HTTP/2 upstream what reaches it intact, and refuses the rest", async () => {
    const auth = { authorization: `Bearer ${token}` };
    const body = randomBytes(1024);
    const post = await rawRequest(gateway.url, "/backend/h2/pkg.S/M", { method: "POST", headers: { ...auth, "content-type": "application/proto" }, body });
    expect(post.status).toBe(200);
    expect(h2Backend.requests.at(-1)!.body.equals(body)).toBe(true);
    expect(hasValidSignature(h2Backend.requests.at(-1)!)).toBe(true);
    // fastify reads no GET body: its framing headers must not reach the upstream either.
    const get = await rawRequest(gateway.url, "/backend/h2/r", { headers: { ...auth, "content-type": "text/plain" }, body: Buffer.from("ignored") });
    expect(get.status).toBe(200);
    expect(h2Backend.requests.at(-1)!.body.length).toBe(0);
    expect(hasValidSignature(h2Backend.requests.at(-1)!)).toBe(true);
    expect((await rawRequest(gateway.url, "/backend/h2/r", { method: "DELETE", headers: auth })).status).toBe(200);
    const before = h2Backend.requests.length;
    const deleteBody = await rawRequest(gateway.url, "/backend/h2/r", { method: "DELETE", headers: { ...auth, "content-type": "text/plain" }, body: Buffer.from("x") });
    expect([deleteBody.status, JSON.parse(deleteBody.body).error.message]).toEqual([400, "This backend takes no DELETE request body"]);
    const head = await rawRequest(gateway.url, "/backend/h2/r", { method: "HEAD", headers: auth });
    expect(head.status).toBe(400);
    expect(h2Backend.requests.length).toBe(before);
  });

  it("signs an empty-but-present query as Rack does, and forwards the bare service root", async () => {
    for (const [target, upstream] of [
      ["/backend/echo/x?", "/base/x?"],
      ["/backend/echo/", "/base/"],
    ]) {
      expect((await rawRequest(gateway.url, target!, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
      const forwarded = backend.requests.at(-1)!;
      expect(forwarded.url).toBe(upstream);
      expect(hasValidSignature(forwarded)).toBe(true);
    }
  });

  it("refuses unknown services, path traversal and bodies over the limit before reaching the backend", async () => {
    const before = backend.requests.length;
    const auth = { authorization: `Bearer ${token}` };
    const unknown = await rawRequest(gateway.url, "/backend/nope/x", { headers: auth });
    expect([unknown.status, JSON.parse(unknown.body).error.code]).toEqual([404, "NOT_FOUND"]);
    for (const target of ["/backend/echo/a/%2e%2e/%2e%2e/secret", "/backend/echo/a/../../secret", "/backend/echo/a\\..\\x", "/backend/echo//evil.example/x"]) {
      const traversal = await rawRequest(gateway.url, target, { headers: auth });
      expect([target, traversal.status, JSON.parse(traversal.body).error.code]).toEqual([target, 400, "BAD_REQUEST"]);
    }
    const big = await rawRequest(gateway.url, "/backend/echo/upload", {
      method: "POST",
      headers: { ...auth, "content-type": "application/octet-stream" },
      body: Buffer.alloc(64 * 1024 + 1),
    });
    expect([big.status, JSON.parse(big.body).error.code]).toEqual([413, "PAYLOAD_TOO_LARGE"]);
    expect(backend.requests.length).toBe(before);
  });

  it("answers 503 SERVICE_UNAVAILABLE when the upstream is down, in REST and Connect form", async () => {
    const rest = await rawRequest(gateway.url, "/api/v1/down", {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: Buffer.from("{}"),
    });
    expect([rest.status, JSON.parse(rest.body).error.code]).toEqual([503, "SERVICE_UNAVAILABLE"]);
    expect(rest.body).not.toContain("ECONNREFUSED");
    expect(rest.body).not.toContain(downUrl);
    const connect = await rawRequest(gateway.url, "/backend/down/pkg.S/M", {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "connect-protocol-version": "1" },
      body: Buffer.from("{}"),
    });
    expect(connect.status).toBe(503);
    expect(JSON.parse(connect.body)).toEqual({ code: "unavailable", message: "Upstream service is unavailable" });
  });

  it("gives up after the route's timeout with 504 GATEWAY_TIMEOUT", async () => {
    const res = await rawRequest(gateway.url, "/api/v1/slow", { headers: { authorization: `Bearer ${token}` } });
    expect([res.status, JSON.parse(res.body).error.code]).toEqual([504, "GATEWAY_TIMEOUT"]);
  });

  it("propagates a sane X-Request-ID to the backend and back, and generates one otherwise", async () => {
    const given = await rawRequest(gateway.url, "/backend/echo/r", {
      headers: { authorization: `Bearer ${token}`, "x-request-id": "req-abc123" },
    });
    expect(given.headers["x-request-id"]).toBe("req-abc123");
    expect(backend.requests.at(-1)!.headers["x-request-id"]).toBe("req-abc123");
    const invalid = await rawRequest(gateway.url, "/backend/echo/r", {
      headers: { authorization: `Bearer ${token}`, "x-request-id": "bad id\twith spaces" },
    });
    expect(invalid.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
    expect(backend.requests.at(-1)!.headers["x-request-id"]).toBe(invalid.headers["x-request-id"]);
    const refused = await rawRequest(gateway.url, "/backend/echo/r", { headers: { "x-request-id": "req-401" } });
    expect(JSON.parse(refused.body).error.request_id).toBe("req-401");
    // An upstream's own X-Request-ID never replaces the gateway's, which the caller finds in the gateway's log.
    const respond = backend.respond;
    backend.respond = (req, res) => {
      res.setHeader("x-request-id", "upstream-own-id");
      respond(req, res);
    };
    try {
      const answered = await rawRequest(gateway.url, "/backend/echo/r", { headers: { authorization: `Bearer ${token}`, "x-request-id": "req-def456" } });
      expect(answered.headers["x-request-id"]).toBe("req-def456");
    } finally {
      backend.respond = respond;
    }
  });

  it("signs tokenless calls to public routes as the anonymous client", async () => {
    expect((await rawRequest(gateway.url, "/api/v1/docs")).status).toBe(200);
    const forwarded = backend.requests.at(-1)!;
    expect(forwarded.headers["x-client-id"]).toBe("anonymous");
    expect(forwarded.headers["x-user-id"]).toBeUndefined();
    expect(hasValidSignature(forwarded)).toBe(true);
  });

  it("answers each protocol's callers in their own error format", async () => {
    const json = { "content-type": "application/json" };
    const unary = await rawRequest(gateway.url, "/backend/echo/pkg.S/M", {
      method: "POST",
      headers: { ...json, "connect-protocol-version": "1" },
      body: Buffer.from("{}"),
    });
    expect([unary.status, JSON.parse(unary.body)]).toEqual([401, { code: "unauthenticated", message: "Missing or invalid token" }]);
    const get = await rawRequest(gateway.url, "/backend/echo/pkg.S/M?connect=v1&encoding=json&message=%7B%7D");
    expect([get.status, JSON.parse(get.body).code]).toEqual([401, "unauthenticated"]);
    const stream = await rawRequest(gateway.url, "/backend/echo/pkg.S/M", {
      method: "POST",
      headers: { "content-type": "application/connect+json" },
      body: Buffer.from([0, 0, 0, 0, 2, 123, 125]),
    });
    expect(stream.status).toBe(200);
    expect(stream.headers["content-type"]).toBe("application/connect+json");
    const envelope = Buffer.from(stream.body, "latin1");
    expect(envelope[0]).toBe(2);
    expect(JSON.parse(envelope.subarray(5).toString())).toEqual({
      error: { code: "unauthenticated", message: "Missing or invalid token" },
    });
    const grpcWeb = await rawRequest(gateway.url, "/backend/echo/pkg.S/M", {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto" },
      body: Buffer.from([0, 0, 0, 0, 0]),
    });
    expect(grpcWeb.status).toBe(200);
    expect(grpcWeb.headers["grpc-status"]).toBe("16");
    expect(grpcWeb.headers["grpc-message"]).toBe("Missing%20or%20invalid%20token");
  });

  it("runs CORS before token validation: preflights pass, refusals carry CORS headers", async () => {
    const origin = "https://app.example.com";
    const preflight = await rawRequest(gateway.url, "/backend/echo/pkg.S/M", {
      method: "OPTIONS",
      headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "authorization" },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers["access-control-allow-origin"]).toBe(origin);
    const refused = await rawRequest(gateway.url, "/backend/echo/pkg.S/M", { headers: { origin } });
    expect(refused.status).toBe(401);
    expect(refused.headers["access-control-allow-origin"]).toBe(origin);
    expect(refused.headers["access-control-expose-headers"]).toContain("x-request-id");
    const stranger = await rawRequest(gateway.url, "/backend/echo/pkg.S/M", { headers: { origin: "https://evil.example" } });
    expect(stranger.headers["access-control-allow-origin"]).toBeUndefined();
  });

  it("serves /health and /ready without a token", async () => {
    expect(JSON.parse((await rawRequest(gateway.url, "/health")).body)).toEqual({ status: "ok" });
    expect(JSON.parse((await rawRequest(gateway.url, "/ready")).body)).toEqual({ status: "ready" });
  });
});
