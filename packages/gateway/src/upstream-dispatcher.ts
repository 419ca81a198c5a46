import { Agent } from "undici";
import { H2cUpstreamPool, type DispatchRequest, type DispatchResponse } from "./h2c-upstream-pool.js";

/**
 * Where a forwarded request goes to: the h2c pool it must use, set by the
 * forwarder on the request's headers (reply-from copies symbol keys with the
 * headers, and no HTTP client sends them). Without it, HTTP/1.1.
 */
export const UPSTREAM_POOL = Symbol("connect-gateway.upstreamPool");

/**
 * The signal that tells a forwarded request its caller went away, set by the
 * forwarder on the request's headers like {@link UPSTREAM_POOL}: the upstream
 * request is then aborted (HTTP/1.1: its connection goes back or is closed)
 * or cancelled (HTTP/2: RST_STREAM CANCEL), rather than held until the
 * upstream answers or the route's timeout, a connection of the pool each.
 */
export const CALLER_SIGNAL = Symbol("connect-gateway.callerSignal");

/** A request as @fastify/reply-from hands it to its `undici` dispatcher. */
type ForwardedRequest = DispatchRequest & {
  readonly origin: string;
  readonly headers: { [UPSTREAM_POOL]?: H2cUpstreamPool; [CALLER_SIGNAL]?: AbortSignal };
  signal?: AbortSignal;
};

/**
 * Every upstream connection of the gateway, behind the one dispatcher that
 * @fastify/reply-from is given: an undici Agent for HTTP/1.1 upstreams (a
 * pool of up to 128 keep-alive connections per origin, TLS verified), and one
 * {@link H2cUpstreamPool} per cleartext HTTP/2 upstream (gRPC), chosen by
 * the request rather than by its origin, since one server may take both.
 */
export class UpstreamDispatcher {
  readonly #http1 = new Agent({ connections: 128, pipelining: 1, connect: { rejectUnauthorized: true } });
  readonly #h2c = new Map<string, H2cUpstreamPool>();
  readonly #onSessionError: (error: Error, origin: string) => void;

  /** `onSessionError` hears of each h2c session that dies (the calls on it fail on their own). */
  constructor(onSessionError: (error: Error, origin: string) => void) {
    this.#onSessionError = onSessionError;
  }

  /** The h2c pool of `origin`, made on first use: put it under {@link UPSTREAM_POOL} on a request's headers. */
  h2cPool(origin: string): H2cUpstreamPool {
    let pool = this.#h2c.get(origin);
    if (pool === undefined) {
      pool = new H2cUpstreamPool(origin, { onSessionError: (error) => this.#onSessionError(error, origin) });
      this.#h2c.set(origin, pool);
    }
    return pool;
  }

  /** reply-from's dispatcher call: `callback` once, with the upstream's answer or the failure. */
  request(req: ForwardedRequest, callback: (error: Error | null, response?: DispatchResponse) => void): void {
    // reply-from's request object is made for this one call: the signal goes on it.
    req.signal = req.headers[CALLER_SIGNAL];
    const h2c = req.headers[UPSTREAM_POOL];
    if (h2c !== undefined) return h2c.request(req, callback);
    this.#http1.request(req as unknown as Agent.DispatchOptions & { method: "GET" }, callback as never);
  }

  /** Closes every connection: after the gateway has drained its calls. */
  async close(): Promise<void> {
    for (const pool of this.#h2c.values()) pool.close();
    await this.#http1.destroy();
  }
}
