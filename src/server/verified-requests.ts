import type { GatewayIdentity } from "./gateway-identity.js";

/** A request that `auth.express()` or `auth.fastify` already verified, with its body. */
export interface PreVerifiedRequest {
  readonly identity: GatewayIdentity | undefined;
  /** The verified body bytes, for a Connect route that reads the request after the middleware. */
  readonly chunks: readonly Uint8Array[];
}

/**
 * The Node requests one `createGatewayAuth` instance has verified, so that
 * its Connect options accept them instead of verifying a body that the
 * Express middleware or Fastify plugin already consumed. Weak: an entry
 * lives as long as its request. Per instance: another instance (with other
 * secrets) never trusts these.
 */
export type VerifiedRequests = WeakMap<object, PreVerifiedRequest>;
