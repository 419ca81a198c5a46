import { createHash, type Hash } from "node:crypto";
import type { Readable } from "node:stream";
import { errorCodes, type FastifyRequest } from "fastify";
import { BufferedBody } from "./buffered-body.js";

const { FST_ERR_CTP_BODY_TOO_LARGE, FST_ERR_CTP_INVALID_CONTENT_LENGTH } = errorCodes;

/**
 * Pieces shorter than this are gathered into blocks of {@link GATHER_BLOCK}
 * bytes: a caller may send its body a few bytes at a time (HTTP/1.1 chunked
 * encoding, small HTTP/2 DATA frames), and a list of millions of tiny Buffers
 * would cost far more memory than the body, and as many writes upstream.
 * Socket-sized pieces (the usual case) are kept as they came, never copied.
 */
const SMALL_PIECE = 1024;
const GATHER_BLOCK = 16 * 1024;

type Done = (error: Error | null, body?: BufferedBody) => void;

const ignoreLateError = (): void => {};

/**
 * The gateway's content-type parser for forwarded bodies (every content type):
 * reads the request stream to its end, at most `bodyLimit` bytes, hashing
 * each chunk as it arrives and keeping the chunks as they came, and gives a
 * {@link BufferedBody} — or nothing for an empty body. Bodies are forwarded
 * byte for byte, never parsed.
 *
 * Limits and failures are fastify's own (what its `parseAs: "buffer"` parser
 * does, with the same errors): a declared Content-Length over the limit is
 * refused before a byte is read, and a body is refused (413,
 * FST_ERR_CTP_BODY_TOO_LARGE) as soon as it passes the limit, reading stops
 * there; a body shorter or longer than its Content-Length is a 400
 * (FST_ERR_CTP_INVALID_CONTENT_LENGTH), and a stream that fails (the caller
 * went away) passes its error on as a 400.
 */
export function bufferedBodyParser(bodyLimit: number) {
  return (request: FastifyRequest, payload: Readable, done: Done): void => {
    const declared = Number(request.headers["content-length"]);
    if (declared > bodyLimit) {
      done(new FST_ERR_CTP_BODY_TOO_LARGE());
      return;
    }
    new BodyReader(payload, bodyLimit, declared, done).start();
  };
}

/** Reads one body; its two listeners are the only functions made per request. */
class BodyReader {
  readonly #payload: Readable;
  readonly #limit: number;
  /** The declared Content-Length; NaN without one (chunked, or HTTP/2 without it). */
  readonly #declared: number;
  readonly #done: Done;
  readonly #chunks: Buffer[] = [];
  #hash: Hash | undefined;
  #received = 0;
  // Small pieces waiting to be kept: one on its own (a small body stays as it
  // came), or several copied into #block; never both.
  #loose: Buffer | undefined;
  #block: Buffer | undefined;
  #blockFill = 0;

  constructor(payload: Readable, limit: number, declared: number, done: Done) {
    this.#payload = payload;
    this.#limit = limit;
    this.#declared = declared;
    this.#done = done;
  }

  start(): void {
    this.#payload.on("data", this.#onData);
    this.#payload.on("end", this.#onEnd);
    this.#payload.on("error", this.#onEnd);
    this.#payload.resume();
  }

  readonly #onData = (chunk: Buffer): void => {
    if (chunk.length === 0) return;
    this.#received += chunk.length;
    if (this.#received > this.#limit) {
      // What is still on its way is read and dropped by Node, not kept.
      this.#stop();
      this.#done(new FST_ERR_CTP_BODY_TOO_LARGE());
      return;
    }
    if (chunk.length >= SMALL_PIECE) {
      this.#keepSmallPieces();
      this.#keep(chunk);
    } else {
      this.#gather(chunk);
    }
  };

  readonly #onEnd = (error?: Error & { statusCode?: number }): void => {
    this.#stop();
    if (error != null) {
      if (!(typeof error.statusCode === "number" && error.statusCode >= 400)) error.statusCode = 400;
      this.#done(error);
      return;
    }
    if (!Number.isNaN(this.#declared) && this.#received !== this.#declared) {
      this.#done(new FST_ERR_CTP_INVALID_CONTENT_LENGTH());
      return;
    }
    this.#keepSmallPieces();
    const hash = this.#hash;
    this.#done(null, hash === undefined ? undefined : new BufferedBody(this.#chunks, this.#received, hash.digest("hex")));
  };

  #stop(): void {
    this.#payload.removeListener("data", this.#onData);
    this.#payload.removeListener("end", this.#onEnd);
    this.#payload.removeListener("error", this.#onEnd);
    // The rest of a refused body still flows (and is dropped): should the
    // caller then go away, that failure is nobody's business, never an
    // unhandled 'error' (an HTTP/2 request stream emits it unguarded).
    this.#payload.on("error", ignoreLateError);
  }

  /** Hashes a chunk, in order, and keeps it as it is. */
  #keep(chunk: Buffer): void {
    (this.#hash ??= createHash("sha256")).update(chunk);
    this.#chunks.push(chunk);
  }

  #gather(piece: Buffer): void {
    let block = this.#block;
    if (block === undefined) {
      const loose = this.#loose;
      if (loose === undefined) {
        this.#loose = piece;
        return;
      }
      block = this.#block = Buffer.allocUnsafe(GATHER_BLOCK);
      this.#blockFill = loose.copy(block);
      this.#loose = undefined;
    } else if (this.#blockFill + piece.length > GATHER_BLOCK) {
      this.#keep(block.subarray(0, this.#blockFill));
      block = this.#block = Buffer.allocUnsafe(GATHER_BLOCK);
      this.#blockFill = 0;
    }
    this.#blockFill += piece.copy(block, this.#blockFill);
  }

  #keepSmallPieces(): void {
    if (this.#loose !== undefined) this.#keep(this.#loose);
    else if (this.#block !== undefined) this.#keep(this.#block.subarray(0, this.#blockFill));
    this.#loose = this.#block = undefined;
  }
}
