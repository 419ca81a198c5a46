import { Code, ConnectError } from "@connectrpc/connect";
import { AuthenticationError } from "./authentication-error.js";
import { recordUnauthorizedAnswer } from "./call-tracing.js";
import { ConnectionError } from "./connection-error.js";
import { SessionTokenExpiredError } from "./session-token-expired-error.js";
import type { TokenManager } from "./token-manager.js";

/** How {@link callWithToken} runs one call. */
export interface TokenCall<T> {
  /** An end-user token: sent as is, never cached, refreshed or retried. */
  readonly userToken: string | undefined;
  /** Sends the call with this `Authorization` header value. */
  readonly attempt: (authorization: string) => Promise<T>;
  /** Whether the call can be sent twice (unary, body in memory). */
  readonly replayable: boolean;
  /** The caller's cancellation, honoured while waiting for a token. */
  readonly signal?: AbortSignal | undefined;
  /** The service token, when the caller already asked `tokens.getToken()` for it. */
  readonly token?: Promise<string> | undefined;
  /**
   * The call's deadline, in ms from now: the wait for a token counts
   * against it, and ends with a {@link ConnectionError} (`DeadlineExceeded`)
   * once it has passed — the token request goes on, for the calls after.
   */
  readonly timeoutMs?: number | undefined;
  /**
   * `timeoutMs` is the client's default, not the caller's own. It also
   * bounds each token request, which this call may have started at the same
   * moment: the first wait for a token then ends a moment after the
   * deadline (DEFAULT_DEADLINE_GRACE_MS), so that a token endpoint slower
   * than `timeoutMs` fails the call with its own `AuthenticationError`
   * rather than a bare `DeadlineExceeded` an instant earlier. Anything else
   * slow on the way to a token (a store, a refresh then a new grant) ends
   * with the deadline as usual, and what is sent after gets what is left.
   */
  readonly defaultTimeout?: boolean | undefined;
}

/**
 * Runs a call with the right bearer token — the transport's and the REST
 * client's single implementation of the token rules: the user token when
 * there is one, else the service token; a `401` (code `Unauthenticated`)
 * answered to the service token invalidates *that* token (the one the call
 * used, never whatever is cached by then) and, when the call is replayable,
 * retries once with a fresh token — unless the token manager kept it because
 * of its forced-refresh backoff, when the 401 is the answer. Never more than
 * one retry.
 */
export function callWithToken<T>(tokens: TokenManager, call: TokenCall<T>): Promise<T> {
  // Promise chaining rather than async functions: this wraps every call, and a
  // cached token should add no more than one promise to it.
  const userToken = call.userToken;
  if (userToken !== undefined) return call.attempt(`Bearer ${userToken}`).catch((error: unknown) => Promise.reject(withoutToken(error, userToken)));
  if (call.signal?.aborted) return Promise.reject(canceled(call.signal)); // no token request for nobody
  const deadline = call.timeoutMs === undefined ? undefined : performance.now() + call.timeoutMs;
  // A default deadline waits a little longer than the deadline itself (see defaultTimeout).
  const tokenDeadline = deadline !== undefined && call.defaultTimeout === true ? deadline + DEFAULT_DEADLINE_GRACE_MS : deadline;
  const pending = awaitToken(call.token ?? tokens.getToken(), call.signal, tokenDeadline);
  return typeof pending === "string"
    ? attemptWith(tokens, call, pending, deadline)
    : pending.then((token) => attemptWith(tokens, call, token, deadline));
}

function attemptWith<T>(tokens: TokenManager, call: TokenCall<T>, token: string, deadline: number | undefined): Promise<T> {
  return call.attempt(`Bearer ${token}`).catch((error: unknown) => {
    withoutToken(error, token);
    if (!call.replayable) return notRetried(tokens, error, token);
    return retryUnauthorized(tokens, error, token, call.signal, call.attempt, deadline);
  });
}

/**
 * `error` with every copy of `token` replaced by `[redacted]`: a gateway or
 * backend may quote the bearer token it refused — in the message, a header
 * (`WWW-Authenticate`, one of its own), an error detail's `debug` JSON or
 * bytes, a REST error's body — and no error of this client carries a token,
 * whatever prints it (`String(error)`, `util.inspect`, a logger's
 * serializer). The message, stack, metadata (response headers and
 * trailers), details and `cause` chain are scrubbed in place, so that the
 * error's class, code and shape stay as they are; returned for chaining.
 * Binary detail values keep their length (the token's octets become `*`),
 * so they still decode.
 */
export function withoutToken(error: unknown, token: string): unknown {
  if (token === "") return error;
  let current = error;
  // The cause chain, bounded: a cause that points back at its error must not loop.
  for (let depth = 0; depth < 8 && current instanceof Error; depth++) {
    scrubError(current, token);
    current = (current as { cause?: unknown }).cause;
  }
  return error;
}

function scrubError(error: Error, token: string): void {
  const scrubbed = error as unknown as Record<string, unknown>;
  for (const key of ["message", "rawMessage", "stack", "body"]) {
    tryScrub(() => {
      const value = scrubbed[key];
      if (typeof value === "string" && value.includes(token)) scrubbed[key] = redactToken(value, token);
    });
  }
  tryScrub(() => {
    const metadata = scrubbed["metadata"];
    if (metadata instanceof Headers) scrubHeaders(metadata, token);
  });
  tryScrub(() => {
    const details = scrubbed["details"];
    if (Array.isArray(details)) for (const detail of details) scrubDetail(detail, token);
  });
}

// A frozen error, or a getter without a setter: left as it is, never replaced by a TypeError.
function tryScrub(scrub: () => void): void {
  try {
    scrub();
  } catch {
    // nothing to do
  }
}

