import { AuthenticationError } from "./authentication-error.js";
import { retryAfterMs } from "../core/retry-after.js";
import type { HttpResponse } from "./http-request.js";

/** A token the OAuth2 server issued, as checked by {@link parseTokenResponse}. */
export interface IssuedToken {
  readonly accessToken: string;
  /** Present only when the server issued one. */
  readonly refreshToken?: string;
  /** The `expires_in` of the answer; `undefined` when the server did not say. */
  readonly expiresInSeconds?: number;
}

/** Where an answer came from, for error messages, and what must not appear in them. */
export interface TokenResponseContext {
  /** E.g. `the token endpoint http://…/oauth/token`. */
  readonly source: string;
  /** Text the server might echo that must never reach an error message (the client secret). */
  readonly redact: readonly string[];
  /** RFC 6749 §5.1 makes `token_type` required; a session exchange may omit it. */
  readonly tokenTypeRequired: boolean;
  /** The option that sets the endpoint's path, named when nothing answers there (a 404 without an OAuth2 error). */
  readonly pathOption?: string;
}

/**
 * Checks an answer from a token endpoint strictly (RFC 6749 §5.1, §5.2):
 * a 2xx JSON object with a non-empty string `access_token`, a `token_type`
 * of `bearer` (any case) and, if present, a positive `expires_in`. Anything
 * else throws an {@link AuthenticationError} that surfaces the OAuth2
 * `error` / `error_description` when the server sent them.
 */
export function parseTokenResponse(response: HttpResponse, context: TokenResponseContext): IssuedToken {
  const json = parseJsonObject(response.body);
  const oauthError = typeof json?.error === "string" ? redact(json.error, context) : undefined;
  if (response.status < 200 || response.status > 299 || oauthError !== undefined) {
    throw errorAnswer(response, json, oauthError, context);
  }
  if (json === undefined) throw garbage(context, response.status, "a body that is not a JSON object");
  const { access_token, token_type, expires_in, refresh_token } = json;
  if (typeof access_token !== "string" || access_token === "") {
    throw garbage(context, response.status, 'no "access_token" (a non-empty string is required)');
  }
  // It travels in an Authorization header: a CR, LF, NUL or non-ASCII
  // character would fail every call for the token's lifetime, cached.
  if (!ACCESS_TOKEN.test(access_token)) {
    throw garbage(context, response.status, 'an "access_token" that cannot travel in a header (visible ASCII characters only)');
  }
  // So would one longer than servers accept in a header (431), and a store refuses it.
  if (access_token.length > MAX_ACCESS_TOKEN_LENGTH) {
    throw garbage(context, response.status, `an "access_token" of ${access_token.length} characters (at most ${MAX_ACCESS_TOKEN_LENGTH})`);
  }
  if (token_type === undefined ? context.tokenTypeRequired : typeof token_type !== "string" || token_type.toLowerCase() !== "bearer") {
    throw garbage(context, response.status, `"token_type" ${describe(token_type, context)} where "bearer" is required`);
  }
  if (expires_in !== undefined && !(typeof expires_in === "number" && expires_in > 0 && Number.isFinite(expires_in))) {
    throw garbage(context, response.status, '"expires_in" that is not a positive number of seconds');
  }
  return {
    accessToken: access_token,
    ...(typeof refresh_token === "string" && refresh_token !== "" && { refreshToken: refresh_token }),
    ...(typeof expires_in === "number" && { expiresInSeconds: expires_in }),
  };
}

/** RFC 6750 §2.1's b64token, loosened to every visible ASCII character, as `Bearer <token>` can carry. */
const ACCESS_TOKEN = /^[\x21-\x7e]+$/;

/**
 * The longest access token accepted, from a token endpoint or a store:
 * 16 KiB, the header size many servers refuse past (Node's whole header
 * block is 16 KiB by default), so a longer one would fail every call.
 */
export const MAX_ACCESS_TOKEN_LENGTH = 16 * 1024;

/** Whether `value` can be sent as `Bearer <value>`: visible ASCII, at most {@link MAX_ACCESS_TOKEN_LENGTH}. */
export function isSendableAccessToken(value: string): boolean {
  return value.length > 0 && value.length <= MAX_ACCESS_TOKEN_LENGTH && ACCESS_TOKEN.test(value);
}

function errorAnswer(
  { status, headers }: HttpResponse,
  json: Record<string, unknown> | undefined,
  oauthError: string | undefined,
  context: TokenResponseContext,
): AuthenticationError {
  const retryAfter = retryAfterMs(headers["retry-after"]);
  const description =
    typeof json?.error_description === "string" ? redact(json.error_description, context) : undefined;
  const said =
    oauthError !== undefined
      ? `: ${oauthError}${description === undefined ? "" : ` (${description})`}`
      : status === 404 && context.pathOption !== undefined
        ? ` — nothing answers at that path: check ${context.pathOption}`
        : "";
  return new AuthenticationError(`${context.source} answered HTTP ${status}${said}`, {
    status,
    ...(oauthError !== undefined && { oauthError }),
    ...(description !== undefined && { oauthErrorDescription: description }),
    ...(retryAfter !== undefined && { retryAfterMs: retryAfter }),
  });
}

function garbage(context: TokenResponseContext, status: number, what: string): AuthenticationError {
  return new AuthenticationError(`${context.source} answered HTTP ${status} with ${what}`, { status });
}

function parseJsonObject(body: Buffer): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(body.toString("utf8"));
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

// Server text goes into messages: never let it echo a secret, and bound it.
// Redacted before it is cut, so that no prefix of a secret survives the cut.
function redact(text: string, context: TokenResponseContext): string {
  let out = text;
  for (const secret of context.redact) if (secret !== "") out = out.split(secret).join("[redacted]");
  return out.length > 300 ? `${out.slice(0, 300)}…` : out;
}

function describe(value: unknown, context: TokenResponseContext): string {
  if (value === undefined) return "missing";
  // A string is redacted before JSON escapes it (an escaped `"` would hide a secret from the match).
  const text = typeof value === "string" ? JSON.stringify(redact(value, context)) : redact(JSON.stringify(value) ?? typeof value, context);
  return text.slice(0, 40);
}
