import type { Agent } from "node:http";
import { basicAuthorization, clientSecretSpellings } from "../core/client-secret-basic.js";
import { traceTokenRequest } from "./call-tracing.js";
import { AuthenticationError } from "./authentication-error.js";
import { signClientAssertion, type ClientAssertionKey } from "./client-assertion.js";
import { ResponseTooLargeError, sendHttpRequest, type HttpResponse } from "./http-request.js";
import { parseTokenResponse, type IssuedToken } from "./token-response.js";

/**
 * How the client authenticates to the token endpoint, with its credential:
 * the resolved form of the `clientAuthentication` option.
 *
 * - `client_secret_basic`: client id and secret in an HTTP Basic
 *   `Authorization` header (RFC 6749 §2.3.1), the default;
 * - `client_secret_post`: `client_id` and `client_secret` in the form body
 *   (RFC 6749 §2.3.1), for servers that accept nothing else;
 * - `private_key_jwt`: `client_id`, and a JWT signed with the client's private
 *   key as `client_assertion` (RFC 7523 §2.2) — no shared secret.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1
 * @see https://www.rfc-editor.org/rfc/rfc7523#section-2.2
 */
export type TokenEndpointAuthentication =
  | { readonly method: "client_secret_basic" | "client_secret_post"; readonly clientSecret: string }
  | { readonly method: "private_key_jwt"; readonly key: ClientAssertionKey };

/** The OAuth2 token endpoint and the client's credentials. */
export interface TokenEndpoint {
  /** `<appcenterUrl><tokenPath>`. */
  readonly url: URL;
  readonly clientId: string;
  /** How the client authenticates, and with what. */
  readonly authentication: TokenEndpointAuthentication;
  /** Space-separated scopes to ask for, if any. */
  readonly scope?: string | undefined;
  readonly agent?: Agent | undefined;
  readonly timeoutMs: number;
}

/** A grant to request: client_credentials, or refresh_token with the token to use. */
export type TokenGrant = { readonly type: "client_credentials" } | { readonly type: "refresh_token"; readonly refreshToken: string };

/**
 * Requests a token (RFC 6749 §4.4 client_credentials, or §6 refresh_token),
 * authenticated as `endpoint.authentication` says, and checks the answer with
 * {@link parseTokenResponse}. Every failure — unreachable, timeout, HTTP
 * error, garbage — is an {@link AuthenticationError}; none carries the
 * secret or the client assertion.
 */
export function requestToken(endpoint: TokenEndpoint, grant: TokenGrant): Promise<IssuedToken> {
  return traceTokenRequest(grant.type, () => requestTokenUntraced(endpoint, grant));
}

async function requestTokenUntraced(endpoint: TokenEndpoint, grant: TokenGrant): Promise<IssuedToken> {
  const source = `the token endpoint ${endpoint.url.origin}${endpoint.url.pathname}`;
  const body = new URLSearchParams({ grant_type: grant.type });
  if (grant.type === "refresh_token") body.set("refresh_token", grant.refreshToken);
  if (endpoint.scope !== undefined) body.set("scope", endpoint.scope);
  const { authorization, redact } = authenticate(endpoint, body);
  const response = await post(endpoint, source, body.toString(), authorization);
  return parseTokenResponse(response, {
    source,
    // A server may quote what it was sent: the refresh token is a credential too.
    redact: grant.type === "refresh_token" ? [...redact, grant.refreshToken] : redact,
    tokenTypeRequired: true,
    pathOption: "tokenPath (default GATEWAY_TOKEN_PATH, else /oauth/token)",
  });
}

/**
 * The one place deciding how the client authenticates to the token
 * endpoint: adds the method's parameters to `body` and returns the
 * `Authorization` header (`client_secret_basic` only) and the credentials an
 * error message must never show. A `private_key_jwt` assertion is signed
 * afresh for every request, with the token endpoint URL as its audience.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1
 * @see https://www.rfc-editor.org/rfc/rfc7523#section-2.2
 */
function authenticate(
  endpoint: TokenEndpoint,
  body: URLSearchParams,
): { readonly authorization: string | undefined; readonly redact: readonly string[] } {
  const auth = endpoint.authentication;
  switch (auth.method) {
    case "client_secret_basic":
      return {
        authorization: basicAuthorization(endpoint.clientId, auth.clientSecret),
        redact: clientSecretSpellings(endpoint.clientId, auth.clientSecret),
      };
    case "client_secret_post":
      body.set("client_id", endpoint.clientId);
      body.set("client_secret", auth.clientSecret);
      return { authorization: undefined, redact: clientSecretSpellings(endpoint.clientId, auth.clientSecret) };
    case "private_key_jwt": {
      const assertion = signClientAssertion(auth.key, {
        clientId: endpoint.clientId,
        audience: `${endpoint.url.origin}${endpoint.url.pathname}`,
      });
      body.set("client_id", endpoint.clientId);
      body.set("client_assertion_type", CLIENT_ASSERTION_TYPE);
      body.set("client_assertion", assertion);
      return { authorization: undefined, redact: [assertion] };
    }
  }
}

/**
 * The `client_assertion_type` of a JWT client assertion.
 *
 * @see https://www.rfc-editor.org/rfc/rfc7523#section-2.2
 */
export const CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

async function post(endpoint: TokenEndpoint, source: string, body: string, authorization: string | undefined): Promise<HttpResponse> {
  try {
    return await sendHttpRequest({
      method: "POST",
      origin: endpoint.url,
      path: `${endpoint.url.pathname}${endpoint.url.search}`,
      headers: {
        ...(authorization !== undefined && { authorization }),
        "content-type": "application/x-www-form-urlencoded",
        accept: "application/json",
      },
      body,
      agent: endpoint.agent,
      timeoutMs: endpoint.timeoutMs,
      maxResponseBytes: 256 * 1024,
    });
  } catch (reason) {
    throw unreachable(source, reason);
  }
}

/**
 * The token endpoint (or the session exchange endpoint) could not be asked:
 * an {@link AuthenticationError} whose cause is the network error.
 */
export function unreachable(source: string, reason: unknown): AuthenticationError {
  const what =
    reason instanceof Error && reason.name === "TimeoutError"
      ? `did not answer in time (${reason.message})`
      : reason instanceof Error && reason.name === "ResponseCutShortError"
        ? `answered, but ${reason.message}`
        : reason instanceof ResponseTooLargeError
          ? `answered, but ${reason.message}`
          : `could not be reached (${nodeCode(reason) ?? (reason instanceof Error ? reason.message : String(reason))})`;
  return new AuthenticationError(`${source} ${what}`, {}, { cause: reason });
}

function nodeCode(reason: unknown): string | undefined {
  const code = (reason as { code?: unknown } | undefined)?.code;
  return typeof code === "string" ? code : undefined;
}
