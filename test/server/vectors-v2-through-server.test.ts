import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGatewayAuth, createMemoryReplayStore, type GatewayAuth } from "../../src/server/index.js";
import { resolveGatewayAuthConfig } from "../../src/server/gateway-auth-options.js";
import { checkRequestHead } from "../../src/server/request-check.js";
import { bodySha256 } from "../../src/signing/index.js";
import { invalidV2Vectors, v2MaxSkewSeconds, validV2Vectors, type V2Request } from "../fixtures/hmac-v2-vectors.js";
import { rawRequest } from "../support/raw-request.js";
import { startServer, type RunningServer } from "../support/loopback-server.js";

// Every v2 vector of the independent implementation: through the verifier
// every server adapter uses (the request's head as Node would parse it, then
// the body's hash), and sent to a real server exactly as specified (method,
// raw request-target, headers in order, body bytes). Each valid one is
// accepted with its identity, each invalid one refused with the reason the
// specification gives, before any handler.
//
// A few mutations cannot cross a real HTTP connection as written — HTTP
// strips a value's surrounding spaces, Node's parser refuses a lower-case
// method and Node's client a non-latin1 header, and a service always holds a
// secret — so those are checked through the verifier only.

let auth: GatewayAuth;
let nowMs = 0;
let handled = 0;
let server: RunningServer;

beforeAll(async () => {
  server = await startServer(async (req, res) => {
    const verified = await auth.verifyNodeRequest(req, res);
    if (verified === undefined) return;
    handled++;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ identity: verified.identity, bytes: verified.body.toString("hex") }));
  });
});
afterAll(() => server.close());

// "A verifier that holds no secret": a service always holds one, just not this one.
const UNRELATED_SECRET = "a-secret-no-vector-signs-with";

function optionsFor(secrets: readonly string[], now: number, seen: readonly string[] = []) {
  const replayStore = createMemoryReplayStore();
  for (const id of seen) replayStore.claim(id, 60);
  return {
    hmacSecret: secrets.length === 0 ? [UNRELATED_SECRET] : [...secrets],
    maxSkewSeconds: v2MaxSkewSeconds,
    now: () => now * 1000,
    replayStore,
    exposeRejectionReason: true,
  };
}

function use(secrets: readonly string[], now: number, seen: readonly string[] = []): void {
  nowMs = now * 1000;
  auth = createGatewayAuth({ ...optionsFor(secrets, now, seen), now: () => nowMs });
}

/** The verdict of the verifier itself on `request`: `undefined` when accepted. */
async function verdictOf(request: V2Request, secrets: readonly string[], now: number, seen: readonly string[] = []) {
  const config = resolveGatewayAuthConfig(optionsFor(secrets, now, seen));
  const rawHeaders = request.headers.flatMap(([n, v]) => [n, v]);
  const check = checkRequestHead(config, { method: request.method, url: request.target, rawHeaders });
  if (!check.ok) return check.reason;
  return await check.verifyBody(bodySha256(request.body));
}

// What Node's HTTP parser and client carry unchanged: an upper-case token
// method, latin1 values without surrounding spaces or tabs, and a secret.
function crossesTheWire(request: V2Request, secrets: readonly string[]): boolean {
  return (
    secrets.length > 0 &&
    /^[A-Z]+$/.test(request.method) &&
    request.headers.every(([, v]) => /^[\x00-\xff]*$/.test(v) && v === v.trim())
  );
}

function send(request: V2Request) {
  return rawRequest(server.port, {
    method: request.method,
    path: request.target,
    headers: request.headers.map(([n, v]): [string, string] => [n, v]),
    body: request.body,
  });
}

describe("signature v2 vectors through the verifier", () => {
  it.each(validV2Vectors.map((v) => [v.name, v] as const))("valid: %s", async (_name, v) => {
    const request = { ...v.request, headers: [...v.request.headers, ...v.gatewayHeaders] };
    expect(await verdictOf(request, [v.secret], v.now)).toBeUndefined();
    // The same request again is a replay.
    const config = resolveGatewayAuthConfig(optionsFor([v.secret], v.now));
    const rawHeaders = request.headers.flatMap(([n, value]) => [n, value]);
    const twice = async () => {
      const check = checkRequestHead(config, { method: request.method, url: request.target, rawHeaders });
      return check.ok ? await check.verifyBody(bodySha256(request.body)) : check.reason;
    };
    expect([await twice(), await twice()]).toEqual([undefined, "replayed_request"]);
  });

  it.each(invalidV2Vectors.map((v) => [v.name, v] as const))("invalid: %s", async (_name, v) => {
    expect(await verdictOf(v.request, v.secrets, v.now, v.seenRequestIds)).toBe(v.reason);
  });
});

describe("signature v2 vectors through a real server", () => {
  it.each(validV2Vectors.map((v) => [v.name, v] as const))("valid: %s", async (_name, v) => {
    use([v.secret], v.now);
    const res = await send({ ...v.request, headers: [...v.request.headers, ...v.gatewayHeaders] });
    expect(res.status).toBe(200);
    const answer = JSON.parse(res.body) as { identity: { signature: string; clientId: string }; bytes: string };
    expect(answer.identity.signature).toBe("v2");
    expect(answer.bytes).toBe(v.request.body.toString("hex"));
  });

  it("has the mutations it must", () => {
    expect(invalidV2Vectors.length).toBeGreaterThanOrEqual(30);
    const reasons = new Set(invalidV2Vectors.map((v) => v.reason));
    for (const reason of ["invalid_signature", "malformed_gateway_headers", "missing_gateway_headers", "unsigned_identity", "timestamp_out_of_window", "replayed_request"]) {
      expect(reasons).toContain(reason);
    }
  });

  const wireVectors = invalidV2Vectors.filter((v) => crossesTheWire(v.request, v.secrets));

  it("sends nearly every mutation over the wire", () => {
    expect(wireVectors.length).toBeGreaterThan(invalidV2Vectors.length - 10);
  });

  it.each(wireVectors.map((v) => [v.name, v] as const))("invalid: %s", async (_name, v) => {
    use(v.secrets, v.now, v.seenRequestIds);
    const before = handled;
    const res = await send(v.request);
    expect({ status: res.status, body: JSON.parse(res.body) as unknown }).toEqual({ status: 403, body: { message: v.reason } });
    expect(handled).toBe(before);
  });
});
