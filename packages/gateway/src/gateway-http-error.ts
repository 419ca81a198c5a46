import type { Code } from "@connectrpc/connect";

// Connect's codes by number, as the Connect and gRPC protocols define them:
// importing the `Code` enum itself would load @connectrpc/connect and
// @bufbuild/protobuf at start-up (see connect-answers.ts). A test checks
// each against the enum.
const INVALID_ARGUMENT = 3 as Code.InvalidArgument;
const DEADLINE_EXCEEDED = 4 as Code.DeadlineExceeded;
const PERMISSION_DENIED = 7 as Code.PermissionDenied;
const RESOURCE_EXHAUSTED = 8 as Code.ResourceExhausted;
const UNIMPLEMENTED = 12 as Code.Unimplemented;
const INTERNAL = 13 as Code.Internal;
const UNAVAILABLE = 14 as Code.Unavailable;
const UNAUTHENTICATED = 16 as Code.Unauthenticated;

/**
 * The gateway's error codes (`UNAUTHORIZED` … `SERVICE_UNAVAILABLE`)
 * plus the few a proxy needs beyond them. Each has the HTTP status of the gateway's
 * envelope and the Connect / gRPC code that Connect and gRPC callers receive.
 */
export const gatewayErrorCodes = {
  BAD_REQUEST: { status: 400, code: INVALID_ARGUMENT },
  UNAUTHORIZED: { status: 401, code: UNAUTHENTICATED },
  EXPIRED_TOKEN: { status: 401, code: UNAUTHENTICATED },
  FORBIDDEN: { status: 403, code: PERMISSION_DENIED },
  INSUFFICIENT_SCOPE: { status: 403, code: PERMISSION_DENIED },
  NOT_FOUND: { status: 404, code: UNIMPLEMENTED },
  PAYLOAD_TOO_LARGE: { status: 413, code: RESOURCE_EXHAUSTED },
  RATE_LIMITED: { status: 429, code: RESOURCE_EXHAUSTED },
  HEADERS_TOO_LARGE: { status: 431, code: RESOURCE_EXHAUSTED },
  INTERNAL_ERROR: { status: 500, code: INTERNAL },
  SERVICE_UNAVAILABLE: { status: 503, code: UNAVAILABLE },
  GATEWAY_TIMEOUT: { status: 504, code: DEADLINE_EXCEEDED },
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
  /** The upstream at fault, for the log only: its origin, and its backend's name (`http://127.0.0.1:8081 (backend echo)`). */
  readonly upstream: string | undefined;

  constructor(
    readonly code: GatewayErrorCode,
    message: string,
    options?: { cause?: unknown; upstream?: string | undefined },
  ) {
    super(message, options);
    this.statusCode = gatewayErrorCodes[code].status;
    this.upstream = options?.upstream;
  }
}
