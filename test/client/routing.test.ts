import { createClient, createContextValues } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigurationError,
  createGatewayTransport,
  gatewayCall,
  gatewayCallKey,
  kebabService,
  withService,
  withUserToken,
  type GatewayTransportOptions,
} from "../../src/client/index.js";
import { EchoService, ValuationService } from "../../examples/gen/example/v1/example_pb.js";
import { startBackend, type TestBackend } from "../support/connect-backend.js";
import { startOAuth2Server, type OAuth2Server } from "../../src/testing/oauth2-server.js";

const credentials = { clientId: "router", clientSecret: "router-secret" };
// (oidc-provider refuses a client registered with no scope at all.)
const client = { ...credentials, scopes: ["read"] };

let oauth: OAuth2Server;
beforeAll(async () => {
  oauth = await startOAuth2Server({ clients: [client] });
});
afterAll(() => oauth.close());

function options(backend: TestBackend, extra: Partial<GatewayTransportOptions> = {}): GatewayTransportOptions {
  return {
    ...credentials,
    gatewayUrl: backend.url,
    appcenterUrl: oauth.issuer,
    tokenPath: "/token",
    ...extra,
  } as GatewayTransportOptions;
}

const lastPath = (backend: TestBackend) => backend.requests.at(-1)?.path;

describe.each(["1.1", "2"] as const)("routing over HTTP/%s", (httpVersion) => {
  let backend: TestBackend;
  beforeAll(async () => {
    backend = await startBackend({ httpVersion });
  });
  afterAll(() => backend.close());

  const transport = (extra: Partial<GatewayTransportOptions> = {}) =>
    createGatewayTransport(options(backend, { httpVersion, ...extra } as Partial<GatewayTransportOptions>));

  it("routes by the priority per-call > withService > proto option > defaultService > unchanged", async () => {
    const withDefault = transport({ defaultService: "default" });
    const echo = createClient(EchoService, withDefault);
    const valuations = createClient(ValuationService, withDefault);
    const bare = createClient(ValuationService, transport());
    const cases: [() => Promise<unknown>, string][] = [
      [() => echo.echo({ text: "a" }, gatewayCall({ service: "per-call" })), "/backend/per-call/example.v1.EchoService/Echo"],
      [
        () => withService("scoped", () => echo.echo({ text: "a" }, gatewayCall({ service: "per-call" }))),
        "/backend/per-call/example.v1.EchoService/Echo",
      ],
      [() => withService("scoped", () => echo.echo({ text: "a" })), "/backend/scoped/example.v1.EchoService/Echo"],
      [() => echo.echo({ text: "a" }), "/backend/echo/example.v1.EchoService/Echo"],
      [() => valuations.get({ id: 1n }), "/backend/default/example.v1.ValuationService/Get"],
      [() => bare.get({ id: 1n }), "/example.v1.ValuationService/Get"],
      [
        () => withService("outer", () => withService("inner", () => bare.get({ id: 1n }))),
        "/backend/inner/example.v1.ValuationService/Get",
      ],
    ];
    for (const [call, path] of cases) {
      await call();
      expect(lastPath(backend)).toBe(path);
    }
  });

  it("takes the per-call service from contextValues set with gatewayCallKey", async () => {
    const echo = createClient(EchoService, transport());
    await echo.echo({ text: "x" }, { contextValues: createContextValues().set(gatewayCallKey, { service: "raw-key" }) });
    expect(lastPath(backend)).toBe("/backend/raw-key/example.v1.EchoService/Echo");
  });

  it("keeps a path prefix of the gateway URL", async () => {
    const echo = createClient(EchoService, transport({ gatewayUrl: `${backend.url}/gw/v2/` }));
    const res = await echo.echo({ text: "prefixed" });
    expect(res.text).toBe("prefixed");
    expect(lastPath(backend)).toBe("/gw/v2/backend/echo/example.v1.EchoService/Echo");
  });

  it("routes streaming calls too", async () => {
    const echo = createClient(EchoService, transport());
    const texts: string[] = [];
    for await (const r of echo.echoStream({ text: "s", repeat: 3 })) texts.push(r.text);
    expect(texts).toEqual(["s", "s", "s"]);
    expect(lastPath(backend)).toBe("/backend/echo/example.v1.EchoService/EchoStream");
    async function* pieces() {
      yield { text: "a" };
      yield { text: "b" };
    }
    expect((await echo.collect(pieces())).text).toBe("ab");
    expect(lastPath(backend)).toBe("/backend/echo/example.v1.EchoService/Collect");
  });

  it("keeps concurrent withService / withUserToken scopes apart across interleaved async work", async () => {
    const valuations = createClient(ValuationService, transport());
    const pause = () => new Promise((r) => setTimeout(r, Math.random() * 5));
    const before = backend.requests.length;
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        withService(`svc-${i}`, () =>
          withUserToken(`user-token-${i}`, async () => {
            await pause();
            await valuations.get({ id: BigInt(i) });
            await pause();
            await valuations.get({ id: BigInt(i) });
          }),
        ),
      ),
    );
    const seen = backend.requests.slice(before);
    expect(seen).toHaveLength(40);
    for (const r of seen) {
      const i = /svc-(\d+)/.exec(r.path)?.[1];
      expect(r.authorization).toBe(`Bearer user-token-${i}`);
    }
    // Outside the scopes nothing leaks: the call goes unrouted.
    await valuations.get({ id: 1n });
    expect(lastPath(backend)).toBe("/example.v1.ValuationService/Get");
    expect(backend.requests.at(-1)?.authorization).not.toMatch(/user-token/);
  });
});

