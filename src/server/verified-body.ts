import { createHash, hash as sha256Once, type Hash } from "node:crypto";
import type { Readable } from "node:stream";
import { EMPTY_BODY_SHA256, type GatewayRejectionReason } from "../signing/index.js";
import { ChunkGatherer } from "../core/chunk-gatherer.js";
import { unwatchDeadline, watchDeadline, type DeadlineWatch } from "./body-deadlines.js";
import { DRAIN_MAX_BYTES, endUnreadStream } from "./end-unread-stream.js";
import type { BodyVerdict } from "./replay-check.js";

/** Whether `stream` is an HTTP/2 request (the compatibility request carries its `stream`). */
function isHttp2(stream: Readable): boolean {
  return (stream as { stream?: unknown }).stream !== undefined;
}

/** The outcome of {@link readVerifiedBody}. */
export type VerifiedBody =
  | {
      readonly kind: "verified";
      /** The chunks as received (the same objects, not copies). */
      readonly chunks: Uint8Array[];
      readonly byteLength: number;
    }
  | { readonly kind: "rejected"; readonly reason: GatewayRejectionReason }
  | { readonly kind: "too_large" }
  /** The body did not arrive within `bodyTimeoutMs` (see body-deadlines.ts). */
  | { readonly kind: "timed_out" };

/** What {@link readVerifiedBody} asks once the whole body is hashed (a request's admitted check). */
export interface BodyCheck {
  verifyBody(bodySha256: string): BodyVerdict | Promise<BodyVerdict>;
}

/**
 * Reads a body to its end, hashing each chunk once as it arrives and holding
 * a reference to it (never a copy), then asks `check.verifyBody` whether the
 * signature covers that hash (and the request is not a replay). The chunks
 * are handed out only when it does: a handler can never act on bytes whose
 * signature has not been checked.
 *
 * Stops reading, and drops what it holds, past `maxBodyBytes`, or when the
 * body has not ended `bodyTimeoutMs` after the read started. Rejects when
 * the stream fails or closes before its end (the client went away).
 * Listens to `data` events rather than async-iterating: it costs one
 * listener per request instead of a promise per chunk. The listeners are
 * shared functions that find the read in progress on the stream, rather
 * than closures made for each request.
 */
export function readVerifiedBody(
  stream: Readable,
  check: BodyCheck,
  maxBodyBytes: number,
  bodyTimeoutMs: number,
): Promise<VerifiedBody> {
  const { promise, resolve, reject } = withResolvers<VerifiedBody>();
  const read = new BodyRead(stream, check, maxBodyBytes, bodyTimeoutMs, resolve, reject);
  if (stream.readableEnded) {
    read.end();
    return promise;
  }
  // Gone before anyone read it (the client hung up while the request
  // waited): no event will ever come, so say so now rather than hang.
  if (stream.destroyed) {
    read.fail(new Error(CLOSED_EARLY));
    return promise;
  }
  (stream as ReadStream)[reading] = read;
  watchDeadline(read, bodyTimeoutMs);
  stream.on("data", onData);
  stream.on("end", onEnd);
  stream.on("error", onError);
  stream.on("close", onClose);
  return promise;
}

type Resolvers<T> = { promise: Promise<T>; resolve: (value: T) => void; reject: (reason: unknown) => void };

// Promise.withResolvers (Node 22+; typed from ES2024 on): no executor closure
// per request. Node 20 is not supported, but loading this module there must
// not throw: it falls back to an executor.
const withResolvers: <T>() => Resolvers<T> =
  (Promise as unknown as { withResolvers?: <T>() => Resolvers<T> }).withResolvers?.bind(Promise) ??
  (<T>(): Resolvers<T> => {
    let resolve!: (value: T) => void;
    let reject!: (reason: unknown) => void;
    const promise = new Promise<T>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  });

const CLOSED_EARLY = "the request closed before its body ended";

/** Where the read in progress is kept on its stream, for the shared listeners. */
const reading = Symbol("connect-gateway body read");

type ReadStream = Readable & { [reading]?: BodyRead | undefined };

function onData(this: ReadStream, piece: Uint8Array | string): void {
  this[reading]?.data(piece);
}

function onEnd(this: ReadStream): void {
  this[reading]?.end();
}

function onError(this: ReadStream, error: Error): void {
  this[reading]?.fail(error);
}

function onClose(this: ReadStream): void {
  this[reading]?.fail(new Error(CLOSED_EARLY));
}

// A body of several chunks is hashed incrementally, from a copy of this
// hash (never updated itself): a copy skips looking the algorithm up again,
// and measured a little faster than createHash, more so when the caches are
// cold (between requests).
const EMPTY_SHA256 = createHash("sha256");

