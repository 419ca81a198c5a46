// The gateway's options are checked in one place (resolveGatewayConfig):
// every option, including those that used to go unchecked, is refused with a
// GatewayConfigError naming it (never its value) and a stable `code`; and
// every error class of the project carries its `code`.
import { describe, expect, it } from "vitest";
import * as errors from "../../src/errors/index.js";
import * as protocol from "../../src/protocol/index.js";
import { ConfigurationError as ClientConfigurationError } from "../../src/client/index.js";
import { GatewaySigningError as SigningGatewaySigningError } from "../../src/signing/index.js";
import { ReplayStoreFullError as ServerReplayStoreFullError } from "../../src/server/index.js";
import {
  createGateway,
  GatewayConfigError,
  parseRoutesFile,
  RoutesFileError,
  type GatewayConfig,
} from "../../packages/gateway/src/index.js";
import { configError, HMAC_SECRET, JWT_SECRET, SEED_AUDIENCE, SEED_ISSUER } from "../support/gateway.js";

const routes = parseRoutesFile(`version: "1.0"\nbackends:\n  echo:\n    upstream: http://127.0.0.1:9\n`, { source: "r" });
const hs256 = { secret: JWT_SECRET, issuer: SEED_ISSUER, audience: SEED_AUDIENCE };
const valid: GatewayConfig = { routes, hmacSecret: HMAC_SECRET, tokens: { hs256 }, logger: false };
const INTROSPECTION_SECRET = "introspection-Secret-Never-Shown-42";
const introspection = { url: "http://127.0.0.1:9/introspect", clientId: "gw", clientSecret: INTROSPECTION_SECRET };

describe("every gateway option is validated", () => {
  const cases: [string, Record<string, unknown>][] = [
    ["cache", { cache: "big" }],
    ["cache.maxBytes", { cache: { maxBytes: 0 } }],
    ["cache.maxEntryBytes", { cache: { maxEntryBytes: -1 } }],
    ["cache.maxEntryBytes", { cache: { maxBytes: 10, maxEntryBytes: 11 } }],
    ["corsOrigins", { corsOrigins: "https://a.example" }],
    ["corsOrigins", { corsOrigins: ["not an origin"] }],
    ["corsOrigins", { corsOrigins: ["https://a.example/path"] }],
    ["claims", { claims: "sub" }],
    ["claims", { claims: { nickname: ["nick"] } }],
    ["claims.userId", { claims: { userId: [] } }],
    ["claims.email", { claims: { email: "email" } }],
    ["tokens.clockToleranceSeconds", { tokens: { hs256, clockToleranceSeconds: -1 } }],
    ["tokens.clockToleranceSeconds", { tokens: { hs256, clockToleranceSeconds: "5" } }],
    ["tokens.cacheMs", { tokens: { hs256, cacheMs: -5 } }],
    ["tokens.jwks.timeoutMs", { tokens: { jwks: { url: "http://x/jwks", issuer: "i", audience: "a", timeoutMs: 0 } } }],
    ["tokens.jwks.maxAgeMs", { tokens: { jwks: { url: "http://x/jwks", issuer: "i", audience: "a", maxAgeMs: 1.5 } } }],
    ["tokens.jwks.refetchCooldownMs", { tokens: { jwks: { url: "http://x/jwks", issuer: "i", audience: "a", refetchCooldownMs: -1 } } }],
    ["tokens.jwks.failureCooldownMs", { tokens: { jwks: { url: "http://x/jwks", issuer: "i", audience: "a", failureCooldownMs: "5s" } } }],
    ["tokens.jwks.algorithms", { tokens: { jwks: { url: "http://x/jwks", issuer: "i", audience: "a", algorithms: [] } } }],
    ["tokens.introspection.timeoutMs", { tokens: { introspection: { ...introspection, timeoutMs: 0 } } }],
    ["tokens.introspection.negativeCacheMs", { tokens: { introspection: { ...introspection, negativeCacheMs: -1 } } }],
    ["tokens.introspection.audience", { tokens: { introspection: { ...introspection, audience: [] } } }],
    ["tokens.introspection.url", { tokens: { introspection: { ...introspection, url: `http://gw:${INTROSPECTION_SECRET}@x/i` } } }],
    ["drainTimeoutMs", { drainTimeoutMs: 2 ** 31 }],
    ["rateLimit", { rateLimit: 5 }],
    ["rateLimit.onRedisFailure", { rateLimit: { max: 5, onRedisFailure: "maybe" } }],
    ["authFailureLimit", { authFailureLimit: "20" }],
    ["logger", { logger: "info" }],
    ["logger.stream", { logger: { stream: {} } }],
  ];

  it.each(cases)("%s: %j", (option, override) => {
    const error = configError({ ...valid, ...override });
    expect(error.option).toBe(option);
    expect(error.code).toBe("ERR_GATEWAY_CONFIG");
    expect(error).toBeInstanceOf(errors.ConfigurationError);
    expect(error.message).toContain(`\`${option}\``);
    for (const text of [error.message, String(error), error.stack ?? ""]) {
      expect(text).not.toContain(INTROSPECTION_SECRET);
      expect(text).not.toContain(JWT_SECRET);
    }
  });

  it("a secret-bearing option's error never contains the secret", () => {
    for (const [option, override, secret] of [
      ["hmacSecret", { hmacSecret: "short-Secret-1" }, "short-Secret-1"],
      ["tokens.hs256.secret", { tokens: { hs256: { ...hs256, secret: "not-32-chars-Secret" } } }, "not-32-chars-Secret"],
      ["tokens.hs256.secret", { tokens: { hs256: { ...hs256, secret: 12345678901234567890 } } }, "12345678901234567890"],
    ] as const) {
      const error = configError({ ...valid, ...override });
      expect(error.option).toBe(option);
      for (const text of [error.message, String(error), error.stack ?? ""]) expect(text).not.toContain(String(secret));
    }
  });

  it("accepts good values of the newly checked options", () => {
    const gateway = createGateway({
      ...valid,
      cache: { maxBytes: 1024, maxEntryBytes: 512 },
      corsOrigins: ["https://a.example", "http://127.0.0.1:3000"],
      claims: { userId: ["uid", "sub"] },
      tokens: { hs256, clockToleranceSeconds: 0, cacheMs: 0 },
      drainTimeoutMs: 0,
    });
    void gateway.close();
  });
});

