import { createServer as createHttp1Server, ServerResponse, type IncomingMessage, type OutgoingHttpHeaders, type Server } from "node:http";
import {
  constants as http2Constants,
  createServer as createHttp2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
} from "node:http2";
import type { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import { markAnswerCut, type AnswerCut } from "./gateway-logger.js";
import { LinkedSet } from "./linked-set.js";

/** fastify's request handler; it also takes the HTTP/2 compatibility request and response. */
type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * How long a peer may take, and how much it may hold, on the gateway's own
 * port: a client that stalls or sends slowly is cut after these bounds
 * instead of holding a socket (and its memory) forever.
 */
export interface ConnectionLimits {
  /**
   * How long a new connection may take to send its first bytes and, for
   * HTTP/2, its connection preface and first SETTINGS frame; and how long an
   * HTTP/1.1 request may take to send its headers (then 408 and the
   * connection is closed). Milliseconds.
   */
  readonly headersTimeoutMs: number;
  /**
   * How long a request may take to arrive whole, headers and body: an
   * HTTP/1.1 request still incomplete then gets 408 and its connection is
   * closed; an HTTP/2 stream gets 408 (or a reset, when the answer has
   * started) while the session and its other streams go on. Milliseconds;
   * at least `headersTimeoutMs`.
   */
  readonly requestTimeoutMs: number;
  /**
   * How long an HTTP/2 session may stay without open streams before it is
   * closed (GOAWAY, then the connection). Milliseconds.
   */
  readonly http2IdleTimeoutMs: number;
  /**
   * How long an answer may have output waiting, none of it going out,
   * before the caller is taken to have stopped reading: its HTTP/2 stream
   * is reset (CANCEL), its HTTP/1.1 connection closed. Milliseconds.
   */
  readonly sendTimeoutMs: number;
  /** Streams one HTTP/2 session may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). */
  readonly http2MaxConcurrentStreams: number;
}

// Largest HTTP/2 header block accepted (SETTINGS_MAX_HEADER_LIST_SIZE, bytes
// as RFC 9113 counts them); a larger one has its stream reset. HTTP/1.1 keeps
// Node's limit (16 KiB, `--max-http-header-size`).
const HTTP2_MAX_HEADER_LIST_SIZE = 64 * 1024;
// Memory one HTTP/2 session may hold (megabytes; Node's default, set on
// purpose): past it, new streams are refused with ENHANCE_YOUR_CALM.
const HTTP2_MAX_SESSION_MEMORY_MB = 10;

/** An HTTP/1.1 server that also serves cleartext HTTP/2, see {@link createDualProtocolServer}. */
export interface DualProtocolServer {
  /** The listening server, what fastify's `serverFactory` returns. */
  readonly server: Server;
  /**
   * Starts a graceful close: closes idle HTTP/1.1 keep-alive connections at
   * once (and every other one as soon as its response is done), sends GOAWAY
   * on every HTTP/2 session (new streams are refused, open ones finish), and
   * drops connections that have not sent their first bytes yet, which neither
   * server knows about. Stopping the listener is the caller's `server.close()`.
   */
  drain(): void;
  /**
   * Ends a drain that took too long: every call still open is ended, then
   * every remaining connection is destroyed. A call not answered yet gets 503 (Unavailable
   * to Connect and gRPC clients). An answer already under way that has an
   * ending registered with {@link setDrainDeadlineEnding} (a gRPC, gRPC-web
   * or Connect stream) is ended by it, with Unavailable after its last whole
   * message; any other (Connect unary, REST) cannot say anything more: an
   * HTTP/2 one is reset with CANCEL, an HTTP/1.1 one has its connection closed.
   */
  destroyConnections(): void;
}

// The protocol-aware endings of answers under way, see setDrainDeadlineEnding.
const drainDeadlineEndings = new WeakMap<object, () => void>();

/**
 * Registers how `res`, an answer whose headers may already be sent, is ended
 * when the drain timeout of a graceful close expires, instead of a reset:
 * `end` must end the response (or reset it itself when it cannot) soon, as
 * the connection is destroyed shortly after.
 */
export function setDrainDeadlineEnding(res: ServerResponse | Http2ServerResponse, end: () => void): void {
  drainDeadlineEndings.set(res, end);
}

/** Runs the ending registered for `res`, if any; false when there is none. */
function endRegistered(res: ServerResponse | Http2ServerResponse): boolean {
  const end = drainDeadlineEndings.get(res);
  if (end === undefined) return false;
  drainDeadlineEndings.delete(res);
  end();
  return true;
}

// Every HTTP/2 connection opens with this preface (RFC 9113 §3.4); no
// HTTP/1.1 method starts with "PRI".
const HTTP2_PREFACE_START = "PRI";
// After ending the calls of a drain that timed out, how long the 503s, the
// Unavailable endings of open streams (which may first wait up to 120 ms for the
// rest of a message, see MESSAGE_REMAINDER_WAIT_MS), resets and GOAWAY get to
// reach the clients before their connections are destroyed.
const SESSION_DESTROY_DELAY_MS = 200;
// Once the gateway has ended an HTTP/2 connection (its session closed after
// GOAWAY, idle or draining), how long the client gets to close its side.
// Node ends the socket and waits for the peer's FIN; a client that never
// sends one would otherwise hold the socket (and a shutdown) for good.
const HTTP2_CLOSE_GRACE_MS = 1_000;
/** An answer under way that the drain timeout cut: logged as such, not as a caller that went away. */
const SHUTDOWN_CUT: AnswerCut = { statusCode: 503, code: "SERVICE_UNAVAILABLE", message: "answer cut short: the gateway shut down" };

/**
 * One port for HTTP/1.1 and cleartext HTTP/2 with prior knowledge (h2c, what
 * gRPC clients and `buf curl --http2-prior-knowledge` use). Node's
 * `allowHTTP1` works only behind TLS, so the listening HTTP/1.1 server peeks
 * at the first bytes of each connection, puts them back, and hands HTTP/2
 * connections to an `http2` server that never listens itself. Both call the
 * same handler, so fastify sees one stream of requests.
 */
export function createDualProtocolServer(handler: Handler, limits: ConnectionLimits): DualProtocolServer {
  const { headersTimeoutMs, http2IdleTimeoutMs: idleTimeoutMs, sendTimeoutMs } = limits;
  const requestTimeoutMs = Math.max(limits.requestTimeoutMs, headersTimeoutMs);
  let draining = false;
  // HTTP/1.1 responses not finished yet: when draining, they say
  // `Connection: close` if they still can, and their connection is closed
  // as soon as it is idle again.
  const http1Responses = new LinkedSet<ServerResponse>();
  // HTTP/2 responses whose stream is still open: answered or reset when a
  // drain times out.
  const http2Responses = new LinkedSet<Http2ServerResponse>();
  const closeIdleSoon = () => setImmediate(() => http1.closeIdleConnections());
  const handle: Handler = (req, res) => {
    if (res instanceof ServerResponse) {
      if (draining) res.shouldKeepAlive = false;
      const open = http1Responses.add(res);
      res.once("close", () => {
        http1Responses.delete(open);
        if (draining) closeIdleSoon();
      });
    } else {
      const http2Response = res as unknown as Http2ServerResponse;
      const open = http2Responses.add(http2Response);
      http2Response.stream.once("close", () => http2Responses.delete(open));
      boundRequestBody(http2Response, requestTimeoutMs);
    }
    handler(req, res);
  };
  // Node's own bounds: 408 and close for headers not complete within
  // headersTimeout, or a whole request not within requestTimeout. Both are
  // checked every connectionsCheckingInterval (30 s by default, too coarse
  // for short timeouts).
  const http1 = createHttp1Server(
    {
      headersTimeout: headersTimeoutMs,
      requestTimeout: requestTimeoutMs,
      connectionsCheckingInterval: Math.max(10, Math.min(1_000, Math.floor(headersTimeoutMs / 4))),
    },
    handle,
  );
  // Callers that stopped reading: an answer whose output waits, none of it
  // going out, for sendTimeoutMs is cut — its HTTP/2 stream reset (CANCEL),
  // its HTTP/1.1 connection closed. A watchdog over the open answers rather
  // than Node's timeouts: an HTTP/2 stream's is pushed back by anything sent
  // on its connection (a PING's ACK, another stream's data), and a listener
  // on the HTTP/1.1 server's would keep idle keep-alive connections open.
  // Progress is judged on each answer's own writable (its HTTP/2 stream, its
  // HTTP/1.1 socket): the output it still holds, and how often it drained
  // (a reader taking bytes lets a full buffer drain, and is refilled to the
  // same level; one that does not, never drains).
  const watched = new UnreadOutputs();
  const watchdog = setInterval(() => {
    const now = Date.now();
    for (const res of http1Responses.values()) {
      const socket = res.socket;
      if (socket !== null && !socket.destroyed && watched.stalledFor(socket, socket.writableLength, now) >= sendTimeoutMs) socket.destroy();
    }
    for (const res of http2Responses.values()) {
      const stream = res.stream;
      if (!stream.closed && !stream.destroyed && watched.stalledFor(stream, stream.bufferSize, now) >= sendTimeoutMs) {
        stream.close(http2Constants.NGHTTP2_CANCEL);
      }
    }
  }, Math.max(10, Math.min(1_000, Math.floor(sendTimeoutMs / 4))));
  watchdog.unref();
  http1.once("close", () => clearInterval(watchdog));
  const http2 = createHttp2Server(
    {
      maxSessionMemory: HTTP2_MAX_SESSION_MEMORY_MB,
      settings: {
        maxConcurrentStreams: limits.http2MaxConcurrentStreams,
        maxHeaderListSize: HTTP2_MAX_HEADER_LIST_SIZE,
      },
    },
    handle as unknown as (req: Http2ServerRequest, res: Http2ServerResponse) => void,
  );
  const sessions = new LinkedSet<Http2Session>();
  // When the connection being handed to the http2 server was accepted: the
  // preface deadline counts from then (the session is created synchronously).
  let handingOverAcceptedAt: number | undefined;
  // The connection under each session: the session only exposes a proxy of it, which cannot destroy it.
  let handingOverSocket: Socket | undefined;
  const socketOf = new WeakMap<Http2Session, Socket>();
  http2.on("session", (session: Http2Session) => {
    const open = sessions.add(session);
    const acceptedAt = handingOverAcceptedAt ?? Date.now();
    const socket = handingOverSocket;
    if (socket !== undefined) socketOf.set(session, socket);
    // The preface and the client's first SETTINGS frame must arrive within
    // headersTimeoutMs: a half-sent preface would otherwise hold the socket.
    const prefaceTimer = setTimeout(() => session.destroy(), Math.max(0, acceptedAt + headersTimeoutMs - Date.now()));
    // No open stream for idleTimeoutMs: GOAWAY, and the session closes.
    let idleTimer: NodeJS.Timeout | undefined;
    const armIdle = () => {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => session.close(), idleTimeoutMs);
    };
    let openStreams = 0;
    session.once("remoteSettings", () => {
      clearTimeout(prefaceTimer);
      if (openStreams === 0) armIdle();
    });
    session.on("stream", (stream) => {
      openStreams++;
      clearTimeout(idleTimer);
      stream.once("close", () => {
        if (--openStreams === 0 && !session.closed && !session.destroyed) armIdle();
      });
    });
    session.once("close", () => {
      clearTimeout(prefaceTimer);
      clearTimeout(idleTimer);
      sessions.delete(open);
    });
    if (draining) session.close();
  });
  const http1Connection = http1.listeners("connection")[0] as (socket: Socket) => void;
  http1.removeAllListeners("connection");
  const peeking = new LinkedSet<Socket>();
  http1.on("connection", (socket: Socket) => {
    const acceptedAt = Date.now();
    const peek = peeking.add(socket);
    peekProtocol(socket, headersTimeoutMs, (isHttp2) => {
      peeking.delete(peek);
      if (!isHttp2) return http1Connection.call(http1, socket);
      // The HTTP/1.1 server accepted it half-open (allowHalfOpen), which HTTP/2
      // has no use for: a caller whose connection is gone would leave its
      // session, and every stream relaying into it, open until a write
      // failed (never, once flow control stops the writes). Its FIN ends it.
      socket.allowHalfOpen = false;
      // Once this side has ended it (the session closed), the client has
      // HTTP2_CLOSE_GRACE_MS to close its own: Node waits for that forever.
      socket.once("finish", () => setTimeout(() => socket.destroy(), HTTP2_CLOSE_GRACE_MS).unref());
      handingOverAcceptedAt = acceptedAt;
      handingOverSocket = socket;
      try {
        http2.emit("connection", socket);
      } finally {
        handingOverAcceptedAt = undefined;
        handingOverSocket = undefined;
      }
    });
  });
  return {
    server: http1,
    drain() {
      draining = true;
      for (const res of http1Responses.values()) if (!res.headersSent) res.shouldKeepAlive = false;
      http1.closeIdleConnections();
      for (const session of sessions.values()) session.close();
      for (const socket of peeking.values()) socket.destroy();
    },
    destroyConnections() {
      draining = true;
      // A call not answered yet gets a bare 503, which Connect, gRPC and
      // gRPC-web clients all read as Unavailable. Not REFUSED_STREAM: that
      // promises the request was never processed, and gRPC clients then
      // retry it transparently, but the upstream may have run it already.
      for (const res of http1Responses.values()) {
        if (!res.headersSent) answerUnavailable(res);
        else if (!endRegistered(res)) {
          markAnswerCut(res, SHUTDOWN_CUT);
          res.destroy();
        }
      }
      for (const res of http2Responses.values()) {
        const stream = res.stream;
        if (stream.closed || stream.destroyed) continue;
        // An answered stream whose upload is not complete is left to the
        // session's destruction below.
        if (!res.headersSent) answerUnavailable(res);
        else if (!res.writableEnded && !endRegistered(res)) {
          // An answer under way that cannot be ended in its protocol (a
          // Connect unary or REST answer, a gRPC-web-text stream) is reset
          // with CANCEL, which Connect clients report as Canceled. No reset code reads as
          // Unavailable there: @connectrpc/connect-node 2.2.0 maps
          // REFUSED_STREAM to Code.Unavailable (connectErrorFromH2ResetCode,
          // node-error.js), but Node fails the client stream first with
          // ERR_HTTP2_STREAM_ERROR for every code other than NO_ERROR and
          // CANCEL, which the client reports as Internal. REFUSED_STREAM would
          // also tell the client the request was never processed.
          markAnswerCut(res, SHUTDOWN_CUT);
          stream.close(http2Constants.NGHTTP2_CANCEL);
        }
      }
      http1.closeIdleConnections();
      setTimeout(() => {
        http1.closeAllConnections();
        // A session closed gracefully before (drain) only ends its socket when destroyed: destroy that too.
        for (const session of sessions.values()) {
          session.destroy();
          socketOf.get(session)?.destroy();
        }
      }, SESSION_DESTROY_DELAY_MS);
      for (const socket of peeking.values()) socket.destroy();
    },
  };
}

