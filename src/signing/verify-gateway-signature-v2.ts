import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from "node:crypto";
import { canonicalOfCheckedIds, type SigningPartsV2 } from "./canonical-request-v2.js";
import { GatewaySigningError } from "./gateway-signing-error.js";
import { gatewayKeyId, signGatewayRequestV2 } from "./sign-gateway-request-v2.js";

/** Secrets by key id; build it once with {@link gatewayKeyring}. */
export type GatewayKeyring = ReadonlyMap<string, string | Uint8Array>;

/**
 * The secrets a service verifies with, by their default key id
 * ({@link gatewayKeyId}). Computed once, when the service starts.
 */
export function gatewayKeyring(secrets: readonly (string | Uint8Array)[]): GatewayKeyring {
  const keyring = new Map(secrets.map((secret) => [gatewayKeyId(secret), secret]));
  // The same secrets as KeyObjects, prepared once: an HMAC keyed with one
  // skips converting the secret on every request (the bytes are the same:
  // a string secret is its UTF-8 octets, as createHmac takes it).
  const keys = new Map([...keyring].map(([keyId, secret]) => [keyId, createSecretKey(keyBytes(secret))]));
  return Object.assign(keyring, { [preparedKeys]: keys });
}

const preparedKeys = Symbol("connect-gateway prepared keys");

function keyBytes(secret: string | Uint8Array): Uint8Array {
  return typeof secret === "string" ? Buffer.from(secret, "utf8") : secret;
}

// The key to sign with: the prepared KeyObject of a keyring built here, else the secret as given.
function keyOf(keyring: GatewayKeyring, keyId: string): string | Uint8Array | KeyObject | undefined {
  const prepared = (keyring as { [preparedKeys]?: ReadonlyMap<string, KeyObject> })[preparedKeys];
  return prepared !== undefined ? prepared.get(keyId) : keyring.get(keyId);
}

const SIGNATURE = /^[0-9a-f]{64}$/;

// Scratch space for the constant-time comparison: the signatures are
// written in rather than copied into two new Buffers per request (the
// comparison is synchronous, so one pair serves every caller).
const EXPECTED = Buffer.alloc(64);
const GIVEN = Buffer.alloc(64);

/**
 * True when `signature` (64 lower-case hex characters) is the v2 signature
 * of `parts` under the secret that `parts.keyId` names. Compared in constant
 * time. An unknown key id, or values that cannot be signed unambiguously,
 * never verify.
 *
 * @see docs/signature-v2.md
 */
export function verifyGatewaySignatureV2(keyring: GatewayKeyring, parts: SigningPartsV2, signature: string): boolean {
  const secret = keyOf(keyring, parts.keyId);
  if (secret === undefined || !SIGNATURE.test(signature)) return false;
  let expected: string;
  try {
    expected = signGatewayRequestV2(secret, parts);
  } catch (e) {
    if (e instanceof GatewaySigningError) return false;
    throw e;
  }
  // Both are 64 ASCII characters, so 64 bytes each: timingSafeEqual never throws here.
  EXPECTED.write(expected, 0, 64, "latin1");
  GIVEN.write(signature, 0, 64, "latin1");
  return timingSafeEqual(EXPECTED, GIVEN);
}

/**
 * {@link verifyGatewaySignatureV2} for the verifier, once `checkGatewayHeaders`
 * passed: the key id, timestamp, request id and signature are known
 * well-formed (checked with the same patterns) and `bodySha256` is the
 * verifier's own digest, so only the method, request-target and header
 * values are checked again while the canonical request is built. The same
 * HMAC, compared in constant time. Not exported from the module.
 */
export function verifyCheckedSignatureV2(keyring: GatewayKeyring, parts: SigningPartsV2, signature: string): boolean {
  const key = keyOf(keyring, parts.keyId);
  if (key === undefined) return false;
  let canonical: string;
  try {
    canonical = canonicalOfCheckedIds(parts);
  } catch (e) {
    if (e instanceof GatewaySigningError) return false;
    throw e;
  }
  EXPECTED.write(createHmac("sha256", key).update(canonical, "latin1").digest("hex"), 0, 64, "latin1");
  GIVEN.write(signature, 0, 64, "latin1");
  return timingSafeEqual(EXPECTED, GIVEN);
}
