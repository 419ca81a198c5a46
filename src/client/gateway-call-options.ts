import { createContextKey, createContextValues, type ContextValues } from "@connectrpc/connect";
import { checkServiceName } from "./backend-service.js";
import { checkUserToken } from "./user-token.js";

/** Per-call gateway options of a Connect call. Each wins over the matching scope. */
export interface GatewayCallOptions {
  /** The backend service: the call goes to `/backend/<service>/…`. */
  readonly service?: string;
  /** An end-user access token to send instead of the service token. */
  readonly userToken?: string;
}

/**
 * The context key under which a Connect call carries its
 * {@link GatewayCallOptions}. Use it when you already build your own
 * `contextValues`: `contextValues.set(gatewayCallKey, { service: "x" })`.
 * Prefer {@link gatewayCall}, which also checks the values.
 */
export const gatewayCallKey = createContextKey<GatewayCallOptions | undefined>(undefined, {
  description: "connect-gateway per-call options",
});

/**
 * Call options for one Connect call through a gateway transport:
 *
 * ```ts
 * await valuations.get({ id: 42n }, gatewayCall({ service: "base-valeur", userToken }));
 * await valuations.get({ id: 42n }, { ...gatewayCall({ service: "x" }), timeoutMs: 500 });
 * ```
 *
 * The service name and token are checked here, before any I/O; a bad one
 * throws a `ConfigurationError`.
 */
export function gatewayCall(options: GatewayCallOptions): { contextValues: ContextValues } {
  if (options.service !== undefined) checkServiceName(options.service);
  if (options.userToken !== undefined) checkUserToken(options.userToken);
  return { contextValues: createContextValues().set(gatewayCallKey, options) };
}
