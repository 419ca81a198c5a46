// What the gateway benchmark's processes share: constants and the shapes of
// their messages. (The child modules start servers when imported: the
// parent imports from here, never from them.)
import type { TokenValidationOptions } from "../../packages/gateway/src/index.js";

export const HMAC_SECRET = "bench-hmac-secret-0123456789abcdef";
export const BENCH_ISSUER = "bench";
export const BENCH_AUDIENCE = "bench";

/** A node proxy under test (proxy.ts), as JSON in BENCH_PROXY. */
export type ProxySpec =
  | { readonly kind: "http-proxy"; readonly upstream: string; readonly bodyLimit: number }
  | {
      readonly kind: "gateway";
      /** A routes.yaml path: loading it is part of the start-up time. */
      readonly routes: string;
      readonly tokens: TokenValidationOptions;
      /**
       * true: what `connect-gateway serve` does — pino at `info`, one line per
       * request, into a SonicBoom on a file descriptor (stdout for serve, here
       * one opened on /dev/null, same options as pino's stdout default).
       * false: `logger: false`.
       */
      readonly log: boolean;
      readonly bodyLimit: number;
    };

/** The first message of proxy.ts. */
export interface ProxyHello {
  readonly url: string;
  /** createGateway (routes file loaded and checked) + listen, milliseconds; 0 for http-proxy. */
  readonly startupMs: number;
  /** RSS right after listen, KiB. */
  readonly rssKiB: number;
}

/** One load run (loader.ts), as the parent asks for it. */
export interface LoadRequest {
  readonly url: string;
  readonly connections: number;
  /** Run for this long (warm-ups)… */
  readonly seconds?: number;
  /**
   * …or until exactly this many requests are answered (measured rounds):
   * no request is cut off at the end, so the proxy's CPU time of the round
   * belongs to the responses counted, with 8 MiB bodies too.
   */
  readonly amount?: number;
  readonly method: "GET" | "POST";
  /** POST body size in bytes (a buffer of 'x'). */
  readonly bodyBytes?: number;
  /**
   * Bearer tokens: connection i sends tokens[i % tokens.length] on every
   * request. One token per connection means no two requests in flight
   * share a token, so a verification is never shared between them.
   */
  readonly tokens: readonly string[];
}

/** What one load run measured. */
export interface LoadResult {
  /** Responses received (any status). */
  readonly completed: number;
  /** Seconds from the first request to the stop. */
  readonly seconds: number;
  /** Non-2xx responses, connection errors and timeouts, with the status codes seen. */
  readonly failures: number;
  readonly statuses: string;
  /** Latency of 2xx responses, milliseconds. */
  readonly p50: number;
  readonly p99: number;
}
