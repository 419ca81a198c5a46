import { generateKeyPairSync, type JsonWebKey, type KeyObject } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { decodeJwt, decodeProtectedHeader, importJWK, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AuthenticationError,
  ConfigurationError,
  createGatewayClient,
  createGatewayTransport,
  type GatewayOptions,
  type GatewayTransportOptions,
} from "../../src/client/index.js";
import { resolveGatewayOptions } from "../../src/client/gateway-options.js";
import { createTokenManager } from "../../src/client/token-manager.js";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import { startBackend, type TestBackend } from "../support/connect-backend.js";
import { expectNoSecret } from "../support/no-secret.js";
import { startOAuth2Server, type OAuth2Server, type OAuth2TestClient } from "../../src/testing/oauth2-server.js";
import { startTokenEndpoint, type TestTokenEndpoint } from "../support/token-endpoint.js";

// Key pairs of every supported kind, and the text that must never reach an
// error message: the base64 lines of each private PEM and each JWK's private
// members.
const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
const pss = generateKeyPairSync("rsa", { modulusLength: 2048 });
const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
const ed = generateKeyPairSync("ed25519");
const stranger = generateKeyPairSync("rsa", { modulusLength: 2048 });

function privatePem(key: KeyObject, type: "pkcs8" | "pkcs1" | "sec1" = "pkcs8"): string {
  return key.export({ format: "pem", type }) as string;
}
function privateJwk(key: KeyObject): JsonWebKey {
  return key.export({ format: "jwk" });
}
/** Every line of key material in a PEM, and a JWK's private members. */
function keyMaterial(...keys: KeyObject[]): string[] {
  return keys.flatMap((key) => {
    const pem = privatePem(key).split("\n").filter((line) => line !== "" && !line.startsWith("-----"));
    const jwk = privateJwk(key);
    const parts = [jwk.d, jwk.p, jwk.q, jwk.dp, jwk.dq, jwk.qi].filter((v): v is string => typeof v === "string");
    return [...pem, ...parts.map((v) => v.slice(0, 24))];
  });
}
const MATERIAL = keyMaterial(rsa.privateKey, pss.privateKey, ec.privateKey, ed.privateKey, stranger.privateKey);
const POST_SECRET = "p0st-Secret+/:% with spaces";

const clients: OAuth2TestClient[] = [
  {
    clientId: "rsa-svc",
    tokenEndpointAuthMethod: "private_key_jwt",
    publicKeys: [{ ...rsa.publicKey.export({ format: "jwk" }), kid: "rsa-1" }],
    scopes: ["read"],
  },
  { clientId: "pss-svc", tokenEndpointAuthMethod: "private_key_jwt", publicKeys: [pss.publicKey] },
  { clientId: "ec-svc", tokenEndpointAuthMethod: "private_key_jwt", publicKeys: [ec.publicKey.export({ format: "pem", type: "spki" }) as string] },
  { clientId: "ed-svc", tokenEndpointAuthMethod: "private_key_jwt", publicKeys: [ed.privateKey] },
  { clientId: "post-svc", clientSecret: POST_SECRET, tokenEndpointAuthMethod: "client_secret_post" },
];

let oauth: OAuth2Server;
let backend: TestBackend;
beforeAll(async () => {
  [oauth, backend] = await Promise.all([startOAuth2Server({ clients }), startBackend({ httpVersion: "1.1" })]);
});
afterAll(() => Promise.all([oauth.close(), backend.close()]));

/** Options with no client secret anywhere: only the id, the URLs and `extra`. */
function options(clientId: string, extra: Partial<GatewayOptions>): GatewayTransportOptions {
  return { clientId, gatewayUrl: backend.url, appcenterUrl: oauth.issuer, tokenPath: "/token", ...extra } as GatewayTransportOptions;
}

async function echoOnce(transportOptions: GatewayTransportOptions): Promise<string | undefined> {
  const echo = createClient(EchoService, createGatewayTransport(transportOptions));
  expect((await echo.echo({ text: "signed" })).text).toBe("signed");
  return backend.requests.at(-1)?.authorization;
}

