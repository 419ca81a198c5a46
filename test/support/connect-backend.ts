// A real Connect backend for the client tests: connect-node adapters on
// node:http (HTTP/1.1) or node:http2 (h2c), one per path prefix seen, so it
// answers `/pkg.Service/Method`, `/backend/<service>/pkg.Service/Method`,
// `/prefix/backend/<service>/…` alike, and records every request.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { ValuationService } from "../../examples/gen/example/v1/example_pb.js";
import { echoRoutes } from "./echo-routes.js";
import { startServer } from "./loopback-server.js";

/** One request the backend received. */
export interface BackendRequest {
  readonly method: string;
  /** The path prefix before `/pkg.Service/Method` (`""`, `/backend/echo`, …). */
  readonly prefix: string;
  readonly path: string;
  readonly authorization: string | undefined;
  /** The `connect-timeout-ms` header: the deadline the client gave this attempt. */
  readonly timeoutMs: string | undefined;
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
  echoRoutes({ calls: 0, messages: 0 })(router);
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
    const seen = { method: req.method ?? "", prefix, path, authorization: req.headers.authorization, timeoutMs: firstHeader(req.headers["connect-timeout-ms"]) };
    requests.push(seen);
    void Promise.resolve(options.intercept?.(seen)).then((status) => {
      if (status === undefined) return adapterFor(prefix)(req, res);
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: "UNAUTHORIZED", message: "invalid token" } }));
    });
  };
  const server = await startServer(handler, options.httpVersion);
  return { url: server.baseUrl, requests, close: () => server.close() };
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
