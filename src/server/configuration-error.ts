import { ConfigurationError } from "../client/index.js";

// One ConfigurationError for the whole package (client, server, gateway), so
// `err instanceof ConfigurationError` holds whichever entry threw it.
export { ConfigurationError };

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
