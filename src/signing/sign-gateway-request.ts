import { createHmac } from "node:crypto";
import type { SigningParts } from "./signing-parts.js";
import { stringToSign } from "./string-to-sign.js";

/**
 * Signs a request as the gateway does: lower-case hex
 * HMAC-SHA256(secret, stringToSign(parts)) — the v1 wire format, byte for byte
 * the one the Ruby implementation signs and verifies.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc2104 | RFC 2104} (HMAC)
 */
export function signGatewayRequest(secret: string | Uint8Array, parts: SigningParts): string {
  return createHmac("sha256", secret).update(stringToSign(parts), "utf8").digest("hex");
}
