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

/**
 * Every spelling in which a client secret leaves the process, for the
 * redaction of server text that may echo a request back: as given, form- and
 * percent-encoded (a `client_secret_post` body), base64 on its own, and the
 * whole base64 credential of `client_secret_basic` (an echoed
 * `Authorization` header). Longest first, so that no shorter spelling is
 * replaced inside a longer one.
 */
export function clientSecretSpellings(clientId: string, clientSecret: string): string[] {
  if (clientSecret === "") return [];
  const spellings = new Set([
    basicAuthorization(clientId, clientSecret).slice("Basic ".length),
    clientSecret,
    formEncode(clientSecret),
    encodeURIComponent(clientSecret),
    Buffer.from(clientSecret).toString("base64"),
    Buffer.from(clientSecret).toString("base64url"),
  ]);
  return [...spellings].sort((a, b) => b.length - a.length);
}
