import type * as http from "node:http";
import type * as http2 from "node:http2";
import type * as https from "node:https";
import { Code, type Interceptor, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
  Http2SessionManager,
  type ConnectTransportOptions,
  type Http2SessionOptions,
} from "@connectrpc/connect-node";
import {
  createAuthenticatingTransport,
  createAuthorizationInterceptor,
  setCarriedAuthorization,
} from "./authenticating-transport.js";
import { createTraceContextInterceptor, createTraceContextWriter, createTracingTransport } from "./call-tracing.js";
import { assertBoolean, assertFunction } from "../core/assertions.js";
import { ConfigurationError, InvalidOptionError } from "../core/errors.js";
import { watchingPeerResets } from "./http2-reset.js";
import { resolveGatewayOptions, type GatewayOptions, type ResolvedGatewayOptions } from "./gateway-options.js";
import { createRetryInterceptor, resolveRetryPolicy, type RetryOptions } from "./retry-interceptor.js";
import { createRoutingInterceptor } from "./routing-interceptor.js";
import { connectionErrorFrom } from "./connection-error.js";
import { createGatewayTokenManager } from "./token-manager.js";

/** Connect-node options passed through unchanged. */
export type GatewayTransportPassThroughOptions = Pick<
  ConnectTransportOptions,
  | "useBinaryFormat"
  | "jsonOptions"
  | "binaryOptions"
  | "acceptCompression"
  | "sendCompression"
  | "compressMinBytes"
  | "writeMaxBytes"
>;

/**
 * HTTP/1.1: node:http(s) request options (the agent comes from the `agent`
 * option). HTTP/2 session options are refused here, at compile time.
 */
export type GatewayHttp1Options = { readonly [K in keyof Http2SessionOptions]?: never } & {
  /** HTTP/1.1, the default for the Connect and gRPC-web protocols. */
  readonly httpVersion?: "1.1";
  /** Passed to `http.request` / `https.request` for every call (TLS settings, for example). */
  readonly nodeOptions?: Omit<http.RequestOptions, "signal" | "agent"> | Omit<https.RequestOptions, "signal" | "agent">;
};

/** HTTP/2: node:http2 session options and connect-node's session keep-alive options. */
export type GatewayHttp2Options = Http2SessionOptions & {
  /** HTTP/2: one multiplexed connection to the gateway; required by gRPC. */
  readonly httpVersion: "2";
  /** Passed to `http2.connect` when the session opens (TLS settings, for example). */
  readonly nodeOptions?: http2.ClientSessionOptions | http2.SecureClientSessionOptions;
};

/**
 * The wire protocol and HTTP version. Wrong combinations do not compile:
 * gRPC needs HTTP/2, and only the Connect protocol has `useHttpGet`.
 */
export type GatewayProtocolOptions =
  | ({
      /** The Connect protocol (the default), over HTTP/1.1 or HTTP/2. */
      readonly protocol?: "connect";
      /** Send calls to side-effect-free methods as HTTP GET, so they can be cached. */
      readonly useHttpGet?: boolean;
    } & (GatewayHttp1Options | GatewayHttp2Options))
  | ({
      /** gRPC: HTTP/2 only, with trailers. */
      readonly protocol: "grpc";
    } & Omit<GatewayHttp2Options, "httpVersion"> & {
        /** Always HTTP/2 for gRPC; may be left out. */
        readonly httpVersion?: "2";
      })
  | ({
      /** gRPC-web, over HTTP/1.1 or HTTP/2. */
      readonly protocol: "grpc-web";
    } & (GatewayHttp1Options | GatewayHttp2Options));

