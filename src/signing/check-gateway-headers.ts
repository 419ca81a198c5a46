import { KEY_ID, REQUEST_ID } from "./canonical-request-v2.js";
import {
  gatewayHeader,
  identityHeaderNames,
  isControlledLowerCase,
  isUnsignedIdentityLowerCase,
  type IdentityHeaderName,
} from "./gateway-headers.js";
import type { GatewayRejectionReason } from "./gateway-rejection-reason.js";
import { identityFromHeaders, type IdentityHeaderValues } from "./identity-headers.js";
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

const SIGNATURE_V2 = /^([A-Za-z0-9._-]{1,64}):([0-9a-f]{64})$/;

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
  const { values, repeated, unsignedIdentity } = readGatewayHeaders(rawHeaders);
  const v2Header = values.get(gatewayHeader.signatureV2);
  const timestamp = values.get(gatewayHeader.timestamp);
  const clientId = values.get(gatewayHeader.clientId);
  const signature = values.get(gatewayHeader.signature);
  const requestId = values.get(gatewayHeader.requestId);
  if (repeated) return { ok: false, reason: "malformed_gateway_headers" };
  let v2: SignatureV2Headers | undefined;
  if (v2Header !== undefined) {
    if (!timestamp || !clientId || !requestId || !v2Header) return { ok: false, reason: "missing_gateway_headers" };
    const parsed = SIGNATURE_V2.exec(v2Header);
    if (parsed === null || !isDigits(timestamp) || !REQUEST_ID.test(requestId) || !KEY_ID.test(parsed[1] as string)) {
      return { ok: false, reason: "malformed_gateway_headers" };
    }
    if (unsignedIdentity) return { ok: false, reason: "unsigned_identity" };
    v2 = { keyId: parsed[1] as string, signature: parsed[2] as string, requestId };
  } else {
    if (!timestamp || !signature || !clientId) return { ok: false, reason: "missing_gateway_headers" };
    const userId = values.get(gatewayHeader.userId);
    if (!isDigits(timestamp) || !isSignableId(clientId) || !isSignableId(userId ?? "")) {
      return { ok: false, reason: "malformed_gateway_headers" };
    }
  }
  // Compare as numbers only after the digit check: no "1e9", " 1", "0x10".
  if (Math.abs(options.nowSeconds - Number(timestamp)) > options.maxSkewSeconds) {
    return { ok: false, reason: "timestamp_out_of_window" };
  }
  const identityHeaders: Partial<Record<IdentityHeaderName, string>> = {};
  for (const name of identityHeaderNames) {
    const value = values.get(name);
    if (value !== undefined) identityHeaders[name] = value;
  }
  return {
    ok: true,
    headers: {
      timestamp,
      signature,
      v2,
      contentType: values.get("content-type"),
      contentEncoding: values.get("content-encoding"),
      identityHeaders,
      identity: identityFromHeaders(clientId, (name) => identityHeaders[name]),
    },
  };
}
