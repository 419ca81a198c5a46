import { bodySha256 as hashBody } from "./body-sha256.js";
import { fullpathOf } from "./fullpath-of.js";
import { gatewayHeader, type IdentityHeaderName } from "./gateway-headers.js";
import { identityHeaders, type IdentityHeaderValues } from "./identity-headers.js";
import { signGatewayRequest } from "./sign-gateway-request.js";
import { gatewayKeyId, newRequestId, signGatewayRequestV2 } from "./sign-gateway-request-v2.js";

/** The request a gateway signs, as it will be forwarded. */
export interface RequestToSign {
  /** The HTTP method it will be forwarded with, e.g. `POST`. */
  readonly method: string;
  /** The request-target as it will be sent upstream (path and query). */
  readonly requestTarget: string;
  /** The exact body bytes, or their lower-case hex SHA-256. */
  readonly body:
    | Uint8Array
    | string
    | {
        /** The body's lower-case hex SHA-256, when the bytes are not at hand (e.g. streamed). */
        readonly sha256: string;
      };
  /** The `Content-Type` it will be sent with; `undefined` when none. Signed by v2. */
  readonly contentType?: string | undefined;
  /** The `Content-Encoding` it will be sent with; `undefined` when none. Signed by v2. */
  readonly contentEncoding?: string | undefined;
}

/** Options of {@link gatewaySignatureHeaders}. */
export interface GatewaySignatureOptions {
  /** Unix seconds; default now. */
  readonly nowSeconds?: number;
  /** The v2 request id; default a fresh random one. Only tests fix it. */
  readonly requestId?: string;
}

/**
 * Every header the gateway adds to a forwarded request: the identity
 * headers, `X-Gateway-Timestamp`, the v1 signature `X-Gateway-Signature`
 * (the Ruby implementation's v1 format, for services that only know v1) and
 * the v2 signature `X-Gateway-Signature-V2` with its `X-Gateway-Request-Id`
 * (which covers every identity header and makes each request unique). Used
 * by the gateway itself and by the testing helpers, so both sign alike.
 *
 * Throws `GatewaySigningError` for values that cannot be signed unambiguously.
 *
 * @see docs/signature-v2.md
 */
export function gatewaySignatureHeaders(
  secret: string | Uint8Array,
  request: RequestToSign,
  identity: IdentityHeaderValues,
  options: GatewaySignatureOptions | number = {},
): Record<string, string> {
  const { nowSeconds = Date.now() / 1000, requestId = newRequestId() } =
    typeof options === "number" ? { nowSeconds: options } : options;
  const timestamp = String(Math.floor(nowSeconds));
  const sha256 =
    typeof request.body === "object" && "sha256" in request.body ? request.body.sha256 : hashBody(request.body);
  const headers = identityHeaders(identity);
  const signature = signGatewayRequest(secret, {
    method: request.method,
    timestamp,
    clientId: identity.clientId,
    userId: identity.userId,
    fullpath: fullpathOf(request.requestTarget),
    bodySha256: sha256,
  });
  const keyId = gatewayKeyId(secret);
  const signatureV2 = signGatewayRequestV2(secret, {
    keyId,
    method: request.method,
    requestTarget: request.requestTarget,
    timestamp,
    requestId,
    bodySha256: sha256,
    contentType: request.contentType,
    contentEncoding: request.contentEncoding,
    identity: headers as Partial<Record<IdentityHeaderName, string>>,
  });
  return {
    ...headers,
    [gatewayHeader.timestamp]: timestamp,
    [gatewayHeader.signature]: signature,
    [gatewayHeader.requestId]: requestId,
    [gatewayHeader.signatureV2]: `${keyId}:${signatureV2}`,
  };
}
