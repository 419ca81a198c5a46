// "Try again later" answers say when: Retry-After on 429 (the seconds until
// the rate limit window resets) and on 503 (SERVICE_UNAVAILABLE), in every
// caller protocol's error form.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway } from "../../packages/gateway/src/index.js";
import { type RecordingBackend, routesFileText, seedToken, startRecordingBackend, startSeedGateway, unusedPort } from "../support/gateway.js";

const WINDOW_SECONDS = 30;

/** The caller protocols' request headers (gRPC's error form is trailers-only, i.e. headers, over HTTP/1.1 too). */
const protocols = {
  rest: { "content-type": "application/json" },
  connect: { "content-type": "application/json", "connect-protocol-version": "1" },
  grpc: { "content-type": "application/grpc", te: "trailers" },
} as const;

describe("Retry-After", () => {
  let backend: RecordingBackend;
  let gateway: Gateway;
  let clients = 0;

  beforeAll(async () => {
    backend = await startRecordingBackend();
    gateway = await startSeedGateway(
      routesFileText({ backends: { up: { upstream: backend.url }, down: { upstream: `http://127.0.0.1:${await unusedPort()}` } } }),
      {},
      { rateLimit: { max: 2, timeWindowMs: WINDOW_SECONDS * 1000 } },
    );
  });
  afterAll(async () => {
    await gateway?.close();
    await backend?.close();
  });

  /** A POST as a fresh service client (its own rate limit bucket). */
  async function call(path: string, protocol: keyof typeof protocols, token?: string) {
    token ??= await seedToken({ client_id: `svc-${++clients}`, user_id: undefined });
    const res = await fetch(gateway.url + path, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, ...protocols[protocol] },
      body: protocol === "grpc" ? new Uint8Array(5) : "{}",
      signal: AbortSignal.timeout(5_000),
    });
    return { status: res.status, headers: res.headers, body: await res.text(), token };
  }

  it.each(Object.keys(protocols) as (keyof typeof protocols)[])("is set on a 429 to a %s caller: the seconds left in the window", async (protocol) => {
    const first = await call("/backend/up/pkg.S/M", protocol);
    await call("/backend/up/pkg.S/M", protocol, first.token);
    const limited = await call("/backend/up/pkg.S/M", protocol, first.token);
    if (protocol === "grpc") {
      expect([limited.status, limited.headers.get("grpc-status")]).toEqual([200, "8"]); // RESOURCE_EXHAUSTED
    } else {
      expect(limited.status).toBe(429);
    }
    const seconds = Number(limited.headers.get("retry-after"));
    expect(limited.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(seconds).toBeGreaterThanOrEqual(1);
    expect(seconds).toBeLessThanOrEqual(WINDOW_SECONDS);
  });

  it.each(Object.keys(protocols) as (keyof typeof protocols)[])("is set on a 503 to a %s caller", async (protocol) => {
    const unavailable = await call("/backend/down/pkg.S/M", protocol);
    if (protocol === "grpc") {
      expect([unavailable.status, unavailable.headers.get("grpc-status")]).toEqual([200, "14"]); // UNAVAILABLE
    } else {
      expect(unavailable.status).toBe(503);
    }
    if (protocol === "rest") expect(JSON.parse(unavailable.body).error.code).toBe("SERVICE_UNAVAILABLE");
    expect(unavailable.headers.get("retry-after")).toBe("1");
  });

  it("is not set on other errors", async () => {
    const res = await fetch(`${gateway.url}/backend/up/x`, { method: "POST", signal: AbortSignal.timeout(5_000) });
    expect(res.status).toBe(401);
    expect(res.headers.get("retry-after")).toBeNull();
  });
});
