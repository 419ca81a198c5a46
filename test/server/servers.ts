import * as http from "node:http";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";

type Handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

/** A real server on 127.0.0.1, port 0, and how to stop it for good. */
export interface RunningServer {
  readonly baseUrl: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Starts `handler` on HTTP/1.1 or cleartext HTTP/2 (h2c) on loopback. */
export async function startServer(handler: Handler, httpVersion?: "1.1" | "2"): Promise<RunningServer>;
/** Starts an HTTP/1.1-only listener, such as an Express app, on loopback. */
export async function startServer(handler: http.RequestListener): Promise<RunningServer>;
export async function startServer(handler: Handler | http.RequestListener, httpVersion: "1.1" | "2" = "1.1"): Promise<RunningServer> {
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
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    baseUrl: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of open) s.destroy();
      }),
  };
}