// Where the headers already meant for a response are kept (see setPendingHeaders).
const pendingHeaders = new WeakMap<object, () => Readonly<Record<string, string | number | string[] | undefined>>>();

/**
 * Registers where the headers already meant for `res` are (fastify's reply:
 * CORS's among them), for the 503 the drain timeout writes itself: its
 * `Access-Control-*` and `Vary` headers go with it, so that a browser page
 * can read that answer rather than see a CORS failure.
 */
export function setPendingHeaders(
  res: ServerResponse | Http2ServerResponse,
  headers: () => Readonly<Record<string, string | number | string[] | undefined>>,
): void {
  pendingHeaders.set(res, headers);
}

/** A bare 503 with `Retry-After`, ending the response (and, for HTTP/1.1, its connection). */
function answerUnavailable(res: ServerResponse | Http2ServerResponse): void {
  if (res instanceof ServerResponse) res.shouldKeepAlive = false;
  const headers: OutgoingHttpHeaders = { "retry-after": "1" };
  const pending = pendingHeaders.get(res)?.();
  if (pending !== undefined) {
    for (const [name, value] of Object.entries(pending)) {
      if (value !== undefined && (name.startsWith("access-control-") || name === "vary")) headers[name] = typeof value === "number" ? String(value) : value;
    }
  }
  res.writeHead(503, headers);
  res.end();
}

