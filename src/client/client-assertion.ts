import { constants, createPrivateKey, KeyObject, randomBytes, sign } from "node:crypto";
import { isJsonWebKey, privateKeyOfJwk } from "../core/json-web-key.js";
import { assertNonEmptyString, assertOneOf } from "../core/assertions.js";
import { ConfigurationError } from "../core/errors.js";

/**
 * The JWS algorithms a `private_key_jwt` client assertion can be signed with:
 * `RS256` (RSASSA-PKCS1-v1_5) and `PS256` (RSASSA-PSS) with an RSA key of at
 * least 2048 bits, `ES256` with a P-256 EC key, `EdDSA` with an Ed25519 key —
 * all with SHA-256 where a hash is chosen.
 *
 * @see https://www.rfc-editor.org/rfc/rfc7518#section-3.1
 * @see https://www.rfc-editor.org/rfc/rfc8037#section-3.1
 */
export type ClientAssertionAlgorithm = "RS256" | "PS256" | "ES256" | "EdDSA";

/** Every {@link ClientAssertionAlgorithm}. */
export const CLIENT_ASSERTION_ALGORITHMS: readonly ClientAssertionAlgorithm[] = ["RS256", "PS256", "ES256", "EdDSA"];

/** How long a client assertion is valid: `exp` is `iat` plus this many seconds. */
export const CLIENT_ASSERTION_LIFETIME_SECONDS = 60;

/**
 * A private key checked and imported by {@link importClientAssertionKey},
 * ready for {@link signClientAssertion}.
 */
export interface ClientAssertionKey {
  /** The imported private key. */
  readonly privateKey: KeyObject;
  /** The algorithm it signs with: the one asked for, or the one inferred from the key. */
  readonly algorithm: ClientAssertionAlgorithm;
  /** The `kid` of the assertion's header, if any. */
  readonly keyId: string | undefined;
}

/**
 * The names the errors of {@link importClientAssertionKey} use for each
 * input: option paths (`clientAuthentication.privateKey`) or environment
 * variables (`GATEWAY_CLIENT_PRIVATE_KEY`).
 */
export interface ClientAssertionKeyNames {
  /** The name of the private key. */
  readonly privateKey: string;
  /** The name of the algorithm. */
  readonly algorithm: string;
  /** The name of the key id. */
  readonly keyId: string;
}

const KEY_TYPES = "an RSA key of 2048 bits or more, an EC P-256 key or an Ed25519 key";
const KEY_FORMS = "a KeyObject, a PEM string (PKCS#8, PKCS#1 or SEC1) or a JWK object";

/**
 * Imports and checks the private key of `private_key_jwt`, so that a key that
 * cannot sign fails at construction rather than at the first token request:
 * a `KeyObject`, a PEM string or a JWK object (whose `kid` and `alg` serve as
 * defaults of `keyId` and `algorithm`); an encrypted PEM is refused. Without
 * `algorithm`, it is inferred from the key: `RS256` for RSA (and `PS256` for
 * an RSA-PSS key), `ES256` for P-256, `EdDSA` for Ed25519. Throws a
 * {@link ConfigurationError} naming the input at fault; no message ever
 * contains key material.
 */
export function importClientAssertionKey(
  input: { readonly privateKey: unknown; readonly algorithm?: unknown; readonly keyId?: unknown },
  names: ClientAssertionKeyNames,
): ClientAssertionKey {
  const privateKey = toPrivateKey(input.privateKey, names.privateKey);
  const jwk = isJsonWebKey(input.privateKey) ? input.privateKey : undefined;
  const fitting = algorithmsFor(privateKey, names.privateKey);
  const algorithm =
    input.algorithm !== undefined
      ? assertOneOf(names.algorithm, input.algorithm, CLIENT_ASSERTION_ALGORITHMS)
      : jwk?.alg !== undefined
        ? assertOneOf(names.privateKey, jwk.alg, CLIENT_ASSERTION_ALGORITHMS, {
            expected: `a JWK whose "alg", when present, is one of ${CLIENT_ASSERTION_ALGORITHMS.join(", ")}`,
          })
        : fitting[0]!;
  if (!fitting.includes(algorithm)) {
    throw new ConfigurationError(
      names.algorithm,
      `is ${algorithm}, which does not fit ${names.privateKey}, ${describeKey(privateKey)}: ` +
        `use ${fitting.join(" or ")}, or a key of the right type.`,
    );
  }
  const keyId = input.keyId ?? (typeof jwk?.kid === "string" ? jwk.kid : undefined);
  const key: ClientAssertionKey = {
    privateKey,
    algorithm,
    keyId: keyId === undefined ? undefined : assertNonEmptyString(names.keyId, keyId),
  };
  try {
    // Signing once now finds what the checks above cannot (say, an RSA-PSS
    // key restricted to another hash) before any token request.
    signature(key, Buffer.from("connect-gateway"));
  } catch {
    throw new ConfigurationError(names.privateKey, `cannot sign with ${algorithm}: use ${KEY_TYPES}.`);
  }
  return key;
}

/** What {@link signClientAssertion} asserts. */
export interface ClientAssertionClaims {
  /** The OAuth2 client id: both `iss` and `sub`. */
  readonly clientId: string;
  /** The token endpoint URL: `aud`. */
  readonly audience: string;
  /** Seconds since the epoch for `iat`. Default: now. */
  readonly issuedAt?: number;
}

