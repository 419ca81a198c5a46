/**
 * How a caller speaks to the gateway, which decides how an error is written:
 * `connect-unary` and `connect-stream` (the Connect protocol), `grpc`,
 * `grpc-web`, or `rest` for everything else (the gateway's JSON envelope).
 */
export type CallerProtocol = "connect-unary" | "connect-stream" | "grpc" | "grpc-web" | "rest";

/** What {@link callerProtocol} looks at. */
export interface CallerRequest {
  readonly method: string;
  /** Raw request-target (path and query). */
  readonly url: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

/**
 * Detects the protocol of a request from its content type, the
 * `Connect-Protocol-Version` header, or the `connect=v1` query of a Connect GET.
 */
export function callerProtocol(request: CallerRequest): CallerProtocol {
  const contentType = String(request.headers["content-type"] ?? "").toLowerCase();
  if (contentType.startsWith("application/grpc-web")) return "grpc-web";
  if (contentType.startsWith("application/grpc")) return "grpc";
  if (contentType.startsWith("application/connect+")) return "connect-stream";
  if (request.headers["connect-protocol-version"] !== undefined) return "connect-unary";
  if (request.method === "GET" && /[?&]connect=v1(&|$)/.test(request.url)) return "connect-unary";
  return "rest";
}

/**
 * The enveloped streaming protocols, whose response body is a sequence of
 * messages, each a 5-byte prefix (one flag byte, a 4-byte big-endian length)
 * and its payload: gRPC, gRPC-web (binary) and Connect streaming.
 */
export type EnvelopedProtocol = "grpc" | "grpc-web" | "connect-stream";

/**
 * The enveloped protocol of a response, from its Content-Type; `undefined`
 * for everything else, including `application/grpc-web-text`, whose envelopes
 * are base64-encoded and so cannot be told apart as the bytes pass.
 */
export function envelopedProtocolOf(contentType: string | string[] | undefined): EnvelopedProtocol | undefined {
  if (typeof contentType !== "string") return undefined;
  const type = contentType.toLowerCase();
  if (type.startsWith("application/grpc-web-text")) return undefined;
  if (type.startsWith("application/grpc-web")) return "grpc-web";
  if (type.startsWith("application/grpc")) return "grpc";
  if (type.startsWith("application/connect+")) return "connect-stream";
  return undefined;
}
