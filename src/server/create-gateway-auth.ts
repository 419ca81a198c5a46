import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { withGatewayAuth, type ConnectOptionsLike } from "./connect-options.js";
import { expressMiddleware, type ExpressLikeMiddleware } from "./express-middleware.js";
import { fastifyPlugin, type FastifyLikePlugin } from "./fastify-plugin.js";
import { resolveGatewayAuthConfig, type GatewayAuthOptions } from "./gateway-auth-options.js";
import { verifyNodeRequest, type VerifiedNodeRequest } from "./node-request-verifier.js";
import type { VerifiedRequests } from "./verified-requests.js";

/** Gateway verification for a service, built by {@link createGatewayAuth}. */
export interface GatewayAuth {
  /**
   * Wires verification into the options of `connectNodeAdapter`,
   * `fastifyConnectPlugin` or `expressConnectMiddleware`, keeping your own
   * `contextValues`, `requestGate` and interceptors:
   * `http2.createServer(connectNodeAdapter(auth.connectOptions({ routes })))`.
   */
  // `O & ConnectOptionsLike`, not `O extends ConnectOptionsLike`: a constraint with
  // only optional members makes TypeScript refuse `routes` as an excess property.
  connectOptions<O extends object>(options: O & ConnectOptionsLike): O;
  /**
   * Verifies a plain Node request: returns its identity and verified body, or
   * answers it (403/413) and returns `undefined`.
   */
  verifyNodeRequest(
    req: IncomingMessage | Http2ServerRequest,
    res: ServerResponse | Http2ServerResponse,
  ): Promise<VerifiedNodeRequest | undefined>;
  /** Express middleware; mount it before any body parser (see the README). */
  express(): ExpressLikeMiddleware;
  /** Fastify plugin: `app.register(auth.fastify)`. */
  readonly fastify: FastifyLikePlugin;
}

/**
 * Verifies the gateway's HMAC signature on every request of a service and
 * hands handlers the caller's identity (`ctx.values.get(gatewayIdentity)`,
 * `currentUser(ctx)`). Options are checked here: a `ConfigurationError` is
 * thrown at once, never on the request path.
 */
export function createGatewayAuth<User = unknown>(options: GatewayAuthOptions<User> = {}): GatewayAuth {
  const config = resolveGatewayAuthConfig(options);
  const verified: VerifiedRequests = new WeakMap();
  return {
    connectOptions: (connectOptions) => withGatewayAuth(config, verified, connectOptions),
    verifyNodeRequest: (req, res) => verifyNodeRequest(config, req, res),
    express: () => expressMiddleware(config, verified),
    fastify: fastifyPlugin(config, verified),
  };
}
