import { createHmac, randomFillSync, type KeyObject } from "node:crypto";
import { canonicalRequestV2, type SigningPartsV2 } from "./canonical-request-v2.js";

/**
 * Signs a request with signature v2: lower-case hex
 * HMAC-SHA256(secret, canonicalRequestV2(parts)). See docs/signature-v2.md.
 * Throws `GatewaySigningError` for values that cannot be signed unambiguously.
 */
export function signGatewayRequestV2(secret: string | Uint8Array | KeyObject, parts: SigningPartsV2): string {
  return createHmac("sha256", secret).update(canonicalRequestV2(parts), "latin1").digest("hex");
}

/**
 * The default key id of a secret: the first 16 hex characters of
 * HMAC-SHA256(secret, "connect-gateway key id v2"). Derived rather than
 * configured, so a rotation needs nothing but the new secret: a service that
 * holds several secrets picks the one a request names.
 */
export function gatewayKeyId(secret: string | Uint8Array): string {
  if (typeof secret !== "string") return keyIdOf(secret);
  // A gateway signs every request with the same one or two secrets: keep
  // their ids rather than computing an extra HMAC per request.
  let id = recentKeyIds.get(secret);
  if (id === undefined) {
    if (recentKeyIds.size >= 8) recentKeyIds.clear();
    id = keyIdOf(secret);
    recentKeyIds.set(secret, id);
  }
  return id;
}

const recentKeyIds = new Map<string, string>();

function keyIdOf(secret: string | Uint8Array): string {
  return createHmac("sha256", secret).update("connect-gateway key id v2").digest("hex").slice(0, 16);
}

// Random bytes for request ids, drawn from the CSPRNG 256 ids at a time (as
// Node does for randomUUID): one `randomBytes(16)` per call is a trip into
// the kernel's random source per request, which measured ~9 % of the
// gateway's CPU under load. Each id still takes 16 bytes of its own, never
// reused.
const ID_BYTES = 16;
const POOL_BYTES = ID_BYTES * 256;
const pool = Buffer.alloc(POOL_BYTES);
let poolOffset = POOL_BYTES;

/** A fresh `X-Gateway-Request-Id`: 128 random bits, base64url (22 characters). */
export function newRequestId(): string {
  if (poolOffset === POOL_BYTES) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const id = pool.toString("base64url", poolOffset, poolOffset + ID_BYTES);
  poolOffset += ID_BYTES;
  return id;
}
