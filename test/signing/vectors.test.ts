import { describe, expect, it } from "vitest";
import {
  bodySha256,
  fullpathOf,
  signGatewayRequest,
  stringToSign,
  verifyGatewaySignature,
} from "../../src/signing/index.js";
import { hmacVectors } from "../fixtures/hmac-vectors.js";

describe("gateway-hmac-v1 vectors through the public signing API", () => {
  it("has the eight vectors of the independent implementation", () => {
    expect(hmacVectors).toHaveLength(8);
  });

  for (const v of hmacVectors) {
    describe(v.name, () => {
      const parts = () => ({
        method: v.method,
        timestamp: v.timestamp,
        clientId: v.clientId,
        userId: v.userId,
        fullpath: fullpathOf(v.requestTarget),
        bodySha256: bodySha256(v.body),
      });

      it("derives fullpath and body hash from the request as sent", () => {
        expect(fullpathOf(v.requestTarget)).toBe(v.fullpath);
        expect(bodySha256(v.body)).toBe(v.bodySha256);
      });

      it("builds the canonical string and signature", () => {
        expect(stringToSign(parts())).toBe(v.stringToSign);
        expect(signGatewayRequest(v.secret, parts())).toBe(v.signature);
      });

      it("verifies the signature, alone and among rotated secrets", () => {
        expect(verifyGatewaySignature([v.secret], parts(), v.signature)).toBe(true);
        expect(verifyGatewaySignature(["old-secret", v.secret], parts(), v.signature)).toBe(true);
        expect(verifyGatewaySignature(["other-secret"], parts(), v.signature)).toBe(false);
      });
    });
  }
});