/** Options of {@link createGatewayTransport}. */
export type GatewayTransportOptions = GatewayOptions &
  GatewayTransportPassThroughOptions &
  GatewayProtocolOptions & {
    /**
     * Your own interceptors. They run after routing — they see the routed URL
     * `…/backend/<service>/…` — and inside the authentication, so they see
     * the `Authorization` header (never log it), and a 401 retry — or an
     * automatic retry (see `retry`) — runs them again.
     */
    readonly interceptors?: readonly Interceptor[];
    /**
     * Retries of unary calls to idempotent methods (proto
     * `idempotency_level = NO_SIDE_EFFECTS` or `IDEMPOTENT`) after the gateway
     * was unreachable or answered `503` / `Unavailable`: up to 3 attempts,
     * exponential backoff with full jitter from 100 ms to 2 s, the gateway's
     * `Retry-After` honoured, never past the call's deadline, and within a
     * retry budget of the transport (+20 % of its calls, at least 10 retries
     * a second). `false`: no retries; an object: see {@link RetryOptions}.
     * Default `true`. One call opts out with `gatewayCall({ retry: false })`.
     *
     * @example
     * ```ts
     * createGatewayTransport({ retry: { maxAttempts: 5, maxBackoffMs: 1000 } });
     * createGatewayTransport({ retry: false }); // the caller retries, or not
     * ```
     */
    readonly retry?: boolean | RetryOptions;
  };

/**
 * A Connect `Transport` to the API gateway: every call is routed
 * to `<gatewayUrl>/backend/<service>/pkg.Service/Method` and carries the
 * service's OAuth2 token — fetched lazily, cached, refreshed before expiry —
 * or an end user's forwarded token. Connect protocol over HTTP/1.1 unless
 * `protocol` / `httpVersion` say otherwise. Options default to the
 * environment (`GATEWAY_CLIENT_ID`, `GATEWAY_CLIENT_SECRET`, `GATEWAY_URL`,
 * `APPCENTER_URL`); a bad one throws a `ConfigurationError` right here.
 *
 * @example
 * ```ts
 * import { createClient } from "@connectrpc/connect";
 * import { createGatewayTransport, gatewayCall, withUserToken } from "connect-gateway/client";
 * import { EchoService } from "./gen/example/v1/example_pb.js";
 *
 * // GATEWAY_URL, APPCENTER_URL, GATEWAY_CLIENT_ID and GATEWAY_CLIENT_SECRET from the environment.
 * const transport = createGatewayTransport({ scope: ["read"] });
 * const echo = createClient(EchoService, transport);
 *
 * await echo.echo({ text: "hi" }); // with the service's own token
 * await withUserToken(accessToken, () => echo.echo({ text: "hi" })); // on behalf of an end user
 * await echo.echo({ text: "hi" }, gatewayCall({ service: "echo" })); // name the backend for one call
 * ```
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc6749#section-4.4 | RFC 6749 §4.4} (the client_credentials grant)
 * @see {@link https://www.rfc-editor.org/rfc/rfc6750 | RFC 6750} (the bearer token in `Authorization`)
 */
export function createGatewayTransport(options: GatewayTransportOptions = {}): Transport {
  const resolved = resolveGatewayOptions(options);
  const retry = resolveRetryPolicy(options.retry);
  const own = checkInterceptors(options.interceptors);
  const writeTraceContext = createTraceContextWriter(); // OpenTelemetry installed only
  // Adjacent steps share an interceptor (one closure less per call each, as
  // Connect applies interceptors per call); the order is the same:
  // Authorization, retries, routing, your interceptors, the trace context.
  const inner = createProtocolTransport(options, resolved, [
    // First: the Authorization header, for every interceptor after it to see.
    // Then the retries, outermost of the others: each attempt is routed again
    // and runs your interceptors again.
    retry
      ? createRetryInterceptor(retry, { isTransient: isUnavailable, prepare: setCarriedAuthorization })
      : createAuthorizationInterceptor(),
    // With nothing of yours after routing, the trace context is written as it routes.
    createRoutingInterceptor(resolved.gatewayUrl, resolved.defaultService, own.length === 0 ? writeTraceContext : undefined),
    ...own,
    // Innermost: each attempt carries the trace context.
    ...(own.length > 0 ? optional(createTraceContextInterceptor()) : []),
  ]);
  return createTracingTransport(
    createAuthenticatingTransport(inner, createGatewayTokenManager(resolved), `the gateway ${resolved.gatewayUrl}`, true, resolved.timeoutMs),
  );
}

function optional<T>(value: T | undefined): T[] {
  return value === undefined ? [] : [value];
}

// What a ConnectionError with code Unavailable stands for: not a passed deadline.
function isUnavailable(reason: unknown): boolean {
  return connectionErrorFrom(reason, "the gateway")?.code === Code.Unavailable;
}

