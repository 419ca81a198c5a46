import type { OutgoingHttpHeaders } from "node:http";
import { constants } from "node:http2";
import { Readable } from "node:stream";
import { connectAnswersNow, loadConnectAnswers, type ConnectAnswers } from "./connect-answers.js";
import type { EnvelopedProtocol } from "./caller-protocol.js";

/**
 * How long, once asked to end a stream, the gateway waits for the rest of a
 * message the upstream has only partly sent. Past it the caller's stream is
 * reset (over HTTP/2 with INTERNAL_ERROR): half a message cannot be followed
 * by anything a client understands. Well under the 200 ms a graceful close
 * gives such endings before it destroys the connections.
 */
export const MESSAGE_REMAINDER_WAIT_MS = 120;

const PREFIX_BYTES = 5;

// The flag bits of the protocols' last messages: Connect's end-stream
// message and gRPC-web's trailer frame (gRPC ends with HTTP/2 trailers).
const CONNECT_END_STREAM_FLAG = 0b0000_0010;
const GRPC_WEB_TRAILER_FLAG = 0b1000_0000;

/** The caller's response, as far as the relay needs it (gRPC's status goes in its trailers). */
export interface TrailerTarget {
  addTrailers(headers: OutgoingHttpHeaders): void;
  /** An HTTP/2 response's stream: reset with an error code when a message is cut in half. */
  readonly stream?: { close(code?: number): void };
}

/**
 * Relays an upstream's enveloped response body (gRPC, gRPC-web, Connect
 * streaming) to the caller unchanged, keeping track of where each message
 * ends as the bytes pass (a few integer updates per chunk, nothing buffered
 * beyond the stream's own high-water mark), so that the stream can be ended
 * cleanly in the middle: {@link endAtMessageBoundary} stops relaying after
 * the current whole message, cancels the upstream stream and ends the
 * caller's response with an `Unavailable` error in the caller's protocol —
 * `grpc-status: 14` in the HTTP/2 trailers (gRPC), a trailer frame in the
 * body (gRPC-web), or an end-stream message (Connect).
 *
 * An upstream that fails between two messages (its stream reset, its
 * connection gone, a stall past the route's timeout) ends the caller's
 * stream the same way, with `Unavailable` (or `DeadlineExceeded` for the
 * stall) and `onUpstreamFailure` is told: a browser page, which reads any
 * reset as a bare "network error", then gets a code it can act on. Failing
 * in the middle of a message, it destroys the relay (the caller's response
 * is reset: half a message must never look like an ending). A relay
 * destroyed because the caller went away cancels the upstream.
 */
export class EnvelopedRelay extends Readable {
  readonly #source: Readable;
  readonly #protocol: EnvelopedProtocol;
  readonly #target: TrailerTarget;
  // The flag bit of the protocol's last message (none for gRPC, which ends with HTTP/2 trailers).
  readonly #endFlag: number;
  // Where the relay stands in the upstream body: how many bytes of the current
  // 5-byte prefix have passed (0 at a message boundary or inside a payload),
  // the length those bytes spell so far, and how much payload is still to come.
  #prefixSeen = 0;
  #length = 0;
  #payloadLeft = 0;
  // The upstream has begun its own last message (Connect end-stream, gRPC-web
  // trailers) or sent its trailers (gRPC): it is ending by itself.
  #upstreamEnding = false;
  #cutting = false;
  #detached = false;
  #cutTimer: NodeJS.Timeout | undefined;
  // Why the stream is being ended early: the gateway's shutdown, or the upstream's failure.
  #ending: "shutdown" | "upstreamFailed" | "upstreamStalled" = "shutdown";
  readonly #onUpstreamFailure: ((error: Error) => void) | undefined;

