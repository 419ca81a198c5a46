// The one way the tests start a plain Node server: on 127.0.0.1, a free port
// unless told otherwise, HTTP/1.1 or cleartext HTTP/2 (h2c), closed for good
// (open connections and sessions destroyed) by close().
import * as http from "node:http";
import * as http2 from "node:http2";
import type { AddressInfo, Server as NetServer } from "node:net";

type Handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

/** A real server on 127.0.0.1, and how to stop it for good. */
export interface RunningServer {
  /** `http://127.0.0.1:<port>`. */
  readonly baseUrl: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Starts `handler` on HTTP/1.1 or cleartext HTTP/2 (h2c) on loopback, on `port` (default 0: any free port). */
export async function startServer(handler: Handler, httpVersion?: "1.1" | "2", port?: number): Promise<RunningServer>;
/** Starts an HTTP/1.1-only listener, such as an Express app, on loopback. */
export async function startServer(handler: http.RequestListener, httpVersion?: "1.1", port?: number): Promise<RunningServer>;
export async function startServer(
  handler: Handler | http.RequestListener,
  httpVersion: "1.1" | "2" = "1.1",
  port = 0,
): Promise<RunningServer> {
  const server =
    httpVersion === "2"
      ? http2.createServer(handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void)
      : http.createServer(handler as http.RequestListener);
  // Tracked so close() never waits on a client's idle connection or session.
  const open = new Set<{ destroy(): void }>();
  server.on("connection", (socket: { destroy(): void; once(e: string, f: () => void): void }) => {
    open.add(socket);
    socket.once("close", () => open.delete(socket));
  });
  const listening = await listen(server, port);
  return {
    port: listening,
    baseUrl: `http://127.0.0.1:${listening}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of open) s.destroy();
      }),
  };
}

/** Listens on `port` (default 0: a free one) of 127.0.0.1 and resolves to the port. */
export function listen(server: NetServer, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
}

/** Closes a server and every connection still open on it. */
export function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}

/** A loopback port that nothing listens on (free a moment ago): a service that is down, or a port to start one on. */
export async function unusedPort(): Promise<number> {
  const server = http.createServer();
  const port = await listen(server);
  await closeServer(server);
  return port;
}
