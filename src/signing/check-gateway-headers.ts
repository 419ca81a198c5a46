import { gatewayHeader, isGatewayControlledHeader } from "./gateway-headers.js";
import type { GatewayRejectionReason } from "./gateway-rejection-reason.js";
import type { IdentityHeaderValues } from "./identity-headers.js";
import { isDigits, isSignableId } from "./string-to-sign.js";

/** The gateway headers of a request that passed {@link checkGatewayHeaders}. */
export interface CheckedGatewayHeaders {
  readonly timestamp: string;
  readonly signature: string;
  readonly identity: IdentityHeaderValues;
}

/** The outcome of {@link checkGatewayHeaders}. */
export type GatewayHeaderCheck =
  | { readonly ok: true; readonly headers: CheckedGatewayHeaders }
  | { readonly ok: false; readonly reason: GatewayRejectionReason };

/** Options of {@link checkGatewayHeaders}. */
export interface CheckGatewayHeadersOptions {
  /** The verifier's clock, unix seconds. */
  readonly nowSeconds: number;
  /** The replay window, either direction. */
  readonly maxSkewSeconds: number;
}

/**
 * Everything that can be checked before the body is read: the three required
 * headers are present, none of the gateway's headers is repeated, the
 * timestamp is digits within the window, and the ids can be signed
 * unambiguously. Takes Node's `rawHeaders` (name, value, name, value, …),
 * the only form in which a repeated header is still visible.
 */
export function checkGatewayHeaders(
  rawHeaders: readonly string[],
  options: CheckGatewayHeadersOptions,
): GatewayHeaderCheck {
  const values = new Map<string, string>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase();
    if (!isGatewayControlledHeader(name)) continue;
    if (values.has(name)) return { ok: false, reason: "malformed_gateway_headers" };
    values.set(name, rawHeaders[i + 1] as string);
  }
  const timestamp = values.get(gatewayHeader.timestamp);
  const signature = values.get(gatewayHeader.signature);
  const clientId = values.get(gatewayHeader.clientId);
  if (!timestamp || !signature || !clientId) {
    return { ok: false, reason: "missing_gateway_headers" };
  }
  const userId = values.get(gatewayHeader.userId);
  if (!isDigits(timestamp) || !isSignableId(clientId) || !isSignableId(userId ?? "")) {
    return { ok: false, reason: "malformed_gateway_headers" };
  }
  // Compare as numbers only after the digit check: no "1e9", " 1", "0x10".
  if (Math.abs(options.nowSeconds - Number(timestamp)) > options.maxSkewSeconds) {
    return { ok: false, reason: "timestamp_out_of_window" };
  }
  const scopes = values.get(gatewayHeader.scopes);
  return {
    ok: true,
    headers: {
      timestamp,
      signature,
      identity: {
        clientId,
        userId,
        email: values.get(gatewayHeader.email),
        firstName: values.get(gatewayHeader.firstName),
        lastName: values.get(gatewayHeader.lastName),
        scopes: scopes === undefined ? [] : scopes.split(" ").filter((s) => s !== ""),
      },
    },
  };
}