/**
 * One body being read, hashed and verified, held as a {@link ChunkGatherer}
 * (a body sent a few bytes at a time is copied together into blocks). Each
 * piece kept is hashed once: as the next one is kept, or at the end. A body
 * of one chunk (most unary calls) or none (GET) is hashed in one call at the
 * end, without a hash object: in a serving process, where the caches are
 * cold between requests, every call into node:crypto costs more than the
 * hashing of a small body.
 */
class BodyRead extends ChunkGatherer implements DeadlineWatch {
  private hash: Hash | undefined = undefined;
  deadlineAt = 0;
  previousWatch: DeadlineWatch | undefined = undefined;
  nextWatch: DeadlineWatch | undefined = undefined;
  watched = false;
  private byteLength = 0;
  /** Past `maxBodyBytes` over HTTP/2: the rest is read and dropped before the refusal (see `data`). */
  private draining = false;

  constructor(
    private readonly stream: ReadStream,
    private readonly check: BodyCheck,
    private readonly maxBodyBytes: number,
    private readonly bodyTimeoutMs: number,
    private readonly resolve: (body: VerifiedBody) => void,
    private readonly reject: (error: unknown) => void,
  ) {
    super();
  }

  data(piece: Uint8Array | string): void {
    // Node streams yield Buffers; a string only appears after setEncoding().
    const chunk = typeof piece === "string" ? Buffer.from(piece) : piece;
    this.byteLength += chunk.byteLength;
    if (this.draining) {
      if (this.byteLength > this.maxBodyBytes + DRAIN_MAX_BYTES) this.refuseTooLarge(0);
      return;
    }
    if (this.byteLength > this.maxBodyBytes) {
      this.clear();
      this.hash = undefined;
      // Over HTTP/2, the refusal waits for the rest of the body, read and
      // dropped (up to 16 MiB more, within the body's deadline): a caller
      // answered mid-upload keeps its unsent bytes queued against its own
      // session's memory, which Node's HTTP/2 client never gives back, so a
      // few such calls in a row would leave its session refusing every
      // stream. Over HTTP/1.1 the refusal goes at once; Node drops the rest.
      if (isHttp2(this.stream)) this.draining = true;
      else this.refuseTooLarge(this.bodyTimeoutMs);
      return;
    }
    this.add(chunk);
  }

  /**
   * Stops reading a body past `maxBodyBytes` and refuses it; an HTTP/2
   * stream is ended once answered, after `drainFor` more of dropping what
   * comes (0: at once, the drain is over).
   */
  private refuseTooLarge(drainFor: number): void {
    this.done();
    this.stream.pause();
    endUnreadStream(this.stream, drainFor);
    this.clear();
    this.hash = undefined;
    this.resolve({ kind: "too_large" });
  }

  /** Each piece kept, in order: hashed once, from the second one on (see {@link digest}). */
  protected override kept(chunk: Uint8Array, index: number): void {
    if (index === 1 && this.hash === undefined) {
      this.hash = EMPTY_SHA256.copy().update(this.chunks[0] as Uint8Array);
    }
    this.hash?.update(chunk);
  }

  end(): void {
    if (this.draining) {
      this.done();
      this.resolve({ kind: "too_large" });
      return;
    }
    this.done();
    const chunks = this.finish();
    const { byteLength } = this;
    const verdict = this.check.verifyBody(this.digest());
    if (verdict instanceof Promise) verdict.then((v) => this.resolve(outcome(v, chunks, byteLength)), this.reject);
    else this.resolve(outcome(verdict, chunks, byteLength));
  }

  fail(error: Error): void {
    this.done();
    this.reject(error);
  }

  /** The deadline passed with the body still coming: stop reading, drop what was read. */
  expire(): void {
    if (this.stream[reading] !== this) return;
    if (this.draining) {
      this.refuseTooLarge(0);
      return;
    }
    this.done();
    this.stream.pause();
    endUnreadStream(this.stream, 0);
    this.clear();
    this.hash = undefined;
    this.resolve({ kind: "timed_out" });
  }

  private digest(): string {
    if (this.hash !== undefined) return this.hash.digest("hex");
    const only = this.chunks[0];
    return only === undefined ? EMPTY_BODY_SHA256 : sha256Once("sha256", only, "hex");
  }

  private done(): void {
    unwatchDeadline(this);
    const stream = this.stream;
    if (stream[reading] !== this) return;
    stream[reading] = undefined;
    stream.off("data", onData);
    stream.off("end", onEnd);
    stream.off("error", onError);
    stream.off("close", onClose);
  }
}

/** The body as verified, or why it was refused. */
export function outcome(verdict: BodyVerdict, chunks: Uint8Array[], byteLength: number): VerifiedBody {
  return verdict === undefined ? { kind: "verified", chunks, byteLength } : { kind: "rejected", reason: verdict };
}

/** True when the declared `content-length` alone exceeds the limit: refuse before reading. */
export function declaresTooLarge(contentLength: string | undefined, maxBodyBytes: number): boolean {
  return contentLength !== undefined && Number(contentLength) > maxBodyBytes;
}
