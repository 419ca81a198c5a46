import type pino from "pino";
import { LogController, type FastifyBaseLogger, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from "fastify";
import type { ResolvedGatewayConfig } from "./gateway-config.js";
import type { GatewayHttpError } from "./gateway-http-error.js";
import { gatheredStandardOutput } from "./gathered-log-lines.js";
import { routePatternOf } from "./request-state.js";

const PINO_WARN = 40;
/** fastify's own warning for a streamed answer that failed once its headers were out. */
const STREAM_ERROR_MESSAGE = "response terminated with an error with headers already sent";
/** The one line a caller that goes away mid-call is logged with. */
export const CALLER_WENT_AWAY = "caller went away";
const CALLER_GONE_FIELDS = { code: "CALLER_WENT_AWAY" };

/**
 * The errors that only mean the caller went away: the upstream body the
 * gateway itself aborted because the caller's connection or stream closed
 * (undici's `RequestAbortedError`), or a stream closed before its end.
 */
export function isCallerGoneError(error: unknown): boolean {
  const { code, name } = (error ?? {}) as { code?: unknown; name?: unknown };
  return code === "UND_ERR_ABORTED" || name === "RequestAbortedError" || code === "ERR_STREAM_PREMATURE_CLOSE";
}

/** nginx's "client closed request": the status a call whose caller went away before its answer is logged with (never sent). */
export const CLIENT_CLOSED_REQUEST = 499;

/** Set on a request once its one access line is written. */
const LOGGED = Symbol("connect-gateway request logged");
type LoggedRequest = FastifyRequest & { [LOGGED]?: true };

/**
 * Logs a call whose caller went away before its answer was complete: its
 * access line (see GatewayLogController), with status 499 and no stack —
 * unless that line is already written (an HTTP/2 stream reset is seen by
 * fastify first). One line per request either way.
 */
export function logCallerGone(request: FastifyRequest, reply: FastifyReply, detail: { readonly headersSent: boolean }): void {
  if ((request as LoggedRequest)[LOGGED]) return;
  (request as LoggedRequest)[LOGGED] = true;
  const cut = answerCuts.get(reply.raw);
  if (cut !== undefined) {
    const fields = { ...accessFields(request, reply, cut.statusCode), code: cut.code, headersSent: detail.headersSent };
    lineLoggerOf(reply).info(cut.upstream === undefined ? fields : { ...fields, upstream: cut.upstream }, cut.message);
    return;
  }
  lineLoggerOf(reply).info({ ...accessFields(request, reply, CLIENT_CLOSED_REQUEST), ...CALLER_GONE_FIELDS, headersSent: detail.headersSent }, CALLER_WENT_AWAY);
}

/**
 * Why the gateway itself cut an answer it could not finish: its access
 * line then says so, with that status and code, rather than blame the
 * caller (499): metrics and alerts on 5xx must see an upstream that failed
 * mid-answer, or a shutdown that ended calls.
 */
export interface AnswerCut {
  /** The status of the access line: 503 (upstream failed, shutdown), 504 (upstream too slow). */
  readonly statusCode: number;
  /** The gateway's error code, as in its error answers. */
  readonly code: "SERVICE_UNAVAILABLE" | "GATEWAY_TIMEOUT";
  readonly message: string;
  /** The upstream at fault, when one is (see GatewayHttpError.upstream). */
  readonly upstream?: string | undefined;
}

const answerCuts = new WeakMap<object, AnswerCut>();

/** Records why the gateway cuts `response` (a Node response), before it does; the first reason stays. */
export function markAnswerCut(response: object, cut: AnswerCut): void {
  if (!answerCuts.has(response)) answerCuts.set(response, cut);
}

/**
 * The facts of a request's access line. The request's child logger is made
 * only if something else logged (see RequestLogger); until then the line
 * goes through the parent, with `reqId` among its fields.
 */
function accessFields(request: FastifyRequest, reply: FastifyReply, statusCode: number) {
  const url = request.url;
  const query = url.indexOf("?");
  const lazy = reply.log instanceof RequestLogger && !reply.log.made;
  return {
    ...(lazy && { reqId: request.id }),
    method: request.method,
    route: routePatternOf(request),
    path: query === -1 ? url : url.slice(0, query),
    remoteAddress: request.ip,
    statusCode,
    durationMs: Math.round(reply.elapsedTime * 1000) / 1000,
  };
}

function lineLoggerOf(reply: FastifyReply): FastifyBaseLogger {
  return reply.log instanceof RequestLogger ? reply.log.lineLogger : reply.log;
}

/**
 * fastify's request log lines, as the gateway writes them: ONE line per
 * request, at `info`, once its answer is complete (`request completed`, or
 * `request errored` at `error` when writing the answer failed), instead of
 * fastify's two (one when the request comes in, one when it is answered).
 * That halves the logging cost per request and keeps every fact of both:
 * the request id (`reqId`), method, route pattern, path (never the query: a
 * token may travel in it), the caller's address (HTTP/1.1; an HTTP/2
 * stream that has closed no longer knows it), status and duration in
 * milliseconds. A call whose caller went away before its answer is logged
 * as "caller went away" with status 499 instead (see logCallerGone);
 * fastify's other lines are unchanged.
 */
export class GatewayLogController extends LogController {
  override incomingRequest(): void {}

  /**
   * fastify's line for an answer's stream that closed before its end: the
   * caller went away, or the gateway cut it (a caller not reading, see the
   * send timeout). The request's own access line already says so (499, or
   * "answer cut short"): one line per request, not two. Any other stream
   * error keeps fastify's warning, which carries its cause.
   */
  override streamError(error: Error & { code?: unknown }, request: FastifyRequest, reply: FastifyReply): void {
    if (error.code === "ERR_STREAM_PREMATURE_CLOSE") return;
    super.streamError(error, request, reply);
  }

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if ((request as LoggedRequest)[LOGGED]) return;
    // An answer the gateway never finished: the caller went away (an HTTP/2
    // stream reset closes the response, which fastify takes for complete).
    // `writableEnded`, not `writableFinished`: a reset HTTP/2 response
    // reports itself finished.
    if (!error && !reply.raw.writableEnded) {
      logCallerGone(request, reply, { headersSent: reply.raw.headersSent });
      return;
    }
    (request as LoggedRequest)[LOGGED] = true;
    const fields = accessFields(request, reply, reply.statusCode);
    if (error) lineLoggerOf(reply).error({ ...fields, err: error }, REQUEST_ERRORED);
    else lineLoggerOf(reply).info(fields, REQUEST_COMPLETED);
  }
}

