import { constants, type Http2Stream } from "node:http2";

/** The most of a refused request's body read (and dropped) before its stream is reset instead. */
export const DRAIN_MAX_BYTES = 16 * 1024 * 1024;
/** The longest a refused request's body is read (and dropped) for, whatever `bodyTimeoutMs` says. */
const DRAIN_MAX_MS = 5_000;

/**
 * Over HTTP/2, ends the stream of a request answered before its body was
 * read to the end — refused on its headers, past `maxBodyBytes`, or too
 * slow — so that it does not stay half-open: the caller's upload waiting on
 * flow control for as long as it likes, its stream counted against the
 * session's limits until Node refuses every new stream of the session
 * (ENHANCE_YOUR_CALM) — for a gateway's pooled session, every caller's.
 *
 * With `bodyTimeoutMs` > 0 the rest of the body is first read and dropped,
 * for up to that long (5 s at most) and 16 MiB: a caller still uploading then finishes, and reads
 * the answer as it is. (Node's HTTP/2 client, and Connect's with it, reports
 * an upload cut by RST_STREAM as "Premature close" rather than the answer
 * it received, though RFC 9113 §8.1 says a complete response stands.) A body
 * that is still coming after that, or a caller too slow to begin with
 * (`bodyTimeoutMs` 0: its body timed out), gets RST_STREAM with NO_ERROR once the answer is out, which
 * asks it to stop sending. Over HTTP/1.1 it does nothing: there the answer
 * says `Connection: close`, or Node discards the rest of the body.
 *
 * `request` is the Node request (the HTTP/2 compatibility request carries
 * its `stream`). Harmless on a stream already closed.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc9113#section-8.1 | RFC 9113 §8.1}
 */
export function endUnreadStream(request: object, bodyTimeoutMs: number): void {
  const drainMs = Math.min(bodyTimeoutMs, DRAIN_MAX_MS);
  const stream = (request as { stream?: Partial<Http2Stream> }).stream;
  if (typeof stream?.close !== "function" || typeof stream.once !== "function") return;
  const h2 = stream as Http2Stream;
  if (h2.closed || h2.destroyed) return;
  const reset = () => {
    const close = () => {
      if (!h2.closed && !h2.destroyed) h2.close(constants.NGHTTP2_NO_ERROR);
    };
    if (h2.writableFinished) close();
    else h2.once("finish", close);
  };
  const body = request as { resume?: () => void; on?: Http2Stream["on"]; off?: Http2Stream["off"]; readableEnded?: boolean };
  if (drainMs <= 0 || typeof body.resume !== "function" || typeof body.on !== "function" || typeof body.off !== "function") {
    reset();
    return;
  }
  if (body.readableEnded) return;
  let dropped = 0;
  const stop = () => {
    clearTimeout(timer);
    body.off?.("data", onData);
    body.off?.("end", onEnd);
    reset();
  };
  const onData = (chunk: { byteLength: number }) => {
    dropped += chunk.byteLength;
    if (dropped > DRAIN_MAX_BYTES) stop();
  };
  const onEnd = () => {
    clearTimeout(timer);
    body.off?.("data", onData);
  };
  const timer = setTimeout(stop, drainMs);
  timer.unref();
  body.on("data", onData);
  body.on("end", onEnd);
  h2.once("close", onEnd);
  body.resume();
}

/**
 * Whether an HTTP/1.1 request still has body bytes to come: it declares one
 * (`Transfer-Encoding`, or a `Content-Length` above 0) and Node has not
 * received all of it. Not `!complete` alone: a request without a body is not
 * `complete` yet while it is being handled in the tick it arrived in.
 */
export function hasUnreadBody(request: { readonly headers: Readonly<Record<string, unknown>>; readonly complete: boolean }): boolean {
  const declared = request.headers["transfer-encoding"] !== undefined || Number(request.headers["content-length"] ?? 0) > 0;
  return declared && !request.complete;
}
