import type { Interceptor } from "@connectrpc/connect";
import { gatewayCallKey } from "./gateway-call-options.js";
import { resolveBackendService } from "./resolve-backend-service.js";

/**
 * A Connect interceptor that sends `<baseUrl>/pkg.Service/Method` to
 * `<baseUrl>/backend/<service>/pkg.Service/Method`, with the service chosen
 * by {@link resolveBackendService}. `baseUrl` keeps any path prefix of the
 * gateway URL. Only the path changes — the origin never does, which is what
 * HTTP/2 requires — and the request is passed on as a new object because
 * `req.url` is read-only.
 */
export function createRoutingInterceptor(baseUrl: string, defaultService: string | undefined): Interceptor {
  return (next) => (req) => {
    const service = resolveBackendService(req.contextValues.get(gatewayCallKey)?.service, req.service, defaultService);
    if (service === undefined || !req.url.startsWith(baseUrl)) return next(req);
    return next({ ...req, url: `${baseUrl}/backend/${service}${req.url.slice(baseUrl.length)}` });
  };
}
