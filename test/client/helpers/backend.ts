// A real Connect backend for the client tests: connect-node adapters on
// node:http (HTTP/1.1) or node:http2 (h2c), one per path prefix seen, so it
// answers `/pkg.Service/Method`, `/backend/<service>/pkg.Service/Method`,
// `/prefix/backend/<service>/…` alike, and records every request.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttp2Server, type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import type { AddressInfo, Server } from "node:net";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { EchoService, ValuationService } from "../../../examples/gen/example/v1/example_pb.js";

/** One request the backend received. */
export interface BackendRequest {
  readonly method: string;
  /** The path prefix before `/pkg.Service/Method` (`""`, `/backend/echo`, …). */
  readonly prefix: string;
  readonly path: string;
  readonly authorization: string | undefined;
}

/** Options of {@link startBackend}. */
export interface BackendOptions {
  readonly httpVersion: "1.1" | "2";
  /** Return an HTTP status to answer it instead of the handler (e.g. 401); may wait first. */
  readonly intercept?: (request: BackendRequest) => number | undefined | Promise<number | undefined>;
}

/** A running backend. */
export interface TestBackend {
  readonly url: string;
  readonly requests: BackendRequest[];
  close(): Promise<void>;
}

function routes(router: ConnectRouter) {
  router.service(EchoService, {
    echo: (req) => ({ text: req.text }),
    async *echoStream(req) {
      for (let i = 0; i < req.repeat; i++) yield { text: req.text };
    },
    async collect(requests) {
      let text = "";
      for await (const r of requests) text += r.text;
      return { text };
    },
    async *chat(requests) {
      for await (const r of requests) yield { text: r.text };
    },
  });
  router.service(ValuationService, { get: (req) => ({ id: req.id, amount: "100.00" }) });
}

type Handler = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void;

/** Starts the backend on 127.0.0.1, port 0. */
export async function startBackend(options: BackendOptions): Promise<TestBackend> {
  const requests: BackendRequest[] = [];
  const adapters = new Map<string, Handler>();
  const adapterFor = (prefix: string): Handler => {
    let adapter = adapters.get(prefix);
    if (!adapter) {
      adapter = connectNodeAdapter({ routes, requestPathPrefix: prefix }) as Handler;
      adapters.set(prefix, adapter);
    }
    return adapter;
  };
  const handler: Handler = (req, res) => {
    const path = (req.url ?? "").split("?")[0] ?? "";
    const prefix = /^(.*?)\/example\.v1\.\w+\/\w+$/.exec(path)?.[1] ?? "";
    const seen = { method: req.method ?? "", prefix, path, authorization: req.headers.authorization };
    requests.push(seen);
    void Promise.resolve(options.intercept?.(seen)).then((status) => {
      if (status === undefined) return adapterFor(prefix)(req, res);
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: "UNAUTHORIZED", message: "invalid token" } }));
    });
  };
  const server: Server =
    options.httpVersion === "2" ? createHttp2Server(handler as never) : createServer(handler as never);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const sessions = new Set<{ destroy(): void }>();
  server.on("session", (s: { destroy(): void }) => sessions.add(s));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