  constructor(source: Readable, protocol: EnvelopedProtocol, target: TrailerTarget, onUpstreamFailure?: (error: Error) => void) {
    super({ highWaterMark: source.readableHighWaterMark });
    this.#source = source;
    this.#protocol = protocol;
    this.#target = target;
    this.#onUpstreamFailure = onUpstreamFailure;
    this.#endFlag = protocol === "connect-stream" ? CONNECT_END_STREAM_FLAG : protocol === "grpc-web" ? GRPC_WEB_TRAILER_FLAG : 0;
    // The endings come from the Connect encoders, loaded on first need: start now.
    if (connectAnswersNow() === undefined) void loadConnectAnswers().catch(() => {});
    source.on("data", this.#onData);
    source.once("end", this.#onEnd);
    source.on("error", this.#onError);
    source.once("close", this.#onClose);
    source.once("trailers", this.#onTrailers);
  }

  /**
   * Ends the caller's stream at the next message boundary with `Unavailable`
   * (see the class comment) and cancels the upstream stream. Does nothing
   * when the upstream is ending the stream itself, or it already ended.
   * When the rest of a partly relayed message does not arrive within
   * {@link MESSAGE_REMAINDER_WAIT_MS}, the caller's stream is reset instead.
   */
  endAtMessageBoundary(): void {
    if (this.#cutting || this.#detached || this.#upstreamEnding || this.destroyed) return;
    this.#cutting = true;
    if (this.#atBoundary()) return this.#finishCut();
    this.#cutTimer = setTimeout(() => {
      // Half a message must never look like a clean end: during a graceful
      // close, a stream reset without an error of its own would carry the
      // session's GOAWAY code, NO_ERROR, and a client would read the
      // truncated message as the end of the stream. INTERNAL_ERROR, then.
      this.#target.stream?.close(constants.NGHTTP2_INTERNAL_ERROR);
      this.destroy(new Error("the upstream did not finish its current message before the gateway shut down"));
    }, MESSAGE_REMAINDER_WAIT_MS);
    // The rest of the current message may sit behind backpressure.
    this.#source.resume();
  }

  /** True once {@link endAtMessageBoundary} has taken over: upstream trailers no longer apply. */
  get cut(): boolean {
    return this.#cutting;
  }

  override _read(): void {
    if (!this.#detached) this.#source.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    clearTimeout(this.#cutTimer);
    this.#detach();
    callback(error);
  }

  readonly #onData = (chunk: Buffer): void => {
    if (!this.#cutting) {
      this.#walk(chunk, false);
      if (!this.push(chunk)) this.#source.pause();
      return;
    }
    const end = this.#walk(chunk, true);
    if (end > 0) this.push(end === chunk.length ? chunk : chunk.subarray(0, end));
    if (this.#atBoundary()) this.#finishCut();
  };

  readonly #onEnd = (): void => {
    clearTimeout(this.#cutTimer);
    this.#detach();
    this.push(null);
  };

  readonly #onError = (error: Error): void => {
    this.#upstreamFailed(error);
  };

  readonly #onClose = (): void => {
    // Ended or failed: both were handled above; anything else is a body cut short.
    if (!this.#detached) this.#upstreamFailed(new Error("the upstream response closed before its end"));
  };

  /**
   * The upstream body failed. Between two messages, and with nothing else
   * ending the stream already, the caller's stream ends with an error in its
   * protocol (see the class comment); otherwise the relay is destroyed and
   * the caller's stream reset.
   */
  #upstreamFailed(error: Error & { code?: unknown }): void {
    if (this.destroyed) return;
    if (this.#cutting || this.#upstreamEnding || !this.#atBoundary()) {
      this.destroy(error);
      return;
    }
    this.#ending = error.code === "UND_ERR_BODY_TIMEOUT" ? "upstreamStalled" : "upstreamFailed";
    this.#cutting = true;
    this.#onUpstreamFailure?.(error);
    this.#finishCut();
  }

  readonly #onTrailers = (): void => {
    this.#upstreamEnding = true;
  };

  #atBoundary(): boolean {
    return this.#prefixSeen === 0 && this.#payloadLeft === 0;
  }

  /**
   * Moves the message tracking over `chunk`. With `stopAtBoundary`, stops at
   * the first message boundary and returns its offset in the chunk (0 when
   * the chunk starts a new message); otherwise walks the whole chunk.
   */
  #walk(chunk: Uint8Array, stopAtBoundary: boolean): number {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (this.#payloadLeft > 0) {
        const step = Math.min(this.#payloadLeft, n - i);
        this.#payloadLeft -= step;
        i += step;
        continue;
      }
      if (stopAtBoundary && this.#prefixSeen === 0) return i;
      const byte = chunk[i++] as number;
      if (this.#prefixSeen === 0) {
        // The flag byte: 0x80 starts gRPC-web's trailer frame, 0x02 Connect's end-stream message.
        if ((byte & this.#endFlag) !== 0) this.#upstreamEnding = true;
        this.#length = 0;
      } else {
        this.#length = this.#length * 256 + byte;
      }
      if (++this.#prefixSeen === PREFIX_BYTES) {
        this.#prefixSeen = 0;
        this.#payloadLeft = this.#length;
      }
    }
    return n;
  }

  /** At a boundary: lets go of the upstream (cancelling its stream), writes the ending, ends. */
  #finishCut(): void {
    clearTimeout(this.#cutTimer);
    const upstreamEnding = this.#upstreamEnding;
    this.#detach(); // destroys the upstream body, which cancels its stream
    if (upstreamEnding) {
      this.push(null);
      return;
    }
    const answers = connectAnswersNow();
    if (answers !== undefined) return this.#end(answers);
    loadConnectAnswers().then(
      (loaded) => this.#end(loaded),
      (error: unknown) => this.destroy(error as Error),
    );
  }

  /** Writes the ending (`Unavailable`, or `DeadlineExceeded` for a stalled upstream) in the caller's protocol, and ends. */
  #end(answers: ConnectAnswers): void {
    if (this.destroyed) return;
    const ending = answers[this.#ending];
    if (this.#protocol === "grpc") this.#target.addTrailers(ending.grpcTrailers);
    else this.push(this.#protocol === "grpc-web" ? ending.grpcWebTrailerFrame : ending.connectEndStream);
    this.push(null);
  }

  #detach(): void {
    if (this.#detached) return;
    this.#detached = true;
    const source = this.#source;
    source.off("data", this.#onData).off("end", this.#onEnd).off("close", this.#onClose).off("trailers", this.#onTrailers);
    // Kept, so a late failure of the upstream body is never an unhandled 'error'.
    source.off("error", this.#onError).on("error", () => {});
    source.destroy();
  }
}
