import type { OutgoingHttpHeaders } from "node:http";
import type { Code } from "@connectrpc/connect";

/**
 * The gateway's own answers in the Connect and gRPC protocols — an error for
 * a call it refuses, the `Unavailable` ending of a stream it cuts at shutdown —
 * encoded by `@connectrpc/connect`'s protocol modules, so that the bytes are
 * exactly what Connect and gRPC clients expect.
 *
 * Why loaded on first need rather than imported: those modules bring
 * `@bufbuild/protobuf` with them, about 100 ms of module loading — a third
 * of the gateway's start-up — for answers that only errors and shutdowns
 * need. They load with the first such answer, which waits for them once
 * (a streamed answer starts loading them as it begins). Not loaded in the
 * background at start-up: that would hold the event loop for the first
 * calls to arrive, and a call caught by a shutdown at that moment would be
 * cut as an idle connection.
 */
export interface ConnectAnswers {
  /** A Connect unary error: the code's HTTP status and the JSON error body. */
  connectUnaryError(code: Code, message: string): { readonly status: number; readonly body: Buffer };
  /** A Connect streaming error: one end-stream message carrying the error. */
  connectEndStreamError(code: Code, message: string): Buffer;
  /** `grpc-status` and `grpc-message` (percent-encoded) for `code` and `message`. */
  grpcStatus(code: Code, message: string): OutgoingHttpHeaders;
  /** The endings of a stream the gateway cuts at shutdown: `Unavailable`, in each protocol. */
  readonly shutdown: StreamEndings;
  /** The endings of a stream whose upstream failed between two messages: `Unavailable`. */
  readonly upstreamFailed: StreamEndings;
  /** The endings of a stream whose upstream stalled past the route's timeout between two messages: `DeadlineExceeded`. */
  readonly upstreamStalled: StreamEndings;
}

/** How a stream the gateway ends with an error ends, in each protocol. */
export interface StreamEndings {
  /** gRPC: the trailers. */
  readonly grpcTrailers: OutgoingHttpHeaders;
  /** gRPC-web: the trailer frame that ends the body. */
  readonly grpcWebTrailerFrame: Buffer;
  /** Connect streaming: the end-stream message. */
  readonly connectEndStream: Buffer;
}

/** What a caller reads when the gateway ends its open stream because it is shutting down. */
export const SHUTDOWN_MESSAGE = "the gateway is shutting down";
/** What a caller reads when the upstream failed in the middle of its stream (between two messages). */
export const UPSTREAM_FAILED_MESSAGE = "the upstream service failed in the middle of the stream";
/** What a caller reads when the upstream stopped sending in the middle of its stream, past the route's timeout. */
export const UPSTREAM_STALLED_MESSAGE = "the upstream service stopped sending in the middle of the stream";

let loading: Promise<ConnectAnswers> | undefined;
let loaded: ConnectAnswers | undefined;

/** The encoders, loading them the first time (concurrent callers share one load). */
export function loadConnectAnswers(): Promise<ConnectAnswers> {
  loading ??= importConnectAnswers().then(
    (answers) => (loaded = answers),
    (error: unknown) => {
      loading = undefined; // a later call tries again
      throw error;
    },
  );
  return loading;
}

/** The encoders if they are loaded already, else `undefined` (then {@link loadConnectAnswers}). */
export function connectAnswersNow(): ConnectAnswers | undefined {
  return loaded;
}

async function importConnectAnswers(): Promise<ConnectAnswers> {
  const [{ ConnectError, Code }, { encodeEnvelope }, connect, { setTrailerStatus }, grpcWeb] = await Promise.all([
    import("@connectrpc/connect"),
    import("@connectrpc/connect/protocol"),
    import("@connectrpc/connect/protocol-connect"),
    import("@connectrpc/connect/protocol-grpc"),
    import("@connectrpc/connect/protocol-grpc-web"),
  ]);
  const grpcStatus = (code: Code, message: string): OutgoingHttpHeaders =>
    Object.fromEntries(setTrailerStatus(new Headers(), new ConnectError(message, code)).entries());
  const connectEndStreamError = (code: Code, message: string): Buffer => {
    const json = connect.endStreamToJson(new Headers(), new ConnectError(message, code), undefined);
    return Buffer.from(encodeEnvelope(connect.endStreamFlag, new TextEncoder().encode(JSON.stringify(json))));
  };
  const endings = (code: Code, message: string): StreamEndings => ({
    grpcTrailers: grpcStatus(code, message),
    grpcWebTrailerFrame: Buffer.from(
      encodeEnvelope(grpcWeb.trailerFlag, grpcWeb.trailerSerialize(setTrailerStatus(new Headers(), new ConnectError(message, code)))),
    ),
    connectEndStream: connectEndStreamError(code, message),
  });
  return {
    connectUnaryError: (code, message) => ({
      status: connect.codeToHttpStatus(code),
      body: Buffer.from(connect.errorToJsonBytes(new ConnectError(message, code), undefined)),
    }),
    connectEndStreamError,
    grpcStatus,
    // The same for every stream: built once.
    shutdown: endings(Code.Unavailable, SHUTDOWN_MESSAGE),
    upstreamFailed: endings(Code.Unavailable, UPSTREAM_FAILED_MESSAGE),
    upstreamStalled: endings(Code.DeadlineExceeded, UPSTREAM_STALLED_MESSAGE),
  };
}
