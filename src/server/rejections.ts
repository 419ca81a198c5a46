import { Code } from "@connectrpc/connect";
import type { GatewayRejectionReason } from "../signing/index.js";
import type { GatewayAuthConfig } from "./gateway-auth-options.js";

/**
 * A refusal that is about the body rather than the gateway's headers or
 * signature: larger than `maxBodyBytes`, not received within
 * `bodyTimeoutMs`, already read by a body parser
 * mounted first, cut off (the client went away), or (Express only) JSON
 * that does not parse.
 */
export type BodyRejection = "body_too_large" | "body_timeout" | "body_already_read" | "body_cut_off" | "invalid_json_body";

/** Every kind of refusal a verified service answers with. */
export type RejectionKind = GatewayRejectionReason | BodyRejection;

/** How one kind of refusal is answered: a row of {@link rejections}. */
export interface RejectionEntry {
  /** The HTTP status plain Node (`auth.verifyNodeRequest`), Express and Fastify answer with. */
  readonly status: number;
  /** The code of the `ConnectError` a Connect route answers with. */
  readonly code: Code;
  /** That code as Connect writes it in an error body (`"permission_denied"`). */
  readonly codeName: string;
  /**
   * The message. For a verdict on the caller (`verdict: true`) it is the
   * reason code itself, shown only with `exposeRejectionReason`; otherwise
   * the message is `Forbidden`.
   */
  readonly message: string | ((config: Pick<GatewayAuthConfig, "maxBodyBytes" | "bodyTimeoutMs">) => string);
  /**
   * True for a {@link GatewayRejectionReason}: reported to `onRejection`,
   * and answered `Forbidden` unless `exposeRejectionReason` is set (so a
   * prober learns nothing in production). A body problem is neither.
   */
  readonly verdict: boolean;
}

/** The message of every verdict when `exposeRejectionReason` is off (production). */
export const HIDDEN_REJECTION_MESSAGE = "Forbidden";

/**
 * Every refusal, and how it is answered: the one definition each framework
 * adapter (Connect, plain Node, Express, Fastify) maps from. `PermissionDenied`
 * / 403 for every verdict but one: a replay store that could not answer
 * (`replay_check_unavailable`) is `Unavailable` / 503, since the request was
 * not judged and may be retried.
 */
export const rejections: { readonly [K in RejectionKind]: RejectionEntry } = Object.freeze({
  // Verdicts on the gateway headers and signature.
  missing_gateway_headers: verdict(403, Code.PermissionDenied, "permission_denied", "missing_gateway_headers"),
  malformed_gateway_headers: verdict(403, Code.PermissionDenied, "permission_denied", "malformed_gateway_headers"),
  timestamp_out_of_window: verdict(403, Code.PermissionDenied, "permission_denied", "timestamp_out_of_window"),
  invalid_signature: verdict(403, Code.PermissionDenied, "permission_denied", "invalid_signature"),
  unsigned_identity: verdict(403, Code.PermissionDenied, "permission_denied", "unsigned_identity"),
  signature_v2_required: verdict(403, Code.PermissionDenied, "permission_denied", "signature_v2_required"),
  replayed_request: verdict(403, Code.PermissionDenied, "permission_denied", "replayed_request"),
  replay_check_unavailable: verdict(503, Code.Unavailable, "unavailable", "replay_check_unavailable"),
  // Problems with the body.
  body_too_large: {
    status: 413,
    code: Code.ResourceExhausted,
    codeName: "resource_exhausted",
    message: (config) => `request body larger than maxBodyBytes (${config.maxBodyBytes})`,
    verdict: false,
  },
  // A body still trickling in after bodyTimeoutMs (see body-deadlines.ts).
  body_timeout: {
    status: 408,
    code: Code.DeadlineExceeded,
    codeName: "deadline_exceeded",
    message: (config) => `request body not received within bodyTimeoutMs (${config.bodyTimeoutMs} ms)`,
    verdict: false,
  },
  // Typically `express.json()` mounted before the gateway middleware: the
  // signature can no longer be checked, so the request must not pass.
  body_already_read: {
    status: 500,
    code: Code.Internal,
    codeName: "internal",
    message:
      "connect-gateway: the request body was read before createGatewayAuth could verify its " +
      "signature (a body parser such as express.json() ran first). Mount the gateway " +
      "middleware before any body parser.",
    verdict: false,
  },
  body_cut_off: {
    status: 400,
    code: Code.Aborted,
    codeName: "aborted",
    message: "the request ended before its body was complete",
    verdict: false,
  },
  invalid_json_body: {
    status: 400,
    code: Code.InvalidArgument,
    codeName: "invalid_argument",
    message: "invalid JSON body",
    verdict: false,
  },
});

function verdict(status: number, code: Code, codeName: string, reason: GatewayRejectionReason): RejectionEntry {
  return Object.freeze({ status, code, codeName, message: reason, verdict: true });
}

/** A refusal ready to be sent: its row of {@link rejections} with the message resolved. */
export interface Rejection {
  readonly kind: RejectionKind;
  readonly status: number;
  readonly code: Code;
  readonly message: string;
}

/** The request a verdict is reported with to `onRejection`. */
export interface RefusedRequest {
  readonly method: string;
  /** The raw request-target. */
  readonly fullpath: string;
  /** Set for a signature that did not match, outside production. */
  readonly diagnostics?: { readonly canonicalRequest?: string | undefined; readonly keyMismatch?: string | undefined } | undefined;
}

/**
 * The answer to a refusal, from {@link rejections}: the message is the
 * reason code outside production (so a developer sees `invalid_signature`
 * at once), `Forbidden` in production. A verdict is reported to
 * `onRejection` first; a hook that throws changes nothing.
 */
export function rejectionOf(config: GatewayAuthConfig, kind: BodyRejection): Rejection;
export function rejectionOf(config: GatewayAuthConfig, kind: RejectionKind, request: RefusedRequest): Rejection;
export function rejectionOf(config: GatewayAuthConfig, kind: RejectionKind, request?: RefusedRequest): Rejection {
  const entry = rejections[kind];
  const { status, code } = entry;
  if (!entry.verdict) {
    const message = typeof entry.message === "string" ? entry.message : entry.message(config);
    return { kind, status, code, message };
  }
  try {
    if (request !== undefined) {
      const canonicalRequest = request.diagnostics?.canonicalRequest;
      const keyMismatch = request.diagnostics?.keyMismatch;
      config.onRejection?.({
        reason: kind as GatewayRejectionReason,
        method: request.method,
        fullpath: request.fullpath,
        ...(canonicalRequest !== undefined && { canonicalRequest }),
        ...(keyMismatch !== undefined && { keyMismatch }),
      });
    }
  } catch {
    // A logging hook must not turn a clean 403 into a 500.
  }
  const message = config.exposeRejectionReason ? (entry.message as string) : HIDDEN_REJECTION_MESSAGE;
  return { kind, status, code, message };
}
