import type { Interceptor } from "@connectrpc/connect";
import { createBackendRoutingInterceptor, type BackendRoutingOptions } from "./backend-routing.js";
import { currentCallScope } from "./call-scope.js";

/**
 * The Node transport's routing: `<baseUrl>/pkg.Service/Method` goes to
 * `<baseUrl>/backend/<service>/pkg.Service/Method`, the service chosen as
 * `resolveBackendService` does (per-call option, `withService` scope, proto
 * option, `defaultService`). `baseUrl` keeps any path prefix of the gateway
 * URL. The routing itself is {@link createBackendRoutingInterceptor}, shared
 * with `connect-gateway/web`; this adds the `withService` scope, which needs
 * Node's `AsyncLocalStorage`.
 */
export function createRoutingInterceptor(
  baseUrl: string,
  defaultService: string | undefined,
  then?: BackendRoutingOptions["then"],
): Interceptor {
  return createBackendRoutingInterceptor({ baseUrl, defaultService, scopedService, then });
}

function scopedService(): string | undefined {
  return currentCallScope()?.service;
}
