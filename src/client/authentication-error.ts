import { Code } from "@connectrpc/connect";
import { GatewayError } from "./gateway-error.js";

/** What the token endpoint said, when it said something (RFC 6749 §5.2). */
export interface OAuth2ErrorDetails {
  /** HTTP status of the token endpoint's answer, when there was one. */
  readonly status?: number;
  /** The OAuth2 `error` code, e.g. `invalid_client`. */
  readonly oauthError?: string;
  /** The OAuth2 `error_description`, when the server sent one. */
  readonly oauthErrorDescription?: string;
  /** How long the token endpoint asked to wait (its `Retry-After`), in ms. */
  readonly retryAfterMs?: number;
}

/**
 * The service token could not be obtained: the token endpoint was
 * unreachable, refused the credentials, failed, or answered something that is
 * not a valid token response. Code `Unauthenticated`. Retrying the same call
 * will not help until the cause (credentials, OAuth2 server) is fixed; the
 * next call does try the token endpoint again — unless it answered 429 or
 * 503: then calls fail at once, without asking it, for as long as its
 * `Retry-After` said (at most 5 minutes), else for a pause that doubles
 * from 1 s to 30 s with each such answer in a row.
 */
export class AuthenticationError extends GatewayError {
  /** HTTP status of the token endpoint's answer, if it answered. */
  readonly status: number | undefined;
  /** The OAuth2 `error` code, if the token endpoint sent one. */
  readonly oauthError: string | undefined;
  /** The OAuth2 `error_description`, if the token endpoint sent one. */
  readonly oauthErrorDescription: string | undefined;
  /** How long the token endpoint asked to wait (its `Retry-After`), in ms, if it said. */
  readonly retryAfterMs: number | undefined;

  /** @internal Thrown by the transport and the REST client; applications only catch it. */
  constructor(message: string, details: OAuth2ErrorDetails = {}, options?: { cause?: unknown }) {
    super(message, Code.Unauthenticated, options);
    this.status = details.status;
    this.oauthError = details.oauthError;
    this.oauthErrorDescription = details.oauthErrorDescription;
    this.retryAfterMs = details.retryAfterMs;
  }
}
