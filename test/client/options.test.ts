import * as https from "node:https";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigurationError,
  createGatewayClient,
  createGatewayTransport,
  type GatewayTransportOptions,
} from "../../src/client/index.js";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import { startBackend, type TestBackend } from "../support/connect-backend.js";
import { startOAuth2Server, type OAuth2Server } from "../../src/testing/oauth2-server.js";
import { recordingAgent } from "../support/recording-agent.js";
import { createMemoryTokenStore } from "../../src/client/token-store.js";
import { resolveGatewayOptions } from "../../src/client/gateway-options.js";

const SECRET = "qq-Unmistakable-Secret-9000";
const valid = {
  clientId: "opts",
  clientSecret: SECRET,
  gatewayUrl: "http://127.0.0.1:1",
  appcenterUrl: "http://127.0.0.1:2",
};

const envNames = ["GATEWAY_CLIENT_ID", "GATEWAY_CLIENT_SECRET", "GATEWAY_URL", "APPCENTER_URL", "GATEWAY_TOKEN_PATH", "GATEWAY_SCOPE"] as const;
const savedEnv = Object.fromEntries(envNames.map((n) => [n, process.env[n]]));
afterEach(() => {
  for (const n of envNames) {
    if (savedEnv[n] === undefined) delete process.env[n];
    else process.env[n] = savedEnv[n];
  }
});

function configurationError(build: () => unknown): ConfigurationError {
  try {
    build();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigurationError);
    for (const text of [(error as Error).message, String(error), (error as Error).stack ?? ""]) {
      expect(text).not.toContain(SECRET);
    }
    return error as ConfigurationError;
  }
  throw new Error("expected a ConfigurationError");
}

describe("construction errors name the option and never show the secret", () => {
  const bad: [string, Record<string, unknown>, RegExp][] = [
    ["clientId", { clientId: undefined }, /`clientId` is missing: .*GATEWAY_CLIENT_ID/],
    ["clientId", { clientId: "" }, /`clientId` is missing/],
    ["clientSecret", { clientSecret: undefined }, /`clientSecret` is missing: .*GATEWAY_CLIENT_SECRET/],
    ["clientSecret", { clientSecret: `${SECRET}\n` }, /control characters/],
    ["gatewayUrl", { gatewayUrl: "not a url" }, /absolute http/],
    ["gatewayUrl", { gatewayUrl: "ftp://127.0.0.1/" }, /absolute http/],
    ["gatewayUrl", { gatewayUrl: `http://user:${SECRET}@127.0.0.1/` }, /credentials/],
    ["gatewayUrl", { gatewayUrl: "http://127.0.0.1/?a=1" }, /query/],
    ["appcenterUrl", { appcenterUrl: "127.0.0.1:8080" }, /absolute http/],
    ["tokenPath", { tokenPath: "oauth/token" }, /starting with "\/"/],
    ["timeoutMs", { timeoutMs: -1 }, /must be a number/],
    ["timeoutMs", { timeoutMs: 0 }, /must be a number/],
    ["timeoutMs", { timeoutMs: Number.NaN }, /must be a number/],
    ["timeoutMs", { timeoutMs: "30" }, /must be a number/],
    ["refreshMarginSeconds", { refreshMarginSeconds: -5 }, /must be a number/],
    ["defaultTokenLifetimeSeconds", { defaultTokenLifetimeSeconds: 0 }, /must be a number/],
    ["scope", { scope: "" }, /OAuth2 scopes/],
    ["scope", { scope: ['quo"te'] }, /OAuth2 scopes/],
    ["defaultService", { defaultService: "a/b" }, /single path segment/],
    ["session.code", { session: { code: "" } }, /one-time code/],
    ["session.exchangePath", { session: { code: "c", exchangePath: "x" } }, /starting with "\/"/],
    ["agent", { agent: {} }, /http.Agent/],
    ["agent", { agent: new https.Agent() }, /must both use https:/],
    ["protocol", { protocol: "soap" }, /"connect" \(the default\), "grpc" or "grpc-web"/],
    ["httpVersion", { protocol: "grpc", httpVersion: "1.1" }, /gRPC needs HTTP\/2/],
    ["httpVersion", { httpVersion: "3" }, /"1.1" or "2"/],
    ["useHttpGet", { protocol: "grpc-web", useHttpGet: true }, /only for protocol "connect"/],
    ["interceptors", { interceptors: "nope" }, /array of Connect interceptors/],
  ];

  it.each(bad)("%s: %j", (option, override, message) => {
    const error = configurationError(() => createGatewayTransport({ ...valid, ...override } as GatewayTransportOptions));
    expect(error.option).toBe(option);
    expect(error.message).toContain(`\`${option}\``);
    expect(error.message).toMatch(message);
  });

  it("the REST client checks the same options", () => {
    expect(configurationError(() => createGatewayClient({ ...valid, timeoutMs: -1 })).option).toBe("timeoutMs");
    expect(configurationError(() => createGatewayClient({ ...valid, clientSecret: "" })).option).toBe("clientSecret");
  });

  it("wrong protocol combinations do not compile", () => {
    const wrong = [
      // @ts-expect-error gRPC needs HTTP/2
      (): GatewayTransportOptions => ({ ...valid, protocol: "grpc", httpVersion: "1.1" }),
      // @ts-expect-error useHttpGet is a Connect-protocol option
      (): GatewayTransportOptions => ({ ...valid, protocol: "grpc", useHttpGet: true }),
      // @ts-expect-error HTTP/2 session options need httpVersion "2"
      (): GatewayTransportOptions => ({ ...valid, protocol: "connect", pingIntervalMs: 1000 }),
    ];
    for (const options of wrong) expect(() => createGatewayTransport(options())).toThrow();
  });
});

