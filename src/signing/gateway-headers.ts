/** The header names of the gateway contract, lower-case as Node exposes them. */
export const gatewayHeader = {
  timestamp: "x-gateway-timestamp",
  /** The v1 signature (the Ruby gem's). */
  signature: "x-gateway-signature",
  /** The v2 signature: `<key-id>:<signature>` (docs/signature-v2.md). */
  signatureV2: "x-gateway-signature-v2",
  /** The v2 request id: fresh random base64url, remembered by services to refuse replays. */
  requestId: "x-gateway-request-id",
  clientId: "x-client-id",
  userId: "x-user-id",
  email: "x-user-email",
  firstName: "x-user-first-name",
  lastName: "x-user-last-name",
  scopes: "x-user-scopes",
  orgId: "x-org-id",
  role: "x-user-role",
} as const;

/**
 * The identity headers, in the order signature v2 covers them. Every one is
 * signed by v2, present or absent; v1 covers only the first two.
 */
export const identityHeaderNames = [
  gatewayHeader.clientId,
  gatewayHeader.userId,
  gatewayHeader.email,
  gatewayHeader.firstName,
  gatewayHeader.lastName,
  gatewayHeader.scopes,
  gatewayHeader.orgId,
  gatewayHeader.role,
] as const;

/** One of {@link identityHeaderNames}. */
export type IdentityHeaderName = (typeof identityHeaderNames)[number];

const IDENTITY_HEADERS: ReadonlySet<string> = new Set(identityHeaderNames);

/**
 * True for the headers only the gateway may set: `X-Gateway-*`, `X-Client-Id`,
 * `X-User-*` and `X-Org-Id`. The gateway strips them from what a client
 * sends; a verifier rejects a request that repeats one.
 */
export function isGatewayControlledHeader(name: string): boolean {
  return isControlledLowerCase(name.toLowerCase());
}

/** {@link isGatewayControlledHeader} for a name already in lower case (the verifier's hot path). */
export function isControlledLowerCase(n: string): boolean {
  return (
    n.startsWith("x-gateway-") ||
    n.startsWith("x-user-") ||
    n === gatewayHeader.clientId ||
    n === gatewayHeader.orgId
  );
}

/**
 * True for a header name that a server reading `_` as `-` (Rack, Puma, any
 * CGI-style `HTTP_X_USER_ID`) would take for an identity header, but that is
 * not one of the identity headers the gateway signs, spelled as the gateway
 * spells it: `X-User-Admin`, `X_User_Scopes`, `x-org_id`. No signature can
 * vouch for such a header, so a v2 verifier refuses the request.
 */
export function isUnsignedIdentityHeader(name: string): boolean {
  return isUnsignedIdentityLowerCase(name.toLowerCase());
}

/** {@link isUnsignedIdentityHeader} for a name already in lower case (the verifier's hot path). */
export function isUnsignedIdentityLowerCase(lower: string): boolean {
  // Every such name starts with "x-" or "x_": most headers are out at once.
  const second = lower.charCodeAt(1);
  if (lower.charCodeAt(0) !== 120 || (second !== 45 && second !== 95)) return false;
  const n = lower.includes("_") ? lower.replaceAll("_", "-") : lower;
  const looksLikeIdentity = n.startsWith("x-user-") || n === gatewayHeader.clientId || n === gatewayHeader.orgId;
  return looksLikeIdentity && !(lower === n && IDENTITY_HEADERS.has(n));
}