function createProtocolTransport(
  options: GatewayTransportOptions,
  resolved: ResolvedGatewayOptions,
  interceptors: Interceptor[],
): Transport {
  const protocol = options.protocol ?? "connect";
  const httpVersion = options.httpVersion ?? (protocol === "grpc" ? "2" : "1.1");
  const common = {
    ...pick(options, passThroughKeys),
    baseUrl: resolved.gatewayUrl,
    defaultTimeoutMs: resolved.timeoutMs,
    readMaxBytes: resolved.readMaxBytes,
    interceptors,
  };
  const transport = httpVersion === "2" ? http2Options(options, resolved) : http1Options(options, resolved);
  switch (protocol) {
    case "connect":
      return createConnectTransport({ ...common, ...transport, useHttpGet: checkUseHttpGet(options) });
    case "grpc-web":
      noHttpGet(options);
      return createGrpcWebTransport({ ...common, ...transport });
    case "grpc":
      if (transport.httpVersion !== "2") {
        throw new ConfigurationError("httpVersion", 'must be "2" with protocol "grpc" (gRPC needs HTTP/2).');
      }
      noHttpGet(options);
      return createGrpcTransport({ ...common, ...transport });
    default:
      throw new ConfigurationError("protocol", 'must be "connect" (the default), "grpc" or "grpc-web".');
  }
}

const passThroughKeys = [
  "useBinaryFormat",
  "jsonOptions",
  "binaryOptions",
  "acceptCompression",
  "sendCompression",
  "compressMinBytes",
  "writeMaxBytes",
] as const satisfies readonly (keyof GatewayTransportPassThroughOptions)[];

const http2SessionKeys = ["pingIntervalMs", "pingIdleConnection", "pingTimeoutMs", "idleConnectionTimeoutMs"] as const;

// Only what connect-node knows is passed on: never the credentials.
function pick<T extends object, K extends keyof T>(source: T, keys: readonly K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const key of keys) if (source[key] !== undefined) out[key] = source[key];
  return out;
}

function http1Options(options: GatewayTransportOptions, resolved: ResolvedGatewayOptions) {
  const nodeOptions = (options as GatewayHttp1Options).nodeOptions;
  if (options.httpVersion !== undefined && options.httpVersion !== "1.1") {
    throw new ConfigurationError("httpVersion", 'must be "1.1" or "2".');
  }
  for (const key of http2SessionKeys) {
    if ((options as Record<string, unknown>)[key] !== undefined) {
      throw new ConfigurationError(key, 'is an HTTP/2 session option: set httpVersion "2" to use it.');
    }
  }
  return {
    httpVersion: "1.1" as const,
    nodeOptions: { ...nodeOptions, ...(resolved.agent && { agent: resolved.agent }) },
  };
}

// connect-node's own session manager, built as connect-node would, but watched
// so that a stream the server resets mid-call surfaces as a ConnectionError.
function http2Options(options: GatewayTransportOptions, resolved: ResolvedGatewayOptions) {
  const h2 = options as GatewayHttp2Options;
  const sessionManager = new Http2SessionManager(resolved.gatewayUrl, pick(h2, http2SessionKeys), h2.nodeOptions);
  return { httpVersion: "2" as const, sessionManager: watchingPeerResets(sessionManager) };
}

function checkUseHttpGet(options: GatewayTransportOptions): boolean | undefined {
  const value = (options as { useHttpGet?: unknown }).useHttpGet;
  return value === undefined ? undefined : assertBoolean("useHttpGet", value);
}

function noHttpGet(options: GatewayTransportOptions): void {
  if ((options as { useHttpGet?: unknown }).useHttpGet !== undefined) {
    throw new ConfigurationError("useHttpGet", 'exists only for protocol "connect".');
  }
}

function checkInterceptors(interceptors: unknown): Interceptor[] {
  if (interceptors === undefined) return [];
  const expected = "an array of Connect interceptors (functions)";
  if (!Array.isArray(interceptors)) throw new InvalidOptionError("interceptors", expected);
  return interceptors.map((interceptor: unknown) => assertFunction<Interceptor>("interceptors", interceptor, { expected }));
}
