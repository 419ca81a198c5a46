// Browser-safe: no Node built-in here, so a browser transport can use it too;
// what counts as a transient failure is passed in (see createGatewayTransport).
import type { DescMethod } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { ConnectError, type Interceptor, type StreamRequest, type UnaryRequest, type UnaryResponse } from "@connectrpc/connect";
import { assertDurationMs, assertNumber, assertPositiveInteger } from "../core/assertions.js";
import { InvalidOptionError } from "../core/errors.js";
import { retryAfterMs } from "../core/retry-after.js";
import { gatewayCallKey } from "./gateway-call-options.js";

/**
 * How `createGatewayTransport` retries calls to idempotent methods (option
 * `retry`). Every field is optional; `retry: false` turns retries off.
 *
 * Only unary calls to methods whose proto declares
 * `option idempotency_level = NO_SIDE_EFFECTS;` or `IDEMPOTENT` are retried,
 * and only after a transient failure: the gateway was unreachable or reset
 * the connection (the request may never have reached the backend), or it
 * answered `503` / code `Unavailable` (the backend is down). Streaming calls,
 * other methods and every other error are never retried.
 *
 * @example
 * ```ts
 * const transport = createGatewayTransport({
 *   retry: { maxAttempts: 5, initialBackoffMs: 50, maxBackoffMs: 1000 },
 * });
 * const noRetries = createGatewayTransport({ retry: false });
 * await echo.echo({ text: "hi" }, gatewayCall({ retry: false })); // this call only
 * ```
 *
 * @see {@link https://github.com/grpc/proposal/blob/master/A6-client-retries.md | gRPC A6: client retries} (the retry budget guards against the same retry storms as its throttling)
 */
export interface RetryOptions {
  /** Attempts in all, the first one included: a whole number from 1 (no retry) to 10. Default 3. */
  readonly maxAttempts?: number;
  /**
   * Upper bound of the pause before the first retry, in ms; it doubles for
   * each further retry, up to `maxBackoffMs`. Each pause is drawn at random
   * between 0 and that bound ("full jitter"), so that callers that failed
   * together do not retry together. Default 100.
   */
  readonly initialBackoffMs?: number;
  /** The longest pause between two attempts, in ms (a `Retry-After` aside). Default 2000. */
  readonly maxBackoffMs?: number;
  /**
   * The retry budget, shared by all the calls of the transport: retries add
   * at most this fraction to the calls it makes (0.2: 20 % more), so that a
   * backend that is down does not receive three times the load. From 0 to 1.
   * Default 0.2.
   */
  readonly budgetRatio?: number;
  /**
   * Retries always allowed, per second, whatever `budgetRatio` says, so that a
   * transport making few calls can still retry; up to 10 seconds' worth
   * (at least 10 retries) may be spent at once. From 0 to 1000. Default 10.
   */
  readonly minRetriesPerSecond?: number;
}

/** {@link RetryOptions} checked, with defaults applied. */
export type RetryPolicy = Required<RetryOptions>;

/** The defaults of {@link RetryOptions}. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = Object.freeze({
  maxAttempts: 3,
  initialBackoffMs: 100,
  maxBackoffMs: 2000,
  budgetRatio: 0.2,
  minRetriesPerSecond: 10,
});

/**
 * The longest `Retry-After` honoured when the call has no deadline (its
 * deadline bounds it otherwise): a gateway asking for more gets its answer
 * passed on.
 */
export const MAX_RETRY_AFTER_MS = 60_000;

const retryKeys = Object.keys(DEFAULT_RETRY_POLICY) as (keyof RetryOptions)[];

/**
 * Checks the `retry` option of `createGatewayTransport`: `undefined` or
 * `true` (the defaults), `false` (no retries: returns `undefined`), or
 * {@link RetryOptions}. Throws an `InvalidOptionError` (a
 * `ConfigurationError`) naming the option at fault, e.g. `retry.maxAttempts`.
 */
