import { KEY_ID, REQUEST_ID } from "./canonical-request-v2.js";
import {
  gatewayHeader,
  identityHeaderNames,
  isControlledLowerCase,
  isUnsignedIdentityLowerCase,
  type IdentityHeaderName,
} from "./gateway-headers.js";
import type { GatewayRejectionReason } from "./gateway-rejection-reason.js";
import {
  identityFieldHeader,
  textFromOctets,
  type IdentityField,
  type IdentityHeaderValues,
} from "./identity-headers.js";
import { isDigits, isSignableId } from "./string-to-sign.js";

/** The v2 signature headers of a request (docs/signature-v2.md §1). */
export interface SignatureV2Headers {
  /** The key id before the `:` of `X-Gateway-Signature-V2`: which secret signed. */
  readonly keyId: string;
  /** 64 lower-case hex characters. */
  readonly signature: string;
  /** `X-Gateway-Request-Id`: unique per request, remembered to refuse replays. */
  readonly requestId: string;
}

/** The gateway headers of a request that passed {@link checkGatewayHeaders}. */
export interface CheckedGatewayHeaders {
  /** `X-Gateway-Timestamp`: unix seconds, all digits, inside the window. */
  readonly timestamp: string;
  /** The v1 signature; may be absent when v2 is present. */
  readonly signature: string | undefined;
  /** Present when the request carries `X-Gateway-Signature-V2`: then only v2 decides. */
  readonly v2: SignatureV2Headers | undefined;
  /** `Content-Type` as received (signed by v2). */
  readonly contentType: string | undefined;
  /** `Content-Encoding` as received (signed by v2). */
  readonly contentEncoding: string | undefined;
  /** The identity headers as received, by name: what v2 signs. */
  readonly identityHeaders: Readonly<Partial<Record<IdentityHeaderName, string>>>;
  /** The same, parsed (scopes split on spaces; `undefined` when the header is absent). */
  readonly identity: IdentityHeaderValues;
}

/** The outcome of {@link checkGatewayHeaders}. */
export type GatewayHeaderCheck =
  | {
      /** The headers passed: read and hash the body, then verify the signature. */
      readonly ok: true;
      /** The checked headers, ready for signature verification. */
      readonly headers: CheckedGatewayHeaders;
    }
  | {
      /** Refused before the body is read. */
      readonly ok: false;
      /** Why, as a stable code to log or answer with. */
      readonly reason: GatewayRejectionReason;
    };

/** Options of {@link checkGatewayHeaders}. */
export interface CheckGatewayHeadersOptions {
  /** The verifier's clock, unix seconds. */
  readonly nowSeconds: number;
  /** The replay window, either direction. */
  readonly maxSkewSeconds: number;
}

