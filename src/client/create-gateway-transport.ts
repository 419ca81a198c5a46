import type * as http from "node:http";
import type * as http2 from "node:http2";
import type * as https from "node:https";
import type { Interceptor, Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
  Http2SessionManager,
  type ConnectTransportOptions,
  type Http2SessionOptions,
} from "@connectrpc/connect-node";
import { createAuthenticatingTransport } from "./authenticating-transport.js";
import { ConfigurationError } from "../core/errors.js";
import { watchingPeerResets } from "./http2-reset.js";
import { resolveGatewayOptions, type GatewayOptions, type ResolvedGatewayOptions } from "./gateway-options.js";
import { createRoutingInterceptor } from "./routing-interceptor.js";
import { createTokenManager } from "./token-manager.js";

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
  readonly httpVersion?: "1.1";
  readonly nodeOptions?: Omit<http.RequestOptions, "signal" | "agent"> | Omit<https.RequestOptions, "signal" | "agent">;
};

/** HTTP/2: node:http2 session options and connect-node's session keep-alive options. */
export type GatewayHttp2Options = Http2SessionOptions & {
  readonly httpVersion: "2";
  readonly nodeOptions?: http2.ClientSessionOptions | http2.SecureClientSessionOptions;
};

/**
 * The wire protocol and HTTP version. Wrong combinations do not compile:
 * gRPC needs HTTP/2, and only the Connect protocol has `useHttpGet`.
 */
export type GatewayProtocolOptions =
  | ({ readonly protocol?: "connect"; readonly useHttpGet?: boolean } & (GatewayHttp1Options | GatewayHttp2Options))
  | ({ readonly protocol: "grpc" } & Omit<GatewayHttp2Options, "httpVersion"> & { readonly httpVersion?: "2" })
  | ({ readonly protocol: "grpc-web" } & (GatewayHttp1Options | GatewayHttp2Options));

/** Options of {@link createGatewayTransport}. */
export type GatewayTransportOptions = GatewayOptions &
  GatewayTransportPassThroughOptions &
  GatewayProtocolOptions & {
    /**
     * Your own interceptors. They run after routing — they see the routed URL
     * `…/backend/<service>/…` — and inside the authentication, so they see
     * the `Authorization` header (never log it), and a 401 retry runs them
     * again.
     */
    readonly interceptors?: readonly Interceptor[];
  };

/**
 * A Connect `Transport` to the API gateway: every call is routed
 * to `<gatewayUrl>/backend/<service>/pkg.Service/Method` and carries the
 * service's OAuth2 token — fetched lazily, cached, refreshed before expiry —
 * or an end user's forwarded token. Connect protocol over HTTP/1.1 unless
 * `protocol` / `httpVersion` say otherwise. Options default to the
 * environment (`GATEWAY_CLIENT_ID`, `GATEWAY_CLIENT_SECRET`, `GATEWAY_URL`,
 * `APPCENTER_URL`); a bad one throws a `ConfigurationError` right here.
 */
export function createGatewayTransport(options: GatewayTransportOptions = {}): Transport {
  const resolved = resolveGatewayOptions(options);
  const inner = createProtocolTransport(options, resolved, [
    createRoutingInterceptor(resolved.gatewayUrl, resolved.defaultService),
    ...checkInterceptors(options.interceptors),
  ]);
  return createAuthenticatingTransport(inner, createTokenManager(resolved), `the gateway ${resolved.gatewayUrl}`);
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
  if (value !== undefined && typeof value !== "boolean") throw new ConfigurationError("useHttpGet", "must be a boolean.");
  return value;
}

function noHttpGet(options: GatewayTransportOptions): void {
  if ((options as { useHttpGet?: unknown }).useHttpGet !== undefined) {
    throw new ConfigurationError("useHttpGet", 'exists only for protocol "connect".');
  }
}

function checkInterceptors(interceptors: unknown): Interceptor[] {
  if (interceptors === undefined) return [];
  if (!Array.isArray(interceptors) || !interceptors.every((i) => typeof i === "function")) {
    throw new ConfigurationError("interceptors", "must be an array of Connect interceptors (functions).");
  }
  return [...interceptors];
}
