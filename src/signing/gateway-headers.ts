/** The header names of the gateway contract, lower-case as Node exposes them. */
export const gatewayHeader = {
  /** When the gateway signed, in unix seconds; outside the window a request is refused. */
  timestamp: "x-gateway-timestamp",
  /** The v1 signature (the format the Ruby implementation also speaks). */
  signature: "x-gateway-signature",
  /** The v2 signature: `<key-id>:<signature>` (docs/signature-v2.md). */
  signatureV2: "x-gateway-signature-v2",
  /** The v2 request id: fresh random base64url, remembered by services to refuse replays. */
  requestId: "x-gateway-request-id",
  /** The OAuth2 client the token was issued to (signed by v1 and v2). */
  clientId: "x-client-id",
  /** The end user's subject; absent on a service call (signed by v1 and v2). */
  userId: "x-user-id",
  /** The user's e-mail (signed by v2 only). */
  email: "x-user-email",
  /** The user's given name (signed by v2 only). */
  firstName: "x-user-first-name",
  /** The user's family name (signed by v2 only). */
  lastName: "x-user-last-name",
  /** The token's scopes, space-separated (signed by v2 only). */
  scopes: "x-user-scopes",
  /** The caller's organisation (signed by v2 only). */
  orgId: "x-org-id",
  /** The caller's role (signed by v2 only). */
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

/**
 * The name a header has for a server that reads `_` as `-` (Rack, Puma, any
 * CGI-style `HTTP_X_USER_ID` environment), lower-cased: `X_User_Id`,
 * `x-user_id` and `X-User-Id` all end up as `x-user-id` there. How both the
 * gateway (dropping a caller's spelling of a controlled header) and a
 * verifier (refusing an identity-looking header no signature covers) see a
 * header name.
 */
export function normalisedHeaderName(name: string): string {
  return hyphenated(name.toLowerCase());
}

function hyphenated(lower: string): string {
  return lower.includes("_") ? lower.replaceAll("_", "-") : lower;
}

/** {@link isUnsignedIdentityHeader} for a name already in lower case (the verifier's hot path). */
export function isUnsignedIdentityLowerCase(lower: string): boolean {
  // Every such name starts with "x-" or "x_": most headers are out at once.
  const second = lower.charCodeAt(1);
  if (lower.charCodeAt(0) !== 120 || (second !== 45 && second !== 95)) return false;
  const n = hyphenated(lower);
  const looksLikeIdentity = n.startsWith("x-user-") || n === gatewayHeader.clientId || n === gatewayHeader.orgId;
  return looksLikeIdentity && !(lower === n && IDENTITY_HEADERS.has(n));
}
