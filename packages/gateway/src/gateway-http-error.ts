import { Code } from "@connectrpc/connect";

/**
 * The gateway's error codes (`UNAUTHORIZED` … `SERVICE_UNAVAILABLE`)
 * plus the few a proxy needs beyond them. Each has the HTTP status of the gateway's
 * envelope and the Connect / gRPC code that Connect and gRPC callers receive.
 */
export const gatewayErrorCodes = {
  BAD_REQUEST: { status: 400, code: Code.InvalidArgument },
  UNAUTHORIZED: { status: 401, code: Code.Unauthenticated },
  EXPIRED_TOKEN: { status: 401, code: Code.Unauthenticated },
  FORBIDDEN: { status: 403, code: Code.PermissionDenied },
  INSUFFICIENT_SCOPE: { status: 403, code: Code.PermissionDenied },
  NOT_FOUND: { status: 404, code: Code.Unimplemented },
  PAYLOAD_TOO_LARGE: { status: 413, code: Code.ResourceExhausted },
  RATE_LIMITED: { status: 429, code: Code.ResourceExhausted },
  INTERNAL_ERROR: { status: 500, code: Code.Internal },
  SERVICE_UNAVAILABLE: { status: 503, code: Code.Unavailable },
  GATEWAY_TIMEOUT: { status: 504, code: Code.DeadlineExceeded },
} as const satisfies Record<string, { status: number; code: Code }>;

/** One of the keys of {@link gatewayErrorCodes}. */
export type GatewayErrorCode = keyof typeof gatewayErrorCodes;

/**
 * A request the gateway refuses or cannot complete. Its message is sent to
 * the caller, so it never holds a token, a secret or an internal detail;
 * `cause` (logged, never sent) may.
 */
export class GatewayHttpError extends Error {
  override name = "GatewayHttpError";
  /** The HTTP status of the error envelope (`statusCode` is what fastify reads). */
  readonly statusCode: number;

  constructor(
    readonly code: GatewayErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.statusCode = gatewayErrorCodes[code].status;
  }
}
