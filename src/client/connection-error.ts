import { Code, ConnectError } from "@connectrpc/connect";
import { GatewayError } from "./gateway-error.js";
import { GatewayResponseError } from "./gateway-response-error.js";
import { Http2StreamResetError, RST_REFUSED_STREAM } from "../core/errors.js";
import { HTTP2_STREAM_RESET } from "./http2-reset.js";

/**
 * The call could not reach its backend, or not in time: the gateway was
 * unreachable (connection refused or reset, host not found, network down, or
 * an HTTP/2 stream reset by the server mid-call — RST_STREAM INTERNAL_ERROR or
 * CANCEL, as a gateway relays an upstream reset), or
 * the gateway answered that the backend is (code `Unavailable`); or the call's
 * deadline passed (code `DeadlineExceeded`). Safe to retry with backoff when
 * the call is idempotent (a reset mid-call may come after the backend ran it;
 * a refused stream, `REFUSED_STREAM`, never ran: its message says so).
 * Any other error the gateway or a backend answered is not a ConnectionError.
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
  HTTP2_STREAM_RESET,
]);

/**
 * Turns a failure to reach `target` into a {@link ConnectionError}, or returns
 * `undefined` when `reason` is something else (an answer from the server, a
 * cancellation, an error of ours). Used by the transport and the REST client.
 */
export function connectionErrorFrom(reason: unknown, target: string): ConnectionError | undefined {
  if (reason instanceof GatewayError && !(reason instanceof GatewayResponseError)) return undefined;
  // An answer that began and then failed: the call reached the backend, which may have run it.
  const begun = answerBegunIn(reason);
  if (isLocalDeadline(reason)) {
    const message =
      begun === undefined
        ? `no answer from ${target} before the deadline — safe to retry`
        : `the answer from ${target} (HTTP ${begun.status}) did not end before the deadline — the call may have run: retry only if it is idempotent`;
    return new ConnectionError(message, Code.DeadlineExceeded, { cause: reason });
  }
  const nodeCode = unreachableCodeIn(reason);
  if (begun !== undefined && nodeCode !== undefined) {
    return new ConnectionError(
      `${target} answered (HTTP ${begun.status}) but the connection failed (${nodeCode}) before the answer ended — ` +
        "the call may have run: retry with backoff only if it is idempotent",
      Code.Unavailable,
      { cause: reason },
    );
  }
  if (nodeCode === HTTP2_STREAM_RESET) {
    // REFUSED_STREAM promises the call never ran; any other reset may come after it did.
    const refused = (resetIn(reason)?.rstCode ?? 0) === RST_REFUSED_STREAM;
    const message = refused
      ? `${target} refused the call's HTTP/2 stream before running it — safe to retry`
      : `${target} reset the call's HTTP/2 stream — the call may have run: retry with backoff if it is idempotent`;
    return new ConnectionError(message, Code.Unavailable, { cause: reason });
  }
  if (nodeCode !== undefined) {
    return new ConnectionError(`${target} is unreachable (${nodeCode}) — safe to retry with backoff`, Code.Unavailable, {
      cause: reason,
    });
  }
  if (isUnavailableAnswer(reason)) {
    // The gateway's 503 SERVICE_UNAVAILABLE: it is up, the backend behind it is not (down, or
    // misconfigured: the gateway's log line for that request id says which).
    const requestId = requestIdOf(reason);
    return new ConnectionError(
      `${target} answered that the backend is unavailable` +
        (requestId === undefined ? "" : ` (request id ${requestId}: the gateway's log says why)`) +
        " — safe to retry with backoff",
      Code.Unavailable,
      { cause: reason },
    );
  }
  return undefined;
}

// gRPC's own definition of Unavailable is "transient, retry with backoff": the
// same promise ConnectionError makes, whichever hop reported it.
function isUnavailableAnswer(reason: unknown): boolean {
  if (reason instanceof GatewayResponseError) return reason.status === 503;
  return reason instanceof ConnectError && !(reason instanceof GatewayError) && reason.code === Code.Unavailable;
}

// The gateway's X-Request-ID on its answer (a plain, safe value: at most 200 visible ASCII characters).
function requestIdOf(reason: unknown): string | undefined {
  const id = reason instanceof ConnectError ? reason.metadata.get("x-request-id") : null;
  return id !== null && /^[\x21-\x7e]{1,200}$/.test(id) ? id : undefined;
}

// A deadline Connect enforced on our side, as opposed to one a server reported.
function isLocalDeadline(reason: unknown): boolean {
  if (reason instanceof ConnectError) return reason.code === Code.DeadlineExceeded && !reason.isWireError;
  return reason instanceof Error && reason.name === "TimeoutError";
}

// The REST client's errors for an answer that began (see sendHttpRequest): cut short, or past the deadline.
function answerBegunIn(reason: unknown): { status: number } | undefined {
  const seen = new Set<unknown>();
  for (let e = reason; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    const status = (e as { status?: unknown }).status;
    if ((e.name === "ResponseCutShortError" || e.name === "TimeoutError") && typeof status === "number") return { status };
  }
  return undefined;
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

/** The {@link Http2StreamResetError} in `reason`'s cause chain, if any. */
function resetIn(reason: unknown): Http2StreamResetError | undefined {
  const seen = new Set<unknown>();
  for (let e = reason; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    if (e instanceof Http2StreamResetError) return e;
  }
  return undefined;
}
