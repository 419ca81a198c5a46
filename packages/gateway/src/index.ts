/**
 * The gateway role: a routes.yaml API gateway that validates
 * tokens, enforces scopes, signs with the shared HMAC secret and forwards.
 *
 * @module @connect-gateway/gateway
 */
export { createGateway, DEFAULT_DRAIN_TIMEOUT_MS, type Gateway } from "./create-gateway.js";
export {
  GatewayConfigError,
  type GatewayConfig,
  type RateLimitConfig,
} from "./gateway-config.js";
export { gatewayErrorCodes, GatewayHttpError, type GatewayErrorCode } from "./gateway-http-error.js";
export type { GatewayErrorEnvelope } from "./error-response.js";
export { defaultClaimMapping, type CallerIdentity, type ClaimMapping } from "./identity-claims.js";
export {
  loadRoutesFile,
  parseRoutesFile,
  RoutesFileError,
  routeMethods,
  type GatewayBackend,
  type GatewayRoute,
  type RouteMethod,
  type RoutesFile,
  type RoutesFileCors,
  type RoutesFileOptions,
  type RoutesFileProblem,
  type UpstreamAccess,
} from "./routes-file.js";
export type {
  Hs256TokenOptions,
  IntrospectionOptions,
  JwksTokenOptions,
  TokenValidationOptions,
} from "./token-verifier.js";
export { DEFAULT_CORS_EXPOSE_HEADERS, type CorsPolicy } from "./cors.js";
export { parseDuration } from "./duration.js";
export { drainTimeoutFromEnv, gatewayConfigFromEnv } from "./gateway-env.js";
export { closeOnSignal, parsePort, startupErrorMessage } from "./process-lifecycle.js";
export { CaptureFormatError, explainSignature, formatExplanation, parseCapture, type CapturedRequest, type ExplainedField, type Explanation, type ExplainOptions, type SignatureExplanation } from "./explain-signature.js";
export { shellExports, shellWord, startDevGateway, type DevGateway, type DevGatewayOptions, type PrintedVariable } from "./dev-gateway.js";
export {
  DEV_TOKEN_DEFAULTS,
  DevTokenError,
  signDevUserToken,
  startDevTokenIssuer,
  type DevClient,
  type DevTokenIssuer,
  type DevTokenSigning,
  type DevUser,
} from "./dev-token-issuer.js";
export { scaffoldService, ScaffoldError, type ScaffoldOptions, type ScaffoldPart } from "./scaffold-service.js";
