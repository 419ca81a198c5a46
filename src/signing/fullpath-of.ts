/**
 * Returns the `fullpath` that the gateway signs for an HTTP request-target,
 * exactly as Rack's `Request#fullpath` builds it: the path as sent, plus
 * `?query` only when the query is non-empty (`/a?` signs as `/a`).
 *
 * Nothing is decoded or normalised: `/caf%C3%A9/../x` is signed as sent.
 * Pass the raw request-target (Node's `IncomingMessage.url`), never a parsed
 * `URL`, which normalises.
 */
export function fullpathOf(requestTarget: string): string {
  const q = requestTarget.indexOf("?");
  if (q === -1 || q === requestTarget.length - 1) {
    return q === -1 ? requestTarget : requestTarget.slice(0, q);
  }
  return requestTarget;
}