// What `X-Gateway-Signature-V2` must be: `/^([A-Za-z0-9._-]{1,64}):([0-9a-f]{64})$/`,
// checked below without a regular expression (a key id, checked with KEY_ID,
// has no colon; the signature is 64 lower-case hex digits).
function isLowerHex64(value: string): boolean {
  if (value.length !== 64) return false;
  for (let i = 0; i < 64; i++) {
    const c = value.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

/** The headers of a request that matter to a verifier, as {@link readGatewayHeaders} found them. */
export interface ReceivedGatewayHeaders {
  /**
   * The first value of each gateway-controlled header (`X-Gateway-*`,
   * `X-Client-Id`, `X-User-*`, `X-Org-Id`), `Content-Type` and
   * `Content-Encoding`, by lower-case name.
   */
  readonly values: ReadonlyMap<string, string>;
  /** True when one of those headers appears more than once. */
  readonly repeated: boolean;
  /** True when a header looks like an identity header that no signature covers (`X-User-Admin`, `X_User_Id`). */
  readonly unsignedIdentity: boolean;
}

/**
 * Reads the headers a verifier looks at from Node's `rawHeaders` (name,
 * value, name, value, …), the only form in which a repeated header is still
 * visible: the first occurrence of each, and whether any repeats. The one
 * reader of the gateway headers, for {@link checkGatewayHeaders} and for a
 * service that trusts the identity headers without a signature (tests).
 */
export function readGatewayHeaders(rawHeaders: readonly string[]): ReceivedGatewayHeaders {
  const values = new Map<string, string>();
  let unsignedIdentity = false;
  let repeated = false;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase();
    const first = name.charCodeAt(0);
    // Only x-… and content-… names matter here: skip the rest cheaply.
    if (first !== 120 /* x */ && first !== 99 /* c */) continue;
    if (isControlledLowerCase(name) || name === "content-type" || name === "content-encoding") {
      if (values.has(name)) repeated = true;
      else values.set(name, rawHeaders[i + 1] as string);
    }
    if (first === 120 && isUnsignedIdentityLowerCase(name)) unsignedIdentity = true;
  }
  return { values, repeated, unsignedIdentity };
}

// The headers the verifier reads, each in its slot: one pass over
// `rawHeaders`, no map built per request (the verifier's hot path).
const TIMESTAMP = 0;
const SIGNATURE = 1;
const SIGNATURE_V2_SLOT = 2;
const REQUEST_ID_SLOT = 3;
const CONTENT_TYPE = 4;
const CONTENT_ENCODING = 5;
/** Not a gateway header: read for the verifier's early size check, never counted as repeated. */
const CONTENT_LENGTH = 6;
/** The identity headers follow, in the order of {@link identityHeaderNames}. */
const IDENTITY = 7;
const SLOT_COUNT = IDENTITY + identityHeaderNames.length;

const SLOTS: ReadonlyMap<string, number> = new Map<string, number>([
  [gatewayHeader.timestamp, TIMESTAMP],
  [gatewayHeader.signature, SIGNATURE],
  [gatewayHeader.signatureV2, SIGNATURE_V2_SLOT],
  [gatewayHeader.requestId, REQUEST_ID_SLOT],
  ["content-type", CONTENT_TYPE],
  ["content-encoding", CONTENT_ENCODING],
  ["content-length", CONTENT_LENGTH],
  ...identityHeaderNames.map((name, i) => [name, IDENTITY + i] as [string, number]),
]);

/** What {@link scanGatewayHeaders} found: the same as {@link readGatewayHeaders}, by slot. */
interface ScannedHeaders {
  /** The first value of each slot's header, `undefined` when absent. */
  readonly slots: (string | undefined)[];
  readonly repeated: boolean;
  readonly unsignedIdentity: boolean;
}

/**
 * {@link readGatewayHeaders}, for the verifier: the same first occurrences,
 * repeats and unsigned identity headers, in fixed slots rather than a map;
 * only names starting with `x` or `c` (either case) are lower-cased. A
 * gateway-controlled name without a slot (`X-Gateway-Foo`, `X-User-Admin`)
 * is still checked for repeats.
 */
function scanGatewayHeaders(rawHeaders: readonly string[]): ScannedHeaders {
  const slots = new Array<string | undefined>(SLOT_COUNT).fill(undefined);
  let repeated = false;
  let unsignedIdentity = false;
  let others: Set<string> | undefined;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const raw = rawHeaders[i] as string;
    const first = raw.charCodeAt(0) | 0x20; // ASCII letters to lower case
    if (first !== 120 /* x */ && first !== 99 /* c */) continue;
    const name = raw.toLowerCase();
    const slot = SLOTS.get(name);
    if (slot !== undefined) {
      if (slots[slot] === undefined) slots[slot] = rawHeaders[i + 1] as string;
      else if (slot !== CONTENT_LENGTH) repeated = true;
      continue; // a slot's name is spelled as the gateway spells it: never an unsigned identity header
    }
    if (first !== 120) continue;
    if (isControlledLowerCase(name)) {
      others ??= new Set();
      if (others.has(name)) repeated = true;
      else others.add(name);
    }
    if (isUnsignedIdentityLowerCase(name)) unsignedIdentity = true;
  }
  return { slots, repeated, unsignedIdentity };
}

/**
 * Everything that can be checked before the body is read: no gateway,
 * identity or content header is repeated; the required headers are present
 * (v2's when `X-Gateway-Signature-V2` is sent, otherwise v1's); formats;
 * under v2, no identity-looking header that v2 does not sign; the timestamp
 * within the window. Takes Node's `rawHeaders` (name, value, name, value, …),
 * the only form in which a repeated header is still visible.
 *
 * @see docs/signature-v2.md §6
 */
export function checkGatewayHeaders(
  rawHeaders: readonly string[],
  options: CheckGatewayHeadersOptions,
): GatewayHeaderCheck {
  const check = checkScannedHeaders(scanGatewayHeaders(rawHeaders), options);
  return check.ok ? { ok: true, headers: check.headers } : check;
}

/** {@link checkGatewayHeaders}, with the request's declared `Content-Length` (its first value). */
export type ScannedHeaderCheck =
  | { readonly ok: true; readonly headers: CheckedGatewayHeaders; readonly contentLength: string | undefined }
  | { readonly ok: false; readonly reason: GatewayRejectionReason };

/**
 * {@link checkGatewayHeaders} for a verifier, which also needs the declared
 * `Content-Length` (the first one, as Node's `req.headers` keeps it): read in
 * the same pass, so that `req.headers` need not be built for it.
 */
