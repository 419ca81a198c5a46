/**
 * A bad `createGatewayAuth` option. Thrown synchronously at construction,
 * never on the request path, so a misconfigured service fails at start-up
 * instead of rejecting traffic. Messages name the option and never contain
 * the HMAC secret.
 */
export class ConfigurationError extends Error {
  override name = "ConfigurationError";
}

/** No HMAC secret: neither `hmacSecret` nor `GATEWAY_HMAC_SECRET` is set (or one is empty). */
export class MissingHmacSecretError extends ConfigurationError {
  override name = "MissingHmacSecretError";
  constructor() {
    super(
      "createGatewayAuth: no HMAC secret. Pass `hmacSecret` (a non-empty string, or a non-empty " +
        "list of them for rotation) or set GATEWAY_HMAC_SECRET to the secret the gateway signs with.",
    );
  }
}

/** `resolveUser` is neither a function nor undefined. */
export class InvalidResolveUserError extends ConfigurationError {
  override name = "InvalidResolveUserError";
  constructor() {
    super("createGatewayAuth: `resolveUser` must be a function (identity) => user, or undefined.");
  }
}

/** `onMissingUser` is neither a function nor undefined. */
export class InvalidOnMissingUserError extends ConfigurationError {
  override name = "InvalidOnMissingUserError";
  constructor() {
    super(
      "createGatewayAuth: `onMissingUser` must be a function " +
        "({ subject, email, firstName, lastName, scopes, clientId }) => user, or undefined.",
    );
  }
}

/** Any other option with a wrong type or value (`maxSkewSeconds`, `maxBodyBytes`, …). */
export class InvalidOptionError extends ConfigurationError {
  override name = "InvalidOptionError";
  /** The option at fault. */
  readonly option: string;
  constructor(option: string, expected: string) {
    super(`createGatewayAuth: \`${option}\` must be ${expected}.`);
    this.option = option;
  }
}
