import { describe, expect, it } from "vitest";
import {
  bodySha256,
  canonicalRequestV2,
  gatewayKeyId,
  gatewayKeyring,
  identityHeaderNames,
  newRequestId,
  signGatewayRequestV2,
  SIGNATURE_V2_LABEL,
  verifyGatewaySignatureV2,
  type SigningPartsV2,
} from "../../src/signing/index.js";
import { v2KeyIds, v2Label, validV2Vectors, type V2Request } from "../fixtures/hmac-v2-vectors.js";

// The pure functions against every vector of the independent (Python)
// implementation of docs/signature-v2.md: key ids, canonical octets,
// signatures. The whole verifier, mutations included, is checked against
// them through real servers in test/server/vectors-v2-through-server.test.ts.

/** The first value of a header, by case-insensitive name. */
function header(request: V2Request, name: string): string | undefined {
  return request.headers.find(([n]) => n.toLowerCase() === name)?.[1];
}

function partsOf(v: (typeof validV2Vectors)[number]): SigningPartsV2 {
  const identity: Record<string, string> = {};
  for (const name of identityHeaderNames) {
    const value = header(v.request, name);
    if (value !== undefined) identity[name] = value;
  }
  return {
    keyId: gatewayKeyId(v.secret),
    method: v.request.method,
    requestTarget: v.request.target,
    timestamp: v.timestamp,
    requestId: v.requestId,
    bodySha256: bodySha256(v.request.body),
    contentType: header(v.request, "content-type"),
    contentEncoding: header(v.request, "content-encoding"),
    identity,
  };
}

describe("signature v2 vectors (independent implementation)", () => {
  it("the label and every default key id match", () => {
    expect(v2Label).toBe(SIGNATURE_V2_LABEL);
    expect(v2KeyIds.length).toBeGreaterThanOrEqual(3);
    for (const { secret, key_id } of v2KeyIds) expect(gatewayKeyId(secret)).toBe(key_id);
  });

  it("covers what it must: at least a dozen requests", () => {
    expect(validV2Vectors.length).toBeGreaterThanOrEqual(12);
  });

  it.each(validV2Vectors.map((v) => [v.name, v] as const))("%s: same body hash, canonical octets and signature", (_name, v) => {
    const parts = partsOf(v);
    expect(parts.bodySha256).toBe(v.bodySha256);
    expect(Buffer.from(canonicalRequestV2(parts), "latin1").toString("hex")).toBe(v.canonical.toString("hex"));
    expect(signGatewayRequestV2(v.secret, parts)).toBe(v.signature);
    expect(verifyGatewaySignatureV2(gatewayKeyring([v.secret]), parts, v.signature)).toBe(true);
    const sent = Object.fromEntries(v.gatewayHeaders.map(([n, value]) => [n.toLowerCase(), value]));
    expect(sent["x-gateway-signature-v2"]).toBe(`${parts.keyId}:${v.signature}`);
    expect(sent["x-gateway-request-id"]).toBe(v.requestId);
    expect(sent["x-gateway-timestamp"]).toBe(v.timestamp);
  });

  it("absent and empty headers have different canonical requests", () => {
    const empty = validV2Vectors.find((v) => v.name.startsWith("empty-but-present"));
    const absent = validV2Vectors.find((v) => v.name.startsWith("absent X-User-Email"));
    expect(empty && absent).toBeTruthy();
    expect(empty?.canonical.equals(absent?.canonical ?? Buffer.alloc(0))).toBe(false);
    expect(empty?.signature).not.toBe(absent?.signature);
  });
});

describe("newRequestId", () => {
  it("gives 128 fresh random bits each time, across many refills of its random pool", () => {
    const ids = Array.from({ length: 5_000 }, () => newRequestId());
    expect(new Set(ids).size).toBe(ids.length);
    const ones = new Array<number>(128).fill(0);
    for (const id of ids) {
      expect(id).toMatch(/^[A-Za-z0-9_-]{22}$/);
      const bytes = Buffer.from(id, "base64url");
      expect(bytes.byteLength).toBe(16);
      for (let bit = 0; bit < 128; bit++) ones[bit]! += (bytes[bit >> 3]! >> (bit & 7)) & 1;
    }
    // Every bit position is set in about half of the ids (5,000 draws: 50 % ± 5 % is > 7 sigma).
    expect(ones.filter((n) => n < 2_250 || n > 2_750)).toEqual([]);
  });
});
