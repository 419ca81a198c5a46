import {
  Code,
  ConnectError,
  createContextValues,
  type ConnectRouter,
  type ContextKey,
  type ContextValues,
  type HandlerContext,
} from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest } from "@connectrpc/connect/protocol";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { bodyWasConsumed } from "../body-was-consumed.js";
import { endUnreadStream } from "../end-unread-stream.js";
import { setVerifiedIdentity } from "../current-user.js";
import type { GatewayAuthConfig } from "../gateway-auth-options.js";
import type { GatewayIdentity } from "../gateway-identity.js";
import { rejectionOf, type Rejection, type RejectionKind } from "../rejections.js";
import {
  checkRequestHead,
  readAndVerifyBody,
  refusalBeforeBody,
  refusalOfBody,
  type RequestCheck,
} from "../request-check.js";
import type { VerifiedBody } from "../verified-body.js";
import { startVerificationSpan } from "../verification-tracing.js";
import type { PreVerifiedRequest, VerifiedRequests } from "../verified-requests.js";
import { fullpathOf } from "../../signing/index.js";

/** The Node request connect-node, connect-express and connect-fastify hand to `contextValues`. */
type NodeRequest = IncomingMessage | Http2ServerRequest;

/**
 * The options `auth.connectOptions()` composes with: those of
 * `connectNodeAdapter`, `expressConnectMiddleware` and `fastifyConnectPlugin`.
 */
export interface ConnectOptionsLike {
  // `never`: accepts the contextValues of any adapter, whatever its request type.
  /** Your own context values for each request; kept, with the verified identity added to them. */
  contextValues?: (req: never) => ContextValues;
  /** Your own gate; runs once the request's signature verified, before any interceptor or handler. */
  requestGate?: (ctx: HandlerContext) => void | Promise<void>;
  /** Your services, registered on the Connect router. */
  routes?: (router: ConnectRouter) => void;
  /** Largest decompressed message, in bytes; default the auth's `maxBodyBytes`. */
  readMaxBytes?: number;
}

interface RequestVerification {
  readonly check: RequestCheck;
  /**
   * The body reaches Connect only through the verifying iterable: always,
   * except in skipVerification mode (there is nothing to verify, so Connect
   * reads the request as usual).
   */
  readonly holdsBody: boolean;
  readonly consumedEarly: boolean;
  readonly contentLength: string | undefined;
  /** HTTP/1.x: a request refused before its body is read closes its connection. */
  readonly http1: boolean;
  /** The Node request, read by the verifier itself (never by Connect). */
  readonly request: NodeRequest;
  /** Set when auth.express() / auth.fastify of this instance verified and consumed the body. */
  readonly preVerified: PreVerifiedRequest | undefined;
  /** The body as the adapter hands it to the handler; set by the guarded handler. */
  source: unknown;
  read: Promise<VerifiedBody> | undefined;
}

/**
 * Each request's verification state, by its context values: kept beside
 * them, never in them. It holds the service's configuration (its secrets
 * among it), and a handler may well print `ctx.values` or `ctx` while
 * debugging; nothing reachable from them may lead to a secret.
 */
const verifications = new WeakMap<ContextValues, RequestVerification>();

function verificationIn(values: ContextValues | undefined): RequestVerification | undefined {
  return values === undefined ? undefined : verifications.get(values);
}

/**
 * Returns `options` with gateway verification wired in, keeping the caller's
 * own `contextValues`, `requestGate` and `routes`.
 *
 * Why this shape: verification must not depend on how a given connect-node
 * release reads a Node request (2.2 async-iterates it, 2.3 calls
 * `req.iterator()`), so nothing here touches the Node request's methods.
 * It uses three documented seams of Connect's router options instead:
 *
 * - `contextValues` runs when the request's headers have arrived, with the
 *   Node request: it checks the raw headers and the raw request-target (the
 *   adapters only hand handlers a normalised URL and merged headers);
 * - `routes`: after your routes are registered, each `UniversalHandler` on
 *   the router (the public type every adapter serves) is wrapped, so the
 *   body the adapter hands it is replaced with one that yields chunks only
 *   once the whole body's signature verified;
 * - `requestGate` runs before any interceptor or handler and before Connect
 *   reads the body: it rejects a request whose headers failed, then reads,
 *   hashes and verifies the whole body once, records the identity and lets
 *   the call proceed.
 *
 * So no interceptor or handler sees an unverified message, for any protocol
 * or kind of RPC. A consequence: a client-streaming or bidi handler starts
 * once the client has finished sending (a signature over the whole body
 * cannot be checked earlier).
 */
