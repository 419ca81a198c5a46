/**
 * `@opentelemetry/api`, an optional peer: loaded once, synchronously, the
 * first time a span could be started after an application registered
 * something with it (a tracer or meter provider, a propagator, a context
 * manager). Until then every caller gets `undefined` and does nothing: with
 * nothing registered, everything the API would do is a no-op, and finding
 * that out through the API costs several calls per request. Without the
 * package installed it stays `undefined`, with no cost and no error.
 *
 * Kept out of `connect-gateway/web`'s import graph: it needs `node:module`.
 */
import { createRequire } from "node:module";

/** The OpenTelemetry API module, as the optional peer exports it. */
export type OpenTelemetryApi = typeof import("@opentelemetry/api");

let loaded: { readonly api: OpenTelemetryApi | undefined } | undefined;

// Where the API (major version 1, our peer range) keeps what an application
// registered; it exists only once something has been.
const REGISTRY = Symbol.for("opentelemetry.js.api.1");

/**
 * Whether an application has registered anything with `@opentelemetry/api`
 * (a tracer or meter provider, a propagator, a context manager), read from
 * the API's global registry without loading the API: until then everything
 * the API would do is a no-op. One property read.
 */
export function openTelemetryRegistered(): boolean {
  return (globalThis as Record<symbol, unknown>)[REGISTRY] !== undefined;
}

/**
 * The `@opentelemetry/api` module when it is installed and something is
 * registered with it; `undefined` otherwise (one property read).
 */
export function openTelemetry(): OpenTelemetryApi | undefined {
  if (loaded === undefined) {
    if (!openTelemetryRegistered()) return undefined;
    let api: OpenTelemetryApi | undefined;
    try {
      // The package is dual CommonJS / ES module; its global registry is
      // shared by both copies, so what the application registered is seen here.
      api = createRequire(import.meta.url)("@opentelemetry/api") as OpenTelemetryApi;
    } catch {
      api = undefined;
    }
    loaded = { api };
  }
  return loaded.api;
}

let tracer: ReturnType<OpenTelemetryApi["trace"]["getTracer"]> | undefined;

/**
 * The tracer of the library, when OpenTelemetry is installed: one proxy
 * tracer, which follows whatever provider the application registers, even
 * later.
 */
export function libraryTracer(api: OpenTelemetryApi) {
  tracer ??= api.trace.getTracer("connect-gateway");
  return tracer;
}

/**
 * Whether a tracer provider is registered: the API's global proxy provider
 * has a delegate only then. Checked before any span is made, so a call pays
 * one property read when the API is installed but nobody traces (often the
 * case: many packages depend on the API).
 */
export function tracingEnabled(api: OpenTelemetryApi): boolean {
  const provider = api.trace.getTracerProvider() as { getDelegateTracer?: (name: string) => unknown };
  // Not the API's proxy (a provider set some other way): assume it traces.
  return provider.getDelegateTracer === undefined || provider.getDelegateTracer("connect-gateway") !== undefined;
}

/**
 * Whether a meter provider is registered: without one every meter is the
 * API's no-op meter, and counting is skipped altogether.
 */
export function metricsEnabled(api: OpenTelemetryApi): boolean {
  return api.metrics.getMeter("connect-gateway") !== api.createNoopMeter();
}
