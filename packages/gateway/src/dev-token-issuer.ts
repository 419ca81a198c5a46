// A development OAuth2 token issuer for `connect-gateway dev`: the tokens a
// local stack needs, without an authorization server.
//
// It is deliberately small and deliberately local: HS256 tokens signed with a
// secret the gateway shares, a client_credentials token endpoint for
// services (at `/oauth/token`, the client's default path, and `/token`), and
// user tokens for any subject a developer names — over HTTP for a local
// frontend (`POST /dev/user-token`) or from the command line
// (`connect-gateway token`). It listens on loopback only. Never run it in
// production: anyone who can reach it can mint a user token.
import { randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { isScopeToken } from "connect-gateway/protocol";
import { isLoopbackHost, isLoopbackOrigin } from "./loopback-only.js";

/** A service that may get client_credentials tokens from the issuer. */
export interface DevClient {
  readonly clientId: string;
  readonly clientSecret: string;
  /** The scopes it may ask for; all of them when it asks for none. */
  readonly scopes: readonly string[];
}

/** The end user a development user token is for. */
export interface DevUser {
  /** The subject (`sub`): what the service sees as `X-User-Id`. */
  readonly subject: string;
  readonly email?: string | undefined;
  readonly firstName?: string | undefined;
  readonly lastName?: string | undefined;
  readonly scopes?: readonly string[] | undefined;
  /** The client the user signed in through (`client_id`); default `dev-frontend`. */
  readonly clientId?: string | undefined;
}

/** How development tokens are signed: what the gateway's `tokens.hs256` must say too. */
export interface DevTokenSigning {
  /** The HS256 secret, at least 32 characters. */
  readonly secret: string;
  /** `iss`; default `connect-gateway-dev`. */
  readonly issuer?: string | undefined;
  /** `aud`; default `connect-gateway-dev`. */
  readonly audience?: string | undefined;
  /** Lifetime; default 3600 s. */
  readonly ttlSeconds?: number | undefined;
}

/** Defaults of {@link DevTokenSigning}. */
export const DEV_TOKEN_DEFAULTS = { issuer: "connect-gateway-dev", audience: "connect-gateway-dev", ttlSeconds: 3600 } as const;

/** A running development issuer. */
export interface DevTokenIssuer {
  /** `http://127.0.0.1:<port>`: the client's `APPCENTER_URL`. */
  readonly url: string;
  /** `<url>/oauth/token`. */
  readonly tokenUrl: string;
  /** `<url>/dev/user-token`. */
  readonly userTokenUrl: string;
  /** Signs a user token (what `POST /dev/user-token` answers). */
  issueUserToken(user: DevUser): Promise<string>;
  /** How many client_credentials tokens it has issued. */
  readonly tokenRequests: number;
  close(): Promise<void>;
}

// A value that can travel in a header as the gateway forwards it: visible
// characters and inner spaces, no `|` (the v1 signature's separator).
const IDENTITY_VALUE = /^[\x21-\x7b\x7d\x7e](?:[\x20-\x7b\x7d\x7e]*[\x21-\x7b\x7d\x7e])?$/;
const MAX_BODY_BYTES = 16 * 1024;
const BODY_TIMEOUT_MS = 5_000;

/** A development user or client that cannot be put in a token: `field` names what is wrong. */
export class DevTokenError extends Error {
  override name = "DevTokenError";
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`${field} ${problem}`);
  }
}

/**
 * Signs a development user token: `sub`, `client_id`, `scope`, and the
 * optional `email`, `given_name`, `family_name`, as the gateway's default
 * claim mapping reads them. Throws {@link DevTokenError} naming the field
 * for a value the gateway could not forward.
 *
 * @see https://www.rfc-editor.org/rfc/rfc7519 (JWT)
 */
export async function signDevUserToken(signing: DevTokenSigning, user: DevUser): Promise<string> {
  checkValue("subject", user.subject);
  for (const [field, value] of [
    ["email", user.email],
    ["firstName", user.firstName],
    ["lastName", user.lastName],
    ["clientId", user.clientId],
  ] as const) {
    if (value !== undefined) checkValue(field, value);
  }
  const scopes = checkScopes("scopes", user.scopes ?? []);
  if (user.subject === (user.clientId ?? "dev-frontend")) {
    throw new DevTokenError("subject", "must differ from the client id (a token whose subject is its client is a service token)");
  }
  return sign(signing, {
    sub: user.subject,
    client_id: user.clientId ?? "dev-frontend",
    scope: scopes.join(" "),
    ...(user.email !== undefined && { email: user.email }),
    ...(user.firstName !== undefined && { given_name: user.firstName }),
    ...(user.lastName !== undefined && { family_name: user.lastName }),
  });
}

