import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from "node:crypto";
import type { JWTPayload } from "jose";
import { GatewayHttpError } from "./gateway-http-error.js";

/** What {@link createHs256Verification} checks besides the signature. */
export interface Hs256Verification {
  readonly secret: string;
  /** The one `iss` accepted. */
  readonly issuer: string;
  /** The `aud` required (the token's `aud`, or one of its list). */
  readonly audience: string;
  /** Seconds of clock skew allowed on `exp` and `nbf`. */
  readonly clockToleranceSeconds: number;
}

const HS256_SIGNATURE = /^[A-Za-z0-9_-]{43}$/;

/** The message of every HS256 refusal but expiry: a caller learns nothing about which check failed. */
const INVALID = "Invalid or expired token";

/**
 * Verifies a compact HS256 JWT (RFC 7519 over RFC 7515) with node:crypto,
 * synchronously, and returns its claims, or throws a {@link GatewayHttpError}:
 * `EXPIRED_TOKEN` past `exp` (plus the tolerance), `UNAUTHORIZED` for
 * anything else — a bad signature, another `alg`, a `crit` header, a wrong
 * `iss` or `aud`, a missing or non-numeric `exp`, an `nbf` in the future, a
 * malformed part.
 *
 * Why not jose, which verifies RS256/ES256 tokens here: jose 6 works through
 * WebCrypto, whose every call is an asynchronous round trip of about 20 µs,
 * where the work itself — one HMAC-SHA256 over the token and a JSON parse —
 * takes about 2 µs. A gateway validating an uncached token on every call
 * pays that on its hot path. The checks are the ones jose makes with the
 * options the gateway gives it (`algorithms: ["HS256"]`, `issuer`,
 * `audience`, `requiredClaims: ["exp"]`, `clockTolerance`), and the HS256
 * tests run against both.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc7519#section-7.2 | RFC 7519 §7.2} (validating a JWT)
 * @see {@link https://www.rfc-editor.org/rfc/rfc7515#section-4.1.11 | RFC 7515 §4.1.11} (`crit`: a recipient that does not understand an extension must refuse)
 */
export function createHs256Verification(options: Hs256Verification): (token: string) => JWTPayload {
  const key: KeyObject = createSecretKey(Buffer.from(options.secret, "utf8"));
  const { issuer, audience, clockToleranceSeconds } = options;
  return (token) => {
    const firstDot = token.indexOf(".");
    const secondDot = token.indexOf(".", firstDot + 1);
    if (firstDot <= 0 || secondDot <= firstDot + 1 || token.indexOf(".", secondDot + 1) !== -1) invalid("not a JWT (three parts)");
    const header = jsonObject(token.slice(0, firstDot));
    if (header.alg !== "HS256" || header.crit !== undefined || header.b64 !== undefined) invalid("its header is not a plain HS256 one");
    const encodedSignature = token.slice(secondDot + 1);
    // Exactly the 43 characters of a 32-byte HMAC: Buffer's decoder would skip stray characters.
    if (!HS256_SIGNATURE.test(encodedSignature)) invalid("its signature is not an HS256 one");
    const signature = Buffer.from(encodedSignature, "base64url");
    const expected = createHmac("sha256", key).update(token.slice(0, secondDot)).digest();
    // Constant time; the length of an HMAC-SHA256 is no secret.
    if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) {
      invalid("its signature does not verify with this gateway's HS256 secret (JWT_SECRET)");
    }
    const claims = jsonObject(token.slice(firstDot + 1, secondDot)) as JWTPayload;
    if (claims.iss !== issuer) invalid(`its iss is not this gateway's issuer ${JSON.stringify(issuer)} (JWT_ISSUER)`);
    const aud = claims.aud;
    if (!(aud === audience || (Array.isArray(aud) && aud.includes(audience)))) {
      invalid(`its aud does not include this gateway's audience ${JSON.stringify(audience)} (JWT_AUDIENCE)`);
    }
    const now = Math.floor(Date.now() / 1000);
    if (claims.exp === undefined) throw new GatewayHttpError("UNAUTHORIZED", "Token has no expiry (exp)");
    if (typeof claims.exp !== "number" || !Number.isFinite(claims.exp)) invalid("its exp is not a number");
    if (claims.iat !== undefined && typeof claims.iat !== "number") invalid("its iat is not a number");
    if (claims.nbf !== undefined && (typeof claims.nbf !== "number" || claims.nbf > now + clockToleranceSeconds)) invalid("its nbf is not a number, or in the future");
    if (claims.exp <= now - clockToleranceSeconds) throw new GatewayHttpError("EXPIRED_TOKEN", "Token has expired");
    return claims;
  };
}

/**
 * The refusal of a token, with why as its `cause`: the gateway's log line
 * says it (see logGatewayError), the caller only gets the usual 401. Never
 * any part of the token; only this gateway's own settings.
 */
function invalid(why: string): never {
  throw new GatewayHttpError("UNAUTHORIZED", INVALID, { cause: new TokenRefusal(why) });
}

/** Why a token was refused, for the gateway's log (see {@link invalid}). */
export class TokenRefusal extends Error {
  override name = "TokenRefusal";
}

/**
 * The `alg` of a token shaped like a JWS (three dot-separated parts, the
 * first a base64url JSON object), or `undefined` for anything else: how the
 * gateway tells an HS256 token from an RS256/ES256 one or an opaque one.
 */
export function jwsAlgorithm(token: string): string | undefined {
  const parts = token.split(".");
  if (parts.length !== 3) return undefined;
  try {
    const alg = jsonObject(parts[0] as string).alg;
    return typeof alg === "string" ? alg : undefined;
  } catch {
    return undefined;
  }
}

/** A base64url-encoded JSON object, or a refusal. */
function jsonObject(part: string): Record<string, unknown> {
  if (!/^[A-Za-z0-9_-]+$/.test(part)) invalid("a part is not base64url");
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
  } catch {
    invalid("a part is not JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) invalid("a part is not a JSON object");
  return value as Record<string, unknown>;
}
