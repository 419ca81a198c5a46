import { identityFields, identityHeaders, type CallerIdentity, type IdentityField } from "connect-gateway/signing";
import { GatewayHttpError } from "./gateway-http-error.js";
import type { TokenClaims } from "./token-verifier.js";

/**
 * Which token claims feed which identity header: one entry per identity
 * field (`clientId` → `X-Client-Id`, `userId` → `X-User-Id`, `email`,
 * `firstName`, `lastName`, `scopes` → `X-User-Scopes` space-separated and
 * what route `scopes` are checked against, `orgId` → `X-Org-Id`, `role` →
 * `X-User-Role`). Each entry lists claim names, first present wins. Scopes
 * may be a space-separated string (OAuth2 `scope`) or an array (`scopes`).
 * A token must name a client (or an issuer, the last resort); `userId` is
 * for user tokens only.
 */
export type ClaimMapping = { readonly [F in IdentityField]: readonly string[] };

/**
 * The default mapping : OAuth2 / OIDC claims first, then the HS256 frontend tokens' own.
 * HS256 frontend tokens carry no client claim; they are attributed to their
 * issuer (`eloquent-gateway`).
 */
export const defaultClaimMapping: ClaimMapping = {
  clientId: ["client_id", "azp", "iss"],
  userId: ["user_id", "sub"],
  email: ["email"],
  firstName: ["given_name"],
  lastName: ["family_name"],
  scopes: ["scope", "scopes", "scp"],
  orgId: ["org_id"],
  role: ["role"],
};

/**
 * Who is calling, as the gateway forwards it: the identity fields of the
 * signing layer (one definition, shared with the services' `GatewayIdentity`),
 * `scopes` always a list, and `isServiceRequest` when there is no user (a
 * client_credentials token, or an anonymous call to a public route).
 */
export type { CallerIdentity };

// What Node and undici send unchanged in a header value (no control
// characters; no leading or trailing space or tab, which the receiving parser
// strips, so the value would no longer match its signature) — checked for
// every forwarded value; ids may not contain the `|` of the v1 string either.
const HEADER_VALUE = /^(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?$/;
// C1 controls (U+0080–U+009F) pass that check as UTF-8 octets, but are no
// more a name's or an id's than C0 ones: a backend would write them to its logs.
const C1_CONTROL = /[\u0080-\u009f]/;
// A lone surrogate (JSON allows `"\ud800"` in a claim) has no UTF-8 form: it
// would travel as U+FFFD, as every other lone surrogate and U+FFFD itself
// would, so two different subjects would reach the service, signed, as one.
const LONE_SURROGATE = /[\ud800-\udfff]/u;

/**
 * Maps verified claims to the caller's identity. A client_credentials token
 * (no user claim, or `sub` equal to the client id, as oidc-provider issues
 * them) yields no user id. Throws `UNAUTHORIZED` for a token that names no
 * client or carries values that cannot travel in a header.
 */
export function identityFromClaims(claims: TokenClaims, mapping: ClaimMapping = defaultClaimMapping): CallerIdentity {
  const pick = (names: readonly string[]) => firstString(claims, names);
  const clientId = pick(mapping.clientId);
  if (clientId === undefined) {
    throw new GatewayHttpError("UNAUTHORIZED", "Token names no client");
  }
  const subject = pick(mapping.userId);
  // A subject of only whitespace would be a user here and, blank, a service
  // call to the service (which reads ids as Ruby's `blank?` does): refused.
  if (subject !== undefined && subject.trim() === "") throw new GatewayHttpError("UNAUTHORIZED", "Token names a blank user");
  const userId = subject === clientId ? undefined : subject;
  const fields: Record<string, unknown> = { clientId, userId };
  for (const field of identityFields) {
    if (field === "clientId" || field === "userId") continue;
    fields[field] = field === "scopes" ? scopesOf(claims, mapping.scopes) : pick(mapping[field]);
  }
  const identity = { ...fields, isServiceRequest: userId === undefined } as unknown as CallerIdentity;
  // Checked as the values will travel (the e-mail and names as UTF-8 octets: see identityHeaders).
  const forwarded = identityHeaders(identity);
  let unsafe = [identity.clientId, identity.userId].some((v) => v?.includes("|"));
  for (const name in forwarded) unsafe ||= !HEADER_VALUE.test(forwarded[name] as string);
  for (const field of identityFields) {
    const value = field === "scopes" ? identity.scopes.join(" ") : identity[field];
    unsafe ||= typeof value === "string" && (C1_CONTROL.test(value) || LONE_SURROGATE.test(value));
  }
  if (unsafe) throw new GatewayHttpError("UNAUTHORIZED", "Token carries claims that cannot be forwarded");
  return identity;
}

/** The identity of a call without a token, to a route that needs none. */
export function anonymousIdentity(clientId: string): CallerIdentity {
  return { clientId, scopes: [], isServiceRequest: true };
}

/**
 * The first of `names` that the token carries as a non-empty string or a
 * number, as text. A number is taken only as a safe integer (at most 2^53 − 1
 * in magnitude, written without a fraction or exponent): JSON parsing has
 * already rounded a larger one (a 64-bit or snowflake id, `9007199254740993`
 * read as `…992`), so its text would name someone else, and `1.0` or `1e3`
 * would name the same id as `1` or `1000`. Such a claim refuses the token
 * (`UNAUTHORIZED`) rather than falling through to the next name.
 */
function firstString(claims: TokenClaims, names: readonly string[]): string | undefined {
  for (const name of names) {
    const value = claims[name];
    if (typeof value === "string" && value !== "") return value;
    if (typeof value === "number") {
      if (!Number.isSafeInteger(value)) throw new GatewayHttpError("UNAUTHORIZED", "Token carries a numeric claim that cannot be forwarded exactly");
      return String(value);
    }
  }
  return undefined;
}

// A scope string (RFC 6749 §3.3): scope tokens separated by single spaces —
// no other whitespace, no control characters, nothing leading or trailing.
// A token is anything else but whitespace and control characters.
const SCOPE_TOKEN = "[^\\s\\p{Cc}]+";
const SCOPE_STRING = new RegExp(`^(?:${SCOPE_TOKEN}(?: ${SCOPE_TOKEN})*)?$`, "u");
const SCOPE_ELEMENT = new RegExp(`^${SCOPE_TOKEN}$`, "u");
const MALFORMED_SCOPE = "Token carries a malformed scope claim";

/**
 * The scopes of the first scope claim present. Every scope claim present must
 * be well formed — a space-separated string, or an array of single scope
 * tokens — or the token is refused (`UNAUTHORIZED`): a scope list that the
 * gateway and a backend could split differently is never forwarded.
 */
function scopesOf(claims: TokenClaims, names: readonly string[]): string[] {
  let scopes: string[] | undefined;
  for (const name of names) {
    const value = claims[name];
    if (value === undefined || value === null) continue;
    let parsed: string[];
    if (typeof value === "string" && SCOPE_STRING.test(value)) {
      parsed = value === "" ? [] : value.split(" ");
    } else if (Array.isArray(value) && value.every((s) => typeof s === "string" && SCOPE_ELEMENT.test(s))) {
      parsed = value as string[];
    } else {
      throw new GatewayHttpError("UNAUTHORIZED", MALFORMED_SCOPE);
    }
    scopes ??= parsed;
  }
  return scopes ?? [];
}
