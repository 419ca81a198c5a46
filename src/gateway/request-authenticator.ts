import { GatewayHttpError } from "./gateway-http-error.js";
import { anonymousIdentity, identityFromClaims, type CallerIdentity, type ClaimMapping } from "./identity-claims.js";
import type { UpstreamAccess } from "./routes-file.js";
import type { TokenVerifier } from "./token-verifier.js";

/** Options of {@link createRequestAuthenticator}. */
export interface RequestAuthenticatorOptions {
  readonly verifier: TokenVerifier;
  readonly claims: ClaimMapping;
  /** `X-Client-Id` of tokenless calls to routes that need no token. */
  readonly anonymousClientId: string;
}

/**
 * Middleware steps 5 and 6 of the seed: token validation, then the route's
 * client allow-list and scopes. Returns who is calling, or throws a
 * {@link GatewayHttpError} (`UNAUTHORIZED`, `EXPIRED_TOKEN`, `FORBIDDEN`,
 * `INSUFFICIENT_SCOPE`). A token sent to a route that needs none is still
 * verified: a bad token is an error wherever it is sent.
 */
export function createRequestAuthenticator(
  options: RequestAuthenticatorOptions,
): (authorization: string | undefined, access: UpstreamAccess) => Promise<CallerIdentity> {
  return async (authorization, access) => {
    const token = bearerToken(authorization);
    if (token === undefined) {
      if (access.authRequired) throw new GatewayHttpError("UNAUTHORIZED", "Missing or invalid token");
      return anonymousIdentity(options.anonymousClientId);
    }
    const identity = identityFromClaims(await options.verifier.verify(token), options.claims);
    if (access.clients !== undefined && !access.clients.includes(identity.clientId)) {
      throw new GatewayHttpError("FORBIDDEN", "Access denied for this client");
    }
    const missing = access.scopes.filter((scope) => !identity.scopes.includes(scope));
    if (missing.length > 0) {
      throw new GatewayHttpError("INSUFFICIENT_SCOPE", `Token lacks required scope: ${missing.join(" ")}`);
    }
    return identity;
  };
}

/** The token of an `Authorization: Bearer <token>` header (RFC 6750 §2.1; scheme case-insensitive). */
function bearerToken(authorization: string | undefined): string | undefined {
  const match = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(authorization ?? "");
  return match?.[1];
}
