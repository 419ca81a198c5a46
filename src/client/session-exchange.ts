import { sendHttpRequest } from "./http-request.js";
import { unreachable } from "./token-request.js";
import { parseTokenResponse, type IssuedToken } from "./token-response.js";
import type { Agent } from "node:http";

/** Where and how a session code is exchanged for a session token. */
export interface SessionExchange {
  /** `<appcenterUrl><exchangePath>`. */
  readonly url: URL;
  readonly code: string;
  readonly agent?: Agent | undefined;
  readonly timeoutMs: number;
}

/**
 * Step 2 of session mode: `POST { "code": … }` as JSON to the exchange
 * endpoint, authenticated with the client_credentials token, and returns the
 * session token it answers with (same strict checks as a token response,
 * except that `token_type` may be omitted). Failures are `AuthenticationError`s.
 */
export async function exchangeSessionCode(exchange: SessionExchange, clientToken: string): Promise<IssuedToken> {
  const source = `the session exchange endpoint ${exchange.url.origin}${exchange.url.pathname}`;
  let response;
  try {
    response = await sendHttpRequest({
      method: "POST",
      origin: exchange.url,
      path: `${exchange.url.pathname}${exchange.url.search}`,
      headers: {
        authorization: `Bearer ${clientToken}`,
        "content-type": "application/json",
        accept: "application/json",
      },
      body: JSON.stringify({ code: exchange.code }),
      agent: exchange.agent,
      timeoutMs: exchange.timeoutMs,
      maxResponseBytes: 256 * 1024,
    });
  } catch (reason) {
    throw unreachable(source, reason);
  }
  return parseTokenResponse(response, { source, redact: [clientToken, exchange.code], tokenTypeRequired: false });
}
