/**
 * A bad option or argument, detected before any I/O: at construction for
 * `createGatewayTransport` / `createGatewayClient`, when the scope or call
 * option is created for `withService`, `withUserToken` and `gatewayCall`.
 * A plain `Error` (not a `ConnectError`): it is a programming error, not a
 * call outcome. Messages name the option and never contain a secret or token.
 */
export class ConfigurationError extends Error {
  override name = "ConfigurationError";
  /** The option or argument at fault, e.g. `gatewayUrl`. */
  readonly option: string;

  constructor(option: string, problem: string) {
    super(`connect-gateway: \`${option}\` ${problem}`);
    this.option = option;
  }
}

/** No HMAC secret: neither `hmacSecret` nor `GATEWAY_HMAC_SECRET` is set (or one is empty). */
export class MissingHmacSecretError extends ConfigurationError {
  override name = "MissingHmacSecretError";
  constructor() {
    super(
      "hmacSecret",
      "is missing: pass createGatewayAuth a non-empty string (or a non-empty list of them for " +
        "rotation), or set GATEWAY_HMAC_SECRET to the secret the gateway signs with.",
    );
  }
}

/** `resolveUser` is neither a function nor undefined. */
export class InvalidResolveUserError extends ConfigurationError {
  override name = "InvalidResolveUserError";
  constructor() {
    super("resolveUser", "must be a function (identity) => user, or undefined.");
  }
}

/** `onMissingUser` is neither a function nor undefined. */
export class InvalidOnMissingUserError extends ConfigurationError {
  override name = "InvalidOnMissingUserError";
  constructor() {
    super(
      "onMissingUser",
      "must be a function ({ subject, email, firstName, lastName, scopes, clientId }) => user, or undefined.",
    );
  }
}

/** Any other option with a wrong type or value (`maxSkewSeconds`, `maxBodyBytes`, …). */
export class InvalidOptionError extends ConfigurationError {
  override name = "InvalidOptionError";
  constructor(option: string, expected: string) {
    super(option, `must be ${expected}.`);
  }
}
