import { Agent } from "undici";
import { H2cUpstreamPool, type DispatchRequest, type DispatchResponse } from "./h2c-upstream-pool.js";

/** A request to an upstream: where it goes, and for how long its answer may keep it waiting. */
export interface UpstreamRequest extends DispatchRequest {
  /** `http(s)://host:port`. */
  readonly origin: string;
  /** How long the answer's body may stall between two chunks. */
  readonly bodyTimeout?: number;
}

/**
 * Every upstream connection of the gateway: an undici Agent for HTTP/1.1
 * upstreams (a pool of up to 128 keep-alive connections per origin, TLS
 * verified), and one {@link H2cUpstreamPool} per cleartext HTTP/2 upstream
 * (gRPC), chosen by the route rather than by the origin, since one server
 * may take both.
 */
export class UpstreamDispatcher {
  readonly #http1 = new Agent({ connections: 128, pipelining: 1, connect: { rejectUnauthorized: true } });
  readonly #h2c = new Map<string, H2cUpstreamPool>();
  readonly #onSessionError: (error: Error, origin: string) => void;

  /** `onSessionError` hears of each h2c session that dies (the calls on it fail on their own). */
  constructor(onSessionError: (error: Error, origin: string) => void) {
    this.#onSessionError = onSessionError;
  }

  /** The h2c pool of `origin`, made on first use: what {@link request} is given for an HTTP/2 upstream. */
  h2cPool(origin: string): H2cUpstreamPool {
    let pool = this.#h2c.get(origin);
    if (pool === undefined) {
      pool = new H2cUpstreamPool(origin, { onSessionError: (error) => this.#onSessionError(error, origin) });
      this.#h2c.set(origin, pool);
    }
    return pool;
  }

  /**
   * Sends one request, over `h2c` when given (see {@link h2cPool}, which
   * sends a refused stream again itself), else over HTTP/1.1; `callback` is
   * called once, with the upstream's answer (status, headers, body stream)
   * or the failure.
   *
   * Over HTTP/1.1 an idempotent request (GET, HEAD, OPTIONS, PUT, DELETE)
   * whose connection failed before any of the answer came is sent once more,
   * on another connection, as nginx does: an upstream closing an idle
   * keep-alive connection just as the gateway reuses it (gunicorn, Go's
   * `IdleTimeout`: without a `Keep-Alive: timeout` to go by) would otherwise
   * cost a caller a 503 for a GET. A POST or PATCH is never resent: it could
   * run twice. Nor is a body that streams (it cannot be read twice). It goes
   * with the same signature and request id: a service that did receive the
   * first copy refuses the second as a replay.
   */
  request(req: UpstreamRequest, h2c: H2cUpstreamPool | undefined, callback: (error: Error | null, response?: DispatchResponse) => void): void {
    if (h2c !== undefined) return h2c.request(req, callback);
    const resendable = IDEMPOTENT_METHODS.has(req.method) && (req.body === undefined || req.body === null || req.body instanceof Uint8Array);
    const send = (attempt: number): void => {
      this.#http1.request(req as Agent.DispatchOptions & UpstreamRequest, (error: Error | null, response: unknown) => {
        if (error !== null && attempt === 0 && resendable && isConnectionFailure(error) && req.signal?.aborted !== true) return send(1);
        callback(error, response as DispatchResponse | undefined);
      });
    };
    send(0);
  }

  /** Closes every connection: after the gateway has drained its calls. */
  async close(): Promise<void> {
    for (const pool of this.#h2c.values()) pool.close();
    await this.#http1.destroy();
  }
}

/** RFC 9110 §9.2.2's idempotent methods, among those the gateway forwards. */
const IDEMPOTENT_METHODS = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);

/** A connection that failed under a request before the answer began: reset, closed, or a broken pipe. */
function isConnectionFailure(error: Error & { code?: unknown }): boolean {
  return error.code === "UND_ERR_SOCKET" || error.code === "ECONNRESET" || error.code === "EPIPE";
}
