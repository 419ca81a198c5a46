/**
 * True when `hostname` (as WHATWG URL parsing writes it: lower-case, an IPv6
 * address in brackets) names this machine: `localhost` and `*.localhost`
 * (RFC 6761), any 127.x address, `[::1]`. The development tools answer only
 * such names, and the client insists on an explicit token endpoint when its
 * gateway is one.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc6761#section-6.3 | RFC 6761 §6.3}
 */
export function isLoopbackHostname(hostname: string): boolean {
  return (
    hostname === "localhost" ||
    hostname.endsWith(".localhost") ||
    hostname === "[::1]" ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname)
  );
}
