/**
 * The `Authorization` header value of OAuth2 `client_secret_basic`: how a
 * confidential client authenticates to an authorization server's token
 * endpoint (the client's token requests) or introspection endpoint (the
 * gateway's). Per RFC 6749 §2.3.1, client id and secret are each
 * form-encoded (Appendix B: application/x-www-form-urlencoded, space → `+`)
 * before they are joined with `:` and base64-encoded, so a `:` or `%` in the
 * secret survives.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1
 */
export function basicAuthorization(clientId: string, clientSecret: string): string {
  return `Basic ${Buffer.from(`${formEncode(clientId)}:${formEncode(clientSecret)}`).toString("base64")}`;
}

// The application/x-www-form-urlencoded encoding of one value (WHATWG URL
// serializer): unlike encodeURIComponent, it also escapes ! ' ( ) ~.
function formEncode(value: string): string {
  return new URLSearchParams([["", value]]).toString().slice(1);
}
