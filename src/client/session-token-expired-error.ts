import { Code } from "@connectrpc/connect";
import { GatewayError } from "./gateway-error.js";

/**
 * Session mode: the session token obtained by exchanging the one-time code
 * has expired (or the gateway refused it). The code cannot be exchanged
 * again; obtain a new code and create a new transport or client with it.
 * Code `Unauthenticated`.
 */
export class SessionTokenExpiredError extends GatewayError {
  constructor() {
    super(
      "the session token has expired; its one-time code cannot be exchanged again — " +
        "obtain a new code and create a new transport or client with it",
      Code.Unauthenticated,
    );
  }
}
