// Browser-safe: nothing here (nor in what it imports) may import a Node
// built-in — `connect-gateway/web` is built on it (test/architecture.test.ts).
import { getOption, hasOption, type DescService } from "@bufbuild/protobuf";
import type { Interceptor, StreamRequest, UnaryRequest } from "@connectrpc/connect";
import { backend } from "../../gen/connect_gateway/v1/options_pb.js";
import { checkServiceName } from "./backend-service.js";
import { gatewayCallKey } from "./gateway-call-options.js";

/** What {@link createBackendRoutingInterceptor} routes with. */
export interface BackendRoutingOptions {
  /**
   * The URL the transport was created with. When set, only calls under it are
   * routed and any path prefix it has is kept; when not, the
   * `/backend/<service>` segment goes right before `/pkg.Service/Method`.
   */
  readonly baseUrl?: string | undefined;
  /** The service of calls that name none any other way. Checked by the caller. */
  readonly defaultService?: string | undefined;
  /** The service an enclosing scope sets (Node: `withService`), if any. */
  readonly scopedService?: (() => string | undefined) | undefined;
  /**
   * Runs on the request as routed, right before it is passed on (the Node
   * transport writes the trace context with it when no interceptor of yours
   * comes between): one interceptor rather than two.
   */
  readonly then?: ((req: UnaryRequest | StreamRequest) => void) | undefined;
}

/**
 * The backend service a call goes to, first to last: the per-call option,
 * the enclosing scope, the proto option `(connect_gateway.v1.backend)` of the
 * Connect service (when there is one), the default. `undefined`: send the
 * path unchanged. Every source is checked before it gets here.
 */
export function chooseBackendService(
  perCall: string | undefined,
  scoped: string | undefined,
  descService: DescService | undefined,
  defaultService: string | undefined,
): string | undefined {
  return perCall ?? scoped ?? (descService && backendOptionOf(descService)) ?? defaultService;
}

const optionCache = new WeakMap<DescService, string | null>();

/**
 * The `(connect_gateway.v1.backend)` option of a Connect service, checked
 * and cached; `undefined` when the service does not declare one. A bad value
 * in a .proto throws a `ConfigurationError` naming the service.
 */
export function backendOptionOf(descService: DescService): string | undefined {
  let value = optionCache.get(descService);
  if (value === undefined) {
    value = hasOption(descService, backend)
      ? checkServiceName(getOption(descService, backend), `(connect_gateway.v1.backend) of ${descService.typeName}`)
      : null;
    optionCache.set(descService, value);
  }
  return value ?? undefined;
}

/**
 * A Connect interceptor that sends `…/pkg.Service/Method` to
 * `…/backend/<service>/pkg.Service/Method`, with the service chosen by
 * {@link chooseBackendService}. Only the path changes — the origin never
 * does, which is what HTTP/2 requires — and the request is passed on as a new
 * object because `req.url` is read-only. The single routing implementation:
 * the Node transport and `connect-gateway/web` both use it.
 */
export function createBackendRoutingInterceptor(options: BackendRoutingOptions): Interceptor {
  const { baseUrl, defaultService, scopedService, then } = options;
  return (next) => (req) => {
    // Checked here too: the Node transport checks it before any I/O, but a
    // value set straight on the context key (connect-gateway/web) reaches only
    // this, and `../admin` or `x?y` would otherwise leave the URL's path.
    const given = req.contextValues.get(gatewayCallKey)?.service;
    const perCall = given === undefined ? undefined : checkServiceName(given);
    const service = chooseBackendService(perCall, perCall === undefined ? scopedService?.() : undefined, req.service, defaultService);
    const url = service === undefined ? undefined : routedUrl(req.url, service, baseUrl, `/${req.service.typeName}/${req.method.name}`);
    const routed = url === undefined ? req : { ...req, url };
    then?.(routed);
    return next(routed);
  };
}

function routedUrl(url: string, service: string, baseUrl: string | undefined, methodPath: string): string | undefined {
  if (baseUrl !== undefined) {
    return url.startsWith(baseUrl) ? `${baseUrl}/backend/${service}${url.slice(baseUrl.length)}` : undefined;
  }
  const at = url.lastIndexOf(methodPath);
  if (at < 0 || at + methodPath.length !== url.length) return undefined;
  return `${url.slice(0, at)}/backend/${service}${methodPath}`;
}
