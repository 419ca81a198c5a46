// The caller's bearer token stays at the gateway: `Authorization` is removed
// from what is forwarded unless the route (or backend) says
// `forward_authorization: true`. Real gateway, real recording backends
// (HTTP/1.1 and cleartext HTTP/2) on loopback.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRoutesFile, RoutesFileError, type Gateway } from "../../packages/gateway/src/index.js";
import { closeInTurn, hasValidSignature, type RecordingBackend, route, routesFileText, seedToken, startGatewayWithBackends } from "../support/gateway.js";

const yaml = routesFileText({
  routes: [
    route("GET", "/api/v1/agents"),
    route("GET", "/api/v1/delegated", { forward_authorization: true }),
    route("GET", "/api/v1/explicit-no", { forward_authorization: false }),
  ],
  backends: {
    plain: { upstream: "$UP" },
    delegated: { upstream: "$UP", forward_authorization: true },
    h2: { upstream: "$UP2", http2: true },
  },
});

/** Every value of `authorization` the backend received for its last request, whatever the spelling. */
function authorizationsOf(backend: RecordingBackend): string[] {
  const raw = backend.requests.at(-1)!.rawHeaders;
  return raw.filter((_, i) => i % 2 === 1 && raw[i - 1]?.toLowerCase() === "authorization");
}

describe("Authorization forwarding", () => {
  let backend: RecordingBackend;
  let h2Backend: RecordingBackend;
  let gateway: Gateway;
  let token: string;

  beforeAll(async () => {
    ({ backend, h2Backend, gateway } = await startGatewayWithBackends(yaml));
    token = await seedToken();
  });
  afterAll(() => closeInTurn(gateway, backend, h2Backend));

  async function get(path: string, authorization = `Bearer ${token}`) {
    const res = await fetch(gateway.url + path, { headers: { authorization }, signal: AbortSignal.timeout(5_000) });
    await res.arrayBuffer();
    return res.status;
  }
  async function post(path: string) {
    const res = await fetch(gateway.url + path, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: "{}",
      signal: AbortSignal.timeout(5_000),
    });
    await res.arrayBuffer();
    return res.status;
  }

  it("does not forward the caller's Authorization by default (route)", async () => {
    expect(await get("/api/v1/agents")).toBe(200);
    expect(authorizationsOf(backend)).toEqual([]);
    // The backend still learns who is calling, from the signed identity headers.
    const forwarded = backend.requests.at(-1)!;
    expect(forwarded.headers["x-user-id"]).toBe("user-uuid");
    expect(hasValidSignature(forwarded)).toBe(true);
  });

  it("does not forward it with forward_authorization: false", async () => {
    expect(await get("/api/v1/explicit-no")).toBe(200);
    expect(authorizationsOf(backend)).toEqual([]);
  });

  it("does not forward it to a backend (HTTP/1.1 and HTTP/2) by default", async () => {
    expect(await post("/backend/plain/pkg.Service/Method")).toBe(200);
    expect(authorizationsOf(backend)).toEqual([]);
    expect(await post("/backend/h2/pkg.Service/Method")).toBe(200);
    expect(authorizationsOf(h2Backend)).toEqual([]);
  });

  it("forwards the exact header to a route with forward_authorization: true", async () => {
    expect(await get("/api/v1/delegated")).toBe(200);
    expect(authorizationsOf(backend)).toEqual([`Bearer ${token}`]);
    // Sent as the caller spelled it (scheme case, spacing): the gateway does not rewrite it.
    const odd = `bearer  ${token}`;
    expect(await get("/api/v1/delegated", odd)).toBe(200);
    expect(authorizationsOf(backend)).toEqual([odd]);
    expect(hasValidSignature(backend.requests.at(-1)!)).toBe(true);
  });

  it("forwards the exact header to a backend with forward_authorization: true", async () => {
    expect(await post("/backend/delegated/pkg.Service/Method")).toBe(200);
    expect(authorizationsOf(backend)).toEqual([`Bearer ${token}`]);
  });
});

describe("forward_authorization in routes.yaml", () => {
  const problemsOf = (text: string) => {
    try {
      parseRoutesFile(text, { source: "routes.yaml", env: { UP: "http://127.0.0.1:9000" } });
    } catch (e) {
      expect(e).toBeInstanceOf(RoutesFileError);
      return (e as Error).message.split("\n");
    }
    return [];
  };

  it("reads true and false on routes and backends; unset means false", () => {
    const file = parseRoutesFile(yaml, { source: "routes.yaml", env: { UP: "http://a:1", UP2: "http://b:2" } });
    expect(file.routes.map((r) => r.forwardAuthorization ?? false)).toEqual([false, true, false]);
    expect(file.backends.map((b) => b.forwardAuthorization ?? false)).toEqual([false, true, false]);
  });

  /** A routes file of one route whose `forward_authorization:` is followed by `value`, at line 6. */
  const routeForwardingAuthorization = (value: string) => `version: "1.0"
routes:
  - path: /a
    method: GET
    proxy_upstream: $UP
    forward_authorization:${value}
`;

  it("refuses a value that is not a boolean, naming the file, line and key", () => {
    for (const bad of ['"true"', "yes", "1", "[true]", "on"]) {
      expect(problemsOf(routeForwardingAuthorization(` ${bad}`))).toEqual(["routes.yaml:6: forward_authorization must be true or false"]);
    }
    expect(
      problemsOf(`version: "1.0"
backends:
  echo:
    upstream: $UP
    forward_authorization: "yes"
`),
    ).toEqual(["routes.yaml:5: forward_authorization must be true or false"]);
  });

  it("refuses it without a value", () => {
    expect(problemsOf(routeForwardingAuthorization(""))).toEqual(["routes.yaml:6: forward_authorization has no value"]);
  });

  it("is not needed by the example stack: examples/routes.yaml forwards no token", () => {
    const example = fileURLToPath(new URL("../../examples/routes.yaml", import.meta.url));
    const file = parseRoutesFile(readFileSync(example, "utf8"), {
      source: example,
      env: { ECHO_URL: "http://127.0.0.1:1", AGENTS_SERVICE_URL: "http://127.0.0.1:2" },
    });
    expect([...file.routes, ...file.backends].some((entry) => entry.forwardAuthorization === true)).toBe(false);
  });
});
