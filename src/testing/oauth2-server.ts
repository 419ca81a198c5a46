import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT, type JWK } from "jose";
import type Provider from "oidc-provider";

/** A client registered with the test OAuth2 server (client_credentials grant). */
export interface OAuth2TestClient {
  readonly clientId: string;
  readonly clientSecret: string;
  /** Scopes the client may ask for in its token request (space-separated in OAuth2). */
  readonly scopes?: readonly string[];
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
  readonly sub: string;
  /** The application the user signed in through (`client_id` claim). Default `web-app`. */
  readonly clientId?: string;
  readonly email?: string;
  readonly givenName?: string;
  readonly familyName?: string;
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
 */
export async function startOAuth2Server(options: StartOAuth2ServerOptions): Promise<OAuth2Server> {
  const audience = options.audience ?? "urn:connect-gateway";
  const key = await signingKey();
  let tokenRequests = 0;
  let provider: Provider | undefined;
  const server = createServer((req, res) => {
    if (req.method === "POST" && req.url?.split("?")[0] === "/token") tokenRequests++;
    provider?.callback()(req, res);
  });
  const port = await listen(server, options.port ?? 0);
  const issuer = `http://127.0.0.1:${port}`;
  provider = await createProvider(issuer, options, audience, key.jwk);
  return {
    issuer,
    tokenUrl: `${issuer}/token`,
    jwksUrl: `${issuer}/jwks`,
    introspectionUrl: `${issuer}/token/introspection`,
    audience,
    get tokenRequests() {
      return tokenRequests;
    },
    issueUserToken: (claims) => mintUserToken(claims, { issuer, audience, ...key }),
    close: () => close(server),
  };
}

async function createProvider(
  issuer: string,
  options: StartOAuth2ServerOptions,
  audience: string,
  privateJwk: JWK,
): Promise<Provider> {
  // Loaded on first use: `connect-gateway/testing` is imported by service
  // tests that never start an OAuth2 server.
  const { default: Provider } = await withoutExpectedWarnings(() => import("oidc-provider"));
  const allScopes = [...new Set(options.clients.flatMap((c) => c.scopes ?? []))];
  const ttl = options.accessTokenTtlSeconds ?? 3600;
  const jwt = (options.tokenFormat ?? "jwt") === "jwt";
  const provider = await withoutExpectedWarnings(() => new Provider(issuer, {
    clients: options.clients.map((c) => ({
      client_id: c.clientId,
      client_secret: c.clientSecret,
      grant_types: ["client_credentials"],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: "client_secret_basic",
      // oidc-provider refuses an empty `scope` metadata value.
      ...(c.scopes?.length ? { scope: c.scopes.join(" ") } : {}),
    })),
    scopes: allScopes,
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

type PrivateKey = Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];

// One key signs both what oidc-provider issues and the minted user tokens, so
// a single JWKS verifies both.
async function signingKey(): Promise<{ privateKey: PrivateKey; kid: string; jwk: JWK }> {
  const { privateKey } = await generateKeyPair("RS256", { extractable: true });
  const kid = randomUUID();
  return { privateKey, kid, jwk: { ...(await exportJWK(privateKey)), kid, alg: "RS256", use: "sig" } };
}

function mintUserToken(
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
