/**
 * OpenTelemetry for the gateway's hop, through `@opentelemetry/api`, loaded
 * only once an application registers a tracer provider or propagator (until
 * then there is nothing to record or pass on):
 * the caller's W3C trace context (`traceparent`) is continued by a SERVER span
 * per request, `connect-gateway <METHOD> <route>`; the token validation is a
 * child span; and the hop's context is written into the forwarded request, so
 * the service continues the trace. The trace headers are not signed (the
 * gateway signs the method, target, body, content headers and identity
 * headers only), so adding them after signing leaves the signature valid.
 * Never a token, a secret or a signature in an attribute.
 */
import { createRequire } from "node:module";
import { openTelemetryRegistered } from "connect-gateway/protocol";
import type { Context, Span, TextMapGetter } from "@opentelemetry/api";
import { routePatternOf } from "./request-state.js";
import type { FastifyReply, FastifyRequest } from "fastify";
import { GatewayHttpError } from "./gateway-http-error.js";

type OpenTelemetryApi = typeof import("@opentelemetry/api");

let loadedApi: OpenTelemetryApi | undefined;

/**
 * The API, once an application has registered something with it; until
 * then nothing can be traced or propagated, and the API is not even loaded
 * (it is ~20 ms of the gateway's cold start). Loaded then, synchronously and
 * once: the first request after an SDK starts is traced like the others.
 */
function registeredApi(): OpenTelemetryApi | undefined {
  if (loadedApi === undefined) {
    if (!openTelemetryRegistered()) return undefined;
    // The package is dual CommonJS / ES module; both copies share the registry.
    loadedApi = createRequire(import.meta.url)("@opentelemetry/api") as OpenTelemetryApi;
  }
  return loadedApi;
}

// One proxy tracer: it follows whatever provider the application registers, even later.
let gatewayTracer: ReturnType<OpenTelemetryApi["trace"]["getTracer"]> | undefined;
const TRACER_NAME = "@connect-gateway/gateway";
const tracer = (api: OpenTelemetryApi) => (gatewayTracer ??= api.trace.getTracer(TRACER_NAME));

/** The attribute naming the backend service a call goes to (`/backend/<service>/…`). */
const BACKEND_ATTRIBUTE = "connect_gateway.backend";

interface Hop {
  readonly api: OpenTelemetryApi;
  readonly span: Span;
  readonly context: Context;
}

/**
 * Whether a tracer provider is registered: the API's global proxy provider
 * has a delegate only then (a provider set some other way is assumed to trace).
 */
function tracerRegistered(api: OpenTelemetryApi): boolean {
  const provider = api.trace.getTracerProvider() as { getDelegateTracer?: (name: string) => unknown };
  return provider.getDelegateTracer === undefined || provider.getDelegateTracer(TRACER_NAME) !== undefined;
}

const hops = new WeakMap<FastifyRequest, Hop>();

const headerGetter: TextMapGetter<FastifyRequest["headers"]> = {
  keys: (headers) => Object.keys(headers),
  get: (headers, key) => headers[key],
};

/** Starts the request's SERVER span, the child of the caller's `traceparent` when it sent one. */
export function startHop(request: FastifyRequest): void {
  // Nobody traces and nothing propagates (no tracer provider, no propagator
  // registered: the API's no-ops): a request costs these two checks, no span.
  const api = registeredApi();
  if (api === undefined || (!tracerRegistered(api) && api.propagation.fields().length === 0)) return;
  const parent = api.propagation.extract(api.ROOT_CONTEXT, request.headers, headerGetter);
  const route = routePatternOf(request);
  const backend = route === undefined ? undefined : /^\/backend\/([^/]+)\/\*$/.exec(route)?.[1];
  const span = tracer(api).startSpan(
    route === undefined ? `connect-gateway ${request.method}` : `connect-gateway ${request.method} ${route}`,
    {
      kind: api.SpanKind.SERVER,
      attributes: {
        "http.request.method": request.method,
        ...(route !== undefined && { "http.route": route }),
        ...(backend !== undefined && { [BACKEND_ATTRIBUTE]: backend }),
      },
    },
    parent,
  );
  // No tracer provider registered and no trace to continue: the span has no
  // valid context, nothing would be recorded, so the hop is not traced at all.
  if (!api.isSpanContextValid(span.spanContext())) return;
  hops.set(request, { api, span, context: api.trace.setSpan(parent, span) });
}

/** Ends the request's span with the status the caller got (an error status from 500 on). */
export function endHop(request: FastifyRequest, reply: FastifyReply): void {
  const hop = hops.get(request);
  if (hop === undefined) return;
  hops.delete(request);
  hop.span.setAttribute("http.response.status_code", reply.statusCode);
  if (reply.statusCode >= 500) hop.span.setStatus({ code: hop.api.SpanStatusCode.ERROR });
  hop.span.end();
}

/** Ends the span of a request its caller abandoned before the answer. */
export function abandonHop(request: FastifyRequest): void {
  const hop = hops.get(request);
  if (hop === undefined) return;
  hops.delete(request);
  hop.span.setAttribute("connect_gateway.outcome", "caller_gone");
  hop.span.end();
}

/** Whether the request has a span of its own (a tracer provider is registered, or a trace is continued). */
export function isTraced(request: FastifyRequest): boolean {
  return hops.has(request);
}

/**
 * Runs the token validation in a child span `connect-gateway token validation`
 * (`connect_gateway.outcome`: `valid`, or the error code such as
 * `UNAUTHORIZED`), and records its duration on the hop as
 * `connect_gateway.token_validation_ms`.
 */
export async function traceTokenValidation<T extends { readonly clientId: string }>(
  request: FastifyRequest,
  validate: () => Promise<T>,
): Promise<T> {
  const hop = hops.get(request);
  if (hop === undefined) return validate();
  const { api } = hop;
  const span = tracer(api).startSpan("connect-gateway token validation", { kind: api.SpanKind.INTERNAL }, hop.context);
  const started = performance.now();
  try {
    const caller = await api.context.with(api.trace.setSpan(hop.context, span), validate);
    span.setAttribute("connect_gateway.outcome", "valid");
    span.setAttribute("connect_gateway.client_id", caller.clientId);
    hop.span.setAttribute("connect_gateway.client_id", caller.clientId);
    return caller;
  } catch (e) {
    span.setAttribute("connect_gateway.outcome", e instanceof GatewayHttpError ? e.code : "error");
    span.setStatus({ code: api.SpanStatusCode.ERROR });
    throw e;
  } finally {
    span.end();
    hop.span.setAttribute("connect_gateway.token_validation_ms", performance.now() - started);
  }
}

/** What an untraced request records: nothing (one function for all of them). */
const untraced = (): void => {};

/**
 * Adds the hop's trace context (`traceparent`, `tracestate`) to the headers
 * of the forwarded request, and returns the function that records the
 * upstream latency (until the upstream's response headers) on the hop.
 */
export function forwardedTraceContext(request: FastifyRequest, headers: Record<string, string>): () => void {
  const hop = hops.get(request);
  if (hop === undefined) return untraced;
  hop.api.propagation.inject(hop.context, headers);
  const started = performance.now();
  return () => hop.span.setAttribute("connect_gateway.upstream_latency_ms", performance.now() - started);
}
