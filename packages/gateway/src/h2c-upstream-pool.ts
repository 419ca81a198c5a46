import {
  connect,
  constants,
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type IncomingHttpHeaders as Http2Headers,
  type OutgoingHttpHeaders,
} from "node:http2";
import { PassThrough, pipeline, type Readable } from "node:stream";
import { ChunkStream } from "./chunk-stream.js";

/**
 * One request to an upstream, as the forwarder makes it (undici's request
 * options, which the HTTP/1.1 pool takes as they are). A
 * {@link ChunkStream} is written chunk by chunk and, being in memory, can be
 * sent again; any other stream is piped, once.
 */
export interface DispatchRequest {
  readonly path: string;
  readonly method: string;
  readonly headers: Record<string, string | string[] | number | undefined>;
  readonly body?: string | Uint8Array | Readable | null;
  readonly headersTimeout?: number;
  /** Aborted when the caller goes away: a stream not answered yet is cancelled (RST_STREAM CANCEL). */
  readonly signal?: AbortSignal;
}

/** An upstream's answer: the body stream carries the body and emits the upstream's 'trailers'. */
export interface DispatchResponse {
  readonly statusCode: number;
  readonly headers: Http2Headers;
  readonly body: Readable;
}

export interface H2cUpstreamPoolOptions {
  /** Sessions kept open at most (more are opened only when the others are full). */
  readonly maxSessions?: number;
  /** Streams put on one session before another is opened (capped by the upstream's own limit). */
  readonly maxStreamsPerSession?: number;
  /** An idle session is closed after this long. */
  readonly sessionIdleMs?: number;
  /** A stream idle for this long (no headers, or no body bytes) is cancelled, when the request names no timeout. */
  readonly defaultTimeoutMs?: number;
  /** Told about every session that dies of an error (the calls on it fail on their own). */
  readonly onSessionError?: (error: Error) => void;
}

interface PooledSession {
  readonly session: ClientHttp2Session;
  active: number;
  /** GOAWAY received, closing or closed: takes no new stream. */
  draining: boolean;
  /** The upstream's SETTINGS arrived: it speaks HTTP/2 on this connection. */
  settled: boolean;
  /** A PING (or the check for SETTINGS) is out to see whether the upstream still answers on this connection. */
  probing: boolean;
  /** When the connection was opened (`Date.now()`). */
  readonly openedAt: number;
}

/**
 * How long a session whose stream got no answer in time has to answer a
 * PING before it is retired, and how long a new session has to send its
 * SETTINGS before it is destroyed (see `#probe`).
 */
const PROBE_TIMEOUT_MS = 2_000;

/** Headers that are meaningless or forbidden on an HTTP/2 request. */
const connectionHeaders = new Set(["connection", "upgrade", "http2-settings", "transfer-encoding", "proxy-connection", "keep-alive", "host"]);

/**
 * The gateway's own cleartext HTTP/2 (prior knowledge) client for one
 * upstream origin: a few sessions, each with a permanent 'error' listener and
 * dropped from the pool as soon as it receives GOAWAY or closes, so a session
 * that dies (garbage bytes, a killed upstream, GOAWAY(INTERNAL_ERROR)) fails
 * only the calls on it; the next call opens a new one. (A session without an
 * 'error' listener would turn the next session error into an unhandled
 * 'error' event, which kills the process.)
 */
export class H2cUpstreamPool {
  readonly #origin: string;
  readonly #maxSessions: number;
  readonly #maxStreams: number;
  readonly #sessionIdleMs: number;
  readonly #defaultTimeoutMs: number;
  readonly #onSessionError: (error: Error) => void;
  readonly #sessions = new Set<PooledSession>();
  #closed = false;

  constructor(origin: string, options: H2cUpstreamPoolOptions = {}) {
    this.#origin = new URL(origin).origin;
    this.#maxSessions = options.maxSessions ?? 4;
    this.#maxStreams = options.maxStreamsPerSession ?? 100;
    this.#sessionIdleMs = options.sessionIdleMs ?? 60_000;
    this.#defaultTimeoutMs = options.defaultTimeoutMs ?? 10_000;
    this.#onSessionError = options.onSessionError ?? (() => {});
  }

  /** Sends one request; `callback` is called exactly once, with the response headers or the failure. */
  request(req: DispatchRequest, callback: (error: Error | null, response?: DispatchResponse) => void): void {
    this.#dispatch(req, callback, 0, Date.now() + (req.headersTimeout ?? this.#defaultTimeoutMs));
  }

