import { identityHeaders } from "../signing/index.js";

/** The user a test signs in as: the gem's `gateway_headers_for` reads these fields when present. */
export interface GatewayTestUser {
  /** The gateway subject, sent as `X-User-Id`. */
  readonly userId: string;
  readonly email?: string | undefined;
  readonly firstName?: string | undefined;
  readonly lastName?: string | undefined;
  readonly scopes?: readonly string[] | undefined;
}

/**
 * The identity headers the gateway would send for `user` (no signature), for
 * a server created with `skipVerification: true`. `{}` when `user` is null or
 * undefined, like the gem's helper, so an anonymous request stays anonymous.
 */
export function gatewayHeadersFor(
  user: GatewayTestUser | null | undefined,
  options: { readonly clientId?: string } = {},
): Record<string, string> {
  if (user === null || user === undefined) return {};
  return identityHeaders({
    clientId: options.clientId ?? "test-client",
    userId: user.userId,
    email: user.email,
    firstName: user.firstName,
    lastName: user.lastName,
    scopes: user.scopes,
  });
}
