import * as http from "node:http";
import * as https from "node:https";
import { ResponseTooLargeError } from "../core/errors.js";
import { ChunkGatherer } from "../core/chunk-gatherer.js";

/** One HTTP/1.1 request made by the client itself (token endpoint, REST calls). */
export interface HttpRequestInit {
  readonly method: string;
  /** Absolute http(s) URL; `path` is sent exactly as given (nothing normalised). */
  readonly origin: URL;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: string;
  /** The caller's agent, so these requests share its connection pool (and TLS settings). */
  readonly agent?: http.Agent | undefined;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal | undefined;
  /** Answers larger than this are refused, so a misbehaving server cannot exhaust memory. */
  readonly maxResponseBytes: number;
}

// The error class lives with every other error of the library (core/errors).
export { ResponseTooLargeError };

/** The answer to an {@link HttpRequestInit}, body fully read. */
export interface HttpResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

/**
 * Sends one request with node:http / node:https and reads the whole answer.
 * Rejects with the Node.js error when the peer cannot be reached, with an
 * error named `ResponseCutShortError` (the Node.js error its cause) when
 * the connection fails after the answer began, with an
 * error named `TimeoutError` after `timeoutMs` (with the answer's `status`
 * when it had begun), or with `signal.reason` when
 * the caller aborts, or with a {@link ResponseTooLargeError} (reading stops
 * there). Never puts a header value in an error.
 */
export function sendHttpRequest(init: HttpRequestInit): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    if (init.signal?.aborted) return reject(init.signal.reason);
    const request = (init.origin.protocol === "https:" ? https : http).request({
      method: init.method,
      protocol: init.origin.protocol,
      hostname: init.origin.hostname.replace(/^\[|\]$/g, ""),
      port: init.origin.port,
      path: init.path,
      headers: init.body === undefined ? init.headers : { ...init.headers, "content-length": Buffer.byteLength(init.body) },
      agent: init.agent,
    });
    let settled = false;
    const fail = (error: unknown) => {
      if (settled) return;
      settled = true;
      cleanup();
      request.destroy();
      reject(error);
    };
    const timer = setTimeout(() => fail(timeoutError(init.timeoutMs, answered)), init.timeoutMs);
    const onAbort = () => fail(init.signal?.reason);
    init.signal?.addEventListener("abort", onAbort, { once: true });
    const cleanup = () => {
      clearTimeout(timer);
      init.signal?.removeEventListener("abort", onAbort);
    };
    let answered: number | undefined;
    // Once the answer began, a network error means it was cut short, not that the peer was unreachable.
    request.on("error", (error) => fail(answered === undefined ? error : cutShortError(answered, error)));
    request.on("response", (response) => {
      answered = response.statusCode ?? 0;
      const tooLarge = () => new ResponseTooLargeError(init.maxResponseBytes, response.statusCode ?? 0, response.headers);
      // Refused up front when the server announces it; else once the bytes read pass the limit.
      // Either way the request (and its socket) is destroyed: the rest is never read nor buffered.
      if (Number(response.headers["content-length"]) > init.maxResponseBytes) return fail(tooLarge());
      // Held as it came, or gathered into blocks when it comes a few bytes at a time.
      const body = new ChunkGatherer();
      let size = 0;
      response.on("data", (chunk: Buffer) => {
        if (settled) return;
        size += chunk.length;
        if (size > init.maxResponseBytes) fail(tooLarge());
        else body.add(chunk);
      });
      response.on("error", (error) => fail(cutShortError(answered as number, error)));
      response.on("end", () => {
        if (settled) return;
        settled = true;
        cleanup();
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(body.finish(), size) });
      });
    });
    request.end(init.body);
  });
}

/**
 * The peer answered (`status`) but the connection failed before the answer
 * was complete: named `ResponseCutShortError`, with the network error's
 * `code` (`ECONNRESET`), so that what keys on the code still does, and the
 * error itself as its `cause`.
 */
function cutShortError(status: number, error: Error & { code?: unknown }): Error {
  const cutShort = Object.assign(new Error(`the answer (HTTP ${status}) was cut short (${String(error.code ?? error.message)})`, { cause: error }), {
    code: error.code,
    status,
  });
  cutShort.name = "ResponseCutShortError";
  return cutShort;
}

/** Named `TimeoutError`; with the `status` of an answer that began but did not end in time. */
function timeoutError(ms: number, answered: number | undefined): Error {
  if (answered === undefined) return Object.assign(new Error(`no answer within ${ms} ms`), { name: "TimeoutError" });
  return Object.assign(new Error(`the answer (HTTP ${answered}) did not end within ${ms} ms`), { name: "TimeoutError", status: answered });
}
