import { createContextKey, createContextValues, type ContextValues } from "@connectrpc/connect";
import { assertBoolean } from "../core/assertions.js";
import { ConfigurationError } from "../core/errors.js";
import { checkServiceName } from "./backend-service.js";
import { userTokenOption } from "./user-token.js";

/** Per-call gateway options of a Connect call. Each wins over the matching scope. */
export interface GatewayCallOptions {
  /** The backend service: the call goes to `/backend/<service>/…`. */
  readonly service?: string;
  /** An end-user access token to send instead of the service token. */
  readonly userToken?: string;
  /**
   * `false`: never retry this call, even when its method is idempotent and
   * the transport retries (see the transport's `retry` option). `true` or
   * left out: the transport decides.
   */
  readonly retry?: boolean;
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
 * await echo.echo({ text: "hi" }, gatewayCall({ retry: false })); // fail at once, no automatic retry
 * ```
 *
 * The service name, token and `retry` flag are checked here, before any I/O;
 * a bad one throws a `ConfigurationError`.
 */
export function gatewayCall(options: GatewayCallOptions): {
  /** Connect's per-call context values, carrying `options` under {@link gatewayCallKey}. */
  contextValues: ContextValues;
} {
  if (typeof options !== "object" || options === null) {
    throw new ConfigurationError("options", 'must be an object, e.g. gatewayCall({ service: "echo" }).');
  }
  if (options.service !== undefined) checkServiceName(options.service);
  userTokenOption(options);
  if (options.retry !== undefined) assertBoolean("retry", options.retry);
  return { contextValues: createContextValues().set(gatewayCallKey, options) };
}
