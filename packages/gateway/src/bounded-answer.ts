/**
 * Reading what an authorization server answers (its key set, an
 * introspection result) with a bound on its size: the whole answer is held
 * in memory and parsed as JSON, and a server that answers hundreds of
 * megabytes — compromised, misconfigured or impersonated — must not take the
 * gateway's memory, nor its event loop for the seconds such a parse takes
 * (the request's timeout does not cover the parse). Past the bound the
 * answer is dropped as it arrives and the call fails like an unreachable
 * server: 503.
 */

/** The most an introspection answer may hold: a token's claims. */
export const MAX_INTROSPECTION_BYTES = 256 * 1024;
/** The most a key set may hold: hundreds of keys. */
export const MAX_KEY_SET_BYTES = 1024 * 1024;

/** Thrown when an answer is larger than its bound. */
export class AnswerTooLargeError extends Error {
  readonly code = "ANSWER_TOO_LARGE";
  constructor(what: string, maxBytes: number) {
    super(`${what} answered more than ${maxBytes} bytes`);
    this.name = "AnswerTooLargeError";
  }
}

/**
 * The body of `response`, at most `maxBytes`: refused from its
 * Content-Length when that says more, else read chunk by chunk and dropped
 * (the connection cancelled) once past the bound.
 */
export async function readBoundedBody(response: Response, maxBytes: number, what: string): Promise<Uint8Array> {
  const declared = Number(response.headers.get("content-length"));
  const body = response.body;
  if ((Number.isFinite(declared) && declared > maxBytes) || body === null) {
    await body?.cancel();
    if (body === null) return new Uint8Array(0);
    throw new AnswerTooLargeError(what, maxBytes);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel();
      throw new AnswerTooLargeError(what, maxBytes);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, total);
}

/**
 * `fetch` whose answers are read with {@link readBoundedBody}: given to jose
 * for the remote key set, which then parses at most `maxBytes`.
 */
export function boundedFetch(maxBytes: number, what: string): (url: string, init: RequestInit) => Promise<Response> {
  return async (url, init) => {
    const response = await fetch(url, init);
    const body = await readBoundedBody(response, maxBytes, what);
    return new Response(body.byteLength === 0 ? null : body, { status: response.status, statusText: response.statusText, headers: response.headers });
  };
}
