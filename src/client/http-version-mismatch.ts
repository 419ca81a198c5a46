import { Code } from "@connectrpc/connect";
import { GatewayError } from "./gateway-error.js";

/**
 * The failure of a call sent over HTTP/1.1 to a server that speaks HTTP/2
 * only (cleartext h2c: `http2.createServer`, a service instead of the
 * gateway, say), said as such: Node's HTTP/1.1 parser only reports "Parse
 * Error: Expected HTTP/, RTSP/ or ICE/". A `GatewayError` with code
 * `Internal` (retrying cannot help), the parser's error as its `cause`; or
 * `undefined` when `reason` is something else.
 */
export function httpVersionMismatchFrom(reason: unknown, target: string): GatewayError | undefined {
  const seen = new Set<unknown>();
  for (let e = reason; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    if ((e as { code?: unknown }).code === "HPE_INVALID_CONSTANT") {
      return new GatewayError(
        `${target} did not answer in HTTP/1.1: if it serves HTTP/2 only (cleartext h2c, http2.createServer), ` +
          'use httpVersion: "2" — and check that it is the gateway, not a service behind it',
        Code.Internal,
        { cause: reason },
      );
    }
  }
  return undefined;
}
