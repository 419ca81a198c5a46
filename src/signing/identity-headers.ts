import { gatewayHeader } from "./gateway-headers.js";

/**
 * Who the gateway says is calling, as carried by the identity headers.
 * A service call (client_credentials) has a `clientId` and no `userId`.
 */
export interface IdentityHeaderValues {
  readonly clientId: string;
  readonly userId?: string | undefined;
  readonly email?: string | undefined;
  readonly firstName?: string | undefined;
  readonly lastName?: string | undefined;
  readonly scopes?: readonly string[] | undefined;
  /** `X-Org-Id`: the caller's organisation, when its token names one. */
  readonly orgId?: string | undefined;
  /** `X-User-Role`: the caller's role, when its token names one. */
  readonly role?: string | undefined;
}

/**
 * The identity headers for `identity`, omitting what is absent or empty:
 * `X-Client-Id`, and when known `X-User-Id`, `X-User-Email`,
 * `X-User-First-Name`, `X-User-Last-Name`, `X-User-Scopes` (space-separated),
 * `X-Org-Id`, `X-User-Role`.
 */
export function identityHeaders(identity: IdentityHeaderValues): Record<string, string> {
  const headers: Record<string, string> = { [gatewayHeader.clientId]: identity.clientId };
  const optional: [string, string | undefined][] = [
    [gatewayHeader.userId, identity.userId],
    [gatewayHeader.email, identity.email],
    [gatewayHeader.firstName, identity.firstName],
    [gatewayHeader.lastName, identity.lastName],
    [gatewayHeader.scopes, identity.scopes?.join(" ")],
    [gatewayHeader.orgId, identity.orgId],
    [gatewayHeader.role, identity.role],
  ];
  for (const [name, value] of optional) {
    if (value !== undefined && value !== "") headers[name] = value;
  }
  return headers;
}