  /** Destroys every session (and so every call still on it). */
  close(): void {
    this.#closed = true;
    for (const pooled of this.#sessions) pooled.session.destroy();
    this.#sessions.clear();
  }

  /**
   * Sends `req` on a pooled session. The answer's headers must come by
   * `deadline` (a fixed time, kept across the one retry, and not pushed back
   * by the request body still being written to an upstream that does not read
   * it); after them, the stream may be idle for the timeout at most.
   */
  #dispatch(
    req: DispatchRequest,
    callback: (error: Error | null, response?: DispatchResponse) => void,
    attempt: number,
    deadline: number,
  ): void {
    if (this.#closed) {
      callback(Object.assign(new Error("Upstream connection pool is closed"), { code: "ERR_HTTP2_INVALID_SESSION" }));
      return;
    }
    const signal = req.signal;
    if (signal?.aborted === true) {
      callback(callerGone());
      return;
    }
    const pooled = this.#pick();
    const body = req.body;
    // A stream that can be read once (a ChunkStream's chunks can be sent again): never retried.
    const bodyIsStream = !(body instanceof ChunkStream) && body !== null && body !== undefined && typeof (body as Readable).pipe === "function";
    let stream: ClientHttp2Stream;
    try {
      stream = pooled.session.request(requestHeaders(req));
    } catch (e) {
      // Nothing was sent: a session closing under our feet is worth one more try.
      pooled.draining = true;
      if (attempt === 0) this.#dispatch(req, callback, attempt + 1, deadline);
      else callback(e as Error);
      return;
    }
    pooled.active++;
    let settled = false;
    const settle = (error: Error | null, response?: DispatchResponse) => {
      if (settled) return;
      settled = true;
      callback(error, response);
    };
    // Stays for the stream's whole life: after the response, whoever reads the
    // body sees the error through the stream's end (fastify resets the caller).
    stream.on("error", (error) => {
      if (!isRetryable(stream, attempt, bodyIsStream)) settle(error);
    });
    // The caller went away before the answer: nobody will read it, so the upstream can stop.
    const onAbort = () => {
      settle(callerGone());
      if (!stream.closed) stream.close(constants.NGHTTP2_CANCEL);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    let bodyTimedOut = false;
    const headersTimer = setTimeout(() => {
      settle(Object.assign(new Error("Upstream did not answer in time"), { code: "UND_ERR_HEADERS_TIMEOUT" }));
      stream.close(constants.NGHTTP2_CANCEL);
      this.#probe(pooled);
    }, Math.max(0, deadline - Date.now()));
    stream.once("close", () => {
      clearTimeout(headersTimer);
      signal?.removeEventListener("abort", onAbort);
      pooled.active--;
      // The session is over its own limits (Node's, or the upstream's): this
      // stream and the next ones would be refused. Let the streams still on
      // it finish, and send new ones on a fresh session.
      if (stream.rstCode === constants.NGHTTP2_ENHANCE_YOUR_CALM) this.#retire(pooled);
      if (settled) return;
      if (isRetryable(stream, attempt, bodyIsStream)) {
        pooled.draining = true;
        settled = true;
        this.#dispatch(req, callback, attempt + 1, deadline);
        return;
      }
      settle(
        Object.assign(new Error(`Upstream stream closed before its response (RST_STREAM ${stream.rstCode})`), {
          code: "ERR_HTTP2_STREAM_CANCEL",
        }),
      );
    });
    stream.once("response", (headers) => {
      clearTimeout(headersTimer);
      // Server-sent events stay open for as long as they like.
      if (headers["content-type"] !== "text/event-stream") {
        stream.setTimeout(req.headersTimeout ?? this.#defaultTimeoutMs, () => {
          bodyTimedOut = true;
          stream.close(constants.NGHTTP2_CANCEL);
        });
      }
      settle(null, { statusCode: Number(headers[":status"]), headers, body: responseBody(stream, () => bodyTimedOut, !bodyIsStream) });
    });
    if (bodyIsStream) {
      pipeline(body as Readable, stream, (error) => {
        if (error) settle(error);
      });
    } else if (!stream.writableEnded) {
      // GET, HEAD and DELETE streams end with their headers.
      if (body instanceof ChunkStream) writeChunks(stream, body.chunks);
      else stream.end(body ?? undefined);
    }
  }

