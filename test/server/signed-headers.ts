import { gatewaySignatureHeaders, type IdentityHeaderValues } from "../../src/signing/index.js";

/** The gateway's headers for a request, as raw pairs for `rawRequest`. */
export function signedHeaders(
  secret: string,
  request: { method: string; path: string; body?: Uint8Array },
  identity: IdentityHeaderValues = { clientId: "web-app", userId: "sub-42", email: "ada@example.com", scopes: ["read"] },
  nowSeconds = Date.now() / 1000,
): [string, string][] {
  const headers = gatewaySignatureHeaders(
    secret,
    { method: request.method, requestTarget: request.path, body: request.body ?? new Uint8Array(0) },
    identity,
    nowSeconds,
  );
  return Object.entries(headers);
}
