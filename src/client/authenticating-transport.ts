import type { DescService } from "@bufbuild/protobuf";
import type { ContextValues, Transport } from "@connectrpc/connect";
import { checkServiceName } from "./backend-service.js";
import { currentCallScope } from "./call-scope.js";
import { callWithToken } from "./call-with-token.js";
import { connectionErrorFrom } from "./connection-error.js";
import { gatewayCallKey } from "./gateway-call-options.js";
import { backendOptionOf } from "./resolve-backend-service.js";
import type { TokenManager } from "./token-manager.js";
import { checkUserToken } from "./user-token.js";

/**
 * Wraps a Connect transport so that every call carries
 * `Authorization: Bearer <token>` (see {@link callWithToken}) and fails with
 * a `ConnectionError` when `gateway` cannot be reached or the deadline passes.
 *
 * This sits *around* the transport rather than in an interceptor on purpose:
 * the token is obtained before the call's own deadline starts (the token
 * request has its own `timeoutMs`), so a slow token endpoint surfaces as an
 * `AuthenticationError` instead of racing the deadline; and errors raised
 * here reach the caller unchanged, whereas Connect replaces whatever an
 * interceptor throws by the abort reason once the call's signal has fired.
 */
export function createAuthenticatingTransport(inner: Transport, tokens: TokenManager, gateway: string): Transport {
  return {
    unary(method, signal, timeoutMs, header, input, contextValues) {
      try {
        checkRoute(method.parent, contextValues);
      } catch (e) {
        return Promise.reject(e);
      }
      return callWithToken(tokens, {
        userToken: userTokenOf(contextValues),
        attempt: (authorization) =>
          inner.unary(method, signal, timeoutMs, withAuthorization(header, authorization), input, contextValues),
        replayable: true,
        signal,
      }).catch((reason: unknown) => rethrow(reason, gateway));
    },
    async stream(method, signal, timeoutMs, header, input, contextValues) {
      checkRoute(method.parent, contextValues);
      try {
        const response = await callWithToken(tokens, {
          userToken: userTokenOf(contextValues),
          attempt: (authorization) =>
            inner.stream(method, signal, timeoutMs, withAuthorization(header, authorization), input, contextValues),
          replayable: false, // the request stream has been consumed
          signal,
        });
        return { ...response, message: mappingErrors(response.message, gateway) };
      } catch (reason) {
        rethrow(reason, gateway);
      }
    },
  };
}

// A failure to reach the gateway becomes a ConnectionError; anything else goes on unchanged.
function rethrow(reason: unknown, gateway: string): never {
  throw connectionErrorFrom(reason, gateway) ?? reason;
}

// Whatever the routing interceptor will use is checked here, before any I/O
// (token request included): a per-call service set through `gatewayCallKey`
// directly, and the service's proto option. Scopes check their own.
function checkRoute(service: DescService, contextValues: ContextValues | undefined): void {
  const perCall = contextValues?.get(gatewayCallKey);
  if (perCall?.service !== undefined) checkServiceName(perCall.service);
  if (perCall?.userToken !== undefined) checkUserToken(perCall.userToken);
  backendOptionOf(service);
}

function userTokenOf(contextValues: ContextValues | undefined): string | undefined {
  return contextValues?.get(gatewayCallKey)?.userToken ?? currentCallScope()?.userToken;
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

async function* mappingErrors<T>(messages: AsyncIterable<T>, gateway: string): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (reason) {
    rethrow(reason, gateway);
  }
}
