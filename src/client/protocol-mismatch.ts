import { Code } from "@connectrpc/connect";
import { protocolMismatchMessage } from "../core/protocol-mismatch.js";
import { GatewayError } from "./gateway-error.js";

/**
 * The failure of a call to a server that speaks another protocol than the
 * client expected (HTTP/1.1 to an HTTP/2-only server, TLS to plain HTTP),
 * said as such: a `GatewayError` with code `Internal` (retrying cannot
 * help) whose message names the server and the fix, the low-level error as
 * its `cause`; or `undefined` when `reason` is something else.
 */
export function protocolMismatchFrom(reason: unknown, target: string): GatewayError | undefined {
  const message = protocolMismatchMessage(reason, target, "gateway client");
  return message === undefined ? undefined : new GatewayError(message, Code.Internal, { cause: reason });
}