export function withGatewayAuth<O extends object>(
  config: GatewayAuthConfig,
  verified: VerifiedRequests,
  options: O & ConnectOptionsLike,
): O {
  const { contextValues: ownContextValues, requestGate: ownRequestGate, routes: ownRoutes } = options;
  return {
    ...options,
    // Connect applies readMaxBytes to each message after decompression: a
    // small gzip body must not become a huge message in a handler.
    readMaxBytes: options.readMaxBytes ?? config.maxBodyBytes,
    contextValues(req: never): ContextValues {
      // Your values are read through a layer of this request's own, where
      // the verification and the identity are written: a `contextValues`
      // that hands every request the same object must not let one request's
      // identity replace another's.
      const nodeRequest = nodeRequestOf(req);
      const values = ownContextValues === undefined ? createContextValues() : new RequestValues(ownContextValues(req));
      verifications.set(values, verificationOf(config, verified, nodeRequest));
      withUsableAuthority(nodeRequest);
      return values;
    },
    requestGate:
      ownRequestGate === undefined
        ? (ctx: HandlerContext) => admit(config, ctx)
        : async (ctx: HandlerContext) => {
            await admit(config, ctx);
            await ownRequestGate(ctx);
          },
    ...(ownRoutes === undefined
      ? {}
      : {
          routes(router: ConnectRouter): void {
            ownRoutes(router);
            const { handlers } = router;
            for (let i = 0; i < handlers.length; i++) {
              handlers[i] = guarded(config, handlers[i] as UniversalHandler);
            }
          },
        }),
  };
}

/**
 * One request's context values over the ones `contextValues` returned: what
 * is set or deleted here is this request's alone; the rest is read from
 * `base`.
 */
class RequestValues implements ContextValues {
  private readonly own = createContextValues();
  /** The keys set or deleted on this request (their value, or absence, is `own`'s). */
  private readonly written = new Set<symbol>();

  constructor(private readonly base: ContextValues) {}

  get<T>(key: ContextKey<T>): T {
    return this.written.has(key.id) ? this.own.get(key) : this.base.get(key);
  }

  set<T>(key: ContextKey<T>, value: T): this {
    this.written.add(key.id);
    this.own.set(key, value);
    return this;
  }

  delete(key: ContextKey<unknown>): this {
    this.written.add(key.id);
    this.own.delete(key);
    return this;
  }
}

/**
 * connect-node builds each request's URL from its `Host` header, right after
 * `contextValues`, and throws — uncaught, in the server's request listener —
 * when it cannot: an HTTP/1.0 request without one, `Host: a b`. One such
 * request would end the service's process. None can come from the gateway
 * (which names its upstream's host); it is refused like any request whose
 * signature does not verify, so the Host connect-node reads for it is only
 * made parseable here (`invalid`, a reserved name no handler acts on) —
 * nothing else of the request is touched. The same for an HTTP/2 request's
 * `:authority` (`a:99999` passes nghttp2's checks).
 */
function withUsableAuthority(req: NodeRequest): void {
  const http2 = "authority" in req;
  const authority = http2 ? req.authority : req.headers.host;
  if (authority !== undefined && URL.canParse(req.url ?? "/", `http://${authority}`)) return;
  // HTTP/2: Node's `authority` reads `:authority` (then `host`), whose
  // characters nghttp2 checks, not its port (`a:99999`).
  if (http2) req.headers[":authority"] = "invalid";
  else req.headers.host = "invalid";
}

// connect-fastify passes the Fastify request; the Node one is its `raw`.
function nodeRequestOf(req: unknown): NodeRequest {
  const raw = (req as { raw?: unknown }).raw;
  return (typeof raw === "object" && raw !== null && "rawHeaders" in raw ? raw : req) as NodeRequest;
}

function verificationOf(config: GatewayAuthConfig, verified: VerifiedRequests, req: NodeRequest): RequestVerification {
  const pre = verified.get(req);
  return pre === undefined ? verify(config, req) : alreadyVerified(req, pre);
}

/**
 * The handler Connect serves, with the request body swapped for the
 * verifying iterable. Keeps every property of the original (path, method,
 * protocols), which the adapters read to route.
 */
