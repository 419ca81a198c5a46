// connect-gateway/web's interceptors on a plain connect-node transport, against
// a real gateway and the example Echo backend on loopback: routing by the proto
// option, a per-call service and a default; bearer tokens from a token source,
// the one retry on 401, and the per-call user token.
import { Code, ConnectError, createClient, createContextValues, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EchoService, ValuationService } from "../../examples/gen/example/v1/example_pb.js";
import { startEchoBackend, type ExampleBackend } from "../../examples/dev/example-backends.js";
import {
  ConfigurationError,
  createBearerTokenInterceptor,
  createGatewayRoutingInterceptor,
  gatewayCall,
  gatewayCallKey,
  type TokenRequest,
  type TokenSource,
} from "../../src/web/index.js";
import type { Gateway } from "../../packages/gateway/src/index.js";
import { ECHO_BACKENDS, HMAC_SECRET, rejectionOf, seedToken, startSeedGateway } from "../support/gateway.js";

let echoBackend: ExampleBackend;
let gateway: Gateway;
let readToken: string;

beforeAll(async () => {
  echoBackend = await startEchoBackend(HMAC_SECRET);
  gateway = await startSeedGateway(
    `version: "1.0"
backends:
${ECHO_BACKENDS}`,
    { ECHO_URL: echoBackend.url },
  );
  readToken = await seedToken({ user_id: "user-1", scopes: ["read"] });
});
afterAll(async () => {
  await gateway?.close();
  await echoBackend?.close();
});

/** Records the URL each call is sent to, after routing. */
function urlSpy(): { interceptor: Interceptor; urls: string[] } {
  const urls: string[] = [];
  return { urls, interceptor: (next) => (req) => (urls.push(req.url), next(req)) };
}

function transport(interceptors: Interceptor[], kind: "connect" | "grpc-web" = "connect"): Transport {
  const options = { baseUrl: gateway.url, httpVersion: "1.1" as const, interceptors };
  return kind === "connect" ? createConnectTransport(options) : createGrpcWebTransport(options);
}

describe("createGatewayRoutingInterceptor", () => {
  it.each(["connect", "grpc-web"] as const)("routes by the proto option (connect-node, %s)", async (kind) => {
    const spy = urlSpy();
    const echo = createClient(
      EchoService,
      transport([createGatewayRoutingInterceptor(), createBearerTokenInterceptor(() => readToken), spy.interceptor], kind),
    );
    const res = await echo.echo({ text: "hi" });
    expect(res.text).toBe("hi");
    expect(res.caller).toMatchObject({ userId: "user-1", isServiceRequest: false });
    expect(spy.urls).toEqual([`${gateway.url}/backend/echo/example.v1.EchoService/Echo`]);
  });

  it("routes server streams too", async () => {
    const echo = createClient(EchoService, transport([createGatewayRoutingInterceptor(), createBearerTokenInterceptor(() => readToken)]));
    const texts: string[] = [];
    for await (const m of echo.echoStream({ text: "s", repeat: 3 })) texts.push(m.text);
    expect(texts).toEqual(["s 1", "s 2", "s 3"]);
  });

  it("a per-call service wins over the proto option; a default routes services without one", async () => {
    const spy = urlSpy();
    const interceptors = [createGatewayRoutingInterceptor({ defaultService: "fallback" }), spy.interceptor];
    const echo = createClient(EchoService, transport([...interceptors, createBearerTokenInterceptor(() => readToken)]));
    // echo-admin requires the admin scope: the gateway says so, proving where the call went.
    const denied = await rejectionOf(echo.echo({ text: "x" }, gatewayCall({ service: "echo-admin" })));
    expect(denied.code).toBe(Code.PermissionDenied);
    const valuations = createClient(ValuationService, transport(interceptors));
    await valuations.get({ id: 1n }).catch(() => undefined); // nothing serves it: only the URL matters
    expect(spy.urls).toEqual([
      `${gateway.url}/backend/echo-admin/example.v1.EchoService/Echo`,
      `${gateway.url}/backend/fallback/example.v1.ValuationService/Get`,
    ]);
  });

  it("refuses a service or user token set straight on gatewayCallKey that could not travel, before the call goes out", async () => {
    const spy = urlSpy();
    const echo = createClient(EchoService, transport([createGatewayRoutingInterceptor(), createBearerTokenInterceptor(() => readToken), spy.interceptor]));
    for (const service of ["../../admin", "x?y=1#", "a/b"]) {
      const refused = await rejectionOf(echo.echo({ text: "x" }, { contextValues: createContextValues().set(gatewayCallKey, { service }) }));
      expect([service, refused.rawMessage]).toEqual([service, expect.stringMatching(/service/)]);
    }
    // Given but undefined (a forwarded token that was not there): refused, never the source's token.
    const absent = await rejectionOf(echo.echo({ text: "x" }, { contextValues: createContextValues().set(gatewayCallKey, { userToken: undefined }) }));
    expect(absent.rawMessage).toMatch(/userToken/);
    const leaky = "user-token-with\r\nX-Injected: 1";
    const refused = await rejectionOf(echo.echo({ text: "x" }, { contextValues: createContextValues().set(gatewayCallKey, { userToken: leaky }) }));
    expect(refused.rawMessage).toMatch(/userToken/);
    expect(String(refused)).not.toContain("user-token-with");
    expect(spy.urls).toEqual([]);
  });

  it("without a service from anywhere the path is unchanged; a base URL's path prefix is kept", async () => {
    const spy = urlSpy();
    const bare = createClient(ValuationService, createConnectTransport({
      baseUrl: `${gateway.url}/prefix`,
      httpVersion: "1.1",
      interceptors: [createGatewayRoutingInterceptor(), spy.interceptor],
    }));
    await bare.get({ id: 1n }).catch(() => undefined);
    await bare.get({ id: 1n }, gatewayCall({ service: "echo" })).catch(() => undefined);
    expect(spy.urls).toEqual([
      `${gateway.url}/prefix/example.v1.ValuationService/Get`,
      `${gateway.url}/prefix/backend/echo/example.v1.ValuationService/Get`,
    ]);
  });

  it("refuses a bad default service, naming the option", () => {
    expect(() => createGatewayRoutingInterceptor({ defaultService: "a/b" })).toThrow(ConfigurationError);
    expect(() => createGatewayRoutingInterceptor({ defaultService: "a/b" })).toThrow(/`defaultService`/);
    expect(() => createGatewayRoutingInterceptor({ defaultService: "" })).toThrow(/`defaultService`/);
  });
});

