import { getOption, hasOption, type DescService } from "@bufbuild/protobuf";
import { backend } from "../../gen/connect_gateway/v1/options_pb.js";
import { checkServiceName } from "./backend-service.js";
import { currentCallScope } from "./call-scope.js";

/**
 * The backend service a call goes to, first to last: the per-call option,
 * the innermost `withService` scope, the proto option
 * `(connect_gateway.v1.backend)` of the Connect service (when there is one),
 * the transport's `defaultService`. `undefined`: send the path unchanged.
 * Every source is checked before it gets here, so this does no validation.
 */
export function resolveBackendService(
  perCall: string | undefined,
  descService: DescService | undefined,
  defaultService: string | undefined,
): string | undefined {
  return (
    perCall ??
    currentCallScope()?.service ??
    (descService && backendOptionOf(descService)) ??
    defaultService
  );
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
