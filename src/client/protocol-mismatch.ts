import { Code } from "@connectrpc/connect";
import { GatewayError } from "./gateway-error.js";

/**
 * The failure of a call to a server that speaks another protocol than the
 * client expected, said as such — the low-level errors name neither the
 * server nor the fix:
 *
 * - over HTTP/1.1 to a server that speaks HTTP/2 only (cleartext h2c:
 *   `http2.createServer`, a service instead of the gateway, say): Node's
 *   parser only reports "Parse Error: Expected HTTP/, RTSP/ or ICE/";
 * - over TLS (`https://`) to a server that answers in plain HTTP (the
 *   gateway and its dev stack do not terminate TLS): OpenSSL reports
 *   "wrong version number".
 *
 * A `GatewayError` with code `Internal` (retrying cannot help), the low-level
 * error as its `cause`; or `undefined` when `reason` is something else.
 */
export function protocolMismatchFrom(reason: unknown, target: string): GatewayError | undefined {
  const seen = new Set<unknown>();
  for (let e = reason; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    const code = (e as { code?: unknown }).code;
    if (code === "HPE_INVALID_CONSTANT") {
      return new GatewayError(
        `${target} did not answer in HTTP/1.1: if it serves HTTP/2 only (cleartext h2c, http2.createServer), ` +
          'use httpVersion: "2" — and check that it is the gateway, not a service behind it',
        Code.Internal,
        { cause: reason },
      );
    }
    if (code === "ERR_SSL_WRONG_VERSION_NUMBER" || (code === "EPROTO" && e.message.includes("wrong version number"))) {
      return new GatewayError(
        `${target} did not answer in TLS: if it serves plain HTTP (as the gateway does, behind your TLS terminator), ` +
          "use an http:// URL (GATEWAY_URL / gatewayUrl)",
        Code.Internal,
        { cause: reason },
      );
    }
  }
  return undefined;
}