describe("private_key_jwt against the real oidc-provider", () => {
  const cases: [string, string, GatewayOptions["clientAuthentication"]][] = [
    ["RS256, a KeyObject and a kid", "rsa-svc", { method: "private_key_jwt", privateKey: rsa.privateKey, keyId: "rsa-1" }],
    ["PS256, a PKCS#1 PEM", "pss-svc", { method: "private_key_jwt", privateKey: privatePem(pss.privateKey, "pkcs1"), algorithm: "PS256" }],
    ["ES256 (inferred), a SEC1 PEM", "ec-svc", { method: "private_key_jwt", privateKey: privatePem(ec.privateKey, "sec1") }],
    ["EdDSA (inferred), a JWK", "ed-svc", { method: "private_key_jwt", privateKey: privateJwk(ed.privateKey) }],
  ];
  for (const [name, clientId, clientAuthentication] of cases) {
    it(`${name}: a token is issued and the call goes through, with no client secret configured`, async () => {
      const config = options(clientId, { clientAuthentication });
      expect(JSON.stringify(config)).not.toMatch(/secret/i);
      const before = oauth.tokenRequests;
      expect(await echoOnce(config)).toMatch(/^Bearer \S+$/);
      expect(oauth.tokenRequests).toBe(before + 1);
    });
  }

  it("asks for scopes like any client: the token carries them", async () => {
    const tokens = createTokenManager(
      resolveGatewayOptions(
        options("rsa-svc", { clientAuthentication: { method: "private_key_jwt", privateKey: rsa.privateKey, keyId: "rsa-1" }, scope: "read" }),
        {},
      ),
    );
    const token = await tokens.getToken();
    expect(decodeJwt(token)).toMatchObject({ client_id: "rsa-svc", scope: "read" });
  });

  it("reads GATEWAY_CLIENT_PRIVATE_KEY (line breaks written as \\n) and GATEWAY_CLIENT_KEY_ID; they win over GATEWAY_CLIENT_SECRET", async () => {
    const env = {
      GATEWAY_CLIENT_ID: "rsa-svc",
      GATEWAY_CLIENT_PRIVATE_KEY: privatePem(rsa.privateKey).replace(/\n/g, "\\n"),
      GATEWAY_CLIENT_KEY_ID: "rsa-1",
      GATEWAY_CLIENT_SECRET: "left-over",
      APPCENTER_URL: oauth.issuer,
      GATEWAY_URL: backend.url,
    };
    const resolved = resolveGatewayOptions({ tokenPath: "/token" }, env);
    expect(resolved.clientAuthentication).toMatchObject({ method: "private_key_jwt", key: { algorithm: "RS256", keyId: "rsa-1" } });
    expect(await createTokenManager(resolved).getToken()).toMatch(/\S+/);
  });

  it("every token request carries a fresh assertion: the server refuses a replayed jti, yet two requests succeed", async () => {
    const tokens = createTokenManager(
      resolveGatewayOptions(options("ec-svc", { clientAuthentication: { method: "private_key_jwt", privateKey: ec.privateKey } }), {}),
    );
    const before = oauth.tokenRequests;
    const first = await tokens.getToken();
    expect(tokens.invalidate(first)).toBe(true); // forces a second token request
    expect(await tokens.getToken()).not.toBe(first);
    expect(oauth.tokenRequests).toBe(before + 2);
  });

  it("another key pair is refused: an AuthenticationError without key material", async () => {
    const config = options("rsa-svc", { clientAuthentication: { method: "private_key_jwt", privateKey: stranger.privateKey, keyId: "rsa-1" } });
    const echo = createClient(EchoService, createGatewayTransport(config));
    const error = await echo.echo({}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect((error as Error).message).toMatch(/invalid_client/);
    expectNoSecret(error, MATERIAL);
  });

  it("a client registered for private_key_jwt cannot authenticate with a secret", async () => {
    const guess = createTokenManager(resolveGatewayOptions(options("rsa-svc", { clientSecret: "guess" }), {}));
    const error = await Promise.resolve()
      .then(() => guess.getToken())
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthenticationError);
  });
});

describe("client_secret_post against the real oidc-provider", () => {
  it("gets a token and calls; client_secret_basic is refused for that client", async () => {
    expect(await echoOnce(options("post-svc", { clientSecret: POST_SECRET, clientAuthentication: "client_secret_post" }))).toMatch(
      /^Bearer \S+$/,
    );
    const basic = createTokenManager(resolveGatewayOptions(options("post-svc", { clientSecret: POST_SECRET }), {}));
    const error = await Promise.resolve()
      .then(() => basic.getToken())
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthenticationError);
    expectNoSecret(error, [POST_SECRET, encodeURIComponent(POST_SECRET)]);
  });
});

