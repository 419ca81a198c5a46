// The public API of `connect-gateway/client`: a Connect transport and a REST
// client that authenticate and route through the API gateway.
export { createGatewayTransport } from "./create-gateway-transport.js";
export type {
  GatewayTransportOptions,
  GatewayProtocolOptions,
  GatewayHttp1Options,
  GatewayHttp2Options,
  GatewayTransportPassThroughOptions,
} from "./create-gateway-transport.js";
export { createGatewayClient } from "./gateway-client.js";
export type { GatewayClient, GatewayRequestOptions, QueryValue } from "./gateway-client.js";
export type { GatewayOptions, SessionOptions } from "./gateway-options.js";
export { withService, withUserToken } from "./call-scope.js";
export { gatewayCall, gatewayCallKey } from "./gateway-call-options.js";
export type { GatewayCallOptions } from "./gateway-call-options.js";
export { kebabService } from "./backend-service.js";
export { GatewayError } from "./gateway-error.js";
export { AuthenticationError } from "./authentication-error.js";
export { ConnectionError } from "./connection-error.js";
export { SessionTokenExpiredError } from "./session-token-expired-error.js";
export { GatewayResponseError } from "./gateway-response-error.js";
export { ConfigurationError } from "../core/errors.js";
