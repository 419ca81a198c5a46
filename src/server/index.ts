// connect-gateway/server: verify the gateway's signature on every request and
// hand handlers the caller's identity.
export { createGatewayAuth, type GatewayAuth } from "./create-gateway-auth.js";
export type {
  GatewayAuthOptions,
  GatewayRejectionEvent,
  MissingUserDetails,
} from "./gateway-auth-options.js";
export {
  gatewayIdentity,
  requireIdentity,
  type GatewayIdentity,
  type IdentityField,
  type IdentitySignature,
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
export type { VerifiedNodeRequest } from "./node-request-verifier.js";
export type { ConnectOptionsLike } from "./connect-options.js";
export type { ExpressLikeMiddleware, ExpressLikeRequest } from "./express-middleware.js";
export type {
  FastifyLikeInstance,
  FastifyLikePlugin,
  FastifyLikeReply,
  FastifyLikeRequest,
} from "./fastify-plugin.js";
export {
  ConfigurationError,
  InvalidOnMissingUserError,
  InvalidOptionError,
  InvalidResolveUserError,
  MissingHmacSecretError,
} from "../core/errors.js";
export type { GatewayRejectionReason } from "../signing/index.js";
