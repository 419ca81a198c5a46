import { Code, ConnectError, createContextKey } from "@connectrpc/connect";
import type { GatewayContext } from "./current-user.js";
import {
  identityFields,
  type CallerIdentity,
  type IdentityField,
  type IdentityHeaderValues,
} from "../signing/index.js";

/** A field of {@link GatewayIdentity} that the gateway sets from a header. */
export type { IdentityField };

/**
 * Which signature vouched for an identity: `v2` covers every field; `v1` (a
 * gateway that only speaks the v1 signature, such as the Ruby one) covers `clientId` and
 * `userId` only; `none` in `skipVerification` mode.
 */
export type IdentitySignature = "v2" | "v1" | "none";

/**
 * Who the gateway says is calling, from the identity headers of a request
 * whose signature verified: the identity fields (`clientId`, `userId`,
 * `email`, `firstName`, `lastName`, `scopes`, `orgId`, `role`, each from its
 * `X-…` header; `scopes` split on spaces, empty when absent or untrusted),
 * `isServiceRequest`, and what vouched for them.
 *
 * Only what a signature covers is here by default: on a v1-signed request
 * the other fields are left out (listed in `untrustedFields`), since anyone
 * on the gateway→service hop could have set them, unless the service opted
 * in with `trustUnsignedIdentity`.
 */
export interface GatewayIdentity extends CallerIdentity {
  /** The signature that vouched for this identity. */
  readonly signature: IdentitySignature;
  /** The fields a signature covers (whether or not the request set them). */
  readonly signedFields: readonly IdentityField[];
  /**
   * The fields left out because no signature covers them: on a v1 request,
   * unless `trustUnsignedIdentity` is set, every field but `clientId` and
   * `userId`. `requireScopes` refuses when `scopes` is among them.
   */
  readonly untrustedFields: readonly IdentityField[];
}

/**
 * What `onMissingUser` receives: who the new user is, from the signed
 * identity. `subject` is `X-User-Id`; `email`, `firstName` and `lastName`
 * are `undefined` when absent, or unsigned (a v1-only request without
 * `trustUnsignedIdentity`); `scopes` is empty then; `clientId` is the
 * application the user came through.
 */
export interface MissingUserDetails extends Pick<GatewayIdentity, "scopes" | "clientId"> {
  /** The user's subject, `X-User-Id`. */
  readonly subject: string;
  /** `X-User-Email`; `undefined` when absent or unsigned. */
  readonly email: IdentityHeaderValues["email"];
  /** `X-User-First-Name`; `undefined` when absent or unsigned. */
  readonly firstName: IdentityHeaderValues["firstName"];
  /** `X-User-Last-Name`; `undefined` when absent or unsigned. */
  readonly lastName: IdentityHeaderValues["lastName"];
}

/**
 * The typed context key holding the caller's identity. Set before any
 * interceptor or handler runs, for every request that passed verification:
 * `ctx.values.get(gatewayIdentity)`. `undefined` only in `skipVerification`
 * mode for a request without `X-Client-Id`.
 */
export const gatewayIdentity = createContextKey<GatewayIdentity | undefined>(undefined, {
  description: "connect-gateway: the caller's identity",
});

/**
 * The caller's identity, for handlers written under strict TypeScript: the
 * context key's value, or a `ConnectError` with code `Unauthenticated` when
 * the request carries none (only possible with `skipVerification` and no
 * `X-Client-Id`, or a handler not wired through `createGatewayAuth`).
 *
 * @example
 * ```ts
 * async echo(req, ctx) {
 *   const caller = requireIdentity(ctx); // GatewayIdentity, never undefined
 *   return { text: req.text, clientId: caller.clientId };
 * }
 * ```
 */
export function requireIdentity(ctx: GatewayContext): GatewayIdentity {
  const identity = ctx.values.get(gatewayIdentity);
  if (identity === undefined) {
    throw new ConnectError("no gateway identity on this request", Code.Unauthenticated);
  }
  return identity;
}

const ALL_FIELDS: readonly IdentityField[] = identityFields;
const V1_FIELDS: readonly IdentityField[] = Object.freeze(["clientId", "userId"]);
const BEYOND_V1: readonly IdentityField[] = Object.freeze(ALL_FIELDS.filter((f) => !V1_FIELDS.includes(f)));
const NONE: readonly IdentityField[] = Object.freeze([]);

/**
 * A frozen {@link GatewayIdentity} from the identity header values that
 * `signature` vouched for; absent values stay absent. On a v1 request the
 * fields v1 does not cover are dropped unless `trustUnsigned`.
 */
export function identityOf(
  values: IdentityHeaderValues,
  signature: IdentitySignature,
  trustUnsigned: boolean,
): GatewayIdentity {
  const keepAll = signature !== "v1" || trustUnsigned;
  // Ruby's `blank?`: a user id of only whitespace makes a service call.
  const userId = values.userId?.trim() ? values.userId : undefined;
  const identity: {
    -readonly [K in keyof GatewayIdentity]: GatewayIdentity[K];
  } = {
    clientId: values.clientId,
    scopes: Object.freeze(keepAll ? [...(values.scopes ?? [])] : []),
    isServiceRequest: userId === undefined,
    signature,
    signedFields: signature === "v2" ? ALL_FIELDS : signature === "v1" ? V1_FIELDS : NONE,
    untrustedFields: keepAll ? NONE : BEYOND_V1,
  };
  if (userId !== undefined) identity.userId = userId;
  if (keepAll) {
    // The other fields are plain strings: copied when present.
    const fields = identity as Record<IdentityField, unknown>;
    for (const field of BEYOND_V1) {
      const value = values[field];
      if (field !== "scopes" && value !== undefined) fields[field] = value;
    }
  }
  return Object.freeze(identity);
}
