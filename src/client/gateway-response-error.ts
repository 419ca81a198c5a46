import { Code } from "@connectrpc/connect";
import { codeFromHttpStatus } from "@connectrpc/connect/protocol-connect";
import { GatewayError } from "./gateway-error.js";

/**
 * REST client: the gateway or the backend answered with an HTTP error status
 * (or with a 2xx body that is not JSON). The code follows the status the
 * Connect way (`401` → `Unauthenticated`, `403` → `PermissionDenied`,
 * `404` → `Unimplemented`, `429`/`502`/`503`/`504` → `Unavailable`, …);
 * `status` and the parsed `body` say exactly what came back. An answer
 * larger than `readMaxBytes` is one too, with code `ResourceExhausted` and
 * `body` `undefined` (it was not read).
 */
export class GatewayResponseError extends GatewayError {
  /** The HTTP status of the answer. */
  readonly status: number;
  /** The answer's body: parsed JSON when it was JSON, else the text. */
  readonly body: unknown;

  constructor(message: string, status: number, body: unknown, headers: Headers, options?: { code?: Code; cause?: unknown }) {
    super(message, options?.code ?? (status >= 200 && status <= 299 ? Code.Internal : codeFromHttpStatus(status)), {
      metadata: headers,
      cause: options?.cause,
    });
    this.status = status;
    this.body = body;
  }
}
