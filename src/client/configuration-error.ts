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
