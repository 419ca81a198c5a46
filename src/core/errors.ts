/**
 * Every error class connect-gateway (the library and the gateway) throws that
 * is not a Connect error, in one module. Each carries a stable `code` a
 * program can switch on; messages may be reworded, codes do not change.
 *
 * Configuration errors — a bad option, found before any I/O (all are
 * {@link ConfigurationError}s, so one `instanceof` catches them all):
 *
 * | code | class | thrown for |
 * |---|---|---|
 * | `ERR_CONFIGURATION` | {@link ConfigurationError} | any bad option or argument (the family) |
 * | `ERR_MISSING_HMAC_SECRET` | {@link MissingHmacSecretError} | no HMAC secret for `createGatewayAuth` |
 * | `ERR_INVALID_RESOLVE_USER` | {@link InvalidResolveUserError} | `resolveUser` is not a function |
 * | `ERR_INVALID_ON_MISSING_USER` | {@link InvalidOnMissingUserError} | `onMissingUser` is not a function |
 * | `ERR_INVALID_OPTION` | {@link InvalidOptionError} | any other option with a wrong type or value |
 * | `ERR_GATEWAY_CONFIG` | {@link GatewayConfigError} | a configuration `createGateway` cannot run with |
 * | `ERR_ROUTES_FILE` | {@link RoutesFileError} | a routes file that cannot be used |
 *
 * Runtime errors — not Connect errors either, but no configuration problem:
 *
 * | code | class | thrown for |
 * |---|---|---|
 * | `ERR_GATEWAY_SIGNING` | {@link GatewaySigningError} | values that cannot be signed unambiguously |
 * | `ERR_REPLAY_STORE_FULL` | {@link ReplayStoreFullError} | the in-memory replay store is full |
 * | `ERR_RESPONSE_TOO_LARGE` | {@link ResponseTooLargeError} | an answer larger than the read limit |
 * | `ERR_HTTP2_STREAM_RESET_BY_PEER` | {@link Http2StreamResetError} | an HTTP/2 stream reset by the peer |
 *
 * The Connect errors of the client (`GatewayError`, `AuthenticationError`,
 * `ConnectionError`, …) carry a Connect `code` number instead, and live in
 * `connect-gateway/client`.
 */
export type ConnectGatewayErrorCode = ConfigurationErrorCode | RuntimeErrorCode;

/** The `code` of a {@link ConfigurationError}. */
export type ConfigurationErrorCode =
  | "ERR_CONFIGURATION"
  | "ERR_MISSING_HMAC_SECRET"
  | "ERR_INVALID_RESOLVE_USER"
  | "ERR_INVALID_ON_MISSING_USER"
  | "ERR_INVALID_OPTION"
  | "ERR_GATEWAY_CONFIG"
  | "ERR_ROUTES_FILE";

/** The `code` of a runtime error that is not a Connect error. */
export type RuntimeErrorCode =
  | "ERR_GATEWAY_SIGNING"
  | "ERR_REPLAY_STORE_FULL"
  | "ERR_RESPONSE_TOO_LARGE"
  | "ERR_HTTP2_STREAM_RESET_BY_PEER";

/**
 * A bad option or argument, detected before any I/O: at construction for
 * `createGatewayTransport` / `createGatewayClient`, when the scope or call
 * option is created for `withService`, `withUserToken` and `gatewayCall`.
 * A plain `Error` (not a `ConnectError`): it is a programming error, not a
 * call outcome. Messages name the option and never contain a secret or token.
 */
export class ConfigurationError extends Error {
  /** Always `"ConfigurationError"`: what a log line or `String(err)` shows. */
  override name = "ConfigurationError";
  /** Stable, for a program to switch on: `ERR_CONFIGURATION`, or the subclass's own. */
  readonly code: ConfigurationErrorCode = "ERR_CONFIGURATION";
  /** The option or argument at fault, e.g. `gatewayUrl`. */
  readonly option: string;

