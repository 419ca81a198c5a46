// Shared by the gateway tests: a real recording backend on loopback, seed-style
// HS256 tokens, and a check of the gateway's signature through the public
// signing API (the same verification a backend runs).
import type { IncomingMessage, ServerResponse } from "node:http";
import { Writable } from "node:stream";
import { ConnectError } from "@connectrpc/connect";
import { SignJWT } from "jose";
import { dump } from "js-yaml";
import { createGateway, GatewayConfigError, parseRoutesFile, type Gateway, type GatewayConfig } from "../../packages/gateway/src/index.js";
import {
  bodySha256,
  checkGatewayHeaders,
  fullpathOf,
  gatewayKeyring,
  verifyGatewaySignature,
  verifyGatewaySignatureV2,
} from "../../src/signing/index.js";
import { startServer } from "./loopback-server.js";

export { closeServer, listen, unusedPort } from "./loopback-server.js";

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
  /** Trailer lines after a chunked body, as received (usually none). */
  readonly rawTrailers?: readonly string[];
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
      const recorded = {
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        rawTrailers: req.rawTrailers,
        body: Buffer.concat(chunks),
      };
      backend.requests.push(recorded);
      backend.respond(recorded, res);
    });
  };
  // The HTTP/2 compatibility API has the same shape, as far as `record` goes.
  const server = await startServer(record as never, options.http2 ? "2" : "1.1");
  const backend: RecordingBackend = {
    url: server.baseUrl,
    requests: [],
    respond: (req, res) => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ ok: true, url: req.url, user: req.headers["x-user-id"] ?? null }));
    },
    close: () => server.close(),
  };
  return backend;
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
export function captureLogs(): { stream: Writable; text: () => string; lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString("utf8"));
      callback();
    },
  });
  const text = () => chunks.join("");
  // Each JSON line the gateway logged so far, parsed.
  const lines = () =>
    text()
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { stream, text, lines };
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

/** The gateway's own headers on a forwarded request (`x-client-id`, `x-gateway-*`), lower-cased and sorted, each as often as it came. */
/**
 * `/ready`'s status once it answers 200, or the last one after `withinMs`. A
 * gateway with Redis is ready once its first health check passed: within
 * moments, not necessarily within `/ready`'s own 100 ms wait on a busy machine.
 */
export async function readyStatus(gateway: { readonly url: string }, withinMs = 5_000): Promise<number> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const { status } = await fetch(`${gateway.url}/ready`);
    if (status === 200 || Date.now() > deadline) return status;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export function gatewayHeaderNames(req: RecordedRequest): string[] {
  const names = req.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
  return names.filter((n) => n.startsWith("x-gateway-") || n === "x-client-id").sort();
}

/** What {@link gatewayHeaderNames} finds on a request the gateway signed: each of its headers once. */
export const SIGNED_GATEWAY_HEADERS = [
  "x-client-id",
  "x-gateway-request-id",
  "x-gateway-signature",
  "x-gateway-signature-v2",
  "x-gateway-timestamp",
] as const;

/**
 * Routes-file lines (under `routes:`) most forwarding tests start from: a
 * public `GET /api/v1/docs` and a protected `PUT /api/v1/agents/{id}`, both to `$UP`.
 */
export const DOCS_AND_AGENT_ROUTES = `  - path: /api/v1/docs
    method: GET
    proxy_upstream: $UP
  - path: /api/v1/agents/{id}
    method: PUT
    proxy_upstream: $UP
`;

/** The GatewayConfigError createGateway throws for `config` (fails the test when it throws nothing or something else). */
export function configError(config: unknown): GatewayConfigError {
  try {
    createGateway(config as GatewayConfig);
  } catch (e) {
    if (!(e instanceof GatewayConfigError)) throw new Error(`expected a GatewayConfigError, got ${String(e)}`);
    return e;
  }
  throw new Error("expected a GatewayConfigError");
}

/**
 * The text of a routes file: `version: "1.0"`, then `sections` as they are
 * written in the file (`public_paths`, `routes` — see {@link route} —,
 * `backends`), e.g. `routesFileText({ routes: [route("GET", "/api/v1/docs")] })`.
 */
export function routesFileText(sections: Record<string, unknown>): string {
  return dump({ version: "1.0", ...sections });
}

/** One entry of a routes file's `routes:` list: `method path` to `$UP`, with `more` keys as written in the file (`scopes`, `cache_ttl`, a `proxy_upstream` of its own…). */
export function route(method: string, path: string, more: Record<string, unknown> = {}): Record<string, unknown> {
  return { path, method, proxy_upstream: "$UP", ...more };
}

/** A {@link RecordingBackend} (`$UP` in `yaml`) behind a gateway from {@link startSeedGateway} (`options` as there). */
export async function startGatewayWithBackend(yaml: string, options: Partial<GatewayConfig> = {}): Promise<{ backend: RecordingBackend; gateway: Gateway }> {
  const backend = await startRecordingBackend();
  return { backend, gateway: await startSeedGateway(yaml, { UP: backend.url }, options) };
}

/**
 * A {@link RecordingBackend} over HTTP/1.1 (`$UP` in `yaml`) and one over
 * cleartext HTTP/2 (`$UP2`), behind a gateway from {@link startSeedGateway}
 * (`options` as there).
 */
export async function startGatewayWithBackends(
  yaml: string,
  options: Partial<GatewayConfig> = {},
): Promise<{ backend: RecordingBackend; h2Backend: RecordingBackend; gateway: Gateway }> {
  const backend = await startRecordingBackend();
  const h2Backend = await startRecordingBackend({ http2: true });
  const gateway = await startSeedGateway(yaml, { UP: backend.url, UP2: h2Backend.url }, options);
  return { backend, h2Backend, gateway };
}

/** Closes each in turn, as an afterAll does: a gateway before the backends behind it; one never started (undefined) is passed over. */
export async function closeInTurn(...servers: ReadonlyArray<{ close(): Promise<unknown> } | undefined>): Promise<void> {
  for (const server of servers) await server?.close();
}

/**
 * The `backends:` entries most gateway tests share: `echo` (h2c, any token)
 * and `echo-admin` (the same upstream, scope `admin`), both at `$ECHO_URL`.
 */
export const ECHO_BACKENDS = `  echo:
    upstream: $ECHO_URL
    http2: true
  echo-admin:
    upstream: $ECHO_URL
    http2: true
    scopes: [admin]
`;
