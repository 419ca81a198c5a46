import { bodySha256 as hashBody } from "./body-sha256.js";
import { fullpathOf } from "./fullpath-of.js";
import { gatewayHeader } from "./gateway-headers.js";
import { identityHeaders, type IdentityHeaderValues } from "./identity-headers.js";
import { signGatewayRequest } from "./sign-gateway-request.js";

/** The request a gateway signs, as it will be forwarded. */
export interface RequestToSign {
  readonly method: string;
  /** The request-target as it will be sent upstream (path and query). */
  readonly requestTarget: string;
  /** The exact body bytes, or their lower-case hex SHA-256. */
  readonly body: Uint8Array | string | { readonly sha256: string };
}

/**
 * Every header the gateway adds to a forwarded request: the identity headers
 * and `X-Gateway-Timestamp` / `X-Gateway-Signature` over them. Used by the
 * gateway itself and by the testing helpers, so both sign the same way.
 */
export function gatewaySignatureHeaders(
  secret: string | Uint8Array,
  request: RequestToSign,
  identity: IdentityHeaderValues,
  nowSeconds: number = Math.floor(Date.now() / 1000),
): Record<string, string> {
  const timestamp = String(Math.floor(nowSeconds));
  const sha256 =
    typeof request.body === "object" && "sha256" in request.body
      ? request.body.sha256
      : hashBody(request.body);
  const signature = signGatewayRequest(secret, {
    method: request.method,
    timestamp,
    clientId: identity.clientId,
    userId: identity.userId,
    fullpath: fullpathOf(request.requestTarget),
    bodySha256: sha256,
  });
  return {
    ...identityHeaders(identity),
    [gatewayHeader.timestamp]: timestamp,
    [gatewayHeader.signature]: signature,
  };
}
