// The gateway's wire contract (SPEC §4): pure functions, no I/O, byte-compatible
// with the Ruby gem. The client, the server, the testing helpers and the
// gateway all sign and verify through this module and nothing else.
export { bodySha256, EMPTY_BODY_SHA256 } from "./body-sha256.js";
export {
  checkGatewayHeaders,
  type CheckedGatewayHeaders,
  type CheckGatewayHeadersOptions,
  type GatewayHeaderCheck,
} from "./check-gateway-headers.js";
export { fullpathOf } from "./fullpath-of.js";
export { gatewayHeader, isGatewayControlledHeader } from "./gateway-headers.js";
export type { GatewayRejectionReason } from "./gateway-rejection-reason.js";
export { gatewaySignatureHeaders, type RequestToSign } from "./gateway-signature-headers.js";
export { GatewaySigningError } from "./gateway-signing-error.js";
export { identityHeaders, type IdentityHeaderValues } from "./identity-headers.js";
export { signGatewayRequest } from "./sign-gateway-request.js";
export type { SigningParts } from "./signing-parts.js";
export { stringToSign } from "./string-to-sign.js";
export { verifyGatewaySignature } from "./verify-gateway-signature.js";