describe("one family of configuration errors, each with its code", () => {
  it("every error class has a stable code", () => {
    const cases: [Error & { code: string }, string][] = [
      [new errors.ConfigurationError("x", "is bad."), "ERR_CONFIGURATION"],
      [new errors.MissingHmacSecretError(), "ERR_MISSING_HMAC_SECRET"],
      [new errors.InvalidResolveUserError(), "ERR_INVALID_RESOLVE_USER"],
      [new errors.InvalidOnMissingUserError(), "ERR_INVALID_ON_MISSING_USER"],
      [new errors.InvalidOptionError("x", "a number"), "ERR_INVALID_OPTION"],
      [new errors.GatewayConfigError("x", "is bad"), "ERR_GATEWAY_CONFIG"],
      [new errors.RoutesFileError("r.yaml", [{ line: 1, message: "bad" }]), "ERR_ROUTES_FILE"],
      [new errors.GatewaySigningError("bad"), "ERR_GATEWAY_SIGNING"],
      [new errors.ReplayStoreFullError(1), "ERR_REPLAY_STORE_FULL"],
      [new errors.ResponseTooLargeError(1, 200, {}), "ERR_RESPONSE_TOO_LARGE"],
      [new errors.Http2StreamResetError(8), "ERR_HTTP2_STREAM_RESET_BY_PEER"],
    ];
    for (const [error, code] of cases) expect(error.code).toBe(code);
  });

  it("RoutesFileError is a ConfigurationError and keeps its message format", () => {
    const error = new RoutesFileError("routes.yaml", [
      { line: 3, message: "path is required" },
      { line: 7, message: "timeout is not a duration" },
    ]);
    expect(error).toBeInstanceOf(errors.ConfigurationError);
    expect(error).toBeInstanceOf(ClientConfigurationError);
    expect(error.message).toBe("routes.yaml:3: path is required\nroutes.yaml:7: timeout is not a duration");
    expect(error.source).toBe("routes.yaml");
    expect(error.problems).toHaveLength(2);
    expect(() => parseRoutesFile("version: 2\n", { source: "r.yaml" })).toThrow(errors.RoutesFileError);
  });

  it("the same classes from every entry", () => {
    expect(GatewayConfigError).toBe(errors.GatewayConfigError);
    expect(RoutesFileError).toBe(errors.RoutesFileError);
    expect(SigningGatewaySigningError).toBe(errors.GatewaySigningError);
    expect(ServerReplayStoreFullError).toBe(errors.ReplayStoreFullError);
    expect(ClientConfigurationError).toBe(errors.ConfigurationError);
  });
});

describe("the assertion vocabulary (connect-gateway/protocol)", () => {
  const thrown = (f: () => unknown): errors.ConfigurationError => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(errors.InvalidOptionError);
      return e as errors.ConfigurationError;
    }
    throw new Error("expected an InvalidOptionError");
  };

  it("names the option, never the value", () => {
    const secret = "s3cret-Value-Never-Echoed";
    for (const [option, f] of [
      ["url", () => protocol.assertHttpUrl("url", `https://u:${secret}@x.example/`)],
      ["url", () => protocol.assertHttpUrl("url", `ftp://${secret}`)],
      ["n", () => protocol.assertPositiveInteger("n", secret)],
      ["ms", () => protocol.assertDurationMs("ms", 2 ** 31)],
      ["scope", () => protocol.assertScopeToken("scope", `a "${secret}"`)],
      ["fn", () => protocol.assertFunction("fn", secret)],
      ["flag", () => protocol.assertBoolean("flag", secret)],
      ["key", () => protocol.assertNonEmptyString("key", secret, { minLength: 64 })],
    ] as const) {
      const error = thrown(f);
      expect(error.option).toBe(option);
      expect(error.code).toBe("ERR_INVALID_OPTION");
      expect(error.message).not.toContain(secret);
    }
  });

  it("returns what it checked", () => {
    expect(protocol.assertHttpUrl("u", "https://x.example/a").pathname).toBe("/a");
    expect(protocol.assertPositiveInteger("n", 0, { allowZero: true })).toBe(0);
    expect(() => protocol.assertPositiveInteger("n", 11, { max: 10 })).toThrow(errors.InvalidOptionError);
    expect(protocol.assertScopeToken("s", "read:all")).toBe("read:all");
    expect(protocol.isScopeToken("a\\b")).toBe(false);
  });
});