export function resolveRetryPolicy(value: unknown): RetryPolicy | undefined {
  if (value === false) return undefined;
  if (value === undefined || value === true) return DEFAULT_RETRY_POLICY;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new InvalidOptionError("retry", "true, false or an object of retry options");
  }
  for (const key of Object.keys(value)) {
    if (!(retryKeys as string[]).includes(key)) {
      throw new InvalidOptionError(`retry.${key}`, `left out: the retry options are ${retryKeys.join(", ")}`);
    }
  }
  const options = value as RetryOptions;
  const d = DEFAULT_RETRY_POLICY;
  const initialBackoffMs = assertDurationMs("retry.initialBackoffMs", options.initialBackoffMs ?? d.initialBackoffMs, {
    max: MAX_RETRY_AFTER_MS,
  });
  const maxBackoffMs = assertDurationMs("retry.maxBackoffMs", options.maxBackoffMs ?? Math.max(d.maxBackoffMs, initialBackoffMs), {
    max: MAX_RETRY_AFTER_MS,
  });
  if (maxBackoffMs < initialBackoffMs) throw new InvalidOptionError("retry.maxBackoffMs", "at least retry.initialBackoffMs");
  return Object.freeze({
    maxAttempts: assertPositiveInteger("retry.maxAttempts", options.maxAttempts ?? d.maxAttempts, { max: 10 }),
    initialBackoffMs,
    maxBackoffMs,
    budgetRatio: assertNumber("retry.budgetRatio", options.budgetRatio ?? d.budgetRatio, { min: 0, max: 1 }),
    minRetriesPerSecond: assertNumber("retry.minRetriesPerSecond", options.minRetriesPerSecond ?? d.minRetriesPerSecond, {
      min: 0,
      max: 1000,
    }),
  });
}

/** What {@link createRetryInterceptor} needs besides the policy. */
export interface RetryInterceptorOptions {
  /**
   * Whether a failed attempt may be sent again: the request may not have
   * reached the handler, or the server said it is unavailable.
   */
  readonly isTransient: (reason: unknown) => boolean;
  /**
   * Runs first on every call, before anything else here (the transport sets
   * the Authorization header with it): one interceptor rather than two.
   */
  readonly prepare?: ((req: UnaryRequest | StreamRequest) => void) | undefined;
}

/**
 * A Connect interceptor that retries unary calls to idempotent methods after
 * a transient failure, as {@link RetryOptions} describes: up to
 * `maxAttempts` attempts, exponential backoff with full jitter, the server's
 * `Retry-After` (seconds or an HTTP date) honoured instead when it sends one,
 * within the call's deadline — no pause that would end past it is started,
 * the last error is passed on at once instead, and an abort ends the pause —
 * and within a retry budget shared by every call through the interceptor.
 * A call that says `gatewayCall({ retry: false })` is not retried.
 *
 * Interceptors placed after it run again for every attempt (routing does);
 * the request message is sent again as is.
 *
 * A call that succeeds the first time costs one closure, one promise and
 * one `performance.now()` read, and sets no timer; a call that cannot be
 * retried (streaming, not idempotent) costs nothing but the budget's count.
 */
export function createRetryInterceptor(policy: RetryPolicy, options: RetryInterceptorOptions): Interceptor {
  const budget = new RetryBudget(policy.budgetRatio, policy.minRetriesPerSecond);
  const { isTransient, prepare } = options;
  return (next) => (req) => {
    prepare?.(req);
    budget.deposit();
    if (req.stream || policy.maxAttempts === 1 || !isIdempotent(req.method)) return next(req);
    const start = performance.now();
    return next(req).then(undefined, (reason: unknown) =>
      retrying(next as (req: UnaryRequest) => Promise<UnaryResponse>, req, reason, start, policy, budget, isTransient),
    );
  };
}

/** Whether the method's proto declares it free of side effects, or idempotent. */
export function isIdempotent(method: DescMethod): boolean {
  const level = method.idempotency;
  return level === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS || level === MethodOptions_IdempotencyLevel.IDEMPOTENT;
}

