import { createHash } from "node:crypto";

/** Lower-case hex SHA-256 of an empty body: the `body_sha256` of GET, DELETE, … */
export const EMPTY_BODY_SHA256 =
  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** Lower-case hex SHA-256 of the raw body bytes, as the gateway signs them. */
export function bodySha256(body: Uint8Array | string): string {
  return createHash("sha256").update(body).digest("hex");
}