function scrubHeaders(headers: Headers, token: string): void {
  const tainted: [string, string][] = [];
  headers.forEach((value, name) => {
    if (value.includes(token)) tainted.push([name, value]);
  });
  for (const [name, value] of tainted) headers.set(name, redactToken(value, token));
}

// A detail as Connect decodes it: `{ type, value: Uint8Array, debug? }`, or a message with its schema.
function scrubDetail(detail: unknown, token: string): void {
  if (typeof detail !== "object" || detail === null) return;
  const fields = detail as Record<string, unknown>;
  tryScrub(() => {
    if ("debug" in fields) fields["debug"] = scrubJson(fields["debug"], token, 0);
  });
  tryScrub(() => {
    const value = fields["value"];
    if (value instanceof Uint8Array) fields["value"] = maskOctets(value, token);
    else if (typeof value === "object" && value !== null) fields["value"] = scrubJson(value, token, 0);
  });
}

function scrubJson(value: unknown, token: string, depth: number): unknown {
  if (typeof value === "string") return value.includes(token) ? redactToken(value, token) : value;
  if (typeof value !== "object" || value === null || depth > 32) return value;
  if (value instanceof Uint8Array) return maskOctets(value, token);
  if (Array.isArray(value)) return value.map((item) => scrubJson(item, token, depth + 1));
  const entries = Object.entries(value).map(([key, item]) => [key, scrubJson(item, token, depth + 1)] as const);
  return Object.assign(Object.create(Object.getPrototypeOf(value) as object | null) as object, Object.fromEntries(entries));
}

// The token's UTF-8 octets overwritten with `*`, in a copy, the length kept.
function maskOctets(octets: Uint8Array, token: string): Uint8Array {
  const needle = Buffer.from(token, "utf8");
  const view = Buffer.from(octets.buffer, octets.byteOffset, octets.byteLength);
  if (view.indexOf(needle) < 0) return octets;
  const copy = Buffer.from(view);
  for (let at = copy.indexOf(needle); at >= 0; at = copy.indexOf(needle, at + needle.length)) copy.fill(0x2a, at, at + needle.length);
  return new Uint8Array(copy.buffer, copy.byteOffset, copy.byteLength);
}

/**
 * What {@link callWithToken} does when a replayable call sent with the
 * service token `token` failed with `error`: a 401 drops that token and, if a
 * fresh one can be hoped for, sends the call once more with it; anything
 * else is rethrown. For a transport's hot path, which sends the call itself.
 */
export async function retryUnauthorized<T>(
  tokens: TokenManager,
  error: unknown,
  token: string,
  signal: AbortSignal | undefined,
  attempt: (authorization: string) => Promise<T>,
  /** The call's deadline on `performance.now()`'s clock, if it has one. */
  deadline?: number,
): Promise<T> {
  if (!isUnauthorizedAnswer(error)) throw error;
  const renewed = tokens.invalidate(token);
  recordUnauthorizedAnswer(renewed);
  if (!renewed) throw error;
  const fresh = await awaitToken(tokens.getToken(), signal, deadline);
  return attempt(`Bearer ${fresh}`).catch((failure: unknown) => Promise.reject(withoutToken(failure, fresh)));
}

// A call that cannot be sent again: a 401 still drops its token, for the next call.
function notRetried(tokens: TokenManager, error: unknown, token: string): never {
  if (isUnauthorizedAnswer(error)) {
    tokens.invalidate(token);
    recordUnauthorizedAnswer(false);
  }
  throw error;
}

// A 401 from the gateway or backend — not our own token failures, which share the code.
function isUnauthorizedAnswer(error: unknown): boolean {
  return (
    error instanceof ConnectError &&
    error.code === Code.Unauthenticated &&
    !(error instanceof AuthenticationError) &&
    !(error instanceof SessionTokenExpiredError)
  );
}

// A cached token comes back as a plain string: no waiting, nothing to abort.
// Otherwise the wait ends with the caller's abort or the call's deadline
// (on performance.now()'s clock), whichever comes first. A token request
// outlives the callers that stop waiting: it is shared, and its outcome (a
// failure included) is always handled here.
function awaitToken(pending: string | Promise<string>, signal: AbortSignal | undefined, deadline: number | undefined): string | Promise<string> {
  if ((signal === undefined && deadline === undefined) || !(pending instanceof Promise)) return pending;
  return new Promise<string>((resolve, reject) => {
    const onAbort = () => reject(canceled(signal as AbortSignal));
    const timer = deadline === undefined ? undefined : setTimeout(() => reject(tokenDeadlinePassed()), Math.max(0, deadline - performance.now()));
    if (signal?.aborted) onAbort();
    else signal?.addEventListener("abort", onAbort, { once: true });
    pending.then(resolve, reject).finally(() => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    });
  });
}

function tokenDeadlinePassed(): ConnectionError {
  return new ConnectionError(
    "the call's deadline passed while it waited for a service token from the token endpoint; the call was not sent " +
      "(safe to retry), and the token request goes on for the calls after it",
    Code.DeadlineExceeded,
  );
}

function canceled(signal: AbortSignal): ConnectError {
  return ConnectError.from(signal.reason, Code.Canceled);
}

/** How much longer than a default deadline the first wait for a token lasts (see `defaultTimeout`). */
const DEFAULT_DEADLINE_GRACE_MS = 100;

/** The `Authorization` scheme the client sends its tokens with; a value's token is what follows it. */
export const BEARER = "Bearer ";

/** `text` with every copy of `token` — as sent, and as JSON may escape it (`/` as `\/`) — replaced by `[redacted]`. */
export function redactToken(text: string, token: string): string {
  let redacted = text;
  for (const copy of new Set([token, token.replaceAll("/", "\\/")])) redacted = redacted.split(copy).join("[redacted]");
  return redacted;
}
