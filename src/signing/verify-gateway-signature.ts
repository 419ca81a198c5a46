import { timingSafeEqual } from "node:crypto";
import { signGatewayRequest } from "./sign-gateway-request.js";
import type { SigningParts } from "./signing-parts.js";
import { GatewaySigningError } from "./gateway-signing-error.js";

const SIGNATURE = /^[0-9a-f]{64}$/;

/**
 * True when `signature` is the gateway's signature of `parts` under one of
 * `secrets` (several secrets let a deployment rotate without downtime).
 *
 * The signature must be exactly 64 lower-case hex characters; every secret is
 * tried and compared in constant time, so timing reveals neither how much of
 * the signature matched nor which secret did. Values that cannot be signed
 * unambiguously (see {@link stringToSign}) never verify.
 */
export function verifyGatewaySignature(
  secrets: readonly (string | Uint8Array)[],
  parts: SigningParts,
  signature: string,
): boolean {
  if (!SIGNATURE.test(signature)) {
    return false;
  }
  const given = Buffer.from(signature, "latin1");
  let matched = false;
  for (const secret of secrets) {
    let expected: Buffer;
    try {
      expected = Buffer.from(signGatewayRequest(secret, parts), "latin1");
    } catch (e) {
      if (e instanceof GatewaySigningError) return false;
      throw e;
    }
    // Both are 64 bytes: timingSafeEqual never throws here.
    matched = timingSafeEqual(expected, given) || matched;
  }
  return matched;
}