describe("environment defaults and the shared agent", () => {
  let oauth: OAuth2Server;
  let backend: TestBackend;
  beforeAll(async () => {
    oauth = await startOAuth2Server({ clients: [{ clientId: "env-client", clientSecret: SECRET, scopes: ["read"] }] });
    backend = await startBackend({ httpVersion: "1.1" });
  });
  afterAll(() => Promise.all([oauth.close(), backend.close()]));
  const echoThrough = (extra: Partial<GatewayTransportOptions>) =>
    createClient(
      EchoService,
      createGatewayTransport({
        clientId: "env-client",
        clientSecret: SECRET,
        gatewayUrl: backend.url,
        appcenterUrl: oauth.issuer,
        tokenPath: "/token",
        // A token cache of each transport's own: a test watches its token request.
        tokenStore: createMemoryTokenStore(),
        ...extra,
      } as GatewayTransportOptions),
    );

  it("reads GATEWAY_CLIENT_ID, GATEWAY_CLIENT_SECRET, GATEWAY_URL and APPCENTER_URL", async () => {
    Object.assign(process.env, {
      GATEWAY_CLIENT_ID: "env-client",
      GATEWAY_CLIENT_SECRET: SECRET,
      GATEWAY_URL: `${backend.url}/from-env`,
      APPCENTER_URL: oauth.issuer,
    });
    const before = oauth.tokenRequests;
    const echo = createClient(EchoService, createGatewayTransport({ tokenPath: "/token" }));
    await echo.echo({});
    expect(backend.requests.at(-1)?.path).toBe("/from-env/backend/echo/example.v1.EchoService/Echo");
    expect(oauth.tokenRequests).toBe(before + 1);
  });

  it("reads GATEWAY_TOKEN_PATH and GATEWAY_SCOPE: env alone reaches an OAuth2 server whose token path is not the default", async () => {
    Object.assign(process.env, {
      GATEWAY_CLIENT_ID: "env-client",
      GATEWAY_CLIENT_SECRET: SECRET,
      GATEWAY_URL: backend.url,
      APPCENTER_URL: oauth.issuer,
      GATEWAY_TOKEN_PATH: "/token",
      GATEWAY_SCOPE: "read",
    });
    const before = oauth.tokenRequests;
    await createClient(EchoService, createGatewayTransport({ tokenStore: createMemoryTokenStore() })).echo({});
    expect(oauth.tokenRequests).toBe(before + 1);
    expect(resolveGatewayOptions({}, process.env).scope).toBe("read");
    expect(resolveGatewayOptions({ scope: ["write"] }, process.env).scope).toBe("write");
    process.env.GATEWAY_TOKEN_PATH = "no-slash";
    expect(configurationError(() => createGatewayTransport()).option).toBe("tokenPath");
  });

  it("refuses a gateway on this machine with the default OAuth2 server: a forgotten APPCENTER_URL would send the credentials to production", () => {
    for (const gatewayUrl of [
      "http://127.0.0.1:8080",
      "http://localhost:8080/prefix",
      "http://[::1]:8080",
      "http://api.localhost:9",
      "http://0.0.0.0:8080",
      "http://0:8080",
      "http://[::]:8080",
      "http://[::ffff:127.0.0.1]:8080",
      "http://127.1:8080",
    ]) {
      const error = configurationError(() => resolveGatewayOptions({ clientId: "c", clientSecret: SECRET, gatewayUrl }, {}));
      expect([gatewayUrl, error.option]).toEqual([gatewayUrl, "appcenterUrl"]);
      expect(error.message).toContain("Set APPCENTER_URL");
    }
    // Set either way, or a gateway elsewhere: as before.
    expect(resolveGatewayOptions({ clientId: "c", clientSecret: SECRET, gatewayUrl: "http://127.0.0.1:8080" }, { APPCENTER_URL: "http://127.0.0.1:4000" }).tokenUrl.href).toBe(
      "http://127.0.0.1:4000/oauth/token",
    );
    expect(resolveGatewayOptions({ clientId: "c", clientSecret: SECRET, gatewayUrl: "https://gateway.example" }, {}).tokenUrl.href).toBe(
      "https://appcenter.fluence-europe.cloud/oauth/token",
    );
  });

  it("refuses a token endpoint on this machine with the default gateway: a forgotten GATEWAY_URL would send the calls to production", () => {
    for (const appcenterUrl of ["http://127.0.0.1:4000", "http://localhost:4000", "http://[::1]:4000"]) {
      const error = configurationError(() => resolveGatewayOptions({ clientId: "c", clientSecret: SECRET, appcenterUrl }, {}));
      expect([appcenterUrl, error.option]).toEqual([appcenterUrl, "gatewayUrl"]);
      expect(error.message).toContain("Set GATEWAY_URL");
      const fromEnv = configurationError(() => resolveGatewayOptions({ clientId: "c", clientSecret: SECRET }, { APPCENTER_URL: appcenterUrl }));
      expect(fromEnv.option).toBe("gatewayUrl");
    }
    // Both set, or a token endpoint elsewhere: as before.
    expect(resolveGatewayOptions({ clientId: "c", clientSecret: SECRET }, { APPCENTER_URL: "http://127.0.0.1:4000", GATEWAY_URL: "http://127.0.0.1:8080" }).gatewayUrl).toBe(
      "http://127.0.0.1:8080",
    );
    expect(resolveGatewayOptions({ clientId: "c", clientSecret: SECRET, appcenterUrl: "https://login.example" }, {}).gatewayUrl).toBe(
      "https://gateway.fluence-europe.cloud",
    );
  });

  it("a bad URL from the environment is refused naming the variable", () => {
    const error = configurationError(() => resolveGatewayOptions({ clientId: "c", clientSecret: SECRET }, { GATEWAY_URL: "127.0.0.1:8080", APPCENTER_URL: "http://127.0.0.1:4000" }));
    expect([error.option, error.message]).toEqual(["gatewayUrl", expect.stringContaining("(it comes from GATEWAY_URL)")]);
    const appcenter = configurationError(() =>
      resolveGatewayOptions({ clientId: "c", clientSecret: SECRET, gatewayUrl: "http://127.0.0.1:8080" }, { APPCENTER_URL: `http://c:${SECRET}@127.0.0.1:4000` }),
    );
    expect([appcenter.option, appcenter.message]).toEqual(["appcenterUrl", expect.stringContaining("(it comes from APPCENTER_URL)")]);
  });

  it("an explicit option wins over the environment", () => {
    process.env.GATEWAY_CLIENT_ID = "";
    const error = configurationError(() => createGatewayTransport({ ...valid, clientId: undefined }));
    expect(error.option).toBe("clientId");
    expect(() => createGatewayTransport({ ...valid, clientId: "explicit" })).not.toThrow();
  });

  it("the token request rides the caller's agent, like the calls", async () => {
    const { agent, ports } = recordingAgent();
    try {
      const echo = echoThrough({ agent });
      await echo.echo({});
      const port = (url: string) => Number(new URL(url).port);
      expect(ports).toEqual([port(oauth.issuer), port(backend.url)]);
    } finally {
      agent.destroy();
    }
  });

  it("user interceptors run after routing: they see the routed URL", async () => {
    const urls: string[] = [];
    const spy: Interceptor = (next) => (req) => {
      urls.push(req.url);
      return next(req);
    };
    const echo = echoThrough({ interceptors: [spy] });
    await echo.echo({});
    expect(urls).toEqual([`${backend.url}/backend/echo/example.v1.EchoService/Echo`]);
  });
});
