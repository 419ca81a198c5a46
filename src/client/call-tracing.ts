/**
 * OpenTelemetry for the Node client, active only when the optional peer
 * `@opentelemetry/api` is installed (see `openTelemetry`): a CLIENT span per
 * call, the W3C trace context in each attempt's headers, and a span per token
 * request. Without the package, the transport is returned unchanged and no
 * interceptor is added. Never a token or a secret in an attribute.
 */
import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor, type Transport } from "@connectrpc/connect";
import { libraryTracer, metricsEnabled, openTelemetry, tracingEnabled, type OpenTelemetryApi } from "../core/open-telemetry.js";

type Span = ReturnType<ReturnType<OpenTelemetryApi["trace"]["getTracer"]>["startSpan"]>;

/** The attribute naming the backend service a call was routed to. */
export const BACKEND_ATTRIBUTE = "connect_gateway.backend";

/**
 * Wraps a transport so that each call runs in a CLIENT span
 * `connect-gateway <pkg.Service>/<Method>` (rpc semantic conventions:
 * `rpc.system` `connect_rpc`, `rpc.service`, `rpc.method`), ended with the
 * call's outcome: `rpc.connect_rpc.error_code` and an error status on
 * failure. The token request, the attempts and the retries run inside it.
 */
export function createTracingTransport(inner: Transport): Transport {
  const api = openTelemetry();
  if (api === undefined) return inner;
  const start = (method: DescMethod) => {
    const span = libraryTracer(api).startSpan(`connect-gateway ${method.parent.typeName}/${method.name}`, {
      kind: api.SpanKind.CLIENT,
      attributes: { "rpc.system": "connect_rpc", "rpc.service": method.parent.typeName, "rpc.method": method.name },
    });
    return { span, context: api.trace.setSpan(api.context.active(), span) };
  };
  return {
    unary(method, signal, timeoutMs, header, input, contextValues) {
      if (!tracingEnabled(api) && api.trace.getSpan(api.context.active()) === undefined) {
        return inner.unary(method, signal, timeoutMs, header, input, contextValues);
      }
      const { span, context } = start(method);
      // No tracer provider registered (and no trace to continue): nothing is
      // recorded or propagated, so nothing is wrapped. A span sampled out by a
      // registered SDK keeps a valid context and is still propagated.
      if (!api.isSpanContextValid(span.spanContext())) return inner.unary(method, signal, timeoutMs, header, input, contextValues);
      return api.context
        .with(context, () => inner.unary(method, signal, timeoutMs, header, input, contextValues))
        .then(
          (response) => {
            endOk(api, span);
            return response;
          },
          (reason: unknown) => {
            endFailed(api, span, reason);
            throw reason;
          },
        );
    },
    async stream(method, signal, timeoutMs, header, input, contextValues) {
      if (!tracingEnabled(api) && api.trace.getSpan(api.context.active()) === undefined) {
        return inner.stream(method, signal, timeoutMs, header, input, contextValues);
      }
      const { span, context } = start(method);
      if (!api.isSpanContextValid(span.spanContext())) return inner.stream(method, signal, timeoutMs, header, input, contextValues);
      try {
        const response = await api.context.with(context, () =>
          inner.stream(method, signal, timeoutMs, header, input, contextValues),
        );
        return { ...response, message: endingWith(api, span, response.message) };
      } catch (reason) {
        endFailed(api, span, reason);
        throw reason;
      }
    },
  };
}

