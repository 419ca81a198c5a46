import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Base class of every error the gateway client raises on the call path.
 *
 * It is a `ConnectError`, so Connect code keeps working (`err.code`,
 * `err instanceof ConnectError`, `ConnectError.from(err) === err`). Two
 * details make that hold for subclasses:
 *
 * - `name` stays `"ConnectError"`: `ConnectError[Symbol.hasInstance]`
 *   recognises a ConnectError that is not a direct instance by that name
 *   (plus its fields). Without it, `ConnectError.from()` — which Connect
 *   applies to everything thrown inside a transport — would re-wrap the error
 *   with code `Unknown`. Tell the classes apart with `instanceof`.
 * - `Symbol.hasInstance` is overridden: the one inherited from ConnectError
 *   would make every ConnectError an instance of every subclass. Here
 *   `instanceof` follows the prototype chain exactly, both ways.
 */
export class GatewayError extends ConnectError {
  /** Exact `instanceof`: a plain `ConnectError` is not a `GatewayError`, nor an `AuthenticationError` a `ConnectionError`. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(this, value);
  }

  constructor(message: string, code: Code = Code.Unknown, options?: { cause?: unknown; metadata?: ConstructorParameters<typeof Headers>[0] }) {
    super(message, code, options?.metadata, undefined, options?.cause);
  }
}
