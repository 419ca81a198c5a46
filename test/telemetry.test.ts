// OpenTelemetry, end to end with the real SDK: one call from
// createGatewayTransport, through the real gateway, to a real Connect backend
// behind createGatewayAuth, is one trace — the client's span, its token
// request, the gateway's hop and its token validation, the service's
// verification — with no token or secret in any attribute. Without a
// registered tracer provider, the same call works and records nothing; without
// the package at all, too.
import { context, propagation, trace, SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { Code, createClient } from "@connectrpc/connect";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { Gateway } from "@connect-gateway/gateway";
import { EchoService } from "../examples/gen/example/v1/example_pb.js";
import { startAgentsBackend, startEchoBackend, type ExampleBackend } from "../examples/dev/example-backends.js";
import { createGatewayTransport, gatewayCall } from "../src/client/index.js";
import { createGatewayAuth } from "../src/server/index.js";
import { gatewaySignatureHeaders } from "../src/signing/index.js";
import Fastify from "fastify";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { ECHO_BACKENDS, HMAC_SECRET, rejectionOf, seedToken, startSeedGateway } from "./support/gateway.js";
import { startTokenEndpoint, type TestTokenEndpoint } from "./support/token-endpoint.js";
import { runWithoutPackages } from "./support/without-packages.js";

const CLIENT_SECRET = "telemetry-client-secret-0123456789";

describe("OpenTelemetry", () => {
  let backend: ExampleBackend;
  let gateway: Gateway;
  let tokens: TestTokenEndpoint;
  let token: string;
  const exporter = new InMemorySpanExporter();

  beforeAll(async () => {
    token = await seedToken({ client_id: "orders-client", user_id: undefined, sub: "orders-client" });
    backend = await startEchoBackend(HMAC_SECRET);
    gateway = await startSeedGateway(`version: "1.0"\nbackends:\n${ECHO_BACKENDS}`, { ECHO_URL: backend.url });
    tokens = await startTokenEndpoint(() => ({ json: { access_token: token, token_type: "Bearer", expires_in: 3600 } }));
  });
  afterAll(async () => {
    await Promise.all([tokens?.close(), gateway?.close()]);
    await backend?.close();
  });

  // A client id of its own per client: tokens are cached per client id.
  const newClient = (clientId: string) =>
    createClient(
      EchoService,
      createGatewayTransport({
        gatewayUrl: gateway.url,
        appcenterUrl: tokens.url,
        clientId,
        clientSecret: CLIENT_SECRET,
        defaultService: "echo",
      }),
    );

  it("without a registered tracer provider, calls work and nothing is recorded", async () => {
    const echo = newClient("untraced-client");
    expect((await echo.echo({ text: "untraced" })).text).toBe("untraced");
    expect(exporter.getFinishedSpans()).toEqual([]);
  });

  it("without @opentelemetry/api installed, the client works and the library loads nothing", async () => {
    const stdout = await runWithoutPackages(
      `
const { createClient } = await import("@connectrpc/connect");
const { createGatewayTransport } = await import("connect-gateway/client");
const { openTelemetry } = await import("./src/core/open-telemetry.ts");
const { EchoService } = await import("./examples/gen/example/v1/example_pb.js");
const echo = createClient(EchoService, createGatewayTransport(${JSON.stringify({
        gatewayUrl: gateway.url,
        appcenterUrl: tokens.url,
        clientId: "no-telemetry-client",
        clientSecret: CLIENT_SECRET,
        defaultService: "echo",
      })}));
const answer = await echo.echo({ text: "no telemetry" });
console.log(JSON.stringify({ text: answer.text, loaded: openTelemetry() !== undefined }));
`,
      { blocked: ["@opentelemetry/api"] },
    );
    expect(JSON.parse(stdout.trim().split("\n").at(-1)!)).toEqual({ text: "no telemetry", loaded: false });
  });

  it("the gateway loads @opentelemetry/api only once something is registered with it: without, it starts and forwards with the package unresolvable", async () => {
    const stdout = await runWithoutPackages(
      `
const { createServer } = await import("node:http");
const backend = createServer((req, res) => res.end(JSON.stringify({ path: req.url, signed: typeof req.headers["x-gateway-signature-v2"] === "string" })));
await new Promise((resolve) => backend.listen(0, "127.0.0.1", resolve));
const { createGateway, parseRoutesFile } = await import("@connect-gateway/gateway");
const routes = parseRoutesFile('version: "1.0"\\nbackends:\\n  echo:\\n    upstream: http://127.0.0.1:' + backend.address().port + '\\n    auth_required: false\\n', { source: "routes.yaml" });
const gateway = createGateway({ routes, hmacSecret: "h".repeat(32), tokens: { hs256: { secret: "s".repeat(32), issuer: "i", audience: "a" } }, logger: false });
const url = await gateway.listen();
const answer = await (await fetch(url + "/backend/echo/svc.v1.Echo/Say", { headers: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" } })).json();
await gateway.close();
backend.close();
console.log(JSON.stringify(answer));
`,
      { blocked: ["@opentelemetry/api"] },
    );
    expect(JSON.parse(stdout.trim().split("\n").at(-1)!)).toEqual({ path: "/svc.v1.Echo/Say", signed: true });
  });

  it("with the API installed and nothing registered, the client and the verifier never call into it; once something is, they do", async () => {
    // The copy the library loads (CommonJS, through createRequire); the ES module copy shares its registry.
    const api = createRequire(import.meta.url)("@opentelemetry/api") as typeof import("@opentelemetry/api");
    const probes = [
      vi.spyOn(api.context, "active"),
      vi.spyOn(api.trace, "getTracerProvider"),
      vi.spyOn(api.propagation, "fields"),
      vi.spyOn(api.metrics, "getMeter"),
    ];
    const calls = () => probes.reduce((n, probe) => n + probe.mock.calls.length, 0);
    try {
      const echo = newClient("nothing-registered-client");
      expect((await echo.echo({ text: "quiet" })).text).toBe("quiet");
      expect(calls()).toBe(0);
      // A propagator alone is a registration: the next call asks the API.
      api.propagation.setGlobalPropagator(new W3CTraceContextPropagator());
      expect((await echo.echo({ text: "asked" })).text).toBe("asked");
      expect(calls()).toBeGreaterThan(0);
    } finally {
      api.propagation.disable();
      for (const probe of probes) probe.mockRestore();
    }
  });

  describe("with the SDK registered", () => {
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    beforeAll(() => {
      context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
      propagation.setGlobalPropagator(new W3CTraceContextPropagator());
      trace.setGlobalTracerProvider(provider);
    });
    afterEach(() => exporter.reset());
    afterAll(async () => {
      await provider.shutdown();
      trace.disable();
      propagation.disable();
      context.disable();
    });

    const named = (spans: ReadableSpan[], name: string) => {
      const span = spans.find((s) => s.name === name);
      if (span === undefined) throw new Error(`no span ${name} in ${spans.map((s) => s.name).join(", ")}`);
      return span;
    };
    const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;

    it("one call is one trace across client, gateway and service, with linked spans", async () => {
      const echo = newClient("traced-client");
      const answer = await echo.echo({ text: "traced" });
      expect(answer.text).toBe("traced");
      // The gateway ends its span once the answer has gone out.
      await vi.waitFor(() => named(exporter.getFinishedSpans(), "connect-gateway POST /backend/echo/*"));
      const spans = exporter.getFinishedSpans();

      const call = named(spans, "connect-gateway example.v1.EchoService/Echo");
      const tokenRefresh = named(spans, "connect-gateway token refresh");
      const tokenRequest = named(spans, "connect-gateway token request");
      const hop = named(spans, "connect-gateway POST /backend/echo/*");
      const validation = named(spans, "connect-gateway token validation");
      const verification = named(spans, "connect-gateway verification");

      const traceId = call.spanContext().traceId;
      for (const span of [tokenRefresh, tokenRequest, hop, validation, verification]) expect(span.spanContext().traceId).toBe(traceId);
      expect(parentOf(call)).toBeUndefined();
      // The cache's refresh (nothing cached yet) runs inside the call; the token request inside it.
      expect(parentOf(tokenRefresh)).toBe(call.spanContext().spanId);
      expect(tokenRefresh.attributes).toMatchObject({ "connect_gateway.refresh_reason": "initial", "connect_gateway.outcome": "fetched" });
      expect(parentOf(tokenRequest)).toBe(tokenRefresh.spanContext().spanId);
      expect(parentOf(hop)).toBe(call.spanContext().spanId);
      expect(parentOf(validation)).toBe(hop.spanContext().spanId);
      expect(parentOf(verification)).toBe(hop.spanContext().spanId);

      expect(call.kind).toBe(SpanKind.CLIENT);
      expect(call.attributes).toMatchObject({
        "rpc.system": "connect_rpc",
        "rpc.service": "example.v1.EchoService",
        "rpc.method": "Echo",
        "connect_gateway.backend": "echo",
      });
      expect(call.status.code).toBe(SpanStatusCode.UNSET);
      expect(tokenRequest.attributes).toMatchObject({ "oauth2.grant_type": "client_credentials", "connect_gateway.outcome": "issued" });
      expect(hop.kind).toBe(SpanKind.SERVER);
      expect(hop.attributes).toMatchObject({
        "http.request.method": "POST",
        "http.route": "/backend/echo/*",
        "connect_gateway.backend": "echo",
        "http.response.status_code": 200,
        "connect_gateway.client_id": answer.caller?.clientId,
      });
      expect(hop.attributes["connect_gateway.upstream_latency_ms"]).toBeTypeOf("number");
      expect(hop.attributes["connect_gateway.token_validation_ms"]).toBeTypeOf("number");
      expect(validation.attributes).toMatchObject({ "connect_gateway.outcome": "valid" });
      expect(verification.kind).toBe(SpanKind.SERVER);
      expect(verification.attributes).toMatchObject({
        "connect_gateway.outcome": "verified",
        "connect_gateway.client_id": answer.caller?.clientId,
      });

      // No token, secret or signature anywhere in what was recorded.
      const recorded = JSON.stringify(spans.map((s) => [s.name, s.attributes, s.status, s.events]));
      for (const secret of [token, CLIENT_SECRET, HMAC_SECRET, token.split(".")[2]!]) expect(recorded).not.toContain(secret);
      expect(recorded).not.toMatch(/authorization|signature/i);
    });

    it("a failed call: the client span carries the Connect code; the hop the status", async () => {
      const echo = newClient("failing-client");
      const error = await rejectionOf(echo.echo({ text: "x" }, gatewayCall({ service: "nowhere" })));
      expect(error.code).toBe(Code.Unimplemented); // the gateway has no backend "nowhere"
      await vi.waitFor(() => named(exporter.getFinishedSpans(), "connect-gateway POST"));
      const spans = exporter.getFinishedSpans();
      const call = named(spans, "connect-gateway example.v1.EchoService/Echo");
      expect(call.status.code).toBe(SpanStatusCode.ERROR);
      expect(call.attributes).toMatchObject({ "rpc.connect_rpc.error_code": "unimplemented", "connect_gateway.backend": "nowhere" });
      const hop = named(spans, "connect-gateway POST");
      // The gateway answers a Connect caller in its protocol: Unimplemented is HTTP 501.
      expect(hop.attributes["http.response.status_code"]).toBe(501);
      expect(parentOf(hop)).toBe(call.spanContext().spanId);
    });

    it("auth.verifyNodeRequest (plain Node, Express): a verification span per request, refusals by reason", async () => {
      const agents = await startAgentsBackend(HMAC_SECRET);
      const rest = await startSeedGateway(
        `version: "1.0"\nroutes:\n  - path: /api/v1/agents\n    method: POST\n    proxy_upstream: $AGENTS_URL\n    scopes: [write:agents]\n`,
        { AGENTS_URL: agents.url },
      );
      try {
        const caller = trace.getTracer("test").startSpan("caller");
        const headers: Record<string, string> = { authorization: `Bearer ${token}`, "content-type": "application/json" };
        propagation.inject(trace.setSpan(context.active(), caller), headers);
        const answer = await fetch(`${rest.url}/api/v1/agents`, { method: "POST", headers, body: JSON.stringify({ name: "Bob" }) });
        expect(answer.status).toBe(201);
        caller.end();
        // Straight to the service, without the gateway's headers: refused.
        const refused = await fetch(`${agents.url}/api/v1/agents`, { headers: { traceparent: headers.traceparent! } });
        expect(refused.status).toBe(403);
        await vi.waitFor(() => named(exporter.getFinishedSpans(), "connect-gateway POST /api/v1/agents"));
        const spans = exporter.getFinishedSpans();
        const hop = named(spans, "connect-gateway POST /api/v1/agents");
        const [verified, rejected] = spans.filter((s) => s.name === "connect-gateway verification");
        expect(parentOf(hop)).toBe(caller.spanContext().spanId);
        expect(parentOf(verified!)).toBe(hop.spanContext().spanId);
        expect(verified!.attributes).toMatchObject({ "connect_gateway.outcome": "verified", "connect_gateway.client_id": "orders-client" });
        expect(parentOf(rejected!)).toBe(caller.spanContext().spanId);
        expect(rejected!.attributes["connect_gateway.outcome"]).toBe("missing_gateway_headers");
        expect(rejected!.status.code).toBe(SpanStatusCode.ERROR);
      } finally {
        await rest.close();
        await agents.close();
      }
    });

    it("auth.fastify: a verification span per request across the plugin's hooks, refusals by reason", async () => {
      const auth = createGatewayAuth({ hmacSecret: HMAC_SECRET });
      const app = Fastify();
      await app.register(async (scope) => {
        await scope.register(auth.fastify);
        scope.post("/api/payments", async (req) => ({ body: req.body }));
      });
      await app.listen({ port: 0, host: "127.0.0.1" });
      try {
        const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/api/payments`;
        const body = JSON.stringify({ amount: 12 });
        const caller = trace.getTracer("test").startSpan("caller");
        const traceHeaders: Record<string, string> = {};
        propagation.inject(trace.setSpan(context.active(), caller), traceHeaders);
        const signed = gatewaySignatureHeaders(
          HMAC_SECRET,
          { method: "POST", requestTarget: "/api/payments", body, contentType: "application/json" },
          { clientId: "payments-client", userId: "user-7" },
        );
        const ok = await fetch(url, { method: "POST", headers: { ...signed, ...traceHeaders, "content-type": "application/json" }, body });
        expect(ok.status).toBe(200);
        // The body changed after signing: refused once the body is read.
        const changed = await fetch(url, { method: "POST", headers: { ...signed, ...traceHeaders, "content-type": "application/json" }, body: JSON.stringify({ amount: 13 }) });
        expect(changed.status).toBe(403);
        // No gateway headers at all: refused before the body.
        const bare = await fetch(url, { method: "POST", headers: { ...traceHeaders, "content-type": "application/json" }, body });
        expect(bare.status).toBe(403);
        caller.end();
        const spans = exporter.getFinishedSpans().filter((span) => span.name === "connect-gateway verification");
        expect(spans.map((span) => span.attributes["connect_gateway.outcome"])).toEqual(["verified", "invalid_signature", "missing_gateway_headers"]);
        for (const span of spans) expect(parentOf(span)).toBe(caller.spanContext().spanId);
        expect(spans[0]!.attributes["connect_gateway.client_id"]).toBe("payments-client");
        expect(spans[1]!.status.code).toBe(SpanStatusCode.ERROR);
      } finally {
        await app.close();
      }
    });

    it("a token the gateway refuses: the hop and the validation say so", async () => {
      const stale = await seedToken({ client_id: "orders-client" }, { ttlSeconds: -60 });
      const refused = await startTokenEndpoint(() => ({ json: { access_token: stale, token_type: "Bearer", expires_in: 3600 } }));
      try {
        const echo = createClient(
          EchoService,
          createGatewayTransport({
            gatewayUrl: gateway.url,
            appcenterUrl: refused.url,
            clientId: "refused-client",
            clientSecret: CLIENT_SECRET,
            defaultService: "echo",
          }),
        );
        const error = await rejectionOf(echo.echo({ text: "x" }));
        expect(error.code).toBe(Code.Unauthenticated);
        await vi.waitFor(() => named(exporter.getFinishedSpans(), "connect-gateway POST /backend/echo/*"));
        const spans = exporter.getFinishedSpans();
        expect(named(spans, "connect-gateway token validation").attributes["connect_gateway.outcome"]).toMatch(/TOKEN|UNAUTHORIZED/);
        expect(named(spans, "connect-gateway POST /backend/echo/*").attributes["http.response.status_code"]).toBe(401);
        const call = named(spans, "connect-gateway example.v1.EchoService/Echo");
        expect(call.attributes["rpc.connect_rpc.error_code"]).toBe("unauthenticated");
        // The 401: the token was dropped, a refresh forced, the call sent once more (and refused again).
        expect(call.events.filter((e) => e.name === "connect-gateway unauthorized").map((e) => e.attributes)).toEqual([
          { "connect_gateway.outcome": "retried" },
        ]);
        const refreshes = spans.filter((span) => span.name === "connect-gateway token refresh");
        expect(refreshes.map((span) => span.attributes["connect_gateway.refresh_reason"])).toEqual(["initial", "rejected"]);
        for (const refresh of refreshes) expect(parentOf(refresh)).toBe(call.spanContext().spanId);
        expect(JSON.stringify(spans.map((s) => s.attributes))).not.toContain(stale);
      } finally {
        await refused.close();
      }
    });
  });
});