async function sign(signing: DevTokenSigning, claims: Record<string, unknown>): Promise<string> {
  if (signing.secret.length < 32) throw new DevTokenError("secret", "must be at least 32 characters");
  // Loaded here: `serve` imports this module (for the CLI's usage text) but never signs.
  const { SignJWT } = await import("jose");
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuer(signing.issuer ?? DEV_TOKEN_DEFAULTS.issuer)
    .setAudience(signing.audience ?? DEV_TOKEN_DEFAULTS.audience)
    .setIssuedAt(now)
    .setExpirationTime(now + (signing.ttlSeconds ?? DEV_TOKEN_DEFAULTS.ttlSeconds))
    .setJti(randomBytes(12).toString("base64url"))
    .sign(new TextEncoder().encode(signing.secret));
}

function checkValue(field: string, value: string): void {
  if (!IDENTITY_VALUE.test(value) || value.length > 256) {
    throw new DevTokenError(field, "must be 1-256 visible characters (inner spaces allowed, no '|')");
  }
}

function checkScopes(field: string, scopes: readonly string[]): readonly string[] {
  for (const scope of scopes) {
    if (!isScopeToken(scope)) throw new DevTokenError(field, `has ${JSON.stringify(scope)}, which is not an OAuth2 scope (RFC 6749 §3.3)`);
  }
  return scopes;
}

/**
 * Starts the development issuer on 127.0.0.1 (`port` 0: any free one).
 * Answers `POST /oauth/token` and `POST /token` (client_credentials, client
 * authentication `client_secret_basic` or `client_secret_post`) and
 * `POST /dev/user-token` (JSON `{ "sub", "email"?, "given_name"?,
 * "family_name"?, "scope"?, "client_id"? }`, from any page served by this
 * machine: it exists for local frontends). Only requests for a loopback
 * `Host` are answered (see loopback-only.ts).
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.4 (client_credentials)
 */
