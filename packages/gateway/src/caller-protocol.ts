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
