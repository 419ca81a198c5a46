// CORS, on a real gateway on loopback: preflights allow every method some
// route accepts, with Access-Control-Max-Age; answers expose the headers
// Connect and gRPC-web browser clients need; credentials only when asked;
// an origin not allowed gets no CORS header. Options from createGateway,
// routes.yaml (`cors:`) and the environment, each checked.
import { createServer } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createGateway,
  GatewayConfigError,
  gatewayConfigFromEnv,
  parseRoutesFile,
  RoutesFileError,
  type Gateway,
  type GatewayConfig,
} from "../../packages/gateway/src/index.js";
import { rawRequest, type RawResponse } from "../support/raw-request.js";
import { captureLogs, closeServer, listen, HMAC_SECRET, JWT_SECRET, SEED_AUDIENCE, SEED_ISSUER, seedToken, startRecordingBackend, startSeedGateway, type RecordingBackend } from "../support/gateway.js";

const APP = "https://app.example.com";
const OTHER = "https://evil.example.com";

const routesYaml = (extra = "") => `version: "1.0"
routes:
  - path: /api/v1/items
    method: GET
    proxy_upstream: $REST_URL
  - path: /api/v1/items/{id}
    method: PUT
    proxy_upstream: $REST_URL
  - path: /api/v1/items/{id}
    method: PATCH
    proxy_upstream: $REST_URL
  - path: /api/v1/items/{id}
    method: DELETE
    proxy_upstream: $REST_URL
${extra}`;

let rest: RecordingBackend;
const gateways: Gateway[] = [];
beforeAll(async () => {
  rest = await startRecordingBackend();
});
afterAll(async () => {
  await Promise.all(gateways.map((g) => g.close()));
  await rest?.close();
});

async function gatewayWith(options: Partial<GatewayConfig>, yamlExtra = ""): Promise<Gateway> {
  const gateway = await startSeedGateway(routesYaml(yamlExtra), { REST_URL: rest.url }, options);
  gateways.push(gateway);
  return gateway;
}

const portOf = (gateway: Gateway) => Number(new URL(gateway.url).port);

function preflight(gateway: Gateway, origin: string, method: string, path = "/api/v1/items/7"): Promise<RawResponse> {
  return rawRequest(portOf(gateway), {
    method: "OPTIONS",
    path,
    headers: [
      ["origin", origin],
      ["access-control-request-method", method],
      ["access-control-request-headers", "authorization, content-type"],
    ],
  });
}

async function get(gateway: Gateway, origin: string): Promise<RawResponse> {
  return rawRequest(portOf(gateway), {
    method: "GET",
    path: "/api/v1/items",
    headers: [
      ["origin", origin],
      ["authorization", `Bearer ${await seedToken()}`],
    ],
  });
}

const listOf = (value: string | string[] | undefined) =>
  String(value ?? "")
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);

