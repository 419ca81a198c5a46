/**
 * The public API of `connect-gateway/client`: a Connect transport and a REST
 * client that authenticate and route through the API gateway.
 *
 * @module connect-gateway/client
 */
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
export type { GatewayOptions, SessionOptions, ClientAuthentication, PrivateKeyJwtAuthentication } from "./gateway-options.js";
export type { JsonWebKeyInput, JsonWebKeyObject } from "../core/json-web-key.js";
export type { ClientAssertionAlgorithm } from "./client-assertion.js";
export { createMemoryTokenStore } from "./token-store.js";
export type {
  TokenStore,
  StoredToken,
  TokenSource,
  TokenRefresh,
  CoordinatedToken,
  TokenEvent,
  TokenObtainedEvent,
  TokenRefreshFailedEvent,
  TokenStoreFailedEvent,
} from "./token-store.js";
export { createRedisTokenStore } from "./redis-token-store.js";
export type { RedisTokenClient, RedisTokenStoreOptions } from "./redis-token-store.js";
export { withService, withUserToken } from "./call-scope.js";
export { gatewayCall, gatewayCallKey } from "./gateway-call-options.js";
export type { RetryOptions } from "./retry-interceptor.js";
export type { GatewayCallOptions } from "./gateway-call-options.js";
export { kebabService } from "./backend-service.js";
export { GatewayError } from "./gateway-error.js";
export { AuthenticationError } from "./authentication-error.js";
export { ConnectionError } from "./connection-error.js";
export { SessionTokenExpiredError } from "./session-token-expired-error.js";
export { GatewayResponseError } from "./gateway-response-error.js";
export { ConfigurationError } from "../core/errors.js";
