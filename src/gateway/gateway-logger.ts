import type { FastifyBaseLogger, FastifyServerOptions } from "fastify";
import type { GatewayConfig } from "./gateway-config.js";
import type { GatewayHttpError } from "./gateway-http-error.js";

const PINO_WARN = 40;

/**
 * The gateway's pino options (middleware step 4): JSON lines at `info` by
 * default. Nothing the gateway logs holds a header value or a query — a
 * token may travel in either — and the redaction list is a second line of
 * defence should a serializer change.
 */
export function gatewayLoggerOptions(logger: GatewayConfig["logger"]): FastifyServerOptions["logger"] {
  if (logger === false) return false;
  return {
    level: logger?.level ?? "info",
    ...(logger?.stream && { stream: logger.stream }),
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
        // @fastify/reply-from logs each upstream failure at warn with its stack
        // (twice over HTTP/2); logGatewayError already gives it one line.
        if (level === PINO_WARN && args[1] === "response errored") return this.debug(...args);
        return method.apply(this, args);
      },
    },
  };
}

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
    log.warn({ code: error.code, cause: rootCauseOf(error) }, error.message);
  } else {
    log.info({ code: error.code }, error.message);
  }
}

/** The code (or else the message) of the innermost `cause`. */
function rootCauseOf(error: Error): unknown {
  let root: unknown = error;
  while (root instanceof Error && root.cause !== undefined) root = root.cause;
  const { code, message } = (root ?? {}) as { code?: unknown; message?: unknown };
  return root === error ? undefined : (code ?? message);
}
