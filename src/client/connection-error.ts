import { Code, ConnectError } from "@connectrpc/connect";
import { GatewayError } from "./gateway-error.js";

/**
 * The gateway could not be reached or did not answer in time: connection
 * refused or reset, host not found, network down (code `Unavailable`), or the
 * call's deadline passed (code `DeadlineExceeded`). Safe to retry with
 * backoff. An error the gateway or a backend *answered* is never a
 * ConnectionError.
 */
export class ConnectionError extends GatewayError {
  constructor(message: string, code: Code.Unavailable | Code.DeadlineExceeded, options?: { cause?: unknown }) {
    super(message, code, options);
  }
}

// Node.js error codes that mean "we never got an answer from the peer".
const unreachableCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "UND_ERR_SOCKET",
  "ERR_HTTP2_GOAWAY_SESSION",
  "ERR_HTTP2_SESSION_ERROR",
  "ERR_HTTP2_STREAM_CANCEL",
]);

/**
 * Turns a failure to reach `target` into a {@link ConnectionError}, or returns
 * `undefined` when `reason` is something else (an answer from the server, a
 * cancellation, an error of ours). Used by the transport and the REST client.
 */
export function connectionErrorFrom(reason: unknown, target: string): ConnectionError | undefined {
  if (reason instanceof GatewayError) return undefined;
  if (isLocalDeadline(reason)) {
    return new ConnectionError(`no answer from ${target} before the deadline — safe to retry`, Code.DeadlineExceeded, {
      cause: reason,
    });
  }
  const nodeCode = unreachableCodeIn(reason);
  if (nodeCode === undefined) return undefined;
  return new ConnectionError(`${target} is unreachable (${nodeCode}) — safe to retry with backoff`, Code.Unavailable, {
    cause: reason,
  });
}

// A deadline Connect enforced on our side, as opposed to one a server reported.
function isLocalDeadline(reason: unknown): boolean {
  if (reason instanceof ConnectError) return reason.code === Code.DeadlineExceeded && !reason.isWireError;
  return reason instanceof Error && reason.name === "TimeoutError";
}

function unreachableCodeIn(reason: unknown): string | undefined {
  const seen = new Set<unknown>();
  for (let e = reason; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && unreachableCodes.has(code)) return code;
  }
  return undefined;
}
