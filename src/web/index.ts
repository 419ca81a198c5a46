/**
 * The public API of `connect-gateway/web`: Connect interceptors that route
 * calls through the API gateway and attach a bearer token, for any Connect
 * transport — in a browser with `@connectrpc/connect-web`, or anywhere else.
 * Nothing in this entry's import graph imports a Node built-in
 * (test/architecture.test.ts checks it), so bundlers need no Node polyfills.
 *
 * @module connect-gateway/web
 */
export { createGatewayRoutingInterceptor } from "./gateway-routing-interceptor.js";
export type { GatewayRoutingOptions } from "./gateway-routing-interceptor.js";
export { createBearerTokenInterceptor } from "./bearer-token-interceptor.js";
export type { BearerTokenOptions, TokenRequest, TokenSource } from "./bearer-token-interceptor.js";
export { gatewayCall, gatewayCallKey } from "../client/gateway-call-options.js";
export type { GatewayCallOptions } from "../client/gateway-call-options.js";
export { kebabService } from "../client/backend-service.js";
export { ConfigurationError } from "../core/errors.js";
