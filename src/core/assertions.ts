import { InvalidOptionError } from "./errors.js";

/**
 * The option checks of connect-gateway, written once: the client's options,
 * the server's (`createGatewayAuth`, the replay stores) and the gateway's
 * configuration all use them. Each names the option in its error and never
 * the value: a misplaced value may be a secret, a URL may carry credentials.
 */

/**
 * Builds the error of a failed assertion from the option's name and what it
 * must be (`expected`, e.g. `a positive integer`). Default:
 * `new InvalidOptionError(option, expected)`.
 */
export type OptionErrorFactory = (option: string, expected: string) => Error;

/** What every assertion accepts. */
export interface AssertionOptions {
  /** What the value must be, worded for this option: replaces the assertion's own wording. */
  readonly expected?: string;
  /** The error to throw; default {@link InvalidOptionError}. */
  readonly error?: OptionErrorFactory;
}

const invalidOption: OptionErrorFactory = (option, expected) => new InvalidOptionError(option, expected);

function fail(option: string, expected: string, options: AssertionOptions | undefined): never {
  throw (options?.error ?? invalidOption)(option, options?.expected ?? expected);
}

/** Why a value is not an acceptable http(s) URL; see {@link httpUrlProblem}. */
export type HttpUrlProblem = "invalid" | "credentials" | "query";

/** Which http(s) URLs are acceptable (everything else is refused). */
export interface HttpUrlRules {
  /** Accept `user:password@`. Default false: credentials belong in their own (secret) options. */
  readonly allowCredentials?: boolean;
  /** Accept a query and a fragment. Default false. */
  readonly allowQuery?: boolean;
}

/**
 * The URL rules of connect-gateway: an absolute `http://` or `https://` URL,
 * by default without credentials, query or fragment. Returns the parsed URL,
 * or why the value is refused.
 */
export function httpUrlProblem(
  value: unknown,
  rules: HttpUrlRules = {},
):
  | {
      /** The parsed URL: the value is acceptable. */
      readonly url: URL;
      /** Unset when the URL is acceptable. */
      readonly problem?: undefined;
    }
  | {
      /** Unset when the value is refused. */
      readonly url?: undefined;
      /** Why the value is refused. */
      readonly problem: HttpUrlProblem;
    } {
  let url: URL;
  try {
    if (typeof value !== "string") return { problem: "invalid" };
    url = new URL(value);
  } catch {
    return { problem: "invalid" };
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return { problem: "invalid" };
  if (!rules.allowCredentials && (url.username !== "" || url.password !== "")) return { problem: "credentials" };
  if (!rules.allowQuery && (url.search !== "" || url.hash !== "")) return { problem: "query" };
  return { url };
}

const HTTP_URL_EXPECTED: Record<HttpUrlProblem, string> = {
  invalid: "an absolute http:// or https:// URL",
  credentials: "a URL without credentials (user:password@)",
  query: "a URL without a query or a fragment",
};

/**
 * An absolute `http://` or `https://` URL (see {@link httpUrlProblem} for the
 * rules); returns it parsed. The value never appears in the error: a URL may
 * carry credentials or come from a secret store.
 */
export function assertHttpUrl(
  option: string,
  value: unknown,
  options?: AssertionOptions & HttpUrlRules & { readonly expectedFor?: Partial<Record<HttpUrlProblem, string>> },
): URL {
  const checked = httpUrlProblem(value, options);
  if (checked.url !== undefined) return checked.url;
  const expected = options?.expectedFor?.[checked.problem] ?? options?.expected ?? HTTP_URL_EXPECTED[checked.problem];
  return fail(option, expected, { ...options, expected });
}

/** Bounds of {@link assertPositiveInteger}. */
export interface IntegerRange extends AssertionOptions {
  /** The largest value accepted. Default `Number.MAX_SAFE_INTEGER`. */
  readonly max?: number;
  /** Accept 0 as well. Default false. */
  readonly allowZero?: boolean;
}

/** A whole number (a safe integer) from 1 — or 0 with `allowZero` — to `max`. */
export function assertPositiveInteger(option: string, value: unknown, range: IntegerRange = {}): number {
  const min = range.allowZero ? 0 : 1;
  const max = range.max ?? Number.MAX_SAFE_INTEGER;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    const expected =
      range.max === undefined ? `${range.allowZero ? "a non-negative" : "a positive"} integer` : `a whole number from ${min} to ${max}`;
    return fail(option, expected, range);
  }
  return value;
}

