import { identityHeaders, type IdentityHeaderValues } from "../signing/index.js";

/**
 * The user a test signs in as: the identity header values without the client
 * id, with a `userId` (the gateway subject, sent as `X-User-Id`).
 */
export type GatewayTestUser = Omit<IdentityHeaderValues, "clientId" | "userId"> & {
  /** The user's subject, sent as `X-User-Id`. */
  readonly userId: string;
};

/**
 * The identity headers the gateway would send for `user` (no signature), for
 * a server created with `skipVerification: true`. `{}` when `user` is null or
 * undefined, so an anonymous request stays anonymous.
 */
export function gatewayHeadersFor(
  user: GatewayTestUser | null | undefined,
  options: { readonly clientId?: string } = {},
): Record<string, string> {
  if (user === null || user === undefined) return {};
  return identityHeaders({ ...user, clientId: options.clientId ?? "test-client" });
}
