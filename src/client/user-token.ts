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

/**
 * A call's `userToken` option, checked: the token, or `undefined` when the
 * option is left out (the call then goes with the service token). Given
 * but `undefined` — the usual shape of forwarding an incoming request's
 * token that was not there (`{ userToken: bearerOf(req) }`) — is refused:
 * the call would otherwise go out silently as the service, with the
 * service's rights, on behalf of a caller who proved nothing.
 */
export function userTokenOption(options: { readonly userToken?: unknown }): string | undefined {
  if (!("userToken" in options)) return undefined;
  if (options.userToken === undefined) {
    throw new ConfigurationError(
      "userToken",
      "is undefined: pass the end user's access token, or leave the option out to call with the service token " +
        "(an absent user token never falls back to the service's identity unnoticed).",
    );
  }
  return checkUserToken(options.userToken);
}
