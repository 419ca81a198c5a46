/**
 * The gateway's wire contract: pure functions, no I/O. v1 is the format the
 * Ruby implementation signs (README, "The signature (wire contract)"); v2
 * (docs/signature-v2.md) signs every identity header and a request id. The client, the server, the testing helpers and the
 * gateway all sign and verify through this module and nothing else.
 *
 * @module connect-gateway/signing
 */
export { bodySha256, EMPTY_BODY_SHA256 } from "./body-sha256.js";
export {
  canonicalRequestV2,
  KEY_ID,
  REQUEST_ID,
  SIGNATURE_V2_LABEL,
  type SigningPartsV2,
} from "./canonical-request-v2.js";
export {
  checkGatewayHeaders,
  readGatewayHeaders,
  type CheckedGatewayHeaders,
  type CheckGatewayHeadersOptions,
  type GatewayHeaderCheck,
  type ReceivedGatewayHeaders,
  type SignatureV2Headers,
} from "./check-gateway-headers.js";
export { fullpathOf } from "./fullpath-of.js";
export {
  gatewayHeader,
  identityHeaderNames,
  isGatewayControlledHeader,
  isUnsignedIdentityHeader,
  normalisedHeaderName,
  type IdentityHeaderName,
} from "./gateway-headers.js";
export { gatewayRejectionReasons, type GatewayRejectionReason } from "./gateway-rejection-reason.js";
export {
  gatewaySignatureHeaders,
  type GatewaySignatureOptions,
  type RequestToSign,
} from "./gateway-signature-headers.js";
export { GatewaySigningError } from "./gateway-signing-error.js";
export {
  identityFieldHeader,
  identityFields,
  identityFromHeaders,
  identityHeaders,
  textFromOctets,
  utf8TextOf,
  type CallerIdentity,
  type IdentityField,
  type IdentityHeaderValues,
} from "./identity-headers.js";
export { signGatewayRequest } from "./sign-gateway-request.js";
export { gatewayKeyId, newRequestId, signGatewayRequestV2 } from "./sign-gateway-request-v2.js";
export type { SigningParts } from "./signing-parts.js";
export { stringToSign } from "./string-to-sign.js";
export { verifyGatewaySignature } from "./verify-gateway-signature.js";
export { gatewayKeyring, verifyGatewaySignatureV2, type GatewayKeyring } from "./verify-gateway-signature-v2.js";
