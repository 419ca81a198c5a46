import * as http2 from "node:http2";
import type { ConnectTransportOptions } from "@connectrpc/connect-node";
import { Http2StreamResetError } from "../core/errors.js";

// connect-node's session manager interface (not exported by name).
type NodeHttp2ClientSessionManager = NonNullable<Extract<ConnectTransportOptions, { httpVersion: "2" }>["sessionManager"]>;

/** The Node.js-style error code of {@link Http2StreamResetError}. */
export const HTTP2_STREAM_RESET: Http2StreamResetError["code"] = "ERR_HTTP2_STREAM_RESET_BY_PEER";

const { NGHTTP2_INTERNAL_ERROR, NGHTTP2_CANCEL } = http2.constants;

// The error class lives with every other error of the library (core/errors).
export { Http2StreamResetError };

/**
 * Wraps connect-node's session manager so that every stream it opens reports a
 * reset *received* from the peer as an {@link Http2StreamResetError}, emitted
 * before connect-node's own error (connect-node keeps the first error of a
 * call). Resets we send ourselves — connect-node calls `stream.close()` when
 * the caller aborts (CANCEL) or the call fails — are left alone: the caller's
 * abort stays `Canceled`.
 */
export function watchingPeerResets(manager: NodeHttp2ClientSessionManager): NodeHttp2ClientSessionManager {
  return {
    get authority() {
      return manager.authority;
    },
    request: (method, path, headers, options) => manager.request(method, path, headers, options).then(watch),
    notifyResponseByteRead: (stream) => manager.notifyResponseByteRead(stream),
  };
}

function watch(stream: http2.ClientHttp2Stream): http2.ClientHttp2Stream {
  let closedByUs = false;
  let reported = false;
  const close = stream.close.bind(stream);
  stream.close = (code?: number, callback?: () => void) => {
    closedByUs = true;
    close(code, callback);
  };
  const report = (rstCode: number) => {
    if (closedByUs || reported || stream.rstCode !== rstCode) return;
    reported = true;
    stream.emit("error", new Http2StreamResetError(rstCode));
  };
  // INTERNAL_ERROR, REFUSED_STREAM (a GOAWAY's refused streams too), …: Node
  // emits ERR_HTTP2_STREAM_ERROR (its error for a RST_STREAM other than
  // NO_ERROR or CANCEL), then "close"; ours goes first.
  stream.prependListener("error", (error: unknown) => {
    if ((error as { code?: unknown } | null)?.code === "ERR_HTTP2_STREAM_ERROR") report(stream.rstCode ?? NGHTTP2_INTERNAL_ERROR);
  });
  // CANCEL: Node emits no error, only "close" (connect-node would say Canceled).
  // After a complete answer or an earlier error, connect-node ignores it.
  stream.prependListener("close", () => report(NGHTTP2_CANCEL));
  return stream;
}