export async function startDevTokenIssuer(
  signing: DevTokenSigning,
  clients: readonly DevClient[],
  options: { port?: number } = {},
): Promise<DevTokenIssuer> {
  for (const c of clients) {
    checkValue("clientId", c.clientId);
    checkScopes(`scopes of ${c.clientId}`, c.scopes);
  }
  let tokenRequests = 0;
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) json(res, 500, { error: "server_error", error_description: (e as Error).message });
      else res.destroy();
    });
  });
  server.on("clientError", (_e, socket) => socket.destroy());
  server.headersTimeout = BODY_TIMEOUT_MS;
  server.requestTimeout = BODY_TIMEOUT_MS;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!isLoopbackHost(req.headers.host)) {
      return json(res, 403, { error: "access_denied", error_description: "this development issuer answers requests for 127.0.0.1 or localhost only" });
    }
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/dev/user-token") {
      // Readable by pages of this machine only (a local frontend), not by any site the developer visits.
      const origin = req.headers.origin;
      res.setHeader("vary", "origin");
      if (isLoopbackOrigin(origin)) res.setHeader("access-control-allow-origin", origin as string);
      else if (origin !== undefined) return json(res, 403, { error: "access_denied", error_description: "tokens are issued to pages served from localhost only" });
      if (req.method === "OPTIONS") {
        res.writeHead(204, { "access-control-allow-methods": "POST", "access-control-allow-headers": "content-type", "access-control-max-age": "600" });
        res.end();
        return;
      }
      if (req.method !== "POST") return json(res, 405, { error: "invalid_request", error_description: "POST a JSON body" });
      let body: Record<string, unknown>;
      try {
        const parsed: unknown = JSON.parse((await readBody(req)).toString("utf8") || "{}");
        if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not an object");
        body = parsed as Record<string, unknown>;
      } catch {
        return json(res, 400, { error: "invalid_request", error_description: "the body must be a JSON object" });
      }
      const str = (name: string) => {
        const v = body[name];
        if (v !== undefined && typeof v !== "string") throw new DevTokenError(name, "must be a string");
        return v;
      };
      try {
        const subject = str("sub");
        if (subject === undefined) throw new DevTokenError("sub", "is required");
        const scope = str("scope");
        const token = await signDevUserToken(signing, {
          subject,
          email: str("email"),
          firstName: str("given_name"),
          lastName: str("family_name"),
          scopes: scope === undefined || scope === "" ? [] : scope.split(" "),
          clientId: str("client_id"),
        });
        return json(res, 200, tokenAnswer(token, signing));
      } catch (e) {
        if (e instanceof DevTokenError) return json(res, 400, { error: "invalid_request", error_description: e.message });
        throw e;
      }
    }
    if (path === "/oauth/token" || path === "/token") {
      if (req.method !== "POST") return json(res, 405, { error: "invalid_request", error_description: "POST the token request" });
      const form = new URLSearchParams((await readBody(req)).toString("utf8"));
      const client = authenticate(req.headers.authorization, form);
      if (client === undefined) {
        res.setHeader("www-authenticate", 'Basic realm="connect-gateway dev"');
        return json(res, 401, { error: "invalid_client" });
      }
      if (form.get("grant_type") !== "client_credentials") return json(res, 400, { error: "unsupported_grant_type" });
      const asked = (form.get("scope") ?? "").split(" ").filter((s) => s !== "");
      const refused = asked.filter((s) => !client.scopes.includes(s));
      if (refused.length > 0) return json(res, 400, { error: "invalid_scope", error_description: `not allowed: ${refused.join(" ")}` });
      const scopes = asked.length > 0 ? asked : client.scopes;
      tokenRequests++;
      const token = await sign(signing, { sub: client.clientId, client_id: client.clientId, scope: scopes.join(" ") });
      return json(res, 200, { ...tokenAnswer(token, signing), scope: scopes.join(" ") });
    }
    // Also in Connect's error shape (`code`, `message`): a client pointed here by a
    // GATEWAY_URL that names the issuer instead of the gateway then says why.
    const notHere = "this is connect-gateway dev's token issuer, not the gateway: it answers POST /oauth/token, /token and /dev/user-token";
    json(res, 404, { error: "not_found", error_description: notHere, code: "unimplemented", message: notHere });
  }

  function authenticate(authorization: string | undefined, form: URLSearchParams): DevClient | undefined {
    let id: string | null = form.get("client_id");
    let secret: string | null = form.get("client_secret");
    if (authorization?.startsWith("Basic ")) {
      const decoded = Buffer.from(authorization.slice(6), "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      if (colon === -1) return undefined;
      // client_secret_basic form-encodes both parts (RFC 6749 §2.3.1).
      const decode = (s: string) => decodeURIComponent(s.replace(/\+/g, " "));
      try {
        id = decode(decoded.slice(0, colon));
        secret = decode(decoded.slice(colon + 1));
      } catch {
        return undefined;
      }
    }
    if (id === null || secret === null) return undefined;
    const client = clients.find((c) => c.clientId === id);
    if (client === undefined) return undefined;
    const a = Buffer.from(client.clientSecret);
    const b = Buffer.from(secret);
    return a.length === b.length && timingSafeEqual(a, b) ? client : undefined;
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", () => {});
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    tokenUrl: `${url}/oauth/token`,
    userTokenUrl: `${url}/dev/user-token`,
    issueUserToken: (user) => signDevUserToken(signing, user),
    get tokenRequests() {
      return tokenRequests;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function tokenAnswer(token: string, signing: DevTokenSigning) {
  return { access_token: token, token_type: "Bearer", expires_in: signing.ttlSeconds ?? DEV_TOKEN_DEFAULTS.ttlSeconds };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** The request body, at most 16 KiB, within 5 s. */
function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => fail(new Error("the request body took too long")), BODY_TIMEOUT_MS);
    const fail = (e: Error) => {
      clearTimeout(timer);
      req.destroy();
      reject(e);
    };
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) fail(new Error("the request body is larger than 16 KiB"));
      else chunks.push(chunk);
    });
    req.on("error", fail);
    req.on("end", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
  });
}
