/**
 * Thrown when values cannot be signed unambiguously: a `|`, CR, LF or NUL in
 * an id, a timestamp that is not all digits, a body hash that is not
 * lower-case hex. The gateway refuses to sign such a request rather than send
 * a string that a verifier could split differently.
 */
export class GatewaySigningError extends Error {
  override name = "GatewaySigningError";
}
