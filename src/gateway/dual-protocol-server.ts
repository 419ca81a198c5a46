import { createServer as createHttp1Server, ServerResponse, type IncomingMessage, type Server } from "node:http";
import {
  constants as http2Constants,
  createServer as createHttp2Server,
  type ServerHttp2Stream,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
} from "node:http2";
import type { Socket } from "node:net";

/** fastify's request handler; it also takes the HTTP/2 compatibility request and response. */
type Handler = (req: IncomingMessage, res: ServerResponse) => void;

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
   * Ends a drain that took too long: destroys every remaining connection, so
   * open calls (server streams) end with a reset rather than never.
   */
  destroyConnections(): void;
}

// Every HTTP/2 connection opens with this preface (RFC 9113 §3.4); no
// HTTP/1.1 method starts with "PRI".
const HTTP2_PREFACE_START = "PRI";
// After resetting the streams of a drain that timed out, how long the resets
// and GOAWAY get to reach the clients before their sessions are destroyed.
const SESSION_DESTROY_DELAY_MS = 100;

/**
 * One port for HTTP/1.1 and cleartext HTTP/2 with prior knowledge (h2c, what
 * gRPC clients and `buf curl --http2-prior-knowledge` use). Node's
 * `allowHTTP1` works only behind TLS, so the listening HTTP/1.1 server peeks
 * at the first bytes of each connection, puts them back, and hands HTTP/2
 * connections to an `http2` server that never listens itself. Both call the
 * same handler, so fastify sees one stream of requests.
 */
export function createDualProtocolServer(handler: Handler): DualProtocolServer {
  let draining = false;
  // HTTP/1.1 responses not finished yet: when draining, they say
  // `Connection: close` if they still can, and their connection is closed
  // as soon as it is idle again.
  const http1Responses = new Set<ServerResponse>();
  const closeIdleSoon = () => setImmediate(() => http1.closeIdleConnections());
  const handle: Handler = (req, res) => {
    if (res instanceof ServerResponse) {
      if (draining) res.shouldKeepAlive = false;
      http1Responses.add(res);
      res.once("close", () => {
        http1Responses.delete(res);
        if (draining) closeIdleSoon();
      });
    }
    handler(req, res);
  };
  const http1 = createHttp1Server(handle);
  const http2 = createHttp2Server(handle as unknown as (req: Http2ServerRequest, res: Http2ServerResponse) => void);
  const sessions = new Set<Http2Session>();
  http2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    if (draining) session.close();
  });
  const streams = new Set<ServerHttp2Stream>();
  http2.on("stream", (stream: ServerHttp2Stream) => {
    streams.add(stream);
    stream.once("close", () => streams.delete(stream));
  });
  const http1Connection = http1.listeners("connection")[0] as (socket: Socket) => void;
  http1.removeAllListeners("connection");
  const peeking = new Set<Socket>();
  http1.on("connection", (socket: Socket) => {
    peeking.add(socket);
    peekProtocol(socket, http1.headersTimeout, (isHttp2) => {
      peeking.delete(socket);
      if (isHttp2) http2.emit("connection", socket);
      else http1Connection.call(http1, socket);
    });
  });
  return {
    server: http1,
    drain() {
      draining = true;
      for (const res of http1Responses) if (!res.headersSent) res.shouldKeepAlive = false;
      http1.closeIdleConnections();
      for (const session of sessions) session.close();
      for (const socket of peeking) socket.destroy();
    },
    destroyConnections() {
      draining = true;
      http1.closeAllConnections();
      // RST_STREAM(CANCEL) on every open HTTP/2 stream: its caller sees a
      // reset, not an ordinary end. The sessions (already sent GOAWAY) then
      // close by themselves; the ones that do not are destroyed shortly after.
      for (const stream of streams) if (!stream.closed) stream.close(http2Constants.NGHTTP2_CANCEL);
      if (sessions.size > 0) {
        setTimeout(() => {
          for (const session of sessions) session.destroy();
        }, SESSION_DESTROY_DELAY_MS);
      }
      for (const socket of peeking) socket.destroy();
    },
  };
}

/**
 * Reads until the first bytes tell HTTP/2 from HTTP/1.1, puts them back and
 * calls `handOver`. Until then no server owns the socket, so this guards it:
 * a reset before the first byte would otherwise be an unhandled `error` event
 * (fatal to the process), and a client that never writes is dropped after
 * `timeoutMs`, as the HTTP/1.1 server would drop it.
 */
function peekProtocol(socket: Socket, timeoutMs: number, handOver: (isHttp2: boolean) => void): void {
  let head = Buffer.alloc(0);
  const drop = () => socket.destroy();
  const onReadable = () => {
    const chunk: Buffer | null = socket.read();
    if (chunk === null) return drop(); // ended before saying anything
    head = Buffer.concat([head, chunk]);
    const start = head.subarray(0, HTTP2_PREFACE_START.length).toString("latin1");
    if (start.length < HTTP2_PREFACE_START.length && HTTP2_PREFACE_START.startsWith(start)) return; // too few bytes yet
    socket.off("readable", onReadable).off("error", drop).off("timeout", drop).setTimeout(0);
    socket.unshift(head);
    handOver(start === HTTP2_PREFACE_START);
  };
  socket.on("readable", onReadable).on("error", drop).on("timeout", drop).setTimeout(timeoutMs);
}