describe("what reaches the token endpoint (a recording endpoint)", () => {
  let endpoint: TestTokenEndpoint;
  let issued = 0;
  beforeAll(async () => {
    endpoint = await startTokenEndpoint(() => ({ json: { access_token: `tok-${++issued}`, token_type: "Bearer", expires_in: 300 } }));
  });
  afterAll(() => endpoint.close());

  function manager(extra: Partial<GatewayOptions>) {
    return createTokenManager(
      resolveGatewayOptions({ clientId: "svc:1", appcenterUrl: endpoint.url, gatewayUrl: endpoint.url, ...extra }, {}),
    );
  }

  it("client_secret_post: client_id and client_secret in the form body, no Authorization header", async () => {
    const start = endpoint.requests.length;
    await manager({ clientSecret: POST_SECRET, clientAuthentication: "client_secret_post", scope: "a b" }).getToken();
    const [request] = endpoint.requests.slice(start);
    expect(request?.authorization).toBeUndefined();
    expect(request?.contentType).toBe("application/x-www-form-urlencoded");
    expect(Object.fromEntries(new URLSearchParams(request?.body))).toEqual({
      grant_type: "client_credentials",
      scope: "a b",
      client_id: "svc:1",
      client_secret: POST_SECRET,
    });
  });

  it("the default stays client_secret_basic", async () => {
    const start = endpoint.requests.length;
    await manager({ clientSecret: POST_SECRET }).getToken();
    const [request] = endpoint.requests.slice(start);
    expect(request?.authorization).toMatch(/^Basic /);
    expect(request?.body).toBe("grant_type=client_credentials");
  });

  it("private_key_jwt: an RFC 7523 assertion, verifiable with the public key, a fresh jti per request", async () => {
    const start = endpoint.requests.length;
    const tokens = manager({ clientAuthentication: { method: "private_key_jwt", privateKey: ec.privateKey, keyId: "ec-1" } });
    const first = await tokens.getToken();
    expect(tokens.invalidate(first)).toBe(true);
    expect(await tokens.getToken()).not.toBe(first);
    const requests = endpoint.requests.slice(start);
    expect(requests).toHaveLength(2);
    const jtis: unknown[] = [];
    for (const request of requests) {
      expect(request.authorization).toBeUndefined();
      const form = new URLSearchParams(request.body);
      expect(form.get("grant_type")).toBe("client_credentials");
      expect(form.get("client_id")).toBe("svc:1");
      expect(form.get("client_assertion_type")).toBe("urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
      const assertion = form.get("client_assertion") ?? "";
      expect(decodeProtectedHeader(assertion)).toEqual({ alg: "ES256", typ: "JWT", kid: "ec-1" });
      const { payload } = await jwtVerify(assertion, await importJWK(ec.publicKey.export({ format: "jwk" }), "ES256"), {
        issuer: "svc:1",
        subject: "svc:1",
        audience: `${endpoint.url}/oauth/token`,
      });
      expect(Object.keys(payload).sort()).toEqual(["aud", "exp", "iat", "iss", "jti", "sub"]);
      expect(payload.exp! - payload.iat!).toBe(60);
      expect(Math.abs(payload.iat! - Date.now() / 1000)).toBeLessThan(5);
      expect(Buffer.from(payload.jti!, "base64url").length).toBeGreaterThanOrEqual(16);
      jtis.push(payload.jti);
    }
    expect(new Set(jtis).size).toBe(2);
  });

  it("PS256 and EdDSA assertions verify with the public key too", async () => {
    for (const [key, alg] of [
      [pss, "PS256"],
      [ed, "EdDSA"],
    ] as const) {
      const start = endpoint.requests.length;
      await manager({ clientAuthentication: { method: "private_key_jwt", privateKey: key.privateKey, algorithm: alg } }).getToken();
      const assertion = new URLSearchParams(endpoint.requests[start]?.body).get("client_assertion") ?? "";
      expect(decodeProtectedHeader(assertion)).toEqual({ alg, typ: "JWT" });
      await expect(jwtVerify(assertion, await importJWK(key.publicKey.export({ format: "jwk" }), alg))).resolves.toBeDefined();
    }
  });
});

describe("construction errors name the option and never show key material", () => {
  const base = { clientId: "svc", gatewayUrl: "http://127.0.0.1:1", appcenterUrl: "http://127.0.0.1:2" };
  const rsaJwk = privateJwk(rsa.privateKey);
  const encrypted = rsa.privateKey.export({ format: "pem", type: "pkcs8", cipher: "aes-256-cbc", passphrase: "pass" }) as string;
  const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey;
  const small = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey;
  const ed448 = generateKeyPairSync("ed448").privateKey;
  const garbled = privatePem(rsa.privateKey).replace(/[A-Za-z]{8}(?=\n)/, "@@@@@@@@");
  const jwt = (extra: object) => ({ clientAuthentication: { method: "private_key_jwt", ...extra } });

  const bad: [string, Record<string, unknown>, string, RegExp][] = [
    ["a garbled PEM", jwt({ privateKey: garbled }), "clientAuthentication.privateKey", /not a valid PEM private key/],
    ["text that is no PEM", jwt({ privateKey: "not a key" }), "clientAuthentication.privateKey", /not a valid PEM/],
    ["a public key PEM", jwt({ privateKey: rsa.publicKey.export({ format: "pem", type: "spki" }) }), "clientAuthentication.privateKey", /not a public key/],
    ["an encrypted PEM", jwt({ privateKey: encrypted }), "clientAuthentication.privateKey", /encrypted/],
    ["a public JWK", jwt({ privateKey: rsa.publicKey.export({ format: "jwk" }) }), "clientAuthentication.privateKey", /without private key material/],
    ["a broken JWK", jwt({ privateKey: { ...rsaJwk, n: "AAAA" } }), "clientAuthentication.privateKey", /not a valid private JWK/],
    ["a symmetric JWK", jwt({ privateKey: { kty: "oct", k: "c2VjcmV0", d: "x" } }), "clientAuthentication.privateKey", /not a valid private JWK/],
    ["a public KeyObject", jwt({ privateKey: rsa.publicKey }), "clientAuthentication.privateKey", /public key/],
    ["a number", jwt({ privateKey: 42 }), "clientAuthentication.privateKey", /KeyObject, a PEM string .* or a JWK/],
    ["no key", jwt({}), "clientAuthentication.privateKey", /is missing/],
    ["a P-384 key", jwt({ privateKey: p384 }), "clientAuthentication.privateKey", /EC \(curve secp384r1\).*P-256/],
    ["a 1024-bit RSA key", jwt({ privateKey: small }), "clientAuthentication.privateKey", /1024 bits.*2048/],
    ["an Ed448 key", jwt({ privateKey: ed448 }), "clientAuthentication.privateKey", /Ed448/],
    ["HS256", jwt({ privateKey: rsa.privateKey, algorithm: "HS256" }), "clientAuthentication.algorithm", /one of "RS256", "PS256", "ES256", "EdDSA"/],
    ["an EC key for RS256", jwt({ privateKey: ec.privateKey, algorithm: "RS256" }), "clientAuthentication.algorithm", /does not fit .*EC.*use ES256/],
    ["an RSA key for ES256", jwt({ privateKey: rsaJwk, algorithm: "ES256" }), "clientAuthentication.algorithm", /use RS256 or PS256/],
    ["a JWK whose alg is RS384", jwt({ privateKey: { ...rsaJwk, alg: "RS384" } }), "clientAuthentication.privateKey", /"alg"/],
    ["an empty keyId", jwt({ privateKey: rsa.privateKey, keyId: "" }), "clientAuthentication.keyId", /non-empty string/],
    ["another method", jwt({ method: "client_secret_jwt", privateKey: rsa.privateKey }), "clientAuthentication.method", /"private_key_jwt"/],
    ["an unknown method name", { clientAuthentication: "tls_client_auth" }, "clientAuthentication", /client_secret_post/],
    ["null", { clientAuthentication: null }, "clientAuthentication", /client_secret_basic/],
    ["client_secret_post without a secret", { clientAuthentication: "client_secret_post" }, "clientSecret", /GATEWAY_CLIENT_SECRET/],
  ];
  for (const [name, extra, option, message] of bad) {
    it(`${name} → \`${option}\``, () => {
      const error = (() => {
        try {
          resolveGatewayOptions({ ...base, ...extra } as GatewayOptions, {});
        } catch (e) {
          return e;
        }
        throw new Error("expected a ConfigurationError");
      })();
      expect(error).toBeInstanceOf(ConfigurationError);
      expect((error as ConfigurationError).option).toBe(option);
      expect((error as Error).message).toMatch(message);
      expectNoSecret(error, [...MATERIAL, "@@@@@@@@", "c2VjcmV0"]);
    });
  }

  it("createGatewayTransport and createGatewayClient fail at construction, before any I/O", () => {
    const options = { ...base, ...jwt({ privateKey: "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n" }) };
    expect(() => createGatewayTransport(options as GatewayTransportOptions)).toThrow(ConfigurationError);
    expect(() => createGatewayClient(options as GatewayOptions)).toThrow(/`clientAuthentication.privateKey`/);
  });

  it("a bad GATEWAY_CLIENT_PRIVATE_KEY is named as such", () => {
    const env = { GATEWAY_CLIENT_PRIVATE_KEY: garbled };
    expect(() => resolveGatewayOptions(base, env)).toThrow(/`GATEWAY_CLIENT_PRIVATE_KEY` is not a valid PEM/);
    // An explicit clientSecret option keeps client_secret_basic, and the variable is not read.
    expect(resolveGatewayOptions({ ...base, clientSecret: "s" }, env).clientAuthentication).toEqual({
      method: "client_secret_basic",
      clientSecret: "s",
    });
  });
});

describe("the test OAuth2 server's client registration", () => {
  it("refuses a private_key_jwt client without public keys, and a secret client without a secret", async () => {
    await expect(startOAuth2Server({ clients: [{ clientId: "k", tokenEndpointAuthMethod: "private_key_jwt" }] })).rejects.toThrow(
      /publicKeys/,
    );
    await expect(startOAuth2Server({ clients: [{ clientId: "s", tokenEndpointAuthMethod: "client_secret_post" }] })).rejects.toThrow(
      /clientSecret/,
    );
  });
});