function guarded(config: GatewayAuthConfig, handler: UniversalHandler): UniversalHandler {
  const guard = (req: UniversalServerRequest) => {
    const verification = verificationIn(req.contextValues);
    if (verification === undefined) {
      // contextValues was dropped from the options: the gate refuses the
      // call, and the body stays out of reach regardless.
      return handler({ ...req, body: refusingBody(missingWiringError()) });
    }
    if (!verification.holdsBody) return handler(req);
    // Express with auth.express() in front hands Connect the JSON that
    // middleware parsed from the bytes it verified: pass it on as it is.
    if (verification.preVerified !== undefined && !isAsyncIterable(req.body)) return handler(req);
    verification.source = req.body;
    return handler({ ...req, body: new VerifiedChunks(config, verification) });
  };
  return Object.assign(guard, handler);
}

function isAsyncIterable(value: unknown): value is AsyncIterable<Uint8Array> {
  return typeof value === "object" && value !== null && Symbol.asyncIterator in value;
}

function verify(config: GatewayAuthConfig, req: NodeRequest): RequestVerification {
  const check = checkRequestHead(config, req);
  return {
    check,
    holdsBody: !config.skipVerification,
    consumedEarly: bodyWasConsumed(req),
    contentLength: check.ok ? check.contentLength : undefined,
    http1: req.httpVersionMajor === 1,
    request: req,
    preVerified: undefined,
    source: undefined,
    read: undefined,
  };
}

// Verified by auth.express() / auth.fastify of the same instance, which
// consumed the body: hand Connect the bytes they verified.
function alreadyVerified(req: NodeRequest, pre: PreVerifiedRequest): RequestVerification {
  const fullpath = fullpathOf((req as { originalUrl?: string }).originalUrl ?? req.url ?? "");
  const byteLength = pre.chunks.reduce((n, c) => n + c.byteLength, 0);
  return {
    check: { ok: true, method: req.method ?? "", fullpath, identity: pre.identity, contentLength: undefined, verifyBody: () => undefined },
    holdsBody: true,
    consumedEarly: false,
    contentLength: undefined,
    http1: req.httpVersionMajor === 1,
    request: req,
    preVerified: pre,
    source: undefined,
    read: Promise.resolve({ kind: "verified", chunks: [...pre.chunks], byteLength }),
  };
}

/**
 * Reads, hashes and verifies the whole body, once (the gate and the
 * verifying iterable share the outcome). A body the adapter did not hand
 * over as chunks was parsed by someone else first: it cannot be verified.
 *
 * The verifier reads the Node request itself, with `data` events (one
 * listener, no promise per chunk: measured ~7 % less server CPU per call
 * than pulling the adapter's async iterator). That only listens to the
 * stream, as any body reader does; Connect never reads the request, since
 * its handler gets the verified chunks instead of the adapter's body, so it
 * does not matter how a connect-node release would have read it.
 */
function bodyOf(config: GatewayAuthConfig, verification: RequestVerification): Promise<VerifiedBody> {
  if (verification.read !== undefined) return verification.read;
  const { check, source } = verification;
  verification.read = !check.ok
    ? Promise.resolve({ kind: "rejected", reason: check.reason })
    : isAsyncIterable(source)
      ? readAndVerifyBody(config, check, verification.request)
      : Promise.reject(
          source === undefined
            ? new ConnectError(ROUTES_NOT_WRAPPED_MESSAGE, Code.Internal)
            : connectError(rejectionOf(config, "body_already_read")),
        );
  return verification.read;
}

const ROUTES_NOT_WRAPPED_MESSAGE =
  "connect-gateway: the request reached Connect without the verifying routes; pass `routes` " +
  "through auth.connectOptions({ routes }) rather than adding them afterwards";

// An iterable whose first read fails: what a handler gets instead of a body
// that cannot be verified.
function refusingBody(error: ConnectError): AsyncIterable<Uint8Array> {
  return { [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(error) }) };
}

function missingWiringError(): ConnectError {
  return new ConnectError(
    "connect-gateway: requestGate ran without contextValues; pass the options through auth.connectOptions()",
    Code.Internal,
  );
}

// A minimal async iterator rather than an async generator: this runs on
// every call, and a generator's machinery measured several times the cost of
// the hashing and HMAC it wraps. A class, so that a call allocates one object
// rather than a set of closures.
class VerifiedChunks implements AsyncIterable<Uint8Array>, AsyncIterator<Uint8Array> {
  private chunks: Uint8Array[] | undefined;
  private next_ = 0;