  /**
   * After a stream got no answer in time: is the session itself still
   * alive? Steady traffic keeps a session's idle timer from ever firing, so
   * without this check a dead connection would time out every call to its
   * upstream for good.
   *
   * - A session the upstream has not sent its SETTINGS on (it accepted the
   *   connection and went silent: a wedged worker) is destroyed once it is
   *   PROBE_TIMEOUT_MS old — not before: an upstream merely slow to connect
   *   serves its queued calls when it does.
   * - A connected session is sent a PING. One not answered within
   *   PROBE_TIMEOUT_MS is retired: no new call goes on it, while the calls
   *   already on it finish or time out on their own — a single-threaded
   *   upstream (Node, Python asyncio) answers no PING while a handler holds
   *   its event loop, and its long answers on that session must not die
   *   with it. A slow handler on a healthy session only loses its own stream.
   */
  #probe(pooled: PooledSession): void {
    const { session } = pooled;
    if (pooled.probing || session.closed || session.destroyed) return;
    if (!pooled.settled) {
      const destroyIfSilent = () => {
        pooled.probing = false;
        if (pooled.settled || session.destroyed) return;
        this.#retire(pooled);
        session.destroy();
        this.#onSessionError(Object.assign(new Error("Upstream accepted the connection but never sent its HTTP/2 SETTINGS; replaced"), { code: "ERR_HTTP2_PING_TIMEOUT" }));
      };
      const age = Date.now() - pooled.openedAt;
      if (age >= PROBE_TIMEOUT_MS) return destroyIfSilent();
      pooled.probing = true;
      setTimeout(destroyIfSilent, PROBE_TIMEOUT_MS - age).unref();
      return;
    }
    const unanswered = () => {
      pooled.probing = false;
      if (session.destroyed) return;
      this.#retire(pooled);
      this.#onSessionError(Object.assign(new Error("Upstream connection answered no PING within 2 s; new calls go on a fresh one"), { code: "ERR_HTTP2_PING_TIMEOUT" }));
    };
    pooled.probing = true;
    const timer = setTimeout(unanswered, PROBE_TIMEOUT_MS);
    let sent = false;
    try {
      sent = session.ping((error) => {
        clearTimeout(timer);
        pooled.probing = false;
        if (error !== null && !session.destroyed) unanswered();
      });
    } catch {
      sent = false;
    }
    if (!sent) {
      // Too many PINGs unanswered already (Node's own limit): as good as no answer.
      clearTimeout(timer);
      unanswered();
    }
  }

  /** Takes `pooled` out of the pool and closes it once the streams on it are done. */
  #retire(pooled: PooledSession): void {
    pooled.draining = true;
    this.#sessions.delete(pooled);
    if (!pooled.session.closed && !pooled.session.destroyed) pooled.session.close();
  }

  /** The least busy usable session, or a new one when all are full and there is room. */
  #pick(): PooledSession {
    let best: PooledSession | undefined;
    for (const pooled of this.#sessions) {
      const { session } = pooled;
      if (pooled.draining || session.closed || session.destroyed) {
        pooled.draining = true;
        this.#sessions.delete(pooled);
        continue;
      }
      if (best === undefined || pooled.active < best.active) best = pooled;
    }
    if (best !== undefined && (best.active < this.#streamLimit(best) || this.#sessions.size >= this.#maxSessions)) {
      return best;
    }
    return this.#open();
  }

  #streamLimit(pooled: PooledSession): number {
    const remote = pooled.session.remoteSettings?.maxConcurrentStreams;
    return typeof remote === "number" && remote > 0 ? Math.min(remote, this.#maxStreams) : this.#maxStreams;
  }

  #open(): PooledSession {
    const session = connect(this.#origin);
    const pooled: PooledSession = { session, active: 0, draining: false, settled: false, probing: false, openedAt: Date.now() };
    session.once("remoteSettings", () => (pooled.settled = true));
    this.#sessions.add(pooled);
    const retire = () => {
      pooled.draining = true;
      this.#sessions.delete(pooled);
    };
    // Permanent: a session error must never be an unhandled 'error' event.
    // Node destroys the session's streams with it, which fails their calls.
    session.on("error", (error) => {
      retire();
      this.#onSessionError(error);
    });
    session.on("goaway", retire);
    session.once("close", retire);
    // Streams queued before the connection is up can exceed the default.
    session.setMaxListeners(0);
    session.setTimeout(this.#sessionIdleMs, () => {
      retire();
      session.close();
    });
    return pooled;
  }
}

/**
 * The response body as handed on. Node ends a client stream's readable side
 * even when the upstream resets it (or its session dies) halfway through the
 * body, so a truncated answer would pass for a complete one: here it fails
 * instead, which makes fastify reset the caller's response. The upstream's
 * trailers are passed on as the same 'trailers' event; a body the caller stops
 * reading cancels the upstream stream. A body cut by the stream's timeout
 * (`timedOut()`) fails as a body timeout (504 when nothing was relayed yet).
 * With `endsUploadEarly` (a body in memory, see writeChunks), an answer
 * complete before the request body was all sent cancels the rest of it.
 */