describe("CORS with the defaults", () => {
  let gateway: Gateway;
  beforeAll(async () => {
    gateway = await gatewayWith({ corsOrigins: [APP] });
  });

  it.each(["PUT", "PATCH", "DELETE", "GET"])("a preflight for %s is allowed, with Max-Age 7200", async (method) => {
    const res = await preflight(gateway, APP, method);
    expect(res.status).toBe(204);
    expect(res.headers["access-control-allow-origin"]).toBe(APP);
    expect(listOf(res.headers["access-control-allow-methods"])).toContain(method.toLowerCase());
    // What it asked for, and the headers of every wire a page may use: one cached preflight serves them all.
    expect(listOf(res.headers["access-control-allow-headers"])).toEqual([
      "authorization",
      "content-type",
      "connect-protocol-version",
      "connect-timeout-ms",
      "connect-content-encoding",
      "connect-accept-encoding",
      "x-grpc-web",
      "x-user-agent",
      "grpc-timeout",
      "x-request-id",
    ]);
    expect(res.headers["access-control-max-age"]).toBe("7200");
    expect(res.headers["access-control-allow-credentials"]).toBeUndefined();
    expect(listOf(res.headers.vary)).toContain("origin");
  });

  it("allows exactly the methods routes accept: a backend adds every method it takes", async () => {
    const routesOnly = await gatewayWith({ corsOrigins: [APP] });
    expect(listOf((await preflight(routesOnly, APP, "PUT")).headers["access-control-allow-methods"])).toEqual([
      "get",
      "head",
      "put",
      "patch",
      "delete",
    ]);
    const getOnly = await startSeedGateway(
      `version: "1.0"\nroutes:\n  - path: /a\n    method: GET\n    proxy_upstream: ${rest.url}\n`,
      {},
      { corsOrigins: [APP] },
    );
    gateways.push(getOnly);
    expect(listOf((await preflight(getOnly, APP, "GET", "/a")).headers["access-control-allow-methods"])).toEqual(["get", "head"]);
    const withBackend = await gatewayWith({ corsOrigins: [APP] }, `backends:\n  echo:\n    upstream: ${rest.url}\n`);
    expect(listOf((await preflight(withBackend, APP, "POST", "/backend/echo/x")).headers["access-control-allow-methods"])).toEqual([
      "get",
      "head",
      "post",
      "put",
      "patch",
      "delete",
    ]);
  });

  it("answers expose what Connect and gRPC-web clients need, the request id and the rate-limit headers the gateway sends", async () => {
    const res = await get(gateway, APP);
    expect(res.status).toBe(200);
    expect(res.headers["access-control-allow-origin"]).toBe(APP);
    const exposed = listOf(res.headers["access-control-expose-headers"]);
    expect(exposed).toEqual(
      // Written out here, not imported: the list is what this test promises browsers.
      expect.arrayContaining(["retry-after", "x-request-id", "grpc-message", "grpc-status", "grpc-status-details-bin"]),
    );
    expect(exposed).toEqual(
      expect.arrayContaining(["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"]),
    );
    // Every rate-limit header the gateway actually sends is in the list.
    const sent = Object.keys(res.headers).filter((h) => h.startsWith("x-ratelimit") || h.startsWith("ratelimit"));
    expect(sent.length).toBeGreaterThan(0);
    for (const header of sent) expect(exposed).toContain(header);
  });

  it("a request the gateway refuses for its head (too many header fields) carries the CORS headers: the page reads the 431", async () => {
    const extra: [string, string][] = Array.from({ length: 100 }, (_, i) => [`x-extra-${i}`, "v"]);
    const res = await rawRequest(portOf(gateway), {
      method: "GET",
      path: "/api/v1/items",
      headers: [["origin", APP], ["authorization", `Bearer ${await seedToken()}`], ...extra],
    });
    expect(res.status).toBe(431);
    expect(JSON.parse(res.body).error.code).toBe("HEADERS_TOO_LARGE");
    expect(res.headers["access-control-allow-origin"]).toBe(APP);
    expect(listOf(res.headers["access-control-expose-headers"])).toContain("x-request-id");
  });

  it("an origin not allowed gets no CORS header: its preflight is not answered, its answers not shared", async () => {
    const pre = await preflight(gateway, OTHER, "PUT");
    expect(pre.status).toBe(404);
    // It says why, rather than blaming the route (which exists).
    expect(JSON.parse(pre.body).error.message).toMatch(/CORS preflight from an origin this gateway does not allow \(CORS_ORIGINS/);
    expect(pre.headers["access-control-allow-origin"]).toBeUndefined();
    expect(pre.headers["access-control-allow-methods"]).toBeUndefined();
    const res = await get(gateway, OTHER);
    expect(res.headers["access-control-allow-origin"]).toBeUndefined();
    expect(res.headers["access-control-expose-headers"]).toBeUndefined();
  });

  it("a refused preflight is logged with its origin, where the page's developer can see why", async () => {
    const logs = captureLogs();
    const logged = await gatewayWith({ corsOrigins: [APP], logger: { level: "info", stream: logs.stream } });
    expect((await preflight(logged, OTHER, "PUT")).status).toBe(404);
    const line = logs.lines().find((l) => String(l.msg).startsWith("CORS preflight from an origin this gateway does not allow"));
    expect(line).toMatchObject({ origin: OTHER, msg: expect.stringContaining("CORS_ORIGINS") });
  });

  it("CORS off (the default): no CORS header at all", async () => {
    const off = await gatewayWith({});
    expect((await preflight(off, APP, "PUT")).headers["access-control-allow-origin"]).toBeUndefined();
    expect((await get(off, APP)).headers["access-control-allow-origin"]).toBeUndefined();
  });
});

describe("a backend that answers CORS itself, permissively", () => {
  // Every Origin echoed back, with credentials: a common framework default.
  const permissive = createServer((req, res) => {
    req.resume();
    res.writeHead(200, {
      "content-type": "application/json",
      "access-control-allow-origin": String(req.headers.origin ?? "*"),
      "access-control-allow-credentials": "true",
      "access-control-expose-headers": "x-secret-header",
      vary: "Accept-Encoding",
    });
    res.end("[]");
  });
  let port: number;
  beforeAll(async () => {
    port = await listen(permissive);
  });
  afterAll(() => closeServer(permissive));

  const cached = `  - path: /api/v1/cached
    method: GET
    proxy_upstream: $PERMISSIVE_URL
    cache_ttl: 60s
  - path: /api/v1/open
    method: GET
    proxy_upstream: $PERMISSIVE_URL
`;
  async function gatewayFor(options: Partial<GatewayConfig>): Promise<Gateway> {
    const gateway = await startSeedGateway(routesYaml(cached), { REST_URL: rest.url, PERMISSIVE_URL: `http://127.0.0.1:${port}` }, options);
    gateways.push(gateway);
    return gateway;
  }
  const fetchAs = async (gateway: Gateway, origin: string, path: string) =>
    rawRequest(portOf(gateway), { method: "GET", path, headers: [["origin", origin], ["authorization", `Bearer ${await seedToken()}`]] });

  it("its Access-Control-* headers never reach the caller: the gateway's policy decides, and its Vary: Origin stays", async () => {
    const gateway = await gatewayFor({ corsOrigins: [APP], corsCredentials: true });
    for (const path of ["/api/v1/open", "/api/v1/cached", "/api/v1/cached"]) {
      const other = await fetchAs(gateway, OTHER, path);
      expect(other.status).toBe(200);
      expect(other.headers["access-control-allow-origin"]).toBeUndefined();
      expect(other.headers["access-control-allow-credentials"]).toBeUndefined();
      expect(other.headers["access-control-expose-headers"]).toBeUndefined();
      const app = await fetchAs(gateway, APP, path);
      expect(app.headers["access-control-allow-origin"]).toBe(APP);
      expect(listOf(app.headers["access-control-expose-headers"])).not.toContain("x-secret-header");
      // The gateway's Vary and the backend's, merged (a cache hit too).
      expect(listOf(app.headers.vary)).toEqual(expect.arrayContaining(["origin", "accept-encoding"]));
    }
  });

  it("without cors: configured, no site gets access through the backend's own headers", async () => {
    const gateway = await gatewayFor({});
    const res = await fetchAs(gateway, OTHER, "/api/v1/open");
    expect(res.status).toBe(200);
    expect(res.headers["access-control-allow-origin"]).toBeUndefined();
    expect(res.headers["access-control-allow-credentials"]).toBeUndefined();
    expect(listOf(res.headers.vary)).toEqual(["accept-encoding"]);
  });
});

describe("CORS options", () => {
  it("createGateway: max age, extra exposed headers, credentials", async () => {
    const gateway = await gatewayWith({
      corsOrigins: [APP],
      corsMaxAgeSeconds: 600,
      corsExposeHeaders: ["Trailer-Cost"],
      corsCredentials: true,
    });
    const pre = await preflight(gateway, APP, "DELETE");
    expect(pre.headers["access-control-max-age"]).toBe("600");
    expect(pre.headers["access-control-allow-credentials"]).toBe("true");
    const res = await get(gateway, APP);
    expect(res.headers["access-control-allow-credentials"]).toBe("true");
    expect(listOf(res.headers["access-control-expose-headers"])).toEqual(expect.arrayContaining(["trailer-cost", "grpc-status"]));
  });

  it("routes.yaml `cors:` block; createGateway options win over it", async () => {
    const block = `cors:\n  origins: [${APP}]\n  max_age: 10m\n  expose_headers: [Trailer-Cost]\n  credentials: true\n`;
    const fromFile = await gatewayWith({}, block);
    const pre = await preflight(fromFile, APP, "PATCH");
    expect(pre.status).toBe(204);
    expect(pre.headers["access-control-allow-origin"]).toBe(APP);
    expect(pre.headers["access-control-max-age"]).toBe("600");
    expect(pre.headers["access-control-allow-credentials"]).toBe("true");
    expect(listOf((await get(fromFile, APP)).headers["access-control-expose-headers"])).toContain("trailer-cost");

    const overridden = await gatewayWith({ corsMaxAgeSeconds: 5, corsCredentials: false }, block);
    const pre2 = await preflight(overridden, APP, "PATCH");
    expect(pre2.headers["access-control-max-age"]).toBe("5");
    expect(pre2.headers["access-control-allow-credentials"]).toBeUndefined();
  });

  it("environment: CORS_ORIGINS, CORS_MAX_AGE, CORS_EXPOSE_HEADERS, CORS_CREDENTIALS", () => {
    const config = gatewayConfigFromEnv("routes.yaml", {
      CORS_ORIGINS: `${APP}, https://admin.example.com`,
      CORS_MAX_AGE: "300",
      CORS_EXPOSE_HEADERS: "Trailer-Cost, X-Total-Count",
      CORS_CREDENTIALS: "true",
    });
    expect(config).toMatchObject({
      corsOrigins: [APP, "https://admin.example.com"],
      corsMaxAgeSeconds: 300,
      corsExposeHeaders: ["Trailer-Cost", "X-Total-Count"],
      corsCredentials: true,
    });
    expect(gatewayConfigFromEnv("routes.yaml", { CORS_MAX_AGE: "2h", CORS_CREDENTIALS: "false" })).toMatchObject({
      corsMaxAgeSeconds: 7200,
      corsCredentials: false,
    });
    const unset = gatewayConfigFromEnv("routes.yaml", {});
    for (const key of ["corsOrigins", "corsMaxAgeSeconds", "corsExposeHeaders", "corsCredentials"]) expect(unset).not.toHaveProperty(key);
  });

  it("environment: a bad CORS_ORIGINS entry is named with the variable, e.g. a trailing slash", () => {
    for (const bad of ["http://localhost:5173/", "localhost:5173", "https://app.example.com/app", "ftp://files.example.com"]) {
      const attempt = () => gatewayConfigFromEnv("routes.yaml", { CORS_ORIGINS: `${APP}, ${bad}` });
      expect(attempt).toThrow(GatewayConfigError);
      expect(attempt).toThrow(`\`CORS_ORIGINS\` entry ${JSON.stringify(bad)} must be an origin such as https://app.example.com (no path, no trailing /)`);
    }
    expect(gatewayConfigFromEnv("routes.yaml", { CORS_ORIGINS: " * " })).toMatchObject({ corsOrigins: true });
  });

  it('routes.yaml: "*" inside the origins list says to write it on its own', () => {
    const yaml = `version: "1.0"\ncors:\n  origins: ["*"]\nroutes: []\n`;
    expect(() => parseRoutesFile(yaml, { source: "routes.yaml", env: {} })).toThrow('write "*" on its own (origins: "*"), not in a list');
  });
});

describe("bad CORS values are refused, naming the option", () => {
  const base = {
    routes: parseRoutesFile(routesYaml(), { source: "routes.yaml", env: { REST_URL: "http://127.0.0.1:1" } }),
    hmacSecret: HMAC_SECRET,
    tokens: { hs256: { secret: JWT_SECRET, issuer: SEED_ISSUER, audience: SEED_AUDIENCE } },
    logger: false as const,
  };
  const refusal = (options: Record<string, unknown>) => {
    try {
      createGateway({ ...base, corsOrigins: [APP], ...options } as GatewayConfig);
    } catch (e) {
      return e;
    }
    throw new Error("expected createGateway to throw");
  };

  it.each<[string, Record<string, unknown>]>([
    ["corsMaxAgeSeconds", { corsMaxAgeSeconds: -1 }],
    ["corsMaxAgeSeconds", { corsMaxAgeSeconds: 1.5 }],
    ["corsMaxAgeSeconds", { corsMaxAgeSeconds: "7200" }],
    ["corsExposeHeaders", { corsExposeHeaders: "Grpc-Status" }],
    ["corsExposeHeaders", { corsExposeHeaders: ["bad header"] }],
    ["corsExposeHeaders", { corsExposeHeaders: ["Trailer-*"] }],
    ["corsCredentials", { corsCredentials: "yes" }],
    ["corsCredentials", { corsOrigins: true, corsCredentials: true }],
    ["corsOrigins", { corsOrigins: ["https://app.example.com/path"] }],
  ])("createGateway: %s (%j)", (option, options) => {
    const error = refusal(options);
    expect(error).toBeInstanceOf(GatewayConfigError);
    expect((error as GatewayConfigError).option).toBe(option);
    expect((error as Error).message).toContain(option);
  });

  it.each<[string, string, RegExp]>([
    ["max_age: soon", "max_age", /routes\.yaml:\d+: .*max_age/],
    ["max_age: -5", "max_age", /max_age/],
    ["expose_headers: Grpc-Status", "expose_headers", /expose_headers/],
    ["expose_headers: [\"bad header\"]", "expose_headers", /expose_headers/],
    ["credentials: yes please", "credentials", /credentials/],
    ["origins: [https://app.example.com/x]", "origins", /origins/],
    ["colour: blue", "colour", /unknown key "colour"/],
  ])("routes.yaml: cors.%s", (line, _key, message) => {
    const yaml = routesYaml(`cors:\n  origins: [${APP}]\n  ${line}\n`.replace(`origins: [${APP}]\n  origins:`, "origins:"));
    let error: unknown;
    try {
      parseRoutesFile(yaml, { source: "routes.yaml", env: { REST_URL: "http://127.0.0.1:1" } });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(RoutesFileError);
    expect((error as Error).message).toMatch(message);
    // The problem is reported at the line of the bad value, inside the block.
    const lineNo = yaml.split("\n").findIndex((l) => l.includes(line.split(":")[0]!)) + 1;
    expect((error as Error).message).toContain(`routes.yaml:${lineNo}:`);
  });

  it("routes.yaml: credentials with any origin is refused at its line", () => {
    const yaml = routesYaml(`cors:\n  origins: "*"\n  credentials: true\n`);
    expect(() => parseRoutesFile(yaml, { source: "routes.yaml", env: { REST_URL: "http://127.0.0.1:1" } })).toThrow(
      /routes\.yaml:\d+: .*credentials/,
    );
  });

  it.each<[string, Record<string, string>]>([
    ["CORS_MAX_AGE", { CORS_MAX_AGE: "soon" }],
    ["CORS_MAX_AGE", { CORS_MAX_AGE: "-1" }],
    ["CORS_EXPOSE_HEADERS", { CORS_EXPOSE_HEADERS: " , " }],
    ["CORS_CREDENTIALS", { CORS_CREDENTIALS: "yes" }],
  ])("environment: %s", (name, env) => {
    expect(() => gatewayConfigFromEnv("routes.yaml", env)).toThrow(GatewayConfigError);
    expect(() => gatewayConfigFromEnv("routes.yaml", env)).toThrow(name);
  });
});
