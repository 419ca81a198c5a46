import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { ConfigurationError } from "../core/errors.js";
import { gatewayCallKey } from "../client/gateway-call-options.js";
import { userTokenOption } from "../client/user-token.js";

/** What a {@link TokenSource} is asked for. */
export interface TokenRequest {
  /**
   * Set when the gateway (or the service) answered `401 Unauthenticated` to
   * this token and `refreshOnUnauthenticated` is on: return a *fresh* token
   * (refresh it, or log in again), not this one.
   */
  readonly rejected?: string;
}

/**
 * Where {@link createBearerTokenInterceptor} gets the access token of a call:
 * the token itself, without the `Bearer ` prefix, or a promise of it. Called
 * once per call — cache in the source if fetching is costly. A plain
 * `() => string` is a token source.
 */
export type TokenSource = (request: TokenRequest) => string | Promise<string>;

/** Options of {@link createBearerTokenInterceptor}. */
export interface BearerTokenOptions {
  /**
   * On a `401 Unauthenticated` answer to a unary call, ask the source once
   * more — with `{ rejected: token }` — and send the call again with the new
   * token. Never more than one retry; streaming calls are not retried (their
   * request cannot be sent twice). Default `false`: the error goes to the caller.
   */
  readonly refreshOnUnauthenticated?: boolean;
}

/**
 * A Connect interceptor that sends every call with
 * `Authorization: Bearer <token>`, the token taken from `source` for each
 * call. A call made with `gatewayCall({ userToken })` sends that token
 * instead and never asks the source.
 *
 * A source that throws, or returns something that is not a token (a
 * non-empty string of visible ASCII), fails the call with a `ConnectError`
 * `Unauthenticated` before anything is sent; the message never shows a token.
 *
 * Works with any Connect transport (`@connectrpc/connect-web` in a browser,
 * `@connectrpc/connect-node`, …) and imports nothing from Node. For a Node
 * service with OAuth2 client credentials, `createGatewayTransport` (in
 * `connect-gateway/client`) does all of this, and token caching, for you.
 *
 * @example
 * ```ts
 * import { createConnectTransport } from "@connectrpc/connect-web";
 * import { createBearerTokenInterceptor, createGatewayRoutingInterceptor } from "connect-gateway/web";
 *
 * const transport = createConnectTransport({
 *   baseUrl: "https://gateway.example.com",
 *   interceptors: [
 *     createGatewayRoutingInterceptor(),
 *     // `rejected` is set when the gateway answered 401 to that token: get a new one.
 *     createBearerTokenInterceptor(({ rejected }) => (rejected ? auth.refresh() : auth.accessToken()), {
 *       refreshOnUnauthenticated: true,
 *     }),
 *   ],
 * });
 * ```
 */
export function createBearerTokenInterceptor(source: TokenSource, options: BearerTokenOptions = {}): Interceptor {
  if (typeof source !== "function") {
    throw new ConfigurationError("source", "must be a function returning the access token (or a promise of it).");
  }
  if (typeof options !== "object" || options === null) {
    throw new ConfigurationError("options", "must be an object, e.g. { refreshOnUnauthenticated: true }.");
  }
  const refresh = options.refreshOnUnauthenticated ?? false;
  if (typeof refresh !== "boolean") throw new ConfigurationError("refreshOnUnauthenticated", "must be a boolean.");

  return (next) => async (req) => {
    const perCall = req.contextValues.get(gatewayCallKey);
    // Refused, never quoted, when it cannot travel in a header, or is given as undefined (set straight on the context key).
    const userToken = perCall === undefined ? undefined : userTokenOption(perCall);
    if (userToken !== undefined) {
      req.header.set("Authorization", `Bearer ${userToken}`);
      return next(req);
    }
    const token = await tokenFrom(source, {});
    req.header.set("Authorization", `Bearer ${token}`);
    if (!refresh || req.stream) return next(req);
    try {
      return await next(req);
    } catch (error) {
      if (!(error instanceof ConnectError) || error.code !== Code.Unauthenticated || req.signal.aborted) throw error;
      const fresh = await tokenFrom(source, { rejected: token });
      req.header.set("Authorization", `Bearer ${fresh}`);
      return next(req);
    }
  };
}

async function tokenFrom(source: TokenSource, request: TokenRequest): Promise<string> {
  let token: unknown;
  try {
    token = await source(request);
  } catch (cause) {
    throw new ConnectError(
      `connect-gateway: the token source failed: ${cause instanceof Error ? cause.message : String(cause)}`,
      Code.Unauthenticated,
      undefined,
      undefined,
      cause,
    );
  }
  if (typeof token !== "string" || !/^[\x21-\x7e]+$/.test(token)) {
    throw new ConnectError(
      "connect-gateway: the token source returned no access token: expected a non-empty string of visible ASCII " +
        'characters, without the "Bearer " prefix.',
      Code.Unauthenticated,
    );
  }
  return token;
}
