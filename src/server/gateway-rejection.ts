import { Code, ConnectError } from "@connectrpc/connect";
import type { GatewayRejectionReason } from "../signing/index.js";
import type { GatewayAuthConfig } from "./gateway-auth-options.js";

/**
 * The message of a rejection: the reason code outside production (so a
 * developer sees `invalid_signature` at once), `Forbidden` in production (so
 * a prober learns nothing). Reports the rejection to `onRejection` first.
 */
export function rejectionMessage(
  config: GatewayAuthConfig,
  reason: GatewayRejectionReason,
  request: { readonly method: string; readonly fullpath: string },
): string {
  try {
    config.onRejection?.({ reason, method: request.method, fullpath: request.fullpath });
  } catch {
    // A logging hook must not turn a clean 403 into a 500.
  }
  return config.exposeRejectionReason ? reason : "Forbidden";
}

/**
 * How a rejection is answered: `PermissionDenied` / 403 for every reason but
 * one — a replay store that could not answer (`replay_check_unavailable`) is
 * `Unavailable` / 503, since the request was not judged and may be retried.
 */
export function rejectionCode(reason: GatewayRejectionReason): Code {
  return reason === "replay_check_unavailable" ? Code.Unavailable : Code.PermissionDenied;
}

/** The HTTP status of {@link rejectionCode}, for plain Node, Express and Fastify. */
export function rejectionStatus(reason: GatewayRejectionReason): number {
  return reason === "replay_check_unavailable" ? 503 : 403;
}

/** A rejection as Connect sends it (see {@link rejectionCode}). */
export function rejectionError(
  config: GatewayAuthConfig,
  reason: GatewayRejectionReason,
  request: { readonly method: string; readonly fullpath: string },
): ConnectError {
  return new ConnectError(rejectionMessage(config, reason, request), rejectionCode(reason));
}

/** The message of a body over `maxBodyBytes`. */
export function bodyTooLargeMessage(config: GatewayAuthConfig): string {
  return `request body larger than maxBodyBytes (${config.maxBodyBytes})`;
}

/**
 * The message when something consumed the body before the verifier could
 * hash it (typically `express.json()` mounted before the gateway middleware):
 * the signature can no longer be checked, so the request must not pass.
 */
export const BODY_ALREADY_READ_MESSAGE =
  "connect-gateway: the request body was read before createGatewayAuth could verify its " +
  "signature (a body parser such as express.json() ran first). Mount the gateway " +
  "middleware before any body parser.";

/** The message when the request ended (the client went away) before its body was complete. */
export const BODY_CUT_OFF_MESSAGE = "the request ended before its body was complete";
