import type { Interceptor } from "@connectrpc/connect";
import { ConfigurationError } from "../core/errors.js";
import { checkServiceName } from "../client/backend-service.js";
import { createBackendRoutingInterceptor } from "../client/backend-routing.js";

/** Options of {@link createGatewayRoutingInterceptor}. */
export interface GatewayRoutingOptions {
  /**
   * The backend service of calls that name none otherwise (no `gatewayCall({ service })`,
   * no `(connect_gateway.v1.backend)` option on the service). Without it such
   * calls are sent unchanged to `<baseUrl>/pkg.Service/Method`.
   */
  readonly defaultService?: string;
}

/**
 * A Connect interceptor that routes every call through the gateway's backend
 * routes: `<baseUrl>/pkg.Service/Method` is sent to
 * `<baseUrl>/backend/<service>/pkg.Service/Method`. The service is, first to
 * last: the call's own `gatewayCall({ service })`, the proto option
 * `(connect_gateway.v1.backend)` of the Connect service, `defaultService`.
 * Only the path changes; any path prefix of `baseUrl` is kept.
 *
 * Works with any Connect transport — `@connectrpc/connect-web` in a browser
 * (Connect, Connect GET and gRPC-web), `@connectrpc/connect-node`, … — and
 * imports nothing from Node. Put it first in `interceptors`, so that the ones
 * after it see the routed URL.
 *
 * A bad `defaultService` throws a `ConfigurationError` here; a bad proto
 * option fails the call with it, before anything is sent.
 *
 * @example
 * ```ts
 * import { createClient } from "@connectrpc/connect";
 * import { createConnectTransport } from "@connectrpc/connect-web";
 * import { createBearerTokenInterceptor, createGatewayRoutingInterceptor } from "connect-gateway/web";
 * import { EchoService } from "./gen/example/v1/example_pb.js";
 *
 * const transport = createConnectTransport({
 *   baseUrl: "https://gateway.example.com",
 *   interceptors: [
 *     createGatewayRoutingInterceptor(), // EchoService declares (connect_gateway.v1.backend) = "echo"
 *     createBearerTokenInterceptor(() => auth.accessToken()),
 *   ],
 * });
 * const echo = createClient(EchoService, transport);
 * await echo.echo({ text: "hi" }); // POST https://gateway.example.com/backend/echo/example.v1.EchoService/Echo
 * ```
 */
export function createGatewayRoutingInterceptor(options: GatewayRoutingOptions = {}): Interceptor {
  if (typeof options !== "object" || options === null) {
    throw new ConfigurationError("options", "must be an object, e.g. { defaultService: \"echo\" }.");
  }
  const defaultService =
    options.defaultService === undefined ? undefined : checkServiceName(options.defaultService, "defaultService");
  return createBackendRoutingInterceptor({ defaultService });
}