// The slow path: only after a failed first attempt.
async function retrying(
  next: (req: UnaryRequest) => Promise<UnaryResponse>,
  req: UnaryRequest,
  firstFailure: unknown,
  start: number,
  policy: RetryPolicy,
  budget: RetryBudget,
  isTransient: (reason: unknown) => boolean,
): Promise<UnaryResponse> {
  let reason = firstFailure;
  const deadline = deadlineOf(req.header, start);
  for (let retry = 1; retry < policy.maxAttempts; retry++) {
    if (req.signal.aborted || req.contextValues.get(gatewayCallKey)?.retry === false || !isTransient(reason)) break;
    const pause = pauseBefore(retry, reason, policy);
    if (pause === undefined || performance.now() + pause >= deadline) break; // no attempt could finish in time
    if (!budget.tryWithdraw()) break;
    await sleep(pause, req.signal);
    updateTimeout(req.header, deadline - performance.now());
    try {
      return await next(req);
    } catch (e) {
      reason = e;
    }
  }
  throw reason;
}

// The pause before retry number `retry` (1 for the first): the server's
// Retry-After when it sent one, else full jitter over the exponential bound.
function pauseBefore(retry: number, reason: unknown, policy: RetryPolicy): number | undefined {
  const asked = answeredRetryAfterMs(reason);
  if (asked !== undefined) return asked <= MAX_RETRY_AFTER_MS ? asked : undefined;
  return Math.random() * Math.min(policy.maxBackoffMs, policy.initialBackoffMs * 2 ** (retry - 1));
}

/** The `Retry-After` of an error answer, in ms (see {@link retryAfterMs}). */
function answeredRetryAfterMs(reason: unknown, now: number = Date.now()): number | undefined {
  return reason instanceof ConnectError ? retryAfterMs(reason.metadata.get("retry-after") ?? undefined, now) : undefined;
}

// The call's deadline on the performance.now() clock, from the timeout header
// the protocol sent (Connect: connect-timeout-ms; gRPC and gRPC-web:
// grpc-timeout). No header: no deadline.
function deadlineOf(header: Headers, start: number): number {
  const connect = header.get("connect-timeout-ms");
  if (connect !== null) return start + Number(connect);
  const grpc = /^(\d{1,8})([HMSmun])$/.exec(header.get("grpc-timeout") ?? "");
  if (grpc === null) return Infinity;
  return start + Number(grpc[1]) * grpcTimeoutUnitMs[grpc[2] as keyof typeof grpcTimeoutUnitMs];
}

const grpcTimeoutUnitMs = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

// A retry tells the server how much of the deadline is left, not the whole of it.
function updateTimeout(header: Headers, remainingMs: number): void {
  if (remainingMs === Infinity) return;
  const ms = Math.max(1, Math.floor(remainingMs));
  if (header.has("connect-timeout-ms")) header.set("connect-timeout-ms", String(ms));
  else if (header.has("grpc-timeout")) header.set("grpc-timeout", `${ms}m`);
}

// Rejects with the abort reason when the signal fires first (Connect then
// reports the deadline, or the caller's cancellation).
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * A token bucket: each call adds `ratio` tokens, time adds
 * `minPerSecond` tokens a second, each retry takes one; no token, no retry.
 * It holds at most 10 seconds' worth of `minPerSecond` (at least 10 tokens),
 * and starts full. Over any period, retries ≤ ratio × calls + the bucket's
 * capacity + minPerSecond × seconds.
 */
export class RetryBudget {
  readonly #ratio: number;
  readonly #perMs: number;
  readonly #capacity: number;
  #tokens: number;
  #refilledAt: number;

  constructor(ratio: number, minPerSecond: number, now: number = performance.now()) {
    this.#ratio = ratio;
    this.#perMs = minPerSecond / 1000;
    this.#capacity = Math.max(10, minPerSecond * 10);
    this.#tokens = this.#capacity;
    this.#refilledAt = now;
  }

  /** A call is made: it earns `ratio` of a retry. */
  deposit(): void {
    const tokens = this.#tokens + this.#ratio;
    this.#tokens = tokens > this.#capacity ? this.#capacity : tokens;
  }

  /** Takes a token for one retry; `false` when the budget is spent. */
  tryWithdraw(now: number = performance.now()): boolean {
    const tokens = Math.min(this.#capacity, this.#tokens + (now - this.#refilledAt) * this.#perMs);
    this.#refilledAt = now;
    if (tokens < 1) {
      this.#tokens = tokens;
      return false;
    }
    this.#tokens = tokens - 1;
    return true;
  }
}
