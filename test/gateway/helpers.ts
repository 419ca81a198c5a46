// Shared by the gateway tests: a real recording backend on loopback, seed-style
// HS256 tokens, and a check of the gateway's signature through the public
// signing API (the same verification a backend runs).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttp2Server, type Http2Session } from "node:http2";
import type { AddressInfo, Server as NetServer } from "node:net";
import { Writable } from "node:stream";
import { ConnectError } from "@connectrpc/connect";
import { SignJWT } from "jose";
import { createGateway, parseRoutesFile, type Gateway, type GatewayConfig } from "../../packages/gateway/src/index.js";
import {
  bodySha256,
  checkGatewayHeaders,
  fullpathOf,
  gatewayKeyring,
  verifyGatewaySignature,
  verifyGatewaySignatureV2,
} from "../../src/signing/index.js";

/** The secret the gateways under test sign with. */
export const HMAC_SECRET = "gateway-test-hmac-secret-0123456789";
/** The seed's HS256 shared secret (`JWT_SECRET`). */
export const JWT_SECRET = "seed-jwt-shared-secret-0123456789abcdef";
/** The `iss` of the seed's tokens. */
export const SEED_ISSUER = "eloquent-gateway";
/** The `aud` of the seed's tokens. */
export const SEED_AUDIENCE = "eloquent-api";

/** One request as the backend received it. */
export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage["headers"];
  readonly rawHeaders: readonly string[];
  readonly body: Buffer;
}

/** A real backend that records every request and answers with `respond`. */
export interface RecordingBackend {
  readonly url: string;
  readonly requests: RecordedRequest[];
  respond: (req: RecordedRequest, res: ServerResponse) => void;
  close(): Promise<void>;
}

/**
 * Starts a {@link RecordingBackend} on 127.0.0.1, HTTP/1.1 or (`http2`)
 * cleartext HTTP/2; it answers `{ ok, url, user }` until told otherwise.
 */
export async function startRecordingBackend(options: { http2?: boolean } = {}): Promise<RecordingBackend> {
  const record = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const recorded = { method: req.method ?? "", url: req.url ?? "", headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks) };
      backend.requests.push(recorded);
      backend.respond(recorded, res);
    });
  };
  // The HTTP/2 compatibility API has the same shape, as far as `record` goes.
  const server = options.http2 ? createHttp2Server(record as unknown as Parameters<typeof createHttp2Server>[0]) : createServer(record);
  const sessions = new Set<Http2Session>();
  server.on("session", (session: Http2Session) => sessions.add(session));
  const port = await listen(server);
  const backend: RecordingBackend = {
    url: `http://127.0.0.1:${port}`,
    requests: [],
    respond: (req, res) => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ ok: true, url: req.url, user: req.headers["x-user-id"] ?? null }));
    },
    close: () => {
      for (const session of sessions) session.destroy();
      return "closeAllConnections" in server ? closeServer(server) : new Promise((resolve) => server.close(() => resolve()));
    },
  };
  return backend;
}

/** Listens on a free port of 127.0.0.1 and resolves to the port. */
export function listen(server: NetServer): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
}

/** Closes a server and every connection still open on it. */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}

/** A loopback port that nothing listens on (free a moment ago): a service that is down, or a port to start one on. */
export async function unusedPort(): Promise<number> {
  const server = createServer();
  const port = await listen(server);
  await closeServer(server);
  return port;
}

/** The error a call fails with, as a `ConnectError`; the test fails if the call succeeds. */
export function rejectionOf(call: Promise<unknown>): Promise<ConnectError> {
  return call.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (e: unknown) => ConnectError.from(e),
  );
}

/** A token exactly like the seed's frontend mints (HS256, eloquent-gateway → eloquent-api). */
export function seedToken(
  claims: Record<string, unknown> = {},
  options: { secret?: string; ttlSeconds?: number; issuer?: string; audience?: string } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({
    org_id: "org-uuid",
    user_id: "user-uuid",
    email: "user@example.com",
    role: "user",
    scopes: ["read", "write", "write:agents"],
    product: "eloquent",
    ...claims,
  })
    .setProtectedHeader({ alg: "HS256" })
    .setIssuedAt(now - 120)
    .setIssuer(options.issuer ?? SEED_ISSUER)
    .setAudience(options.audience ?? SEED_AUDIENCE)
    .setExpirationTime(now + (options.ttlSeconds ?? 3600))
    .sign(new TextEncoder().encode(options.secret ?? JWT_SECRET));
}

/**
 * True when both of the gateway's signatures on a recorded request verify,
 * checked as a service does through the public signing API: v1 (the Ruby
 * gem's) and v2 (every identity header, the content headers, the request id).
 */
export function hasValidSignature(req: RecordedRequest, secret = HMAC_SECRET): boolean {
  const sha256 = bodySha256(req.body);
  const v1 = verifyGatewaySignature(
    [secret],
    {
      method: req.method,
      timestamp: String(req.headers["x-gateway-timestamp"]),
      clientId: String(req.headers["x-client-id"]),
      userId: req.headers["x-user-id"] as string | undefined,
      fullpath: fullpathOf(req.url),
      bodySha256: sha256,
    },
    String(req.headers["x-gateway-signature"]),
  );
  const check = checkGatewayHeaders(req.rawHeaders, { nowSeconds: Date.now() / 1000, maxSkewSeconds: 30 });
  if (!check.ok || check.headers.v2 === undefined) return false;
  const { v2, timestamp, contentType, contentEncoding, identityHeaders } = check.headers;
  const validV2 = verifyGatewaySignatureV2(
    gatewayKeyring([secret]),
    { keyId: v2.keyId, method: req.method, requestTarget: req.url, timestamp, requestId: v2.requestId, bodySha256: sha256, contentType, contentEncoding, identity: identityHeaders },
    v2.signature,
  );
  return v1 && validV2;
}

/** A pino destination that keeps every log line, to prove what never gets logged. */
export function captureLogs(): { stream: Writable; text: () => string } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(chunk.toString("utf8"));
      callback();
    },
  });
  return { stream, text: () => lines.join("") };
}

/**
 * A gateway listening on 127.0.0.1 for the routes file `yaml` (its `$NAME`s
 * from `env`), accepting the seed's HS256 tokens ({@link seedToken}), signing
 * with {@link HMAC_SECRET}, silent; `options` adds to or overrides that.
 */
export async function startSeedGateway(
  yaml: string,
  env: Record<string, string> = {},
  options: Partial<GatewayConfig> = {},
): Promise<Gateway> {
  const gateway = createGateway({
    routes: parseRoutesFile(yaml, { source: "routes.yaml", env }),
    hmacSecret: HMAC_SECRET,
    tokens: { hs256: { secret: JWT_SECRET, issuer: SEED_ISSUER, audience: SEED_AUDIENCE } },
    logger: false,
    ...options,
  });
  await gateway.listen();
  return gateway;
}
