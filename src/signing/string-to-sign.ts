import { GatewaySigningError } from "./gateway-signing-error.js";
import type { SigningParts } from "./signing-parts.js";

// The `|` join is ambiguous when a field contains `|`; CR, LF and NUL cannot
// travel in an HTTP header value, and HTTP strips leading and trailing
// spaces and tabs from one: an id carrying any of them could be signed but
// never verified.
const FORBIDDEN_IN_ID = /[|\r\n\0]|^[ \t]|[ \t]$/;
const DIGITS = /^[0-9]+$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const METHOD = /^[A-Za-z]+$/;

/** True when `id` can be joined into the string to sign without ambiguity. */
export function isSignableId(id: string): boolean {
  return !FORBIDDEN_IN_ID.test(id);
}

/** True when `timestamp` is a non-empty string of ASCII digits. */
export function isDigits(timestamp: string): boolean {
  return DIGITS.test(timestamp);
}

/**
 * Builds the canonical string of signature v1 (the Ruby gateway's):
 * `METHOD|timestamp|client_id|user_id|fullpath|body_sha256`.
 *
 * Throws {@link GatewaySigningError} on values that would make the string
 * ambiguous, so a caller can never sign something a verifier reads otherwise.
 */
export function stringToSign(parts: SigningParts): string {
  const userId = parts.userId ?? "";
  if (!METHOD.test(parts.method)) {
    throw new GatewaySigningError("method must be an HTTP verb (letters only)");
  }
  if (!isDigits(parts.timestamp)) {
    throw new GatewaySigningError("timestamp must be unix seconds (digits only)");
  }
  if (!isSignableId(parts.clientId) || !isSignableId(userId)) {
    throw new GatewaySigningError(
      "client id and user id must not contain '|', CR, LF or NUL, nor start or end with a space or tab",
    );
  }
  if (!SHA256_HEX.test(parts.bodySha256)) {
    throw new GatewaySigningError("bodySha256 must be 64 lower-case hex characters");
  }
  return [
    parts.method.toUpperCase(),
    parts.timestamp,
    parts.clientId,
    userId,
    parts.fullpath,
    parts.bodySha256,
  ].join("|");
}
