import { Code, ConnectError } from "@connectrpc/connect";
import type { GatewayContext } from "./current-user.js";
import { gatewayIdentity, type GatewayIdentity } from "./gateway-identity.js";

/**
 * The caller's identity, when it was granted every one of `scopes`;
 * otherwise a `ConnectError` with code `PermissionDenied` naming the scopes
 * that are missing.
 *
 * On a request signed with v1 only, `X-User-Scopes` is covered by no
 * signature: unless the service set `trustUnsignedIdentity`, this refuses
 * with `unsigned_identity` whatever the header says, rather than authorise
 * on a value anyone on the gateway→service hop could have written.
 *
 * @example
 * ```ts
 * async deleteAgent(req, ctx) {
 *   const caller = requireScopes(ctx, "agents:write");
 *   …
 * }
 * ```
 */
export function requireScopes(ctx: GatewayContext, ...scopes: string[]): GatewayIdentity {
  const identity = ctx.values.get(gatewayIdentity);
  if (identity === undefined) {
    throw new ConnectError("no verified gateway identity", Code.PermissionDenied);
  }
  if (identity.untrustedFields.includes("scopes")) {
    throw new ConnectError(UNSIGNED_SCOPES_MESSAGE, Code.PermissionDenied);
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

const UNSIGNED_SCOPES_MESSAGE =
  "unsigned_identity: this request is signed with v1 only, which does not cover X-User-Scopes; " +
  "scopes can be checked once the gateway signs with v2 (or, on a private network, with " +
  "createGatewayAuth({ trustUnsignedIdentity: true }))";
