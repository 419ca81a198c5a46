import type { GatewayContext } from "./current-user.js";
import { gatewayIdentity } from "./gateway-identity.js";

/**
 * True on a service-to-service call (OAuth2 client_credentials): a client id
 * and no user id.
 */
export function isServiceRequest(ctx: GatewayContext): boolean {
  return ctx.values.get(gatewayIdentity)?.isServiceRequest === true;
}
