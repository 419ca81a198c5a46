/**
 * Why a verifier refused a request. The first three are the Ruby gem's codes;
 * `malformed_gateway_headers` covers the hardening beyond it (repeated
 * headers, a non-digit timestamp, `|`/CR/LF/NUL inside an id), which an
 * honest gateway never sends.
 */
export type GatewayRejectionReason =
  | "missing_gateway_headers"
  | "malformed_gateway_headers"
  | "timestamp_out_of_window"
  | "invalid_signature";
