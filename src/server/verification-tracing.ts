/**
 * OpenTelemetry for a verifying service (`auth.connectOptions()`,
 * `auth.verifyNodeRequest`, `auth.express()`, `auth.fastify`),
 * active only when the optional peer `@opentelemetry/api` is installed: the verification of each request is a
 * span `connect-gateway verification` that continues the gateway's trace
 * (`traceparent`), or nests under the span already active (an HTTP server
 * instrumentation's), with its outcome — `verified` or the rejection reason —
 * and the caller's client id; and a counter `connect_gateway.verifications`
 * counts outcomes by reason. Never a token, a secret or a signature.
 */
import type { IncomingHttpHeaders } from "node:http";
import {
  libraryTracer,
  metricsEnabled,
  openTelemetry,
  tracingEnabled,
  type OpenTelemetryApi,
} from "../core/open-telemetry.js";
import type { GatewayIdentity } from "./gateway-identity.js";

type Counter = ReturnType<ReturnType<OpenTelemetryApi["metrics"]["getMeter"]>["createCounter"]>;

let counter: Counter | undefined;

function verifications(api: OpenTelemetryApi): Counter {
  counter ??= api.metrics.getMeter("connect-gateway").createCounter("connect_gateway.verifications", {
    description: "Requests verified by createGatewayAuth, by outcome: verified, or the rejection reason.",
  });
  return counter;
}

/** A verification in progress, see {@link startVerificationSpan}. */
export interface VerificationSpan {
  /** Runs `work` with the span active (what it calls continues the trace). */
  run<T>(work: () => T): T;
  /** Ends the span: `verified` (with the caller) or the rejection reason. */
  end(outcome: string, identity?: GatewayIdentity): void;
}

/**
 * Starts the verification span of a request (every adapter: the Fastify
 * plugin across its hooks, the others around their verification); `undefined`
 * when nothing would be recorded: `@opentelemetry/api` not installed, or
 * installed with neither a tracer provider (the span has no valid context: no
 * trace to continue) nor a meter provider registered — then a request pays
 * for nothing more than this check, and its headers are not read. A span
 * sampled out by a registered SDK still has a valid context, and is carried on.
 */
export function startVerificationSpan(request: { readonly headers: IncomingHttpHeaders }): VerificationSpan | undefined {
  const api = openTelemetry();
  if (api === undefined) return undefined;
  const active = api.context.active();
  const nested = api.trace.getSpan(active) !== undefined;
  // Nothing registered at all — no tracer provider, no meter provider, no
  // propagator, no span active: the span would be a no-op with no valid
  // context. Said here without reading the headers (which a Node request
  // builds on first access) or making the span.
  if (!nested && !tracingEnabled(api) && !metricsEnabled(api) && api.propagation.fields().length === 0) return undefined;
  const parent = nested ? active : api.propagation.extract(active, request.headers);
  const span = libraryTracer(api).startSpan(
    "connect-gateway verification",
    { kind: nested ? api.SpanKind.INTERNAL : api.SpanKind.SERVER },
    parent,
  );
  if (!api.isSpanContextValid(span.spanContext()) && !metricsEnabled(api)) return undefined;
  const spanContext = api.trace.setSpan(parent, span);
  return {
    run: (work) => api.context.with(spanContext, work),
    end(outcome, identity) {
      if (identity !== undefined) span.setAttribute("connect_gateway.client_id", identity.clientId);
      if (outcome !== "verified") span.setStatus({ code: api.SpanStatusCode.ERROR, message: outcome });
      span.setAttribute("connect_gateway.outcome", outcome);
      verifications(api).add(1, { "connect_gateway.outcome": outcome });
      span.end();
    },
  };
}
