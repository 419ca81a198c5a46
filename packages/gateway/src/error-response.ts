import { constants as http2Constants, type Http2ServerRequest } from "node:http2";
import type { Socket } from "node:net";
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from "fastify";
import { callerProtocol } from "./caller-protocol.js";
import { connectAnswersNow, loadConnectAnswers, type ConnectAnswers } from "./connect-answers.js";
import { gatewayErrorCodes, GatewayHttpError } from "./gateway-http-error.js";

/** The gateway's JSON error body, for REST callers. */
export interface GatewayErrorEnvelope {
  readonly error: { readonly code: string; readonly message: string; readonly request_id: string };
  readonly metadata: { readonly success: false; readonly timestamp: string };
}

/**
 * Turns anything thrown while handling a request into a {@link GatewayHttpError}
 * whose message is safe to send: fastify's own 4xx errors keep their meaning,
 * anything else becomes a bare `INTERNAL_ERROR` (the original is only logged).
 */
export function asGatewayHttpError(error: unknown): GatewayHttpError {
  if (error instanceof GatewayHttpError) return error;
  const fastifyError = error as { code?: unknown; statusCode?: unknown };
  if (fastifyError.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
    return new GatewayHttpError("PAYLOAD_TOO_LARGE", "Request body is larger than the gateway accepts", { cause: error });
  }
  const status = typeof fastifyError.statusCode === "number" ? fastifyError.statusCode : 500;
  if (status >= 400 && status < 500) {
    return new GatewayHttpError("BAD_REQUEST", "Malformed request", { cause: error });
  }
  return new GatewayHttpError("INTERNAL_ERROR", "Internal gateway error", { cause: error });
}

/**
 * Answers `error` in the caller's protocol: the gateway's JSON envelope for REST,
 * a Connect error (unary: JSON body and the code's HTTP status; streaming: an
 * end-stream message), or a trailers-only gRPC / gRPC-web response with
 * `grpc-status` and `grpc-message`. A Connect or gRPC answer waits for the
 * Connect encoders when they are not loaded yet (see connect-answers.ts).
 */
export function sendGatewayError(
  request: FastifyRequest,
  reply: FastifyReply,
  error: GatewayHttpError,
): FastifyReply | Promise<FastifyReply> {
  setRetryAfter(reply, error);
  stopUnreadBody(request, reply);
  const protocol = callerProtocol({ method: request.method, url: request.url, headers: request.headers });
  if (protocol === "rest") {
    return reply.code(error.statusCode).type("application/json; charset=utf-8").send(envelope(error, request.id));
  }
  const answers = connectAnswersNow();
  if (answers !== undefined) return sendConnectError(request, reply, error, protocol, answers);
  return loadConnectAnswers().then((loaded) => sendConnectError(request, reply, error, protocol, loaded));
}

function sendConnectError(
  request: FastifyRequest,
  reply: FastifyReply,
  error: GatewayHttpError,
  protocol: Exclude<ReturnType<typeof callerProtocol>, "rest">,
  answers: ConnectAnswers,
): FastifyReply {
  const code = gatewayErrorCodes[error.code].code;
  switch (protocol) {
    case "connect-unary": {
      const { status, body } = answers.connectUnaryError(code, error.message);
      return reply.code(status).type("application/json").send(body);
    }
    case "connect-stream":
      return reply
        .code(200)
        .type(String(request.headers["content-type"]))
        .send(answers.connectEndStreamError(code, error.message));
    case "grpc":
    case "grpc-web":
      return reply.code(200).type(String(request.headers["content-type"])).headers(answers.grpcStatus(code, error.message)).send();
  }
}

/**
 * A request answered before its body came whole — refused before it was
 * read (no route, no token, rate limited) or while it was (over the body
 * limit) — must not go on sending it for long: Node would read and drop the
 * rest until the request timeout (30 s, gigabytes on loopback).
 *
 * HTTP/1.1: the rest of the body is read and dropped, up to
 * {@link UNREAD_BODY_DRAIN_BYTES}, and the connection kept; past that (or
 * when the declared length is already past it) the connection is closed.
 * Not closed at once: a socket closed with unread data in it is reset
 * (TCP RST), and a browser whose upload is reset throws away an answer it
 * was given early if its status is 2xx — which is how gRPC-web and Connect
 * streaming send errors — and reports an opaque network error instead
 * (nginx reads on for the same reason, its "lingering close").
 *
 * HTTP/2, where a `Connection` header is not allowed (fastify sets one
 * after a body error: removed): once the answer is sent, the stream is
 * closed with RST_STREAM(NO_ERROR), which tells the client to stop sending
 * without making the answer an error (on Node.js 24: see
 * RST_AFTER_ANSWER_REACHES_CLIENT).
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc9113#section-8.1 | RFC 9113 §8.1} (a response before the request is complete)
 */