/**
 * What the send-timeout watchdog knows of the writables (HTTP/2 streams,
 * HTTP/1.1 sockets) it has seen holding output: how many times each drained
 * since it was first seen so (counted by a 'drain' listener added then), and
 * its last sample. Entries go with their writable (weak maps).
 */
class UnreadOutputs {
  readonly #drains = new WeakMap<object, number>();
  readonly #last = new WeakMap<object, { readonly pending: number; readonly drains: number; readonly since: number }>();

  /**
   * How long `writable` has held output (`pending` bytes now) without any of
   * it going out: 0 while it holds none, or when it has drained or holds
   * another amount since the last sample.
   */
  stalledFor(writable: EventEmitter, pending: number, now: number): number {
    if (pending === 0) {
      this.#last.delete(writable);
      return 0;
    }
    let drains = this.#drains.get(writable);
    if (drains === undefined) {
      drains = 0;
      this.#drains.set(writable, drains);
      writable.on("drain", () => this.#drains.set(writable, (this.#drains.get(writable) ?? 0) + 1));
    }
    const last = this.#last.get(writable);
    if (last === undefined || last.pending !== pending || last.drains !== drains) {
      this.#last.set(writable, { pending, drains, since: now });
      return 0;
    }
    return now - last.since;
  }
}

/**
 * Bounds how long an HTTP/2 request body may take to arrive (Node's HTTP/1.1
 * server does the same with `requestTimeout`): a stream whose body is not
 * complete `timeoutMs` after its headers gets 408, then RST_STREAM(NO_ERROR)
 * so its client stops sending; or a reset alone when the answer has already
 * started. The session and its other streams are not affected.
 */
function boundRequestBody(res: Http2ServerResponse, timeoutMs: number): void {
  const stream = res.stream;
  if (stream.endAfterHeaders) return; // no body
  const timer = setTimeout(() => {
    // The body came whole (END_STREAM), even if nobody has read it yet.
    if (stream.closed || stream.destroyed || stream.state.remoteClose) return;
    if (res.headersSent) return void stream.close(http2Constants.NGHTTP2_CANCEL);
    res.writeHead(408);
    res.end();
    stream.close(http2Constants.NGHTTP2_NO_ERROR); // after the 408 is sent
  }, timeoutMs);
  stream.once("close", () => clearTimeout(timer));
}

/**
 * Reads until the first bytes tell HTTP/2 from HTTP/1.1, puts them back and
 * calls `handOver`. Until then no server owns the socket, so this guards it:
 * a reset before the first byte would otherwise be an unhandled `error` event
 * (fatal to the process), and a client that has not sent enough bytes
 * `timeoutMs` after connecting is dropped (a deadline, not an idle timeout,
 * so trickling one byte at a time does not extend it).
 */
function peekProtocol(socket: Socket, timeoutMs: number, handOver: (isHttp2: boolean) => void): void {
  let head = Buffer.alloc(0);
  const drop = () => {
    clearTimeout(timer);
    socket.destroy();
  };
  const timer = setTimeout(drop, timeoutMs);
  const onReadable = () => {
    const chunk: Buffer | null = socket.read();
    if (chunk === null) return drop(); // ended before saying anything
    head = Buffer.concat([head, chunk]);
    const start = head.subarray(0, HTTP2_PREFACE_START.length).toString("latin1");
    if (start.length < HTTP2_PREFACE_START.length && HTTP2_PREFACE_START.startsWith(start)) return; // too few bytes yet
    clearTimeout(timer);
    socket.off("readable", onReadable).off("error", drop).off("close", drop);
    socket.unshift(head);
    handOver(start === HTTP2_PREFACE_START);
  };
  socket.on("readable", onReadable).on("error", drop).on("close", drop);
}
