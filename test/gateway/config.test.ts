import { describe, expect, it } from "vitest";
import { createGateway, GatewayConfigError, parseRoutesFile, type GatewayConfig } from "../../packages/gateway/src/index.js";
import { captureLogs, configError, HMAC_SECRET, JWT_SECRET, SEED_AUDIENCE, SEED_ISSUER } from "../support/gateway.js";

const routes = parseRoutesFile(`version: "1.0"\nbackends:\n  echo:\n    upstream: http://127.0.0.1:9\n`, { source: "r" });
const valid: GatewayConfig = {
  routes,
  hmacSecret: HMAC_SECRET,
  tokens: { hs256: { secret: JWT_SECRET, issuer: SEED_ISSUER, audience: SEED_AUDIENCE } },
  logger: false,
};

describe("gateway configuration", () => {
  it("names the bad option and never echoes a secret", () => {
    const cases: [Partial<GatewayConfig> | Record<string, unknown>, RegExp][] = [
      [{ hmacSecret: "short-secret" }, /`hmacSecret` must be a string of at least 16 characters/],
      [{ tokens: {} }, /`tokens` must configure at least one of hs256, jwks or introspection \(set JWT_SECRET, JWKS_URL or INTROSPECTION_URL\)/],
      [{ tokens: { hs256: { secret: "too-short-jwt-secret", issuer: "i", audience: "a" } } }, /`tokens\.hs256\.secret` must be at least 32/],
      [{ tokens: { hs256: { secret: JWT_SECRET, issuer: "", audience: "a" } } }, /`tokens\.hs256\.issuer` is required/],
      [{ tokens: { jwks: { url: "not a url", issuer: "i", audience: "a" } } }, /`tokens\.jwks\.url` must be an http\(s\) URL/],
      [{ tokens: { jwks: { url: "http://x/jwks", issuer: "i", audience: [] } } }, /`tokens\.jwks\.audience` is required/],
      [{ tokens: { introspection: { url: "http://x/i", clientId: "g", clientSecret: "" } } }, /`tokens\.introspection\.clientSecret` is required/],
      [{ rateLimit: { max: 0 } }, /`rateLimit\.max` must be a positive integer/],
      [{ rateLimit: { max: 5, redisUrl: "http://redis" } }, /`rateLimit\.redisUrl` must be a redis:\/\//],
      [{ bodyLimit: -1 }, /`bodyLimit` must be a positive integer/],
      [{ anonymousClientId: "a|b" }, /`anonymousClientId` must be/],
      [{ routes: 42 }, /`routes` must be a routes\.yaml path/],
      [{ logger: { level: "verbose" } }, /`logger\.level` must be one of fatal, error, warn, info, debug, trace, silent \(set LOG_LEVEL\)/],
    ];
    for (const [override, message] of cases) {
      const error = configError({ ...valid, ...override });
      expect(error.message).toMatch(message);
      for (const text of [error.message, String(error), error.stack ?? ""]) {
        for (const secret of ["short-secret", "too-short-jwt-secret", HMAC_SECRET, JWT_SECRET]) {
          expect(text).not.toContain(secret);
        }
      }
    }
  });

  it("loads routes from a path and reports its problems with file and line", () => {
    expect(() => createGateway({ ...valid, routes: "/nonexistent/routes.yaml" })).toThrow(
      "/nonexistent/routes.yaml: cannot read the routes file (ENOENT)",
    );
  });

  it("recovers from a failing handler with INTERNAL_ERROR and no internals in the answer", async () => {
    const logs = captureLogs();
    const gateway = createGateway({ ...valid, logger: { stream: logs.stream } });
    gateway.app.get("/boom", async () => {
      throw new Error("database password rejected at 10.0.0.7");
    });
    await gateway.listen();
    try {
      const res = await fetch(`${gateway.url}/boom`);
      const body = await res.text();
      expect(res.status).toBe(500);
      expect(JSON.parse(body).error).toMatchObject({ code: "INTERNAL_ERROR", message: "Internal gateway error" });
      expect(body).not.toContain("10.0.0.7");
      expect(body).not.toContain("at ");
      expect(logs.text()).toContain("database password rejected");
    } finally {
      await gateway.close();
    }
  });
});