function responseBody(stream: ClientHttp2Stream, timedOut: () => boolean, endsUploadEarly: boolean): Readable {
  const body = new PassThrough();
  stream.pipe(body, { end: false });
  stream.on("trailers", (trailers, flags) => body.emit("trailers", trailers, flags));
  // When the gateway's own timeout cut the body, a timeout, whatever the stream says.
  const fail = (what: string) =>
    body.destroy(
      timedOut()
        ? Object.assign(new Error("Upstream did not send its response in time"), { code: "UND_ERR_BODY_TIMEOUT" })
        : Object.assign(new Error(what), { code: "ERR_HTTP2_STREAM_ERROR" }),
    );
  stream.once("end", () => {
    if (stream.rstCode !== undefined && stream.rstCode !== constants.NGHTTP2_NO_ERROR) {
      fail(`Upstream reset the response (RST_STREAM ${stream.rstCode})`);
      return;
    }
    // RST_STREAM(NO_ERROR) before END_STREAM ends the readable side too, with
    // the stream already closed: a body cut short, not a complete one. (After
    // END_STREAM, as a server that answered without reading the whole upload
    // sends it, the readable side ends first, with the stream still open.)
    if (stream.closed) {
      fail("Upstream closed the stream (RST_STREAM NO_ERROR) before the end of its response");
      return;
    }
    body.end();
    // The whole answer came before the whole request went (a 413 sent
    // without reading): the rest of the upload is not wanted (RFC 9113 §8.1).
    if (endsUploadEarly && !stream.writableFinished && !stream.closed) stream.close(constants.NGHTTP2_CANCEL);
  });
  stream.once("close", () => {
    if (!stream.readableEnded && !body.destroyed) fail("Upstream stream closed before the end of its response");
  });
  stream.on("error", (error) => body.destroy(error));
  body.once("close", () => {
    if (!stream.closed && !stream.destroyed && !body.readableEnded) stream.close(constants.NGHTTP2_CANCEL);
  });
  return body;
}

/** The most of a body handed to a stream at once: one HTTP/2 frame's worth. */
const WRITE_PIECE = 16 * 1024;

/**
 * Writes a body held in memory, no faster than the upstream takes it: a
 * piece at a time (views of the chunks, no copy), the next one once the
 * stream drains. Handing a stream the whole body at once would be simpler,
 * but Node counts what a stream has queued against its session's memory
 * (`maxSessionMemory`, 10 MB) and, for a stream closed early, never gives
 * it back: ten 1 MiB uploads to an upstream that answers without reading
 * them (a 413) would leave the session refusing every new stream
 * (ENHANCE_YOUR_CALM), for every caller. Stops once the stream is closed
 * (see responseBody: an answer that came first ends the upload).
 */
function writeChunks(stream: ClientHttp2Stream, chunks: readonly Buffer[]): void {
  let index = 0;
  let offset = 0;
  const writeMore = (): void => {
    while (index < chunks.length) {
      if (stream.closed || stream.destroyed) return;
      const chunk = chunks[index] as Buffer;
      const piece = offset === 0 && chunk.byteLength <= WRITE_PIECE ? chunk : chunk.subarray(offset, offset + WRITE_PIECE);
      offset += piece.byteLength;
      if (offset >= chunk.byteLength) {
        index++;
        offset = 0;
      }
      if (!stream.write(piece)) {
        stream.once("drain", writeMore);
        return;
      }
    }
    if (!stream.closed && !stream.destroyed) stream.end();
  };
  writeMore();
}

/** The failure a call whose caller went away ends with: undici's own code for it, which the gateway logs as "caller went away". */
function callerGone(): Error {
  return Object.assign(new Error("The caller went away before the upstream answered"), { code: "UND_ERR_ABORTED" });
}

/** The upstream refused the stream unprocessed (REFUSED_STREAM, or past a GOAWAY's last stream): it can be sent again, once. */
function isRetryable(stream: ClientHttp2Stream, attempt: number, bodyIsStream: boolean): boolean {
  return stream.rstCode === constants.NGHTTP2_REFUSED_STREAM && attempt === 0 && !bodyIsStream;
}

function requestHeaders(req: DispatchRequest): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = { ":method": req.method, ":path": req.path };
  // The forwarder has dropped `connection` already: normally nothing to split.
  const connection = req.headers.connection;
  const listed = typeof connection === "string" ? connection.toLowerCase().split(",").map((s) => s.trim()) : undefined;
  for (const rawName in req.headers) {
    const value = req.headers[rawName];
    const name = rawName.toLowerCase();
    if (value === undefined || name.startsWith(":") || connectionHeaders.has(name) || listed?.includes(name) === true) continue;
    if (name === "te" && value !== "trailers") continue;
    headers[name] = value;
  }
  return headers;
}