  constructor(
    private readonly config: GatewayAuthConfig,
    private readonly verification: RequestVerification,
  ) {}

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this;
  }

  async next(): Promise<IteratorResult<Uint8Array>> {
    const body = await bodyOf(this.config, this.verification);
    if (body.kind !== "verified") throw bodyError(this.config, this.verification.check, body);
    const chunks = (this.chunks ??= body.chunks);
    if (this.next_ >= chunks.length) return { done: true, value: undefined };
    const chunk = chunks[this.next_] as Uint8Array;
    // Drop each reference once handed over, so connect's copy can replace it.
    chunks[this.next_++] = EMPTY;
    return { done: false, value: chunk };
  }

  return(): Promise<IteratorResult<Uint8Array>> {
    if (this.chunks !== undefined) this.chunks.length = 0;
    return Promise.resolve({ done: true, value: undefined });
  }
}

const EMPTY = new Uint8Array(0);

async function admit(config: GatewayAuthConfig, ctx: HandlerContext): Promise<void> {
  const verification = verificationIn(ctx.values);
  if (verification === undefined) throw missingWiringError();
  const span = startVerificationSpan(verification.request);
  let identity: GatewayIdentity | undefined;
  try {
    identity = await (span === undefined
      ? verifiedIdentity(config, ctx, verification)
      : span.run(() => verifiedIdentity(config, ctx, verification)));
  } catch (error) {
    span?.end((error instanceof ConnectError ? refusalKinds.get(error) : undefined) ?? "error");
    throw error;
  }
  span?.end("verified", identity);
  setVerifiedIdentity(ctx.values, config, identity);
}

/** The identity of a request whose head and body verified; throws its refusal otherwise. */
async function verifiedIdentity(
  config: GatewayAuthConfig,
  ctx: HandlerContext,
  verification: RequestVerification,
): Promise<GatewayIdentity | undefined> {
  const { check } = verification;
  if (!check.ok) throw refusedUnread(ctx, verification, connectError(rejectionOf(config, check.reason, check)), config.bodyTimeoutMs);
  const early = refusalBeforeBody(config, {
    consumed: verification.consumedEarly,
    // Only a body this request holds is bounded here (not with skipVerification).
    contentLength: verification.holdsBody ? verification.contentLength : undefined,
  });
  if (early !== undefined) throw refusedUnread(ctx, verification, connectError(rejectionOf(config, early, check)), config.bodyTimeoutMs);
  if (verification.holdsBody) {
    let body: VerifiedBody;
    try {
      body = await bodyOf(config, verification);
    } catch (e) {
      // Our own refusal (a body parsed before us), or the client went away mid-body.
      throw e instanceof ConnectError ? e : connectError(rejectionOf(config, "body_cut_off"), e);
    }
    if (body.kind === "timed_out") throw refusedUnread(ctx, verification, bodyError(config, check, body), 0);
    // Past maxBodyBytes the rest of the body is not read: over HTTP/1.1 the
    // connection closes with the answer, rather than carry a caller's
    // never-ending upload (connect-node would read it to keep the connection).
    // Over HTTP/2 the body read already drains and ends the stream.
    if (body.kind === "too_large" && verification.http1) ctx.responseHeader.set("connection", "close");
    if (body.kind !== "verified") throw bodyError(config, check, body);
  }
  return check.identity;
}

/**
 * A request refused before its body was read (or while it is still
 * arriving: a body past `bodyTimeoutMs`). Over HTTP/1.1 the answer says
 * `Connection: close`: some connect-node releases otherwise read and discard
 * up to 256 KiB of the refused body before answering (to keep the
 * connection reusable), which would make a refused caller that has not sent
 * its body wait, and spend our time on bytes we will never use. Over HTTP/2
 * the rest of the body is dropped for a while, then the stream is reset
 * (see endUnreadStream; `drainFor` 0 for a body that timed out: at once).
 */
function refusedUnread(ctx: HandlerContext, verification: RequestVerification, error: ConnectError, drainFor: number): ConnectError {
  if (verification.http1) ctx.responseHeader.set("connection", "close");
  else endUnreadStream(verification.request, drainFor);
  return error;
}

function bodyError(
  config: GatewayAuthConfig,
  check: RequestCheck,
  body: Exclude<VerifiedBody, { kind: "verified" }>,
): ConnectError {
  return connectError(rejectionOf(config, refusalOfBody(body), check));
}

/** A refusal as Connect sends it: the code and message of its row in the rejection table. */
function connectError(rejection: Rejection, cause?: unknown): ConnectError {
  const error = new ConnectError(rejection.message, rejection.code, undefined, undefined, cause);
  refusalKinds.set(error, rejection.kind);
  return error;
}

/** The kind of each refusal made here, for the verification span (see admit). */
const refusalKinds = new WeakMap<ConnectError, RejectionKind>();
