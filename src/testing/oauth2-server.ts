import { createPublicKey, KeyObject, randomUUID } from "node:crypto";
import { publicKeyOfJwk, type JsonWebKeyInput, type JsonWebKeyObject } from "../core/json-web-key.js";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
// Type-only: jose and oidc-provider are optional peers, loaded by
// startOAuth2Server itself (see ./optional-peers.ts); none of their types
// appears in what this module exports.
import type { JWK } from "jose";
import type Provider from "oidc-provider";
import { loadOptionalPeers } from "./optional-peers.js";
import { ConfigurationError } from "../core/errors.js";

type Jose = typeof import("jose");
type ProviderConstructor = (typeof import("oidc-provider"))["default"];

/**
 * How an {@link OAuth2TestClient} authenticates to the token endpoint: the
 * client's `clientAuthentication` option (`private_key_jwt` stands for the
 * `{ method: "private_key_jwt", … }` form).
 */
export type OAuth2TestClientAuthMethod = "client_secret_basic" | "client_secret_post" | "private_key_jwt";

/** A client registered with the test OAuth2 server (client_credentials grant). */
export interface OAuth2TestClient {
  /** The client id it authenticates with (`GATEWAY_CLIENT_ID` of the service under test). */
  readonly clientId: string;
  /**
   * Its secret (`GATEWAY_CLIENT_SECRET`), checked with `client_secret_basic`
   * or `client_secret_post`. Required for those; unused with `private_key_jwt`.
   */
  readonly clientSecret?: string;
  /** Scopes the client may ask for in its token request (space-separated in OAuth2). */
  readonly scopes?: readonly string[];
  /**
   * How it must authenticate. Default `client_secret_basic`. The server
   * refuses any other way — `client_secret_post` included: a client
   * registered for it is refused with Basic credentials, like a server that
   * accepts only that; a `client_secret_basic` client may still send its
   * secret in the form body, as oidc-provider allows.
   */
  readonly tokenEndpointAuthMethod?: OAuth2TestClientAuthMethod;
  /**
   * With `private_key_jwt`: the public keys its client assertions are
   * verified with (RS256, PS256, ES256 and EdDSA are accepted), as
   * `KeyObject`s (public or private: only the public part is kept), PEM
   * strings or JWKs. A JWK keeps its `kid`; an assertion whose header names a
   * `kid` is verified only with the key of that `kid`. Required for
   * `private_key_jwt`.
   */
  readonly publicKeys?: readonly (KeyObject | string | JsonWebKeyInput)[];
}

/** Options of {@link startOAuth2Server}. */
export interface StartOAuth2ServerOptions {
  /** The clients that may obtain tokens. */
  readonly clients: readonly OAuth2TestClient[];
  /** Lifetime of client_credentials access tokens. Default 3600. */
  readonly accessTokenTtlSeconds?: number;
  /**
   * `jwt` (default): access tokens are JWTs signed with the server's key and
   * verifiable through its JWKS, for `audience`. `opaque`: random strings,
   * verifiable only through RFC 7662 introspection.
   */
  readonly tokenFormat?: "jwt" | "opaque";
  /** The `aud` of JWT access tokens. Default `urn:connect-gateway` (a resource indicator must be an absolute URI). */
  readonly audience?: string;
  /** Port on 127.0.0.1. Default 0 (any free port). */
  readonly port?: number;
}

/** Claims of an end-user access token minted by {@link OAuth2Server.issueUserToken}. */
export interface UserTokenClaims {
  /** The user's subject (`sub` claim): the gateway forwards it as `X-User-Id`. */
  readonly sub: string;
  /** The application the user signed in through (`client_id` claim). Default `web-app`. */
  readonly clientId?: string;
  /** The `email` claim (`X-User-Email` behind the gateway). */
  readonly email?: string;
  /** The `given_name` claim (`X-User-First-Name` behind the gateway). */
  readonly givenName?: string;
  /** The `family_name` claim (`X-User-Last-Name` behind the gateway). */
  readonly familyName?: string;
  /** The granted scopes, joined with spaces into the `scope` claim (`X-User-Scopes` behind the gateway). */
  readonly scopes?: readonly string[];
  /** Lifetime in seconds; negative for an already expired token. Default 3600. */
  readonly ttlSeconds?: number;
}

/** A running OAuth2 server (oidc-provider) on loopback. */
export interface OAuth2Server {
  /** The issuer, `http://127.0.0.1:<port>`: the `iss` of its tokens. */
  readonly issuer: string;
  /** The token endpoint (`<issuer>/token`). */
  readonly tokenUrl: string;
  /** The JWKS endpoint (`<issuer>/jwks`). */
  readonly jwksUrl: string;
  /** The RFC 7662 introspection endpoint (`<issuer>/token/introspection`). */
  readonly introspectionUrl: string;
  /** The `aud` of its JWT access tokens. */
  readonly audience: string;
  /** How many requests reached the token endpoint so far. */
  readonly tokenRequests: number;
  /**
   * Mints an end-user access token, signed with the server's own key so that
   * anything that trusts its JWKS trusts the token. Stands in for the
   * browser sign-in flow, which has no place in a service-to-service test.
   */
  issueUserToken(claims: UserTokenClaims): Promise<string>;
  /** Stops the server. */
  close(): Promise<void>;
}

