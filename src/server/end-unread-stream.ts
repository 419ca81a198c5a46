import { constants, type Http2Stream } from "node:http2";

/**
 * Over HTTP/2, ends the stream of a request answered before its body was
 * read to the end — refused on its headers, past `maxBodyBytes`, or too
 * slow — once the answer is out: RST_STREAM with NO_ERROR, which asks the
 * caller to stop sending (RFC 9113 §8.1) and frees the stream.
 *
 * Without it the stream stays half-open: the caller's upload waits on flow
 * control for as long as it likes, and the bytes it did send stay buffered
 * against the session's memory budget, until Node refuses every new stream
 * of the session (ENHANCE_YOUR_CALM) — one client's oversized uploads would
 * cut off the gateway's whole connection. `request` is the Node request or
 * response (the HTTP/2 compatibility objects carry their `stream`). Over
 * HTTP/1.1 it does nothing: there the answer says `Connection: close`, or
 * Node discards the rest of the body. Harmless on a stream already closed.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc9113#section-8.1 | RFC 9113 §8.1}
 */
export function endUnreadStream(request: object): void {
  const stream = (request as { stream?: Partial<Http2Stream> }).stream;
  if (typeof stream?.close !== "function" || typeof stream.once !== "function") return;
  const h2 = stream as Http2Stream;
  const close = () => {
    if (!h2.closed && !h2.destroyed) h2.close(constants.NGHTTP2_NO_ERROR);
  };
  if (h2.writableFinished) close();
  else h2.once("finish", close);
}