// `…/backend/<service>/<pkg.Service>/<Method>`, query or not.
const BACKEND_IN_URL = /\/backend\/([^/?#]+)\/[^/?#]+\/[^/?#]+(?:[?#]|$)/;
const HEADERS_SETTER = { set: (carrier: Headers, key: string, value: string) => carrier.set(key, value) };

/**
 * An interceptor, placed after routing, that names the backend on the call's
 * span and writes the active trace context (`traceparent`, `tracestate`)
 * into the request headers, so the gateway continues the trace.
 * `undefined` without OpenTelemetry.
 */
export function createTraceContextInterceptor(): Interceptor | undefined {
  const write = createTraceContextWriter();
  if (write === undefined) return undefined;
  return (next) => (req) => {
    write(req);
    return next(req);
  };
}

/**
 * What {@link createTraceContextInterceptor} does to a request, for an
 * interceptor that runs at that place anyway (routing, when nothing comes
 * between). `undefined` without OpenTelemetry.
 */
export function createTraceContextWriter(): ((req: { readonly url: string; readonly header: Headers }) => void) | undefined {
  const api = openTelemetry();
  if (api === undefined) return undefined;
  return (req) => {
    const span = api.trace.getActiveSpan();
    if (span === undefined) return;
    const backend = BACKEND_IN_URL.exec(req.url)?.[1];
    if (backend !== undefined) span.setAttribute(BACKEND_ATTRIBUTE, backend);
    api.propagation.inject(api.context.active(), req.header, HEADERS_SETTER);
  };
}

/**
 * Runs a token request in a CLIENT span `connect-gateway token request`
 * (`oauth2.grant_type`, and `connect_gateway.outcome`: `issued` or `failed`).
 * Neither the client secret nor the token is recorded.
 */
export function traceTokenRequest<T>(grantType: string, request: () => Promise<T>): Promise<T> {
  const api = openTelemetry();
  if (api === undefined) return request();
  return libraryTracer(api).startActiveSpan(
    "connect-gateway token request",
    { kind: api.SpanKind.CLIENT, attributes: { "oauth2.grant_type": grantType } },
    (span) =>
      request().then(
        (result) => {
          span.setAttribute("connect_gateway.outcome", "issued");
          span.end();
          return result;
        },
        (reason: unknown) => {
          span.setAttribute("connect_gateway.outcome", "failed");
          span.setStatus({ code: api.SpanStatusCode.ERROR, message: errorName(reason) });
          span.end();
          throw reason;
        },
      ),
  );
}

/** Why the token cache asks for a new token. */
export type TokenRefreshReason = "initial" | "expired" | "background" | "rejected";

type Counter = ReturnType<ReturnType<OpenTelemetryApi["metrics"]["getMeter"]>["createCounter"]>;
const counters = new Map<string, Counter>();
function count(api: OpenTelemetryApi, name: string, description: string, attributes: Record<string, string>): void {
  if (!metricsEnabled(api)) return;
  let counter = counters.get(name);
  if (counter === undefined) {
    counter = api.metrics.getMeter("connect-gateway").createCounter(name, { description });
    counters.set(name, counter);
  }
  counter.add(1, attributes);
}

/**
 * Runs a refresh of the token cache in an INTERNAL span `connect-gateway
 * token refresh` — `connect_gateway.refresh_reason`: `initial` (nothing
 * cached), `expired`, `background` (inside the refresh margin, the call goes
 * on with the current token) or `rejected` (a 401 dropped the token) — with
 * its outcome (`fetched`, `store`: another process's token, or `failed`), and
 * counts it in `connect_gateway.token_refreshes` by reason and outcome. The
 * token request, when one is made, is its child.
 */
export function traceTokenRefresh<T extends { readonly source: string }>(reason: TokenRefreshReason, refresh: () => Promise<T>): Promise<T> {
  const api = openTelemetry();
  if (api === undefined) return refresh();
  const span = libraryTracer(api).startSpan("connect-gateway token refresh", {
    kind: api.SpanKind.INTERNAL,
    attributes: { "connect_gateway.refresh_reason": reason },
  });
  const recording = api.isSpanContextValid(span.spanContext());
  if (!recording && !metricsEnabled(api)) return refresh();
  const end = (outcome: string) => {
    span.setAttribute("connect_gateway.outcome", outcome);
    if (outcome === "failed") span.setStatus({ code: api.SpanStatusCode.ERROR });
    span.end();
    count(api, "connect_gateway.token_refreshes", "Token cache refreshes, by reason and outcome.", {
      "connect_gateway.refresh_reason": reason,
      "connect_gateway.outcome": outcome,
    });
  };
  return api.context.with(api.trace.setSpan(api.context.active(), span), refresh).then(
    (result) => {
      end(result.source);
      return result;
    },
    (error: unknown) => {
      end("failed");
      throw error;
    },
  );
}

/**
 * Records a 401 answered to a call made with the service token: an event
 * `connect-gateway unauthorized` on the call's span with
 * `connect_gateway.outcome` — `retried` (the token was dropped and the call
 * sent again with a fresh one) or `not_retried` (a streaming call that cannot
 * be replayed, or within the backoff after a forced refresh) — and the
 * counter `connect_gateway.unauthorized_answers` by outcome.
 */
export function recordUnauthorizedAnswer(retried: boolean): void {
  const api = openTelemetry();
  if (api === undefined) return;
  const outcome = retried ? "retried" : "not_retried";
  api.trace.getActiveSpan()?.addEvent("connect-gateway unauthorized", { "connect_gateway.outcome": outcome });
  count(api, "connect_gateway.unauthorized_answers", "401 answers to calls made with the service token, by what the client did.", {
    "connect_gateway.outcome": outcome,
  });
}

function endOk(api: OpenTelemetryApi, span: Span): void {
  span.setStatus({ code: api.SpanStatusCode.UNSET });
  span.end();
}

function endFailed(api: OpenTelemetryApi, span: Span, reason: unknown): void {
  const code = ConnectError.from(reason).code;
  span.setAttribute("rpc.connect_rpc.error_code", codeName(code));
  // Only the error's kind: a message may quote what the server said.
  span.setStatus({ code: api.SpanStatusCode.ERROR, message: codeName(code) });
  span.end();
}

async function* endingWith<T>(api: OpenTelemetryApi, span: Span, messages: AsyncIterable<T>): AsyncIterable<T> {
  let failed = false;
  try {
    yield* messages;
  } catch (reason) {
    failed = true;
    endFailed(api, span, reason);
    throw reason;
  } finally {
    if (!failed) endOk(api, span);
  }
}

/** A Connect code as the protocol writes it: `Code.DeadlineExceeded` is `deadline_exceeded`. */
function codeName(code: Code): string {
  return (Code[code] ?? "unknown").replace(/(?<=[a-z])(?=[A-Z])/g, "_").toLowerCase();
}

function errorName(reason: unknown): string {
  return reason instanceof Error ? reason.name : "Error";
}
