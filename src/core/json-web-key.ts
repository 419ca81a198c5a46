import { createPrivateKey, createPublicKey, KeyObject, type webcrypto } from "node:crypto";

/**
 * A JSON Web Key (RFC 7517) as a plain object: parsed from JSON, or what
 * `keyObject.export({ format: "jwk" })` returns.
 *
 * Our own type rather than `node:crypto`'s: `@types/node` moved its
 * `JsonWebKey` (to `webcrypto.JsonWebKey`, without `kid`) in version 25, and
 * a public signature naming either would stop compiling for some of our
 * users. Both spellings are accepted (see {@link JsonWebKeyInput}).
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc7517 | RFC 7517} (JSON Web Key)
 */
export interface JsonWebKeyObject {
  /** The key type: `RSA`, `EC` or `OKP`. */
  readonly kty?: string;
  /** The key id, when the key has one. */
  readonly kid?: string;
  /** The algorithm the key is meant for, when it says. */
  readonly alg?: string;
  /** Every other member (`n`, `e`, `d`, `crv`, `x`, `y`, …). */
  readonly [member: string]: unknown;
}

/** A JWK as a caller may hold it: our {@link JsonWebKeyObject}, or Node's `webcrypto.JsonWebKey`. */
export type JsonWebKeyInput = JsonWebKeyObject | webcrypto.JsonWebKey;

/** True when `value` is a JWK object: not a `KeyObject`, with a string `kty`. */
export function isJsonWebKey(value: unknown): value is JsonWebKeyObject {
  return typeof value === "object" && value !== null && !(value instanceof KeyObject) && typeof (value as JsonWebKeyObject).kty === "string";
}

// Node's own parameter type, whichever @types/node spells it.
type NodeJwk = Extract<Parameters<typeof createPublicKey>[0], { format: "jwk" }>["key"];

/** `createPrivateKey` of a JWK object (throws as Node does for one it cannot import). */
export function privateKeyOfJwk(jwk: JsonWebKeyInput): KeyObject {
  return createPrivateKey({ key: jwk as NodeJwk, format: "jwk" });
}

/** `createPublicKey` of a JWK object (throws as Node does for one it cannot import). */
export function publicKeyOfJwk(jwk: JsonWebKeyInput): KeyObject {
  return createPublicKey({ key: jwk as NodeJwk, format: "jwk" });
}
