import { gatewayHeader, gatewaySignatureHeaders, type IdentityHeaderValues } from "../../src/signing/index.js";

/** The end user most tests sign for, through the `web-app` application; add scopes and the rest. */
export const ADA = {
  clientId: "web-app",
  userId: "sub-42",
  email: "ada@example.com",
  firstName: "Ada",
  lastName: "Lovelace",
} as const satisfies IdentityHeaderValues;

const DEFAULT_IDENTITY: IdentityHeaderValues = { clientId: ADA.clientId, userId: ADA.userId, email: ADA.email, scopes: ["read"] };

/**
 * The headers a v1-only gateway (the Ruby one) adds to a request, as raw
 * pairs for `rawRequest`: the identity headers, the timestamp and
 * `X-Gateway-Signature`, no v2 signature.
 */
export function signedHeaders(
  secret: string,
  request: { method: string; path: string; body?: Uint8Array },
  identity: IdentityHeaderValues = DEFAULT_IDENTITY,
  nowSeconds = Date.now() / 1000,
): [string, string][] {
  const headers = gatewaySignatureHeaders(
    secret,
    { method: request.method, requestTarget: request.path, body: request.body ?? new Uint8Array(0) },
    identity,
    nowSeconds,
  );
  delete headers[gatewayHeader.signatureV2];
  delete headers[gatewayHeader.requestId];
  return Object.entries(headers);
}

/**
 * The headers this project's gateway adds (v1 and v2), as raw pairs, with
 * the content headers the request is sent with (they are signed by v2).
 */
export function signedHeadersV2(
  secret: string,
  request: {
    method: string;
    path: string;
    body?: Uint8Array;
    contentType?: string;
    contentEncoding?: string;
    requestId?: string;
  },
  identity: IdentityHeaderValues = DEFAULT_IDENTITY,
  nowSeconds = Date.now() / 1000,
): [string, string][] {
  const headers = gatewaySignatureHeaders(
    secret,
    {
      method: request.method,
      requestTarget: request.path,
      body: request.body ?? new Uint8Array(0),
      contentType: request.contentType,
      contentEncoding: request.contentEncoding,
    },
    identity,
    { nowSeconds, ...(request.requestId !== undefined && { requestId: request.requestId }) },
  );
  const pairs: [string, string][] = Object.entries(headers);
  if (request.contentType !== undefined) pairs.push(["content-type", request.contentType]);
  if (request.contentEncoding !== undefined) pairs.push(["content-encoding", request.contentEncoding]);
  return pairs;
}
