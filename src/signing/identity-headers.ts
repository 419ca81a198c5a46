import { gatewayHeader, type IdentityHeaderName } from "./gateway-headers.js";

/**
 * Who the gateway says is calling, as carried by the identity headers.
 * A service call (client_credentials) has a `clientId` and no `userId`.
 *
 * This is the one definition of the caller's identity fields: the identity a
 * service sees (`GatewayIdentity`), the one the gateway forwards
 * (`CallerIdentity`), a test user (`GatewayTestUser`) and what
 * `onMissingUser` receives (`MissingUserDetails`) are all derived from it.
 * A new identity field is declared here, its header in `gatewayHeader` and
 * `identityHeaderNames`, and the pair in {@link identityFieldHeader}; the
 * type checker then points at every mapping that must name it (the
 * gateway's claim mapping, for one).
 */
export interface IdentityHeaderValues {
  /** `X-Client-Id`: the OAuth2 client the token was issued to. */
  readonly clientId: string;
  /** `X-User-Id`: the end user's subject; absent on a service call. */
  readonly userId?: string | undefined;
  /** `X-User-Email`. */
  readonly email?: string | undefined;
  /** `X-User-First-Name`. */
  readonly firstName?: string | undefined;
  /** `X-User-Last-Name`. */
  readonly lastName?: string | undefined;
  /** `X-User-Scopes`, sent space-separated. */
  readonly scopes?: readonly string[] | undefined;
  /** `X-Org-Id`: the caller's organisation, when its token names one. */
  readonly orgId?: string | undefined;
  /** `X-User-Role`: the caller's role, when its token names one. */
  readonly role?: string | undefined;
}

/** A field of the caller's identity: one per identity header. */
export type IdentityField = keyof IdentityHeaderValues;

/**
 * The caller's identity once resolved: the identity fields, with `scopes`
 * always a list (empty when none) and whether it is a service call. What the
 * gateway forwards, and the base of what a service sees.
 */
export interface CallerIdentity extends Omit<IdentityHeaderValues, "scopes"> {
  /** `X-User-Scopes`, split on spaces; empty when absent. */
  readonly scopes: readonly string[];
  /** True on a client_credentials call (or an anonymous one): a client id and no user id. */
  readonly isServiceRequest: boolean;
}

/** The header that carries each identity field. */
export const identityFieldHeader: { readonly [F in IdentityField]: IdentityHeaderName } = Object.freeze({
  clientId: gatewayHeader.clientId,
  userId: gatewayHeader.userId,
  email: gatewayHeader.email,
  firstName: gatewayHeader.firstName,
  lastName: gatewayHeader.lastName,
  scopes: gatewayHeader.scopes,
  orgId: gatewayHeader.orgId,
  role: gatewayHeader.role,
});

/** Every identity field, in the order of {@link identityFieldHeader}. */
export const identityFields: readonly IdentityField[] = Object.freeze(
  Object.keys(identityFieldHeader) as IdentityField[],
);

/**
 * The identity headers for `identity`, omitting what is absent or empty:
 * `X-Client-Id`, and when known `X-User-Id`, `X-User-Email`,
 * `X-User-First-Name`, `X-User-Last-Name`, `X-User-Scopes` (space-separated),
 * `X-Org-Id`, `X-User-Role`.
 *
 * @example
 * ```ts
 * identityHeaders({ clientId: "web", userId: "sub-42", scopes: ["read", "write"] });
 * // { "x-client-id": "web", "x-user-id": "sub-42", "x-user-scopes": "read write" }
 * ```
 */
export function identityHeaders(identity: IdentityHeaderValues): Record<string, string> {
  const headers: Record<string, string> = { [gatewayHeader.clientId]: identity.clientId };
  for (const field of identityFields) {
    if (field === "clientId") continue;
    const raw = identity[field];
    const value = field === "scopes" ? (raw as readonly string[] | undefined)?.join(" ") : (raw as string | undefined);
    if (value === undefined || value === "") continue;
    headers[identityFieldHeader[field]] = utf8Octets(value);
  }
  return headers;
}

// Every identity value travels as its UTF-8 octets. A header carries octets,
// and Node.js writes a string one octet per character, so a name such as 山田
// (beyond U+00FF) could not travel as it is, and `é` would go as the one
// octet 0xE9 while the Ruby gateway sends, and its services expect, UTF-8
// (0xC3 0xA9). The header string holds one character per octet (what v2
// signs); v1 signs the values' UTF-8, which is the same octets. A service
// reads them back with textFromOctets.

const ASCII = /^[\x00-\x7f]*$/;

/** `value`'s UTF-8 octets, one character per octet (unchanged when ASCII). */
function utf8Octets(value: string): string {
  return ASCII.test(value) ? value : Buffer.from(value, "utf8").toString("latin1");
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * An identity header's value as received (one character per octet, as
 * Node.js hands it over) read as the text it carries: UTF-8, as the gateway
 * (this one and the Ruby one) sends it; octets that are not UTF-8 are read
 * one character each (ISO-8859-1), as an older gateway that sent Latin-1
 * octets meant them. ASCII is returned as it is.
 *
 * @example
 * ```ts
 * textFromOctets("Jos\u00c3\u00a9"); // "José" (the octets C3 A9)
 * textFromOctets("Jos\u00e9");        // "José" (the octet E9: not UTF-8)
 * ```
 */
export function textFromOctets(value: string): string {
  return utf8TextOf(value) ?? value;
}

/**
 * `value` (one character per octet) read as UTF-8, or `undefined` when its
 * octets are not UTF-8. Unlike {@link textFromOctets}, one-to-one: what v1
 * signs of a request-target, where the octets `E9` and `C3 A9` must not
 * both read as "é".
 */
export function utf8TextOf(value: string): string | undefined {
  if (ASCII.test(value)) return value;
  try {
    return strictUtf8.decode(Buffer.from(value, "latin1"));
  } catch {
    return undefined;
  }
}

/**
 * The identity header values read back from headers (`valueOf` gives the
 * value of a lower-case header name, `undefined` when absent): the inverse of
 * {@link identityHeaders}: each value read as UTF-8 (see textFromOctets),
 * scopes split on spaces. Validates nothing: the
 * caller decides which values to trust.
 */
export function identityFromHeaders(
  clientId: string,
  valueOf: (name: IdentityHeaderName) => string | undefined,
): IdentityHeaderValues {
  const values: Record<string, unknown> = { clientId: textFromOctets(clientId) };
  for (const field of identityFields) {
    if (field === "clientId") continue;
    const value = valueOf(identityFieldHeader[field]);
    const text = value === undefined ? undefined : textFromOctets(value);
    values[field] = field === "scopes" ? text?.split(" ").filter((s) => s !== "") : text;
  }
  return values as unknown as IdentityHeaderValues;
}