describe("createBearerTokenInterceptor", () => {
  const echoWith = (source: TokenSource, options?: Parameters<typeof createBearerTokenInterceptor>[1]) =>
    createClient(EchoService, transport([createGatewayRoutingInterceptor(), createBearerTokenInterceptor(source, options)]));

  it("no token: the gateway answers Unauthenticated", async () => {
    const echo = createClient(EchoService, transport([createGatewayRoutingInterceptor()]));
    expect((await rejectionOf(echo.echo({ text: "x" }))).code).toBe(Code.Unauthenticated);
  });

  it("an async source works; missing scope gives PermissionDenied", async () => {
    const echo = echoWith(async () => readToken);
    expect((await echo.echo({ text: "ok" })).caller?.userId).toBe("user-1");
    expect((await rejectionOf(echo.echo({ text: "x" }, gatewayCall({ service: "echo-admin" })))).code).toBe(
      Code.PermissionDenied,
    );
  });

  it("on 401 asks the source once more, with the rejected token, when told to", async () => {
    const expired = await seedToken({ user_id: "user-1" }, { ttlSeconds: -60 });
    const asked: TokenRequest[] = [];
    const echo = echoWith(
      (request) => {
        asked.push(request);
        return request.rejected === undefined ? expired : readToken;
      },
      { refreshOnUnauthenticated: true },
    );
    expect((await echo.echo({ text: "again" })).text).toBe("again");
    expect(asked).toEqual([{}, { rejected: expired }]);
  });

  it("retries at most once, and not at all by default or for streams", async () => {
    const expired = await seedToken({}, { ttlSeconds: -60 });
    let calls = 0;
    const alwaysExpired = () => (calls++, expired);
    expect((await rejectionOf(echoWith(alwaysExpired, { refreshOnUnauthenticated: true }).echo({ text: "x" }))).code).toBe(
      Code.Unauthenticated,
    );
    expect(calls).toBe(2);
    calls = 0;
    expect((await rejectionOf(echoWith(alwaysExpired).echo({ text: "x" }))).code).toBe(Code.Unauthenticated);
    expect(calls).toBe(1);
    calls = 0;
    const stream = echoWith(alwaysExpired, { refreshOnUnauthenticated: true }).echoStream({ text: "s", repeat: 1 });
    const error = await rejectionOf((async () => { for await (const _ of stream) { /* drain */ } })());
    expect(error.code).toBe(Code.Unauthenticated);
    expect(calls).toBe(1);
  });

  it("a per-call user token is sent instead, without asking the source", async () => {
    const other = await seedToken({ user_id: "user-2", scopes: ["read"] });
    let asked = 0;
    const echo = echoWith(() => (asked++, readToken));
    const res = await echo.echo({ text: "as 2" }, gatewayCall({ userToken: other }));
    expect(res.caller?.userId).toBe("user-2");
    expect(asked).toBe(0);
  });

  it("a failing or bad source fails the call with Unauthenticated, never showing a token", async () => {
    const failing = await rejectionOf(echoWith(() => Promise.reject(new Error("login required"))).echo({ text: "x" }));
    expect(failing).toBeInstanceOf(ConnectError);
    expect(failing.code).toBe(Code.Unauthenticated);
    expect(failing.rawMessage).toMatch(/token source failed: login required/);
    const bad = await rejectionOf(echoWith(() => "Bearer abc def").echo({ text: "x" }));
    expect(bad.code).toBe(Code.Unauthenticated);
    expect(bad.rawMessage).not.toContain("abc");
  });

  it("refuses bad options, naming them", () => {
    expect(() => createBearerTokenInterceptor("token" as unknown as TokenSource)).toThrow(/`source`/);
    expect(() =>
      createBearerTokenInterceptor(() => "t", { refreshOnUnauthenticated: "yes" as unknown as boolean }),
    ).toThrow(/`refreshOnUnauthenticated`/);
  });
});