/**
 * Signs a `private_key_jwt` client assertion (RFC 7523 §2.2 and §3, OpenID
 * Connect Core §9): a compact JWS with the header `{ alg, typ: "JWT", kid? }`
 * and the claims `iss` = `sub` = the client id, `aud` = the token endpoint,
 * a random 128-bit `jti`, `iat`, and `exp` 60 seconds later. Every call
 * returns a fresh assertion (a new `jti`): the authorization server may refuse
 * one it has seen before.
 *
 * @see https://www.rfc-editor.org/rfc/rfc7523#section-2.2
 * @see https://www.rfc-editor.org/rfc/rfc7523#section-3
 * @see https://openid.net/specs/openid-connect-core-1_0.html#ClientAuthentication
 */
export function signClientAssertion(key: ClientAssertionKey, claims: ClientAssertionClaims): string {
  const iat = claims.issuedAt ?? Math.floor(Date.now() / 1000);
  const header = { alg: key.algorithm, typ: "JWT", ...(key.keyId !== undefined && { kid: key.keyId }) };
  const payload = {
    iss: claims.clientId,
    sub: claims.clientId,
    aud: claims.audience,
    jti: randomBytes(16).toString("base64url"),
    iat,
    exp: iat + CLIENT_ASSERTION_LIFETIME_SECONDS,
  };
  const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(payload))}`;
  return `${signingInput}.${signature(key, Buffer.from(signingInput)).toString("base64url")}`;
}

function base64url(text: string): string {
  return Buffer.from(text, "utf8").toString("base64url");
}

// The JWS signature of RFC 7518 §3: ES256 is r‖s (IEEE P1363), not DER; PS256
// uses a salt as long as the hash (32 bytes).
function signature({ privateKey, algorithm }: ClientAssertionKey, data: Buffer): Buffer {
  switch (algorithm) {
    case "RS256":
      return sign("sha256", data, { key: privateKey, padding: constants.RSA_PKCS1_PADDING });
    case "PS256":
      return sign("sha256", data, {
        key: privateKey,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: 32,
      });
    case "ES256":
      return sign("sha256", data, { key: privateKey, dsaEncoding: "ieee-p1363" });
    case "EdDSA":
      return sign(null, data, privateKey);
  }
}

// Node's own parse errors are never passed on as a cause: only the problem is
// named, never anything of the key.
function toPrivateKey(value: unknown, name: string): KeyObject {
  if (value instanceof KeyObject) {
    if (value.type !== "private") throw new ConfigurationError(name, `must be a private key; this KeyObject is a ${value.type} key.`);
    return value;
  }
  if (typeof value === "string") {
    if (/-----BEGIN (ENCRYPTED PRIVATE KEY|[A-Z ]*PRIVATE KEY-----[^-]*Proc-Type: 4,ENCRYPTED)/.test(value)) {
      throw new ConfigurationError(name, "is an encrypted PEM key: decrypt it, or pass a KeyObject made with crypto.createPrivateKey.");
    }
    if (/-----BEGIN (PUBLIC KEY|RSA PUBLIC KEY|CERTIFICATE)-----/.test(value)) {
      throw new ConfigurationError(name, "must be a private key, not a public key or a certificate.");
    }
    try {
      return createPrivateKey({ key: value, format: "pem" });
    } catch {
      throw new ConfigurationError(name, `is not a valid PEM private key: it must be ${KEY_FORMS}.`);
    }
  }
  if (isJsonWebKey(value)) {
    if (typeof value.d !== "string") throw new ConfigurationError(name, "is a JWK without private key material (no \"d\"): pass the private JWK.");
    let key: KeyObject | undefined;
    try {
      key = privateKeyOfJwk(value);
    } catch {
      // Refused below.
    }
    // Node 22 imports an RSA JWK with an empty modulus as a 0-bit key; Node 24 refuses it.
    if (key === undefined || (key.asymmetricKeyType === "rsa" && !key.asymmetricKeyDetails?.modulusLength)) {
      throw new ConfigurationError(name, `is not a valid private JWK: it must be ${KEY_TYPES}.`);
    }
    return key;
  }
  throw new ConfigurationError(name, `must be a private key: ${KEY_FORMS}.`);
}


function algorithmsFor(key: KeyObject, name: string): readonly ClientAssertionAlgorithm[] {
  const details = key.asymmetricKeyDetails;
  switch (key.asymmetricKeyType) {
    case "rsa":
    case "rsa-pss":
      if ((details?.modulusLength ?? 0) < 2048) {
        throw new ConfigurationError(name, `is an RSA key of ${details?.modulusLength ?? "unknown"} bits: RS256 and PS256 need 2048 bits or more.`);
      }
      return key.asymmetricKeyType === "rsa" ? ["RS256", "PS256"] : ["PS256"];
    case "ec":
      if (details?.namedCurve === "prime256v1") return ["ES256"];
      break;
    case "ed25519":
      return ["EdDSA"];
  }
  throw new ConfigurationError(name, `is ${describeKey(key)}; it must be ${KEY_TYPES}.`);
}

// E.g. "a key of type EC (curve secp384r1)": the type, never the key.
function describeKey(key: KeyObject): string {
  const type = key.asymmetricKeyType ?? key.type;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  const labels: Record<string, string> = { rsa: "RSA", "rsa-pss": "RSA-PSS", ec: "EC", ed25519: "Ed25519", ed448: "Ed448" };
  return `a key of type ${labels[type] ?? type}${curve === undefined ? "" : ` (curve ${curve})`}`;
}
