/**
 * What to say when a call failed because the server speaks another protocol
 * than the client expected — the low-level errors name neither the server
 * nor the fix:
 *
 * - over HTTP/1.1 to a server that speaks HTTP/2 only (cleartext h2c:
 *   `http2.createServer`, a service instead of the gateway, say): Node's
 *   parser only reports "Parse Error: Expected HTTP/, RTSP/ or ICE/";
 * - over TLS (`https://`) to a server that answers in plain HTTP (the
 *   gateway and its dev stack do not terminate TLS): OpenSSL reports
 *   "wrong version number".
 *
 * The message naming `target` and the fix, or `undefined` when `reason`
 * (searched along its `cause` chain) is something else. The client's
 * transports and the test transport each wrap it in their own error.
 */
export function protocolMismatchMessage(
  reason: unknown,
  target: string,
  /** What calls `target`: the gateway client, or a test's transport to a service. */
  caller: "gateway client" | "test transport",
): string | undefined {
  const seen = new Set<unknown>();
  for (let e = reason; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    const code = (e as { code?: unknown }).code;
    if (code === "HPE_INVALID_CONSTANT") {
      return (
        `${target} did not answer in HTTP/1.1: if it serves HTTP/2 only (cleartext h2c, http2.createServer), ` +
        (caller === "gateway client"
          ? 'use httpVersion: "2" — and check that it is the gateway, not a service behind it'
          : 'pass httpVersion: "2" to createTestGatewayTransport')
      );
    }
    if (code === "ERR_SSL_WRONG_VERSION_NUMBER" || (code === "EPROTO" && e.message.includes("wrong version number"))) {
      return (
        `${target} did not answer in TLS: if it serves plain HTTP (as the gateway does, behind your TLS terminator), ` +
        (caller === "gateway client" ? "use an http:// URL (GATEWAY_URL / gatewayUrl)" : "use an http:// baseUrl")
      );
    }
  }
  return undefined;
}
