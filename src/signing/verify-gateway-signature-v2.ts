import { timingSafeEqual } from "node:crypto";
import type { SigningPartsV2 } from "./canonical-request-v2.js";
import { GatewaySigningError } from "./gateway-signing-error.js";
import { gatewayKeyId, signGatewayRequestV2 } from "./sign-gateway-request-v2.js";

/** Secrets by key id; build it once with {@link gatewayKeyring}. */
export type GatewayKeyring = ReadonlyMap<string, string | Uint8Array>;

/**
 * The secrets a service verifies with, by their default key id
 * ({@link gatewayKeyId}). Computed once, when the service starts.
 */
export function gatewayKeyring(secrets: readonly (string | Uint8Array)[]): GatewayKeyring {
  return new Map(secrets.map((secret) => [gatewayKeyId(secret), secret]));
}

const SIGNATURE = /^[0-9a-f]{64}$/;

/**
 * True when `signature` (64 lower-case hex characters) is the v2 signature
 * of `parts` under the secret that `parts.keyId` names. Compared in constant
 * time. An unknown key id, or values that cannot be signed unambiguously,
 * never verify.
 *
 * @see docs/signature-v2.md
 */
export function verifyGatewaySignatureV2(keyring: GatewayKeyring, parts: SigningPartsV2, signature: string): boolean {
  const secret = keyring.get(parts.keyId);
  if (secret === undefined || !SIGNATURE.test(signature)) return false;
  let expected: string;
  try {
    expected = signGatewayRequestV2(secret, parts);
  } catch (e) {
    if (e instanceof GatewaySigningError) return false;
    throw e;
  }
  // Both are 64 ASCII bytes: timingSafeEqual never throws here.
  return timingSafeEqual(Buffer.from(expected, "latin1"), Buffer.from(signature, "latin1"));
}
