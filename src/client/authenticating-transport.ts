import type { DescService } from "@bufbuild/protobuf";
import { createContextKey, createContextValues, type ContextValues, type Interceptor, type Transport } from "@connectrpc/connect";
import { checkServiceName } from "./backend-service.js";
import { currentCallScope } from "./call-scope.js";
import { deadlinePassed, sharedDeadline } from "./call-deadline.js";
import { BEARER, callWithToken, retryUnauthorized, withoutToken } from "./call-with-token.js";
import { connectionErrorFrom } from "./connection-error.js";
import { gatewayCallKey } from "./gateway-call-options.js";
import { protocolMismatchFrom } from "./protocol-mismatch.js";
import { backendOptionOf } from "./resolve-backend-service.js";
import type { TokenManager } from "./token-manager.js";
import { userTokenOption } from "./user-token.js";

/**
 * Wraps a Connect transport so that every call carries
 * `Authorization: Bearer <token>` (see {@link callWithToken}) and fails with
 * a `ConnectionError` when `gateway` cannot be reached or the deadline passes.
 *
 * This sits *around* the transport rather than in an interceptor on purpose:
 * errors raised here reach the caller unchanged (a token request's
 * `AuthenticationError`; a deadline that passed while the call waited for
 * its token, which counts against `timeoutMs` like the call itself), whereas
 * Connect replaces whatever an interceptor throws by the abort reason once
 * the call's signal has fired.
 */
export function createAuthenticatingTransport(
  inner: Transport,
  tokens: TokenManager,
  gateway: string,
  /**
   * True when `inner` runs {@link createAuthorizationInterceptor} first: a
   * call with neither headers nor context values of its own then carries its
   * Authorization value in fresh context values (which Connect would have
   * created anyway), for that interceptor to set, rather than in a header
   * record Connect would have to convert.
   */
  carried = false,
  /**
   * The deadline of a call that gives none (`timeoutMs` undefined), as the
   * inner transport's `defaultTimeoutMs`: it bounds the whole call here —
   * the wait for its token and a retry after a 401 included — rather than
   * each attempt alone. `timeoutMs <= 0` means no deadline, as in Connect.
   */
  defaultTimeoutMs?: number,
): Transport {
  // The call's deadline as Connect's transports read `timeoutMs`; `0` goes
  // to the inner transport for "none" (undefined would be its default again).
  const deadlineOf = (timeoutMs: number | undefined): number | undefined =>
    timeoutMs === undefined ? defaultTimeoutMs : timeoutMs <= 0 ? undefined : timeoutMs;
  // The Authorization value of the last service token, kept so that each call
  // with the same cached token reuses one string.
  let lastToken: string | undefined;
  let lastAuthorization = "";
  const serviceAuthorization = (token: string): string => {
    if (token !== lastToken) {
      lastToken = token;
      lastAuthorization = `Bearer ${token}`;
    }
    return lastAuthorization;
  };
  return {
    unary(method, signal, callTimeoutMs, header, input, contextValues) {
      const timeoutMs = deadlineOf(callTimeoutMs);
      let userToken: string | undefined;
      try {
        userToken = checkRoute(method.parent, contextValues);
      } catch (e) {
        return Promise.reject(e);
      }
      // The hot path — the service token is cached, the call not aborted: the
      // call is sent at once, with a single handler for its failures (a 401
      // retried as callWithToken does, then the error mapping), rather than
      // callWithToken's promise chain and closures.
      let pending: Promise<string> | undefined;
      if (userToken === undefined && !signal?.aborted) {
        const token = tokens.getToken();
        if (typeof token !== "string") pending = token;
        else {
          const authorization = serviceAuthorization(token);
          const deadline = timeoutMs === undefined ? undefined : performance.now() + timeoutMs;
          const sent =
            header === undefined && contextValues === undefined && carried
              ? inner.unary(method, signal, timeoutMs ?? 0, undefined, input, carrying(authorization))
              : inner.unary(method, signal, timeoutMs ?? 0, withAuthorization(header, authorization), input, contextValues);
          return sent.then(undefined, (reason: unknown) => {
            withoutToken(reason, token);
            // A retry after a 401 gets what is left of the deadline, the wait for its token counted (see sharedDeadline).
            const retry = (authorization: string) => {
              const left = deadline === undefined ? undefined : Math.floor(deadline - performance.now());
              return left !== undefined && left <= 0
                ? Promise.reject(deadlinePassed())
                : inner.unary(method, signal, left ?? 0, withAuthorization(header, authorization), input, contextValues);
            };
            return retryUnauthorized(tokens, reason, token, signal, retry, deadline).catch((failure: unknown) => rethrow(failure, gateway));
          });
        }
      }
      return callWithToken(tokens, {
        userToken,
        attempt: sharedDeadline(timeoutMs, (left, authorization: string) =>
          inner.unary(method, signal, left ?? 0, withAuthorization(header, authorization), input, contextValues),
        ),
        replayable: true,
        signal,
        token: pending,
        timeoutMs,
        defaultTimeout: callTimeoutMs === undefined,
      }).catch((reason: unknown) => rethrow(reason, gateway));
    },
    async stream(method, signal, callTimeoutMs, header, input, contextValues) {
      const timeoutMs = deadlineOf(callTimeoutMs);
      const userToken = checkRoute(method.parent, contextValues);
      // The token the stream went with: an error in its end-of-stream message comes after callWithToken returned.
      let sentWith = "";
      try {
        const response = await callWithToken(tokens, {
          userToken,
          attempt: sharedDeadline(timeoutMs, (left, authorization: string) => {
            sentWith = authorization.slice(BEARER.length);
            return inner.stream(method, signal, left ?? 0, withAuthorization(header, authorization), input, contextValues);
          }),
          replayable: false, // the request stream has been consumed
          signal,
          timeoutMs,
          defaultTimeout: callTimeoutMs === undefined,
        });
        return { ...response, message: mappingErrors(response.message, gateway, sentWith) };
      } catch (reason) {
        rethrow(reason, gateway);
      }
    },
  };
}