  /**
   * @param option the option at fault, named in the message
   * @param problem what is wrong with it, e.g. `must be a positive integer.`
   * @param options `message` replaces the whole message (a subclass with its own format)
   */
  constructor(option: string, problem: string, options?: ErrorOptions & { readonly message?: string }) {
    super(options?.message ?? `connect-gateway: \`${option}\` ${problem}`, options);
    this.option = option;
  }
}

const MISSING_HMAC_SECRET =
  "is missing: pass createGatewayAuth a non-empty string (or a non-empty list of them for rotation), " +
  "or set GATEWAY_HMAC_SECRET to the secret the gateway signs with.";

/** No HMAC secret: neither `hmacSecret` nor `GATEWAY_HMAC_SECRET` is set (or one is empty). */
export class MissingHmacSecretError extends ConfigurationError {
  /** Always `"MissingHmacSecretError"`: what a log line or `String(err)` shows. */
  override name = "MissingHmacSecretError";
  override readonly code = "ERR_MISSING_HMAC_SECRET";
  constructor() {
    super("hmacSecret", MISSING_HMAC_SECRET);
  }
}

/** `resolveUser` is neither a function nor undefined. */
export class InvalidResolveUserError extends ConfigurationError {
  /** Always `"InvalidResolveUserError"`: what a log line or `String(err)` shows. */
  override name = "InvalidResolveUserError";
  override readonly code = "ERR_INVALID_RESOLVE_USER";
  constructor() {
    super("resolveUser", "must be a function (identity) => user, or undefined.");
  }
}

/** `onMissingUser` is neither a function nor undefined. */
export class InvalidOnMissingUserError extends ConfigurationError {
  /** Always `"InvalidOnMissingUserError"`: what a log line or `String(err)` shows. */
  override name = "InvalidOnMissingUserError";
  override readonly code = "ERR_INVALID_ON_MISSING_USER";
  constructor() {
    super("onMissingUser", "must be a function ({ subject, email, firstName, lastName, scopes, clientId }) => user, or undefined.");
  }
}

/** Any other option with a wrong type or value (`maxSkewSeconds`, `maxBodyBytes`, …). */
export class InvalidOptionError extends ConfigurationError {
  /** Always `"InvalidOptionError"`: what a log line or `String(err)` shows. */
  override name = "InvalidOptionError";
  override readonly code = "ERR_INVALID_OPTION";
  /**
   * @param option the option at fault
   * @param expected what it must be, e.g. `a positive integer`: the message reads "`option` must be <expected>."
   */
  constructor(option: string, expected: string) {
    super(option, `must be ${expected}.`);
  }
}

/**
 * Thrown by `createGateway` (and the CLI) for a configuration it cannot run
 * with; names the option, never its value. A `ConfigurationError`, like every
 * configuration error of the package.
 */
export class GatewayConfigError extends ConfigurationError {
  /** Always `"GatewayConfigError"`: what a log line or `String(err)` shows. */
  override name = "GatewayConfigError";
  override readonly code = "ERR_GATEWAY_CONFIG";
}

/** One problem found in a routes file. */
export interface RoutesFileProblem {
  /** The 1-based line the problem is on; 0 for the file as a whole. */
  readonly line: number;
  /** What is wrong and, where it helps, what to write instead. */
  readonly message: string;
}

/**
 * A routes file that cannot be used. The message lists every problem as
 * `file:line: problem`, so the gateway refuses to start and says what to fix.
 * A `ConfigurationError` whose `option` is `routes`.
 */
export class RoutesFileError extends ConfigurationError {
  /** Always `"RoutesFileError"`: what a log line or `String(err)` shows. */
  override name = "RoutesFileError";
  override readonly code = "ERR_ROUTES_FILE";
  constructor(
    /** The file name (or label) of the routes file. */
    readonly source: string,
    /** Every problem found, with its line (0: the file as a whole). */
    readonly problems: readonly RoutesFileProblem[],
  ) {
    super("routes", "is not a usable routes file.", {
      // In the file's order (line 0, the file as a whole, first and without a line number).
      message: [...problems]
        .sort((a, b) => a.line - b.line)
        .map((p) => `${p.line === 0 ? source : `${source}:${p.line}`}: ${p.message}`)
        .join("\n"),
    });
  }
}

