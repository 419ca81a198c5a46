import { ConfigurationError } from "../core/errors.js";

/**
 * Checks an end-user access token before it is put in an `Authorization`
 * header: a non-empty string of visible ASCII (RFC 6750 `b64token` plus the
 * characters JWTs use). The message never shows the token.
 */
export function checkUserToken(token: unknown, option = "userToken"): string {
  if (typeof token !== "string" || !/^[\x21-\x7e]+$/.test(token)) {
    throw new ConfigurationError(
      option,
      "must be the end user's access token: a non-empty string of visible ASCII characters, without " +
        "the \"Bearer \" prefix.",
    );
  }
  return token;
}