// A failure to reach the gateway becomes a ConnectionError; anything else goes on unchanged.
function rethrow(reason: unknown, gateway: string): never {
  throw connectionErrorFrom(reason, gateway) ?? protocolMismatchFrom(reason, gateway) ?? reason;
}

// Whatever the routing interceptor will use is checked here, before any I/O
// (token request included): a per-call service set through `gatewayCallKey`
// directly, and the service's proto option. Scopes check their own.
// Returns the call's user token, if any (per call, else the innermost scope).
function checkRoute(service: DescService, contextValues: ContextValues | undefined): string | undefined {
  const perCall = contextValues?.get(gatewayCallKey);
  if (perCall?.service !== undefined) checkServiceName(perCall.service);
  const userToken = perCall === undefined ? undefined : userTokenOption(perCall);
  backendOptionOf(service);
  return userToken ?? currentCallScope()?.userToken;
}

/**
 * Where a call's Authorization value travels from the authenticating
 * transport to {@link createAuthorizationInterceptor}. Private: only calls
 * without context values of their own get it, in context values made here.
 */
const authorizationKey = createContextKey<string | undefined>(undefined, {
  description: "connect-gateway: the Authorization value of this call",
});

function carrying(authorization: string): ContextValues {
  return createContextValues().set(authorizationKey, authorization);
}

/**
 * The interceptor that sets `Authorization` from the call's context values
 * (see `carried` of {@link createAuthenticatingTransport}). It must run
 * first, so that every other interceptor sees the header, as it sees one
 * passed in the call's headers; each attempt runs it again.
 */
export function createAuthorizationInterceptor(): Interceptor {
  return (next) => (req) => {
    setCarriedAuthorization(req);
    return next(req);
  };
}

/** What {@link createAuthorizationInterceptor} does, for an interceptor that runs first anyway. */
export function setCarriedAuthorization(req: { readonly header: Headers; readonly contextValues: ContextValues }): void {
  const authorization = req.contextValues.get(authorizationKey);
  if (authorization !== undefined) req.header.set("authorization", authorization);
}

function withAuthorization(
  header: ConstructorParameters<typeof Headers>[0],
  authorization: string,
): Headers | Record<string, string> {
  if (header === undefined) return { authorization }; // the common case: no Headers object to build
  const headers = new Headers(header);
  headers.set("authorization", authorization);
  return headers;
}

async function* mappingErrors<T>(messages: AsyncIterable<T>, gateway: string, token: string): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (reason) {
    rethrow(withoutToken(reason, token), gateway);
  }
}