function stopUnreadBody(request: FastifyRequest, reply: FastifyReply): void {
  const stream = (request.raw as { stream?: Http2ServerRequest["stream"] }).stream;
  if (stream === undefined) {
    // From its framing, not `complete` alone: a bodiless request refused in
    // the tick it arrived in is not `complete` yet, and keeps its connection.
    const raw = request.raw;
    const declared = raw.headers["transfer-encoding"] !== undefined || Number(raw.headers["content-length"] ?? 0) > 0;
    if (!declared || raw.complete) return;
    if (Number(raw.headers["content-length"] ?? 0) > UNREAD_BODY_DRAIN_BYTES) reply.header("connection", "close");
    else {
      // fastify says `Connection: close` after a body error (over the limit): the connection is kept instead.
      reply.removeHeader("connection");
      drainUnreadBody(raw);
    }
    return;
  }
  reply.removeHeader("connection");
  if (stream.endAfterHeaders || request.raw.complete || stream.state.remoteClose === 1) return;
  if (!RST_AFTER_ANSWER_REACHES_CLIENT) return;
  // The stream's own 'finish' (END_STREAM sent), not the response's: Node tears the stream down by then.
  stream.once("finish", () => {
    if (!stream.closed && !stream.destroyed) stream.close(http2Constants.NGHTTP2_NO_ERROR);
  });
}

/** The most of an unread HTTP/1.1 body read and dropped after an early answer (see stopUnreadBody). */
export const UNREAD_BODY_DRAIN_BYTES = 64 * 1024 * 1024;

// Reads and drops the rest of `raw`'s body; past UNREAD_BODY_DRAIN_BYTES,
// the connection is closed. The request timeout bounds how long it may take.
function drainUnreadBody(raw: FastifyRequest["raw"]): void {
  let drained = 0;
  const onData = (chunk: Buffer): void => {
    drained += chunk.length;
    if (drained <= UNREAD_BODY_DRAIN_BYTES) return;
    raw.off("data", onData);
    raw.socket.destroy();
  };
  raw.on("data", onData);
  // A caller that goes away mid-body is no one's error.
  raw.on("error", () => {});
  raw.resume();
}

/**
 * Whether RST_STREAM(NO_ERROR) after a complete answer reaches the client.
 * Node.js 22 sends none (observed on 22.23: it closes the stream locally,
 * the client is never told and keeps uploading), and CANCEL instead makes
 * Connect and gRPC clients report `Canceled` rather than the answer they
 * were given (CI's Node 22 runs showed both). There the upload goes on until
 * the request timeout (`GATEWAY_REQUEST_TIMEOUT_MS`), as it always did.
 */
const RST_AFTER_ANSWER_REACHES_CLIENT = Number(process.versions.node.split(".")[0]) >= 24;

/** How long a caller is told to wait before retrying after SERVICE_UNAVAILABLE (an upstream or the rate limit store away). */
export const SERVICE_UNAVAILABLE_RETRY_AFTER_SECONDS = 1;

/**
 * `Retry-After` (RFC 9110 §10.2.3) on the answers that mean "try again later",
 * whatever the caller's protocol: a 429 carries the seconds until the rate
 * limit window resets, which @fastify/rate-limit has already set on the reply
 * (kept as is); a 503 tells the caller to wait a second.
 */
function setRetryAfter(reply: FastifyReply, error: GatewayHttpError): void {
  if (reply.hasHeader("retry-after")) return;
  if (error.code === "SERVICE_UNAVAILABLE") {
    reply.header("retry-after", String(SERVICE_UNAVAILABLE_RETRY_AFTER_SECONDS));
  }
}

function envelope(error: GatewayHttpError, requestId: string): GatewayErrorEnvelope {
  return {
    error: { code: error.code, message: error.message, request_id: requestId },
    metadata: { success: false, timestamp: new Date().toISOString() },
  };
}

/**
 * fastify's `clientErrorHandler` for the gateway: a request Node's HTTP/1.1
 * parser refused before there was a request to route — a head larger than
 * 16 KiB (Node's `maxHeaderSize`: a long Connect GET URL, a huge token),
 * a malformed head, one that took longer than the headers timeout — is
 * answered in the gateway's envelope (431 `HEADERS_TOO_LARGE`, 400
 * `BAD_REQUEST`, 408) and logged at `info`, one line naming the cause and
 * the caller's address: fastify's default answers in its own shape and
 * logs only at `trace`, so the developer whose browser reported "a CORS
 * error" (a preflight refused this way carries no CORS headers: nothing
 * about the request could be read) found nothing in the log. A connection
 * the caller already reset gets nothing.
 */
export function answerClientError(error: Error & { code?: string }, socket: Socket, log: FastifyBaseLogger): void {
  if (error.code === "ECONNRESET" || socket.destroyed) return;
  const [status, reason, code, message] =
    error.code === "HPE_HEADER_OVERFLOW"
      ? [431, "Request Header Fields Too Large", "HEADERS_TOO_LARGE", "Request head is larger than the gateway reads (16 KiB): send large messages in a POST body"]
      : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? [408, "Request Timeout", "REQUEST_TIMEOUT", "Request head not received in time"]
        : [400, "Bad Request", "BAD_REQUEST", "Malformed request"];
  log.info({ code: error.code, remoteAddress: socket.remoteAddress, statusCode: status }, `request refused before it could be read: ${message}`);
  if (socket.writable) {
    const body = JSON.stringify({ error: { code, message, request_id: "" }, metadata: { success: false, timestamp: new Date().toISOString() } });
    socket.write(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}
