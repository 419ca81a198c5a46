import { Code, ConnectError, createContextKey } from "@connectrpc/connect";
import type { GatewayContext } from "./current-user.js";
import type { IdentityHeaderValues } from "../signing/index.js";

/**
 * Who the gateway says is calling, from the identity headers of a request
 * whose signature verified (SPEC §5).
 */
export interface GatewayIdentity {
  /** `X-Client-Id`: the OAuth2 client the token was issued to. */
  readonly clientId: string;
  /** `X-User-Id`: the user's subject; absent on service calls. */
  readonly userId?: string;
  /** `X-User-Email`. */
  readonly email?: string;
  /** `X-User-First-Name`. */
  readonly firstName?: string;
  /** `X-User-Last-Name`. */
  readonly lastName?: string;
  /** `X-User-Scopes`, split on spaces; empty when absent. */
  readonly scopes: readonly string[];
  /** True on a client_credentials call: a client id and no user id. */
  readonly isServiceRequest: boolean;
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

/** A frozen {@link GatewayIdentity} from the identity header values; absent values stay absent. */
export function identityOf(values: IdentityHeaderValues): GatewayIdentity {
  // Ruby's `blank?`: a user id of only whitespace makes a service call.
  const userId = values.userId?.trim() ? values.userId : undefined;
  const identity: {
    -readonly [K in keyof GatewayIdentity]: GatewayIdentity[K];
  } = {
    clientId: values.clientId,
    scopes: Object.freeze([...(values.scopes ?? [])]),
    isServiceRequest: userId === undefined,
  };
  if (userId !== undefined) identity.userId = userId;
  if (values.email !== undefined) identity.email = values.email;
  if (values.firstName !== undefined) identity.firstName = values.firstName;
  if (values.lastName !== undefined) identity.lastName = values.lastName;
  return Object.freeze(identity);
}
