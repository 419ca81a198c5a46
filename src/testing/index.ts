/**
 * connect-gateway/testing: helpers for testing a service behind the gateway.
 * Test-only: never import it from production code.
 *
 * @module connect-gateway/testing
 */
export { gatewayHeadersFor, type GatewayTestUser } from "./gateway-headers-for.js";
export {
  createGatewaySigningHttpClient,
  type GatewaySigningOptions,
} from "./gateway-signing-http-client.js";
export {
  createTestGatewayTransport,
  type TestGatewayTransportOptions,
} from "./create-test-gateway-transport.js";
export * from "./oauth2-server.js";
export type { JsonWebKeyInput, JsonWebKeyObject } from "../core/json-web-key.js";
