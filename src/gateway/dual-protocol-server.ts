import { createServer as createHttp1Server, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import {
  createServer as createHttp2Server,
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
  /** Gracefully closes every HTTP/2 session (new streams are refused, open ones finish). */
  closeHttp2Sessions(): void;
}

// Every HTTP/2 connection opens with this preface (RFC 9113 §3.4); no
// HTTP/1.1 method starts with "PRI".
const HTTP2_PREFACE_START = "PRI";

/**
 * One port for HTTP/1.1 and cleartext HTTP/2 with prior knowledge (h2c, what
 * gRPC clients and `buf curl --http2-prior-knowledge` use). Node's
 * `allowHTTP1` works only behind TLS, so the listening HTTP/1.1 server peeks
 * at the first bytes of each connection, puts them back, and hands HTTP/2
 * connections to an `http2` server that never listens itself. Both call the
 * same handler, so fastify sees one stream of requests.
 */
export function createDualProtocolServer(handler: Handler): DualProtocolServer {
  const http1 = createHttp1Server(handler);
  const http2 = createHttp2Server(handler as unknown as (req: Http2ServerRequest, res: Http2ServerResponse) => void);
  const sessions = new Set<Http2Session>();
  http2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  const http1Connection = http1.listeners("connection")[0] as (socket: Socket) => void;
  http1.removeAllListeners("connection");
  const route = (socket: Socket, seen: Buffer = Buffer.alloc(0)) => {
    socket.once("readable", () => {
      const chunk: Buffer | null = socket.read();
      if (chunk === null) return socket.destroy();
      const head = Buffer.concat([seen, chunk]);
      const start = head.subarray(0, HTTP2_PREFACE_START.length).toString("latin1");
      if (start.length < HTTP2_PREFACE_START.length && HTTP2_PREFACE_START.startsWith(start)) {
        return route(socket, head); // too few bytes to tell yet
      }
      socket.unshift(head);
      if (start === HTTP2_PREFACE_START) http2.emit("connection", socket);
      else http1Connection.call(http1, socket);
    });
  };
  http1.on("connection", route);
  return {
    server: http1,
    closeHttp2Sessions() {
      for (const session of sessions) session.close();
    },
  };
}