/** The longest delay `setTimeout` honours (2³¹−1 ms, about 24.8 days); a larger one fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Bounds of {@link assertDurationMs}. */
export interface DurationRange extends AssertionOptions {
  /** Accept 0 (e.g. "disabled", "at once"). Default false. */
  readonly allowZero?: boolean;
  /** Accept a fraction of a millisecond. Default false: whole milliseconds. */
  readonly allowFraction?: boolean;
  /** The longest duration accepted. Default {@link MAX_TIMER_MS}. */
  readonly max?: number;
}

/**
 * A duration in milliseconds: a finite number from 1 (0 with `allowZero`) to
 * `max` (default {@link MAX_TIMER_MS}, the longest `setTimeout` delay), whole
 * unless `allowFraction`.
 */
export function assertDurationMs(option: string, value: unknown, range: DurationRange = {}): number {
  const min = range.allowZero ? 0 : 1;
  const max = range.max ?? MAX_TIMER_MS;
  const whole = range.allowFraction || Number.isInteger(value);
  if (typeof value !== "number" || !Number.isFinite(value) || !whole || value < min || value > max) {
    const kind = range.allowFraction ? "a number" : "a whole number";
    return fail(option, `${kind} of milliseconds from ${min} to ${max}`, range);
  }
  return value;
}

/** Bounds of {@link assertNumber}. */
export interface NumberRange extends AssertionOptions {
  /** The smallest value accepted (or, with `minExclusive`, the bound it must exceed). */
  readonly min: number;
  /** Refuse `min` itself: "a positive number" is `{ min: 0, minExclusive: true }`. Default false. */
  readonly minExclusive?: boolean;
  /** The largest value accepted. Default `Number.MAX_SAFE_INTEGER`. */
  readonly max?: number;
}

/** A finite number within `range`, fractions allowed. */
export function assertNumber(option: string, value: unknown, range: NumberRange): number {
  const max = range.max ?? Number.MAX_SAFE_INTEGER;
  const low = range.minExclusive ? (value as number) <= range.min : (value as number) < range.min;
  if (typeof value !== "number" || !Number.isFinite(value) || low || value > max) {
    const expected = range.minExclusive ? `a number greater than ${range.min}, at most ${max}` : `a number from ${range.min} to ${max}`;
    return fail(option, expected, range);
  }
  return value;
}

/**
 * An OAuth2 `scope-token`: one or more characters from `!`, `#`–`[` and
 * `]`–`~`, i.e. visible ASCII without space, `"` and `\`.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-3.3
 */
export const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;

/**
 * Whether `value` is one OAuth2 scope token (RFC 6749 §3.3).
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-3.3
 */
export function isScopeToken(value: unknown): value is string {
  return typeof value === "string" && SCOPE_TOKEN.test(value);
}

/**
 * One OAuth2 scope token (RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`).
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-3.3
 */
export function assertScopeToken(option: string, value: unknown, options?: AssertionOptions): string {
  if (!isScopeToken(value)) return fail(option, "an OAuth2 scope: visible ASCII without spaces, quotes or backslashes", options);
  return value;
}

/**
 * A function (of the type the caller says).
 *
 * @typeParam F the function type the option is declared with; only its being a function is checked.
 */
export function assertFunction<F extends (...args: never[]) => unknown>(option: string, value: unknown, options?: AssertionOptions): F {
  if (typeof value !== "function") return fail(option, "a function", options);
  return value as F;
}

/** `true` or `false`. */
export function assertBoolean(option: string, value: unknown, options?: AssertionOptions): boolean {
  if (typeof value !== "boolean") return fail(option, "true or false", options);
  return value;
}

/** One of `choices` (compared with `===`). */
export function assertOneOf<const T extends string>(option: string, value: unknown, choices: readonly T[], options?: AssertionOptions): T {
  if (!choices.includes(value as T)) return fail(option, `one of ${choices.map((c) => JSON.stringify(c)).join(", ")}`, options);
  return value as T;
}

/** Rules of {@link assertNonEmptyString}. */
export interface StringRules extends AssertionOptions {
  /** The fewest characters accepted (a secret's minimum strength). Default 1. */
  readonly minLength?: number;
}

/**
 * A string of at least `minLength` characters (default 1). Safe for secrets:
 * the error says how long it must be, never what it was or how long it is.
 */
export function assertNonEmptyString(option: string, value: unknown, rules: StringRules = {}): string {
  const minLength = rules.minLength ?? 1;
  if (typeof value !== "string" || value.length < minLength) {
    return fail(option, minLength > 1 ? `a string of at least ${minLength} characters` : "a non-empty string", rules);
  }
  return value;
}
