// A counting proxy in front of an OAuth2 server's introspection endpoint: it
// holds each request a while (so that concurrent calls overlap with the ones
// in flight), counts them, and can rewrite the answers on their way back.
import { createServer } from "node:http";
import { closeServer, listen } from "./loopback-server.js";

/** The proxy, on loopback. */
export interface IntrospectionProxy {
  /** Its introspection URL (`…/introspect`), to give the gateway. */
  readonly url: string;
  /** How many introspection requests it has received. */
  readonly count: number;
  /** When set, rewrites each (JSON) answer on its way back; otherwise answers pass as they are. */
  rewrite: ((body: Record<string, unknown>) => Record<string, unknown>) | undefined;
  /** When set, answers every request with this status (an outage, an overload) instead of forwarding it. */
  failWith: number | undefined;
  close(): Promise<void>;
}

/** Starts a proxy to `introspectionUrl` that holds each request `holdMs` before forwarding it. */
export async function startIntrospectionProxy(introspectionUrl: string, holdMs: number): Promise<IntrospectionProxy> {
  let count = 0;
  const server = createServer(async (req, res) => {
    count++;
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    await new Promise((resolve) => setTimeout(resolve, holdMs));
    if (proxy.failWith !== undefined) {
      res.writeHead(proxy.failWith, { "content-type": "application/json" }).end('{"error":"temporarily_unavailable"}');
      return;
    }
    const answer = await fetch(introspectionUrl, {
      method: "POST",
      headers: { authorization: String(req.headers.authorization), "content-type": String(req.headers["content-type"]) },
      body: Buffer.concat(chunks),
      signal: AbortSignal.timeout(5_000),
    });
    const rewrite = proxy.rewrite;
    const body = rewrite === undefined ? await answer.text() : JSON.stringify(rewrite((await answer.json()) as Record<string, unknown>));
    res.writeHead(answer.status, { "content-type": "application/json" }).end(body);
  });
  const proxy: IntrospectionProxy = {
    url: `http://127.0.0.1:${await listen(server)}/introspect`,
    get count() {
      return count;
    },
    rewrite: undefined,
    failWith: undefined,
    close: () => closeServer(server),
  };
  return proxy;
}