describe("protocols", () => {
  let h1: TestBackend;
  let h2: TestBackend;
  beforeAll(async () => {
    [h1, h2] = await Promise.all([startBackend({ httpVersion: "1.1" }), startBackend({ httpVersion: "2" })]);
  });
  afterAll(() => Promise.all([h1.close(), h2.close()]));

  const cases = [
    ["connect", "1.1", () => h1],
    ["connect", "2", () => h2],
    ["grpc", "2", () => h2],
    ["grpc-web", "1.1", () => h1],
    ["grpc-web", "2", () => h2],
  ] as const;
  it.each(cases)("%s over HTTP/%s is routed and authenticated", async (protocol, httpVersion, backend) => {
    const echo = createClient(
      EchoService,
      createGatewayTransport(options(backend(), { protocol, httpVersion } as Partial<GatewayTransportOptions>)),
    );
    expect((await echo.echo({ text: protocol })).text).toBe(protocol);
    const seen = backend().requests.at(-1);
    expect(seen?.path).toBe("/backend/echo/example.v1.EchoService/Echo");
    expect(seen?.authorization).toMatch(/^Bearer \S+$/);
  });

  it("uses Connect GET when asked (useHttpGet), still routed and authenticated", async () => {
    // Echo is declared side-effect free, so the transport turns it into a GET after routing.
    const echo = createClient(EchoService, createGatewayTransport(options(h1, { useHttpGet: true })));
    expect((await echo.echo({ text: "get" })).text).toBe("get");
    const seen = h1.requests.at(-1);
    expect(seen).toMatchObject({ method: "GET", path: "/backend/echo/example.v1.EchoService/Echo" });
    expect(seen?.authorization).toMatch(/^Bearer \S+$/);
  });
});

describe("service names", () => {
  let backend: TestBackend;
  beforeAll(async () => {
    backend = await startBackend({ httpVersion: "1.1" });
  });
  afterAll(() => backend.close());

  const bad = ["", "/", "a/b", ".", "..", "with space", "tab\t", "pct%2F", "new\nline", "nul\u0000", "q?x", "h#x", "back\\slash", "\u00e9", "x\u200by", "a<b"];

  it.each(bad)("refuses %j everywhere before any I/O", async (name) => {
    const tokenRequests = oauth.tokenRequests;
    const requests = backend.requests.length;
    const echo = createClient(EchoService, createGatewayTransport(options(backend)));
    expect(() => gatewayCall({ service: name })).toThrow(ConfigurationError);
    expect(() => withService(name, () => echo.echo({}))).toThrow(ConfigurationError);
    expect(() => createGatewayTransport(options(backend, { defaultService: name }))).toThrow(/`defaultService`/);
    await expect(
      echo.echo({}, { contextValues: createContextValues().set(gatewayCallKey, { service: name }) }),
    ).rejects.toThrow(ConfigurationError);
    expect(oauth.tokenRequests).toBe(tokenRequests);
    expect(backend.requests.length).toBe(requests);
  });

  it("uses strings as given, and converts snake_case only through kebabService", async () => {
    const valuations = createClient(ValuationService, createGatewayTransport(options(backend)));
    await valuations.get({ id: 1n }, gatewayCall({ service: "base_valeur" }));
    expect(backend.requests.at(-1)?.path).toBe("/backend/base_valeur/example.v1.ValuationService/Get");
    await valuations.get({ id: 1n }, gatewayCall({ service: kebabService("base_valeur") }));
    expect(backend.requests.at(-1)?.path).toBe("/backend/base-valeur/example.v1.ValuationService/Get");
    expect(() => kebabService("a/b")).toThrow(ConfigurationError);
  });
});
