import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { withGatewayAuth, type ConnectOptionsLike } from "./adapters/connect.js";
import { expressMiddleware, type ExpressLikeMiddleware } from "./adapters/express.js";
import { fastifyPlugin, type FastifyLikePlugin } from "./adapters/fastify.js";
import { verifyNodeRequest, type VerifiedNodeRequest } from "./adapters/node.js";
import { resolveGatewayAuthConfig, type GatewayAuthOptions } from "./gateway-auth-options.js";
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
   * answers it (403/413/503…, from the rejection table) and returns `undefined`.
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
 *
 * @example
 * ```ts
 * import * as http2 from "node:http2";
 * import type { ConnectRouter } from "@connectrpc/connect";
 * import { connectNodeAdapter } from "@connectrpc/connect-node";
 * import { createGatewayAuth, requireIdentity, requireScopes } from "connect-gateway/server";
 * import { EchoService } from "./gen/example/v1/example_pb.js";
 *
 * const routes = (router: ConnectRouter) =>
 *   router.service(EchoService, {
 *     echo(req, ctx) {
 *       requireScopes(ctx, "read"); // PermissionDenied naming the missing scopes
 *       const caller = requireIdentity(ctx); // the verified caller; Unauthenticated if none
 *       return { text: `${req.text} (from ${caller.userId ?? caller.clientId})` };
 *     },
 *   });
 *
 * const auth = createGatewayAuth(); // the secret from GATEWAY_HMAC_SECRET
 * http2.createServer(connectNodeAdapter(auth.connectOptions({ routes }))).listen(8081);
 * ```
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc2104 | RFC 2104} (HMAC; the signature is HMAC-SHA256)
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