/**
 * Starts a real OAuth2 server (`oidc-provider`) on 127.0.0.1 with the
 * client_credentials grant, JWT or opaque access tokens, a JWKS endpoint and
 * introspection — for tests and for the local stack of `npm start`.
 *
 * Needs the optional peers `oidc-provider` and `jose`
 * (`npm install --save-dev oidc-provider jose`): they are loaded on the first
 * call, and the returned promise rejects with an error naming whichever is
 * missing. Importing `connect-gateway/testing` never needs them.
 */
export async function startOAuth2Server(options: StartOAuth2ServerOptions): Promise<OAuth2Server> {
  // Loaded on first use: `connect-gateway/testing` is imported by service
  // tests that never start an OAuth2 server.
  const peers = await loadOptionalPeers<{ "oidc-provider": { default: ProviderConstructor }; jose: Jose }>(
    "startOAuth2Server",
    {
      "oidc-provider": () => withoutExpectedWarnings(() => import("oidc-provider")),
      jose: () => import("jose"),
    },
  );
  const { jose } = peers;
  const audience = options.audience ?? "urn:connect-gateway";
  const key = await signingKey(jose);
  let tokenRequests = 0;
  let provider: Provider | undefined;
  const postOnly = new Set(options.clients.filter((c) => c.tokenEndpointAuthMethod === "client_secret_post").map((c) => c.clientId));
  const server = createServer((req, res) => {
    if (req.method === "POST" && req.url?.split("?")[0] === "/token") {
      tokenRequests++;
      if (postOnly.size > 0 && postOnly.has(basicClientId(req.headers.authorization) ?? "")) {
        res.writeHead(401, { "content-type": "application/json", "cache-control": "no-store" });
        res.end(JSON.stringify({ error: "invalid_client", error_description: "this client must use client_secret_post" }));
        return;
      }
    }
    provider?.callback()(req, res);
  });
  const port = await listen(server, options.port ?? 0);
  const issuer = `http://127.0.0.1:${port}`;
  try {
    provider = await createProvider(peers["oidc-provider"].default, issuer, options, audience, key.jwk);
  } catch (error) {
    await close(server);
    throw error;
  }
  return {
    issuer,
    tokenUrl: `${issuer}/token`,
    jwksUrl: `${issuer}/jwks`,
    introspectionUrl: `${issuer}/token/introspection`,
    audience,
    get tokenRequests() {
      return tokenRequests;
    },
    issueUserToken: (claims) => mintUserToken(jose, claims, { issuer, audience, ...key }),
    close: () => close(server),
  };
}

async function createProvider(
  Provider: ProviderConstructor,
  issuer: string,
  options: StartOAuth2ServerOptions,
  audience: string,
  privateJwk: JWK,
): Promise<Provider> {
  const allScopes = [...new Set(options.clients.flatMap((c) => c.scopes ?? []))];
  const ttl = options.accessTokenTtlSeconds ?? 3600;
  const jwt = (options.tokenFormat ?? "jwt") === "jwt";
  const provider = await withoutExpectedWarnings(() => new Provider(issuer, {
    clients: options.clients.map((c) => ({
      client_id: c.clientId,
      ...clientAuthMetadata(c),
      grant_types: ["client_credentials"],
      redirect_uris: [],
      response_types: [],
      // oidc-provider refuses an empty `scope` metadata value.
      ...(c.scopes?.length ? { scope: c.scopes.join(" ") } : {}),
    })),
    scopes: allScopes,
    // The token endpoint accepts exactly these; each client is held to its own.
    clientAuthMethods: ["client_secret_basic", "client_secret_post", "private_key_jwt"],
    enabledJWA: { clientAuthSigningAlgValues: ["RS256", "PS256", "ES256", "EdDSA"] },
    jwks: { keys: [privateJwk] },
    ttl: { ClientCredentials: ttl },
    features: {
      clientCredentials: { enabled: true },
      // Any registered client may introspect: in a test stack every client is ours.
      introspection: { enabled: true, allowedPolicy: () => true },
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: jwt,
        defaultResource: () => audience,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: allScopes.join(" "),
          audience,
          accessTokenFormat: "jwt",
          accessTokenTTL: ttl,
          jwt: { sign: { alg: "RS256" } },
        }),
      },
    },
  }));
  // Errors are answered to the client as OAuth2 error bodies; the default
  // listener would also print them, with request details, to stderr.
  provider.on("server_error", () => {});
  return provider;
}

