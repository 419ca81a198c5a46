import type { DescService } from "@bufbuild/protobuf";
import { backendOptionOf, chooseBackendService } from "./backend-routing.js";
import { currentCallScope } from "./call-scope.js";

export { backendOptionOf };

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
  return chooseBackendService(perCall, perCall === undefined ? currentCallScope()?.service : undefined, descService, defaultService);
}
