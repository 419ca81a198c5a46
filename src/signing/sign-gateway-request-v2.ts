import { createHmac, randomBytes, type KeyObject } from "node:crypto";
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

/** A fresh `X-Gateway-Request-Id`: 128 random bits, base64url (22 characters). */
export function newRequestId(): string {
  return randomBytes(16).toString("base64url");
}
