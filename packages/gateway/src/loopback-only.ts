import { isLoopbackHostname } from "connect-gateway/protocol";

/**
 * What the development tools (`connect-gateway dev`: its gateway and its
 * token issuer) answer: requests that name this machine, from pages served
 * by this machine. They listen on 127.0.0.1, but a web page elsewhere can
 * still reach them through the developer's browser: by DNS rebinding (a name
 * of the attacker's that resolves to 127.0.0.1, sent as `Host`), or by
 * reading the issuer's answers across origins. So a request whose `Host` is
 * not a loopback name is refused, and only loopback origins may read the
 * issuer's tokens.
 */

/**
 * True when `host` (a `Host` header or `:authority`, with or without a port)
 * names this machine: `127.0.0.1` (any 127.x address), `localhost` or a
 * `*.localhost` name (RFC 6761), `[::1]`.
 */
export function isLoopbackHost(host: string | undefined): boolean {
  if (host === undefined || host === "") return false;
  let url: URL;
  try {
    url = new URL(`http://${host}`);
  } catch {
    return false;
  }
  // Nothing but a host and a port: no credentials, path or query smuggled in.
  if (url.username !== "" || url.password !== "" || url.pathname !== "/" || url.search !== "" || url.hash !== "" || url.host !== host.toLowerCase()) {
    return false;
  }
  return isLoopbackHostname(url.hostname);
}

/** True when `origin` (an `Origin` header) is a page served from this machine over http or https. */
export function isLoopbackOrigin(origin: string | undefined): boolean {
  if (origin === undefined) return false;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  return (url.protocol === "http:" || url.protocol === "https:") && url.origin === origin.toLowerCase() && isLoopbackHostname(url.hostname);
}