/**
 * Thrown when values cannot be signed unambiguously: a `|`, CR, LF or NUL in
 * an id, a timestamp that is not all digits, a body hash that is not
 * lower-case hex. The gateway refuses to sign such a request rather than send
 * a string that a verifier could split differently.
 */
export class GatewaySigningError extends Error {
  /** Always `"GatewaySigningError"`: what a log line or `String(err)` shows. */
  override name = "GatewaySigningError";
  /** Stable, for a program to switch on. */
  readonly code = "ERR_GATEWAY_SIGNING";
}

/** Thrown by the memory replay store when it holds `maxEntries` ids that have not expired. */
export class ReplayStoreFullError extends Error {
  /** Always `"ReplayStoreFullError"`: what a log line or `String(err)` shows. */
  override name = "ReplayStoreFullError";
  /** Stable, for a program to switch on. */
  readonly code = "ERR_REPLAY_STORE_FULL";
  constructor(maxEntries: number) {
    super(`the replay store holds ${maxEntries} unexpired request ids (maxEntries)`);
  }
}

/**
 * An answer larger than the read limit (`readMaxBytes`): the request was
 * destroyed as soon as that was known (from `content-length`, or once the
 * bytes read passed the limit), so the rest was never read.
 */
export class ResponseTooLargeError extends Error {
  /** Stable, for a program to switch on. */
  readonly code = "ERR_RESPONSE_TOO_LARGE";
  constructor(
    /** The limit that was exceeded, in bytes (`readMaxBytes`). */
    readonly limit: number,
    /** The HTTP status of the answer that was cut short. */
    readonly status: number,
    /** The answer's headers, as received. */
    // node:http's IncomingHttpHeaders, structurally: this module is also part of the browser-safe entry.
    readonly headers: Readonly<Record<string, string | string[] | undefined>>,
  ) {
    super(`the answer is larger than ${limit} bytes`);
    this.name = "ResponseTooLargeError";
  }
}

/** The RST_STREAM error codes by number (RFC 9113 §7). */
const RST_CODE_NAMES: Readonly<Record<number, string>> = {
  0x1: "PROTOCOL_ERROR",
  0x2: "INTERNAL_ERROR",
  0x3: "FLOW_CONTROL_ERROR",
  0x5: "STREAM_CLOSED",
  0x6: "FRAME_SIZE_ERROR",
  0x7: "REFUSED_STREAM",
  0x8: "CANCEL",
  0xb: "ENHANCE_YOUR_CALM",
};

/** RST_STREAM REFUSED_STREAM: the peer did not process the stream at all (RFC 9113 §8.7). */
export const RST_REFUSED_STREAM = 0x7;

/**
 * The server (or a proxy on the way) reset the call's HTTP/2 stream — the
 * HTTP/2 counterpart of an HTTP/1.1 connection reset (ECONNRESET), e.g. a
 * gateway relaying an upstream reset, or a server shutting down refusing a
 * stream it had not started (`REFUSED_STREAM`: the call never ran).
 * connect-node maps these to `Internal` / `Canceled`; the client reports them
 * as a `ConnectionError` (`Unavailable`) instead.
 */
export class Http2StreamResetError extends Error {
  /** Stable, for a program to switch on (Node.js style, like Node's own HTTP/2 errors). */
  readonly code = "ERR_HTTP2_STREAM_RESET_BY_PEER";
  constructor(
    /** The RST_STREAM error code the peer sent (RFC 9113 §7), e.g. 0x2 INTERNAL_ERROR, 0x7 REFUSED_STREAM, 0x8 CANCEL. */
    readonly rstCode: number,
  ) {
    super(`the HTTP/2 stream was reset by the peer (RST_STREAM ${RST_CODE_NAMES[rstCode] ?? `0x${rstCode.toString(16)}`})`);
    this.name = "Http2StreamResetError";
  }
}
