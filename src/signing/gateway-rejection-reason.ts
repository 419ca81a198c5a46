/**
 * Every reason a verifier refuses a request for, as a stable code:
 *
 * - `missing_gateway_headers`, `timestamp_out_of_window`, `invalid_signature`:
 *   the same codes as the Ruby implementation's verifier;
 * - `malformed_gateway_headers`: repeated headers, a non-digit timestamp, a
 *   malformed signature or request id, `|`/CR/LF/NUL inside a v1 id — which
 *   an honest gateway never sends;
 * - `unsigned_identity`: an identity-looking header that the v2 signature
 *   does not cover (`X-User-Admin`, `X_User_Scopes`);
 * - `signature_v2_required`: a v1-only request to a service that requires v2;
 * - `replayed_request`: a v2 request id this service already accepted inside
 *   the window;
 * - `replay_check_unavailable`: the shared replay store did not answer in
 *   time (a 503: the request may be retried, it was not judged).
 */
export const gatewayRejectionReasons = Object.freeze([
  "missing_gateway_headers",
  "malformed_gateway_headers",
  "timestamp_out_of_window",
  "invalid_signature",
  "unsigned_identity",
  "signature_v2_required",
  "replayed_request",
  "replay_check_unavailable",
] as const);

/**
 * Why a verifier refused a request: one of {@link gatewayRejectionReasons}.
 * How a service answers each is in the README's rejection table.
 */
export type GatewayRejectionReason = (typeof gatewayRejectionReasons)[number];
