/**
 * The six values signature v1 covers, as they travel on the wire:
 * `METHOD|timestamp|client_id|user_id|fullpath|body_sha256`.
 */
export interface SigningParts {
  /** HTTP method; signed upper-case. */
  readonly method: string;
  /** Unix seconds, the `X-Gateway-Timestamp` value, all digits. */
  readonly timestamp: string;
  /** The `X-Client-Id` value. */
  readonly clientId: string;
  /** The `X-User-Id` value; empty or absent on service calls. */
  readonly userId?: string | undefined;
  /** The request-target as sent, see {@link fullpathOf}. */
  readonly fullpath: string;
  /** Lower-case hex SHA-256 of the raw body, see {@link bodySha256}. */
  readonly bodySha256: string;
}
