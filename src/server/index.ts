/**
 * connect-gateway/server: verify the gateway's signature on every request and
 * hand handlers the caller's identity.
 *
 * @module connect-gateway/server
 */
export { createGatewayAuth, type GatewayAuth } from "./create-gateway-auth.js";
export type { GatewayAuthOptions, GatewayRejectionEvent } from "./gateway-auth-options.js";
export {
  gatewayIdentity,
  requireIdentity,
  type GatewayIdentity,
  type IdentityField,
  type IdentitySignature,
  type MissingUserDetails,
} from "./gateway-identity.js";
export {
  createMemoryReplayStore,
  ReplayStoreFullError,
  type MemoryReplayStoreOptions,
  type ReplayStore,
} from "./replay-store.js";
export { createRedisReplayStore, type RedisReplayStoreOptions, type RedisSetNx } from "./redis-replay-store.js";
export { currentUser, type GatewayContext } from "./current-user.js";
export { requireUser } from "./require-user.js";
export { requireScopes } from "./require-scopes.js";
export { isServiceRequest } from "./is-service-request.js";
export type { VerifiedNodeRequest } from "./adapters/node.js";
export type { ConnectOptionsLike } from "./adapters/connect.js";
export type { ExpressLikeMiddleware, ExpressLikeRequest } from "./adapters/express.js";
export type {
  FastifyLikeInstance,
  FastifyLikePlugin,
  FastifyLikeReply,
  FastifyLikeRequest,
} from "./adapters/fastify.js";
export {
  ConfigurationError,
  InvalidOnMissingUserError,
  InvalidOptionError,
  InvalidResolveUserError,
  MissingHmacSecretError,
} from "../core/errors.js";
export type { GatewayRejectionReason } from "../signing/index.js";