/**
 * A request's logger (fastify's `request.log`), made lazily: pino's child
 * with the request id is created only when something logs through it. Most
 * requests log nothing but their one completion line, which
 * GatewayLogController writes through the parent with `reqId` among its
 * fields: the same line, without making a pino child (an object, its
 * bindings serialised) for every request. Given to fastify as its
 * `childLoggerFactory` (see {@link requestLogger}).
 */
class RequestLogger {
  #child: FastifyBaseLogger | undefined;

  constructor(
    private readonly parent: FastifyBaseLogger,
    private readonly bindings: Bindings,
    private readonly options: ChildLoggerOptions,
  ) {}

  /** Whether the child logger exists (something logged through it). */
  get made(): boolean {
    return this.#child !== undefined;
  }

  /** Where the completion line goes: the child once made, else the parent (the line then carries `reqId`). */
  get lineLogger(): FastifyBaseLogger {
    return this.#child ?? this.parent;
  }

  private get real(): FastifyBaseLogger {
    return (this.#child ??= this.parent.child(this.bindings, this.options));
  }

  get level(): string {
    return this.real.level;
  }
  set level(level: string) {
    this.real.level = level;
  }

  private log(level: Level, args: unknown[]): void {
    const real = this.real;
    (real[level] as (...args: unknown[]) => void).apply(real, args);
  }

  // Methods on the prototype, not a closure each per request.
  fatal(...args: unknown[]): void {
    this.log("fatal", args);
  }
  error(...args: unknown[]): void {
    this.log("error", args);
  }
  warn(...args: unknown[]): void {
    this.log("warn", args);
  }
  info(...args: unknown[]): void {
    this.log("info", args);
  }
  debug(...args: unknown[]): void {
    this.log("debug", args);
  }
  trace(...args: unknown[]): void {
    this.log("trace", args);
  }
  silent(...args: unknown[]): void {
    this.log("silent", args);
  }

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.real.child(bindings, options);
  }
}

type Level = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

