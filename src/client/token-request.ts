import type { Agent } from "node:http";
import { basicAuthorization } from "../core/client-secret-basic.js";
import { AuthenticationError } from "./authentication-error.js";
import { sendHttpRequest, type HttpResponse } from "./http-request.js";
import { parseTokenResponse, type IssuedToken } from "./token-response.js";

/** The OAuth2 token endpoint and the client's credentials. */
export interface TokenEndpoint {
  /** `<appcenterUrl><tokenPath>`. */
  readonly url: URL;
  readonly clientId: string;
  readonly clientSecret: string;
  /** Space-separated scopes to ask for, if any. */
  readonly scope?: string | undefined;
  readonly agent?: Agent | undefined;
  readonly timeoutMs: number;
}

/** A grant to request: client_credentials, or refresh_token with the token to use. */
export type TokenGrant = { readonly type: "client_credentials" } | { readonly type: "refresh_token"; readonly refreshToken: string };

/**
 * Requests a token (RFC 6749 §4.4 client_credentials, or §6 refresh_token)
 * with `client_secret_basic` authentication, and checks the answer with
 * {@link parseTokenResponse}. Every failure — unreachable, timeout, HTTP
 * error, garbage — is an {@link AuthenticationError}; none carries the secret.
 */
export async function requestToken(endpoint: TokenEndpoint, grant: TokenGrant): Promise<IssuedToken> {
  const source = `the token endpoint ${endpoint.url.origin}${endpoint.url.pathname}`;
  const response = await post(endpoint, source, grantBody(endpoint, grant));
  return parseTokenResponse(response, { source, redact: [endpoint.clientSecret], tokenTypeRequired: true });
}

function grantBody(endpoint: TokenEndpoint, grant: TokenGrant): string {
  const body = new URLSearchParams({ grant_type: grant.type });
  if (grant.type === "refresh_token") body.set("refresh_token", grant.refreshToken);
  if (endpoint.scope !== undefined) body.set("scope", endpoint.scope);
  return body.toString();
}

async function post(endpoint: TokenEndpoint, source: string, body: string): Promise<HttpResponse> {
  try {
    return await sendHttpRequest({
      method: "POST",
      origin: endpoint.url,
      path: `${endpoint.url.pathname}${endpoint.url.search}`,
      headers: {
        authorization: basicAuthorization(endpoint.clientId, endpoint.clientSecret),
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
      : `could not be reached (${nodeCode(reason) ?? (reason instanceof Error ? reason.message : String(reason))})`;
  return new AuthenticationError(`${source} ${what}`, {}, { cause: reason });
}

function nodeCode(reason: unknown): string | undefined {
  const code = (reason as { code?: unknown } | undefined)?.code;
  return typeof code === "string" ? code : undefined;
}
