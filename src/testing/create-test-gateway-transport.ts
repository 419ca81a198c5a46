import { Code, ConnectError, type Interceptor, type Transport } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip, createNodeHttpClient, Http2SessionManager } from "@connectrpc/connect-node";
import {
  universalClientResponseFromFetch,
  validateReadWriteMaxBytes,
  type UniversalClientFn,
  type UniversalClientRequest,
  type UniversalClientResponse,
} from "@connectrpc/connect/protocol";
import { createTransport as createConnect } from "@connectrpc/connect/protocol-connect";
import { createTransport as createGrpc } from "@connectrpc/connect/protocol-grpc";
import { createTransport as createGrpcWeb } from "@connectrpc/connect/protocol-grpc-web";
import { assertHttpUrl } from "../core/assertions.js";
import { protocolMismatchMessage } from "../core/protocol-mismatch.js";
import { checkSigningOptions, createGatewaySigningHttpClient, type GatewaySigningOptions } from "./gateway-signing-http-client.js";

/** Options of {@link createTestGatewayTransport}. */
export interface TestGatewayTransportOptions extends GatewaySigningOptions {
  /** The service under test, e.g. `http://127.0.0.1:${port}`. */
  readonly baseUrl: string;
  /** Default "1.1"; gRPC needs "2". */
  readonly httpVersion?: "1.1" | "2";
  /** Default "connect". */
  readonly protocol?: "connect" | "grpc" | "grpc-web";
  /** Default true (protobuf binary); false for JSON. */
  readonly useBinaryFormat?: boolean;
  /** Connect GET for side-effect-free methods (Connect protocol only). */
  readonly useHttpGet?: boolean;
  /**
   * Your own interceptors. They run before signing: a content header they set
   * is signed, a gateway-controlled one (`X-User-*`, `X-Gateway-*`, …) dropped.
   */
  readonly interceptors?: Interceptor[];
  /**
   * HTTP/2 only: the connection to use (e.g. to `abort()` it after the test).
   * By default one per transport, closed after a second without a call, so
   * that a test process exits once its service's server is closed.
   */
  readonly sessionManager?: Http2SessionManager;
  /**
   * Sends each request once it is signed. Default: connect-node's client for
   * `httpVersion` (and `sessionManager`). Wrap one to watch or change what
   * reaches the wire after signing, e.g. to check that your service refuses
   * a body altered in transit.
   */
  readonly httpClient?: UniversalClientFn;
}

const protocols = { connect: createConnect, grpc: createGrpc, "grpc-web": createGrpcWeb };

/**
 * A Connect transport to a service under test whose requests are signed as
 * the gateway signs them, so a test exercises the service's real
 * verification path (`createGatewayAuth` without `skipVerification`).
 *
 * @example
 * ```ts
 * import { createClient } from "@connectrpc/connect";
 * import { createTestGatewayTransport } from "connect-gateway/testing";
 * import { EchoService } from "./gen/example/v1/example_pb.js";
 *
 * // The service under test listens on 127.0.0.1:<port>, behind
 * // createGatewayAuth({ hmacSecret: "test-secret" }).
 * const transport = createTestGatewayTransport({
 *   baseUrl: `http://127.0.0.1:${port}`,
 *   hmacSecret: "test-secret",
 *   identity: { clientId: "web-app", userId: "sub-42", scopes: ["read"] },
 * });
 * const echo = createClient(EchoService, transport);
 * const answer = await echo.echo({ text: "hi" }); // verified by the service like a gateway request
 * ```
 */
export function createTestGatewayTransport(options: TestGatewayTransportOptions): Transport {
  checkSigningOptions(options);
  assertHttpUrl("baseUrl", options.baseUrl);
  const inner =
    options.httpClient ??
    (options.httpVersion === "2"
      ? createNodeHttpClient({ httpVersion: "2", sessionProvider: sessionFor(options) })
      : octetSafe(createNodeHttpClient({ httpVersion: "1.1" })));
  return protocols[options.protocol ?? "connect"]({
    httpClient: createGatewaySigningHttpClient(inner, options),
    baseUrl: options.baseUrl,
    useBinaryFormat: options.useBinaryFormat ?? true,
    useHttpGet: options.useHttpGet,
    // Outermost: a server of the other HTTP version is said as such, with the fix.
    interceptors: [explainingProtocolMismatch(options.baseUrl), ...(options.interceptors ?? [])],
    acceptCompression: [compressionGzip, compressionBrotli],
    sendCompression: null,
    ...validateReadWriteMaxBytes(undefined, undefined, undefined),
  });
}

/**
 * Over HTTP/1.1 to a service that serves HTTP/2 only (`http2.createServer`),
 * Node reports "Parse Error: Expected HTTP/, RTSP/ or ICE/": said instead as
 * what it is, with the option that fixes it.
 */
function explainingProtocolMismatch(baseUrl: string): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (e) {
      const message = protocolMismatchMessage(e, `the service at ${baseUrl}`, "test transport");
      throw message === undefined ? e : new ConnectError(message, Code.Internal, undefined, undefined, e);
    }
  };
}

/**
 * connect-node's HTTP/1.1 client sends its header block with
 * `flushHeaders()`, which Node.js writes as UTF-8, not one octet per
 * character as it otherwise does (its HTTP/2 client and undici do). A signed
 * header value is octets, one per character (the e-mail and names are their
 * UTF-8 octets: see identityHeaders), so a request with a header value
 * beyond ASCII goes through `fetch` (undici) instead, which sends each
 * character as one octet: what reaches the wire is exactly what was signed.
 * (The tests send such values over both HTTP versions.)
 */
function octetSafe(inner: UniversalClientFn): UniversalClientFn {
  return (request) => {
    let ascii = true;
    request.header.forEach((value) => (ascii &&= ASCII.test(value)));
    return ascii ? inner(request) : sendWithFetch(request);
  };
}

/** Sends `request` with `fetch`: its body is one signed chunk already (see createGatewaySigningHttpClient). */
async function sendWithFetch(request: UniversalClientRequest): Promise<UniversalClientResponse> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of request.body ?? []) chunks.push(chunk);
  // fetch would decode a compressed answer itself, and Connect then again: ask for none.
  const headers = new Headers(request.header);
  headers.set("accept-encoding", "identity");
  const res = await fetch(request.url, {
    method: request.method,
    headers,
    body: chunks.length === 0 ? undefined : Buffer.concat(chunks),
    signal: request.signal,
    redirect: "error",
  });
  return universalClientResponseFromFetch(res);
}

const ASCII = /^[\x00-\x7f]*$/;

// One HTTP/2 connection per transport, opened on first use, and closed
// after a second without a call. A test's last call would otherwise leave
// the connection open for connect-node's default 15 minutes, and on Node.js
// 22 the service's `server.close()` waits for it: the test process would
// not exit. A call after that opens a new connection.
function sessionFor(options: TestGatewayTransportOptions): () => Http2SessionManager {
  let manager = options.sessionManager;
  return () => (manager ??= new Http2SessionManager(options.baseUrl, { idleConnectionTimeoutMs: TEST_IDLE_CONNECTION_MS }));
}

const TEST_IDLE_CONNECTION_MS = 1_000;