type Bindings = Parameters<FastifyBaseLogger["child"]>[0];
type ChildLoggerOptions = NonNullable<Parameters<FastifyBaseLogger["child"]>[1]>;

/** fastify's `childLoggerFactory` for the gateway: a {@link RequestLogger}, or pino's own child when the route sets log options. */
export function requestLogger(logger: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions): FastifyBaseLogger {
  return Object.keys(options).length > 0 ? logger.child(bindings, options) : (new RequestLogger(logger, bindings, options) as unknown as FastifyBaseLogger);
}

/** The message of the line every answered request is logged with. */
export const REQUEST_COMPLETED = "request completed";
/** The message of the line of a request whose answer could not be written. */
export const REQUEST_ERRORED = "request errored";

/**
 * The gateway's pino options (middleware step 4): JSON lines at `info` by
 * default. Nothing the gateway logs holds a header value or a query — a
 * token may travel in either — and the redaction list is a second line of
 * defence should a serializer change.
 */
export function gatewayLoggerOptions(logger: ResolvedGatewayConfig["logger"]): FastifyServerOptions["logger"] {
  if (logger === false) return false;
  return {
    level: logger.level,
    stream: logger.stream ?? standardOutput(),
    redact: {
      paths: [
        "req.headers.authorization",
        "req.headers.cookie",
        'req.headers["x-gateway-signature"]',
        'res.headers["set-cookie"]',
      ],
      censor: "[redacted]",
    },
    serializers: {
      // The path only: a query may carry a token (`?access_token=`).
      req: (req: { method: string; url: string; ip?: string }) => ({
        method: req.method,
        path: req.url.split("?")[0],
        remoteAddress: req.ip,
      }),
    },
    hooks: {
      logMethod(args, method, level) {
        // fastify warns with the stack when it stops piping an answer to a caller
        // that went away (it aborts the upstream body itself): that is normal
        // traffic, and the request's access line says so (status 499).
        if (level === PINO_WARN && args[1] === STREAM_ERROR_MESSAGE && isCallerGoneError((args[0] as { err?: unknown })?.err)) {
          return this.debug(CALLER_GONE_FIELDS, "stopped relaying the answer: the caller went away");
        }
        return method.apply(this, args);
      },
    },
  };
}

/**
 * Where the gateway logs without a `stream` option: standard output, its
 * lines gathered and written 16 KiB at a time, at least every 100 ms, all
 * of them on exit (a crash included) — unless stdout's reader has stopped
 * reading: then at most 16 MiB waits (later lines are dropped and counted)
 * and the exit gives up after 1 s, so a stalled log reader can neither
 * stall calls nor grow memory nor keep the gateway from exiting (see
 * GatheredLogLines). A write per line would be a system call per request
 * under load: ~6 % of the gateway's CPU per request, measured. One for the
 * process, shared by every gateway in it, as stdout is.
 */
function standardOutput(): pino.DestinationStream {
  return (sharedStandardOutput ??= gatheredStandardOutput());
}

let sharedStandardOutput: pino.DestinationStream | undefined;

/**
 * Logs an error the gateway answers with, at a level that matches whose
 * problem it is: its own failures at `error` with the cause's stack, an
 * upstream or key set away at `warn` in one line naming the underlying
 * cause (`ECONNREFUSED`), the caller's mistakes at `info`.
 */
export function logGatewayError(log: FastifyBaseLogger, error: GatewayHttpError): void {
  if (error.code === "INTERNAL_ERROR") {
    log.error({ err: error.cause ?? error }, error.message);
  } else if (error.statusCode >= 500) {
    const fields = { code: error.code, cause: rootCauseOf(error) };
    log.warn(error.upstream === undefined ? fields : { ...fields, upstream: error.upstream }, error.message);
  } else {
    // A token refused: why (which check failed; never the token), for whoever runs the gateway.
    const reason = error.statusCode === 401 && error.cause instanceof Error ? error.cause.message : undefined;
    log.info(reason === undefined ? { code: error.code } : { code: error.code, reason }, error.message);
  }
}

/** The code (or else the message) of the innermost `cause`. */
function rootCauseOf(error: Error): unknown {
  let root: unknown = error;
  while (root instanceof Error && root.cause !== undefined) root = root.cause;
  const { code, message } = (root ?? {}) as { code?: unknown; message?: unknown };
  return root === error ? undefined : (code ?? message);
}