export function checkRequestHeaders(rawHeaders: readonly string[], options: CheckGatewayHeadersOptions): ScannedHeaderCheck {
  return checkScannedHeaders(scanGatewayHeaders(rawHeaders), options);
}

function checkScannedHeaders(scanned: ScannedHeaders, options: CheckGatewayHeadersOptions): ScannedHeaderCheck {
  const { slots, repeated, unsignedIdentity } = scanned;
  const v2Header = slots[SIGNATURE_V2_SLOT];
  const timestamp = slots[TIMESTAMP];
  const clientId = slots[IDENTITY];
  const signature = slots[SIGNATURE];
  const requestId = slots[REQUEST_ID_SLOT];
  if (repeated) return { ok: false, reason: "malformed_gateway_headers" };
  let v2: SignatureV2Headers | undefined;
  if (v2Header !== undefined) {
    if (!timestamp || !clientId || !requestId || !v2Header) return { ok: false, reason: "missing_gateway_headers" };
    // `<key id>:<64 lower-case hex>`, as SIGNATURE_V2 reads it (a key id has no colon).
    const colon = v2Header.indexOf(":");
    const keyId = v2Header.slice(0, colon);
    const signatureV2 = v2Header.slice(colon + 1);
    if (colon < 1 || !isLowerHex64(signatureV2) || !isDigits(timestamp) || !REQUEST_ID.test(requestId) || !KEY_ID.test(keyId)) {
      return { ok: false, reason: "malformed_gateway_headers" };
    }
    if (unsignedIdentity) return { ok: false, reason: "unsigned_identity" };
    v2 = { keyId, signature: signatureV2, requestId };
  } else {
    if (!timestamp || !signature || !clientId) return { ok: false, reason: "missing_gateway_headers" };
    const userId = slots[IDENTITY + 1];
    if (!isDigits(timestamp) || !isSignableId(clientId) || !isSignableId(userId ?? "")) {
      return { ok: false, reason: "malformed_gateway_headers" };
    }
  }
  // Compare as numbers only after the digit check: no "1e9", " 1", "0x10".
  if (Math.abs(options.nowSeconds - Number(timestamp)) > options.maxSkewSeconds) {
    return { ok: false, reason: "timestamp_out_of_window" };
  }
  const identityHeaders: Partial<Record<IdentityHeaderName, string>> = {};
  for (let i = 0; i < identityHeaderNames.length; i++) {
    const value = slots[IDENTITY + i];
    if (value !== undefined) identityHeaders[identityHeaderNames[i] as IdentityHeaderName] = value;
  }
  return {
    ok: true,
    headers: {
      timestamp,
      signature,
      v2,
      contentType: slots[CONTENT_TYPE],
      contentEncoding: slots[CONTENT_ENCODING],
      identityHeaders,
      identity: identityFromSlots(clientId, slots),
    },
    contentLength: slots[CONTENT_LENGTH],
  };
}

// identityFromHeaders over the slots: the same object, without a lookup
// closure per request. The mapped type makes the compiler name any identity
// field added later, so that none is forgotten here.
const slotOf = (field: Exclude<IdentityField, "clientId">) => IDENTITY + identityHeaderNames.indexOf(identityFieldHeader[field]);
const USER_ID = slotOf("userId");
const EMAIL = slotOf("email");
const FIRST_NAME = slotOf("firstName");
const LAST_NAME = slotOf("lastName");
const SCOPES = slotOf("scopes");
const ORG_ID = slotOf("orgId");
const ROLE = slotOf("role");

function identityFromSlots(clientId: string, slots: readonly (string | undefined)[]): IdentityHeaderValues {
  const scopes = textOf(slots[SCOPES]);
  const values: { [F in IdentityField]-?: IdentityHeaderValues[F] } = {
    clientId: textFromOctets(clientId),
    userId: textOf(slots[USER_ID]),
    email: textOf(slots[EMAIL]),
    firstName: textOf(slots[FIRST_NAME]),
    lastName: textOf(slots[LAST_NAME]),
    scopes: scopes === undefined ? undefined : scopes.split(" ").filter(nonEmpty),
    orgId: textOf(slots[ORG_ID]),
    role: textOf(slots[ROLE]),
  };
  return values;
}

/** A value as identityFromHeaders reads it: UTF-8 octets (see textFromOctets). */
function textOf(value: string | undefined): string | undefined {
  return value === undefined ? undefined : textFromOctets(value);
}

function nonEmpty(scope: string): boolean {
  return scope !== "";
}