// The client metadata (RFC 7591 §2) of how `client` authenticates.
function clientAuthMetadata(client: OAuth2TestClient): Record<string, unknown> {
  const method = client.tokenEndpointAuthMethod ?? "client_secret_basic";
  const name = `clients[${JSON.stringify(client.clientId)}]`;
  if (method === "private_key_jwt") {
    if (!client.publicKeys?.length) {
      throw new ConfigurationError(`${name}.publicKeys`, "must list the public keys of a private_key_jwt client.");
    }
    return { token_endpoint_auth_method: method, jwks: { keys: client.publicKeys.map((key) => publicJwk(key, `${name}.publicKeys`)) } };
  }
  if (method !== "client_secret_basic" && method !== "client_secret_post") {
    throw new ConfigurationError(`${name}.tokenEndpointAuthMethod`, 'must be "client_secret_basic", "client_secret_post" or "private_key_jwt".');
  }
  if (typeof client.clientSecret !== "string" || client.clientSecret === "") {
    throw new ConfigurationError(`${name}.clientSecret`, `is required with ${method}.`);
  }
  return { token_endpoint_auth_method: method, client_secret: client.clientSecret };
}

// oidc-provider takes client_secret_basic and client_secret_post as one
// method; a client registered for client_secret_post stands for a server that
// accepts nothing else, so its Basic credentials are refused before they reach
// oidc-provider. Returns the client id of Basic credentials (RFC 6749 §2.3.1).
function basicClientId(authorization: string | undefined): string | undefined {
  const match = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(authorization ?? "");
  if (!match) return undefined;
  const credentials = Buffer.from(match[1]!, "base64").toString("utf8");
  const colon = credentials.indexOf(":");
  if (colon < 0) return undefined;
  try {
    return decodeURIComponent(credentials.slice(0, colon).replace(/\+/g, " "));
  } catch {
    return undefined;
  }
}

// A public JWK without private parts, keeping a JWK's `kid`.
function publicJwk(key: KeyObject | string | JsonWebKeyInput, option: string): JsonWebKeyObject {
  try {
    const keyObject =
      key instanceof KeyObject
        ? key.type === "public"
          ? key
          : createPublicKey(key)
        : typeof key === "string"
          ? createPublicKey(key)
          : publicKeyOfJwk(key);
    const kid = key instanceof KeyObject || typeof key === "string" ? undefined : (key as JsonWebKeyObject).kid;
    return { ...keyObject.export({ format: "jwk" }), ...(typeof kid === "string" && { kid }) };
  } catch {
    throw new ConfigurationError(option, "must hold KeyObjects, PEM strings or JWKs of RSA, EC or Ed25519 keys.");
  }
}

// oidc-provider warns, on import and for every provider, that Node.js 20 is
// not its preferred runtime and that its in-memory store is for development
// only: both expected of a test server. Only those two lines are dropped
// (they may carry terminal colour codes); anything else still reaches the
// console. Counted, so that servers starting concurrently restore it once.
const expectedWarning = /oidc-provider WARNING: (Unsupported runtime|a quick start development-only in-memory adapter)/;
let quieting = 0;
let consoleWarn = console.warn;

async function withoutExpectedWarnings<T>(run: () => T | Promise<T>): Promise<T> {
  if (quieting++ === 0) {
    consoleWarn = console.warn;
    console.warn = (...args: unknown[]) => {
      if (!expectedWarning.test(String(args[0]))) consoleWarn(...args);
    };
  }
  try {
    return await run();
  } finally {
    if (--quieting === 0) console.warn = consoleWarn;
  }
}

type PrivateKey = Awaited<ReturnType<Jose["generateKeyPair"]>>["privateKey"];

// One key signs both what oidc-provider issues and the minted user tokens, so
// a single JWKS verifies both.
async function signingKey({ exportJWK, generateKeyPair }: Jose): Promise<{ privateKey: PrivateKey; kid: string; jwk: JWK }> {
  const { privateKey } = await generateKeyPair("RS256", { extractable: true });
  const kid = randomUUID();
  return { privateKey, kid, jwk: { ...(await exportJWK(privateKey)), kid, alg: "RS256", use: "sig" } };
}

function mintUserToken(
  { SignJWT }: Jose,
  claims: UserTokenClaims,
  key: { issuer: string; audience: string; privateKey: PrivateKey; kid: string },
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const ttl = claims.ttlSeconds ?? 3600;
  return new SignJWT({
    client_id: claims.clientId ?? "web-app",
    email: claims.email,
    given_name: claims.givenName,
    family_name: claims.familyName,
    scope: claims.scopes?.join(" "),
  })
    .setProtectedHeader({ alg: "RS256", kid: key.kid, typ: "at+jwt" })
    .setIssuer(key.issuer)
    .setAudience(key.audience)
    .setSubject(claims.sub)
    .setIssuedAt(Math.min(now, now + ttl - 1))
    .setExpirationTime(now + ttl)
    .setJti(randomUUID())
    .sign(key.privateKey);
}

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}
