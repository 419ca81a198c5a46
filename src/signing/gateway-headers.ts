/** The header names of the gateway contract (SPEC §4), lower-case as Node exposes them. */
export const gatewayHeader = {
  timestamp: "x-gateway-timestamp",
  signature: "x-gateway-signature",
  clientId: "x-client-id",
  userId: "x-user-id",
  email: "x-user-email",
  firstName: "x-user-first-name",
  lastName: "x-user-last-name",
  scopes: "x-user-scopes",
} as const;

/**
 * True for the headers only the gateway may set: `X-Gateway-*`, `X-Client-Id`
 * and `X-User-*` (and the seed's `X-Org-ID`). The gateway strips them from
 * what a client sends; a verifier rejects a request that repeats one.
 */
export function isGatewayControlledHeader(name: string): boolean {
  const n = name.toLowerCase();
  return (
    n.startsWith("x-gateway-") ||
    n.startsWith("x-user-") ||
    n === gatewayHeader.clientId ||
    n === "x-org-id"
  );
}
