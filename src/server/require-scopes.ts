import { Code, ConnectError } from "@connectrpc/connect";
import type { GatewayContext } from "./current-user.js";
import { gatewayIdentity, type GatewayIdentity } from "./gateway-identity.js";

/**
 * The caller's identity, when it was granted every one of `scopes`;
 * otherwise a `ConnectError` with code `PermissionDenied` naming the scopes
 * that are missing.
 */
export function requireScopes(ctx: GatewayContext, ...scopes: string[]): GatewayIdentity {
  const identity = ctx.values.get(gatewayIdentity);
  if (identity === undefined) {
    throw new ConnectError("no verified gateway identity", Code.PermissionDenied);
  }
  const granted = new Set(identity.scopes);
  const missing = scopes.filter((s) => !granted.has(s));
  if (missing.length > 0) {
    throw new ConnectError(
      `missing scope${missing.length === 1 ? "" : "s"}: ${missing.join(" ")}`,
      Code.PermissionDenied,
    );
  }
  return identity;
}
