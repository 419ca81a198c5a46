// A small real OAuth2-like token endpoint on node:http, for what oidc-provider
// does not do on purpose: issue refresh tokens for client_credentials, fail
// in every way a token endpoint can fail, answer a session exchange.
import type { IncomingMessage, ServerResponse } from "node:http";
import { startServer, unusedPort } from "./loopback-server.js";

/** What the endpoint received. */
export interface TokenEndpointRequest {
  readonly path: string;
  readonly authorization: string | undefined;
  readonly contentType: string | undefined;
  readonly body: string;
}

/** What to answer: a status and a raw body (or a JSON value), possibly late. */
export interface TokenEndpointAnswer {
  readonly status?: number;
  readonly json?: unknown;
  readonly raw?: string;
  readonly delayMs?: number;
  /** More response headers (`retry-after`). */
  readonly headers?: Readonly<Record<string, string>>;
}

/** A running endpoint. */
export interface TestTokenEndpoint {
  readonly url: string;
  readonly requests: TokenEndpointRequest[];
  close(): Promise<void>;
}

/** Starts it on 127.0.0.1, on `port` (default 0: any free port). */
export async function startTokenEndpoint(
  answer: (request: TokenEndpointRequest) => TokenEndpointAnswer,
  port = 0,
): Promise<TestTokenEndpoint> {
  const requests: TokenEndpointRequest[] = [];
  const server = await startServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const request = {
        path: req.url ?? "",
        authorization: req.headers.authorization,
        contentType: req.headers["content-type"],
        body: Buffer.concat(chunks).toString("utf8"),
      };
      requests.push(request);
      const a = answer(request);
      const send = () => {
        if (res.destroyed) return;
        res.writeHead(a.status ?? 200, { "content-type": a.raw === undefined ? "application/json" : "text/html", ...a.headers });
        res.end(a.raw ?? JSON.stringify(a.json));
      };
      if (a.delayMs) setTimeout(send, a.delayMs).unref();
      else send();
    });
  }, "1.1", port);
  return { url: server.baseUrl, requests, close: () => server.close() };
}

/** A port on 127.0.0.1 with nothing listening (bound, then released). */
export async function closedPortUrl(): Promise<string> {
  return `http://127.0.0.1:${await unusedPort()}`;
}
