import { GatewaySigningError } from "./gateway-signing-error.js";
import { identityHeaderNames, type IdentityHeaderName } from "./gateway-headers.js";

/**
 * Everything signature v2 covers (docs/signature-v2.md §5). Header values are
 * given as Node exposes them: one character per octet. `undefined` is an
 * absent header, distinct from an empty one.
 */
export interface SigningPartsV2 {
  /** Names the secret that signs; see {@link gatewayKeyId}. */
  readonly keyId: string;
  /** As sent, not case-folded. */
  readonly method: string;
  /** The request-target as sent: path and query, a `?` with an empty query kept. */
  readonly requestTarget: string;
  /** `X-Gateway-Timestamp`: unix seconds, digits only. */
  readonly timestamp: string;
  /** `X-Gateway-Request-Id`; see {@link newRequestId}. */
  readonly requestId: string;
  /** Lower-case hex SHA-256 of the body octets as sent. */
  readonly bodySha256: string;
  /** `Content-Type` as sent; signed so a proxy cannot change how the body is read. */
  readonly contentType: string | undefined;
  /** `Content-Encoding` as sent (e.g. `gzip`); signed for the same reason. */
  readonly contentEncoding: string | undefined;
  /** The identity headers by lower-case name; a missing name is an absent header. */
  readonly identity: Readonly<Partial<Record<IdentityHeaderName, string>>>;
}

/** The first line of every v2 canonical request: a v1 string or a v3 one can never equal it. */
export const SIGNATURE_V2_LABEL = "connect-gateway-signature-v2";

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const TARGET = /^[\x21-\x7e\x80-\xff]+$/;
// A header value that survives HTTP as is: visible octets, inner spaces and
// tabs; none leading or trailing, which parsers strip.
const HEADER_VALUE = /^(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?$/;
const DIGITS = /^[0-9]+$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;

/** A request id: 22 to 128 characters of base64url, no padding (at least 128 bits). */
export const REQUEST_ID = /^[A-Za-z0-9_-]{22,128}$/;
/** A key id: 1 to 64 characters of `A-Z a-z 0-9 . _ -`. */
export const KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * The canonical request of signature v2: the label line, then sixteen
 * length-prefixed fields (`<octets>:<value>\n`, or `-\n` when absent), as a
 * string of one character per octet (hash it as `latin1`).
 *
 * Length prefixes make it injective: no value, whatever it contains, can
 * shift what the next field is. Throws {@link GatewaySigningError} for a value
 * that could not travel in an HTTP request as it is (so it could be signed
 * but never verified).
 */
export function canonicalRequestV2(parts: SigningPartsV2): string {
  check(KEY_ID.test(parts.keyId), "keyId must be 1-64 characters of A-Z a-z 0-9 . _ -");
  checkMethodAndTarget(parts);
  check(DIGITS.test(parts.timestamp), "timestamp must be unix seconds (digits only)");
  check(REQUEST_ID.test(parts.requestId), "requestId must be 22-128 characters of base64url");
  check(SHA256_HEX.test(parts.bodySha256), "bodySha256 must be 64 lower-case hex characters");
  return canonicalOfCheckedParts(parts);
}

/**
 * {@link canonicalRequestV2} for a verifier whose header check already
 * proved the key id, the timestamp and the request id well-formed (with the
 * same patterns) and whose body hash is its own hex digest: the same string,
 * or the same error for the method, request-target and header values, which
 * are still checked here. Not exported from the module.
 */
export function canonicalOfCheckedIds(parts: SigningPartsV2): string {
  checkMethodAndTarget(parts);
  return canonicalOfCheckedParts(parts);
}

function checkMethodAndTarget(parts: SigningPartsV2): void {
  check(TOKEN.test(parts.method), "method must be an HTTP token");
  check(TARGET.test(parts.requestTarget), "requestTarget must be a non-empty request-target without spaces or control characters");
}

// The string itself; each header value is checked as it is added.
function canonicalOfCheckedParts(parts: SigningPartsV2): string {
  let canonical =
    SIGNATURE_V2_LABEL +
    "\n" +
    field(parts.keyId) +
    field(parts.method) +
    field(parts.requestTarget) +
    field(parts.timestamp) +
    field(parts.requestId) +
    field(parts.bodySha256) +
    headerField("content-type", parts.contentType) +
    headerField("content-encoding", parts.contentEncoding);
  for (const name of identityHeaderNames) canonical += headerField(name, parts.identity[name]);
  return canonical;
}

function headerField(name: string, value: string | undefined): string {
  if (value === undefined) return "-\n";
  check(HEADER_VALUE.test(value), `${name} must be a header value that HTTP carries unchanged`);
  return field(value);
}

function field(value: string): string {
  return `${value.length}:${value}\n`;
}

function check(ok: boolean, message: string): void {
  if (!ok) throw new GatewaySigningError(message);
}
