import {
  Code,
  ConnectError,
  createContextKey,
  createContextValues,
  type ContextValues,
  type HandlerContext,
} from "@connectrpc/connect";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import { setVerifiedIdentity } from "./current-user.js";
import type { GatewayAuthConfig } from "./gateway-auth-options.js";
import { BODY_ALREADY_READ_MESSAGE, bodyTooLargeMessage, rejectionError } from "./gateway-rejection.js";
import { bodyWasConsumed } from "./body-was-consumed.js";
import { checkRequestHead, type RequestCheck } from "./request-check.js";
import { declaresTooLarge, readVerifiedBody, type VerifiedBody } from "./verified-body.js";
import type { PreVerifiedRequest, VerifiedRequests } from "./verified-requests.js";
import { fullpathOf } from "../signing/index.js";

/** The Node request connect-node, connect-express and connect-fastify hand to `contextValues`. */
type NodeRequest = IncomingMessage | Http2ServerRequest;

/**
 * The options `auth.connectOptions()` composes with: those of
 * `connectNodeAdapter`, `expressConnectMiddleware` and `fastifyConnectPlugin`.
 */
export interface ConnectOptionsLike {
  // `never`: accepts the contextValues of any adapter, whatever its request type.
  contextValues?: (req: never) => ContextValues;
  requestGate?: (ctx: HandlerContext) => void | Promise<void>;
}

interface RequestVerification {
  readonly check: RequestCheck;
  /**
   * The body reaches Connect through the verifying iterator: always, except
   * in skipVerification mode for a request nobody consumed (there is nothing
   * to verify, so Connect reads it as usual).
   */
  readonly holdsBody: boolean;
  readonly consumedEarly: boolean;
  readonly contentLength: string | undefined;
  /** Reads, hashes and verifies the whole body, once. */
  readonly body: () => Promise<VerifiedBody>;
}

const verificationKey = createContextKey<RequestVerification | undefined>(undefined, {
  description: "connect-gateway: verification state of this request",
});

/**
 * Returns `options` with gateway verification wired in, keeping the caller's
 * own `contextValues` and `requestGate` (which runs after ours, so it already
 * sees the identity):
 *
 * - `contextValues` runs when the request's headers have arrived: it checks
 *   them and replaces the request's body iterator with one that yields the
 *   body only after its signature verified;
 * - `requestGate` runs before any byte of the body is read: it rejects a
 *   request whose headers failed, then reads, hashes and verifies the whole
 *   body, and only then records the identity and lets the call proceed. So
 *   no interceptor or handler runs, for any kind of RPC, unless the request
 *   is verified. A consequence: a client-streaming or bidi handler starts
 *   once the client has finished sending (a signature over the whole body
 *   cannot be checked earlier).
 */
export function withGatewayAuth<O extends object>(
  config: GatewayAuthConfig,
  verified: VerifiedRequests,
  options: O & ConnectOptionsLike,
): O {
  const { contextValues: ownContextValues, requestGate: ownRequestGate } = options;
  return {
    ...options,
    contextValues(req: never): ContextValues {
      const values = ownContextValues?.(req) ?? createContextValues();
      values.set(verificationKey, attachVerification(config, verified, nodeRequestOf(req)));
      return values;
    },
    requestGate:
      ownRequestGate === undefined
        ? (ctx: HandlerContext) => admit(config, ctx)
        : async (ctx: HandlerContext) => {
            await admit(config, ctx);
            await ownRequestGate(ctx);
          },
  };
}

// connect-fastify passes the Fastify request; the Node one is its `raw`.
function nodeRequestOf(req: unknown): NodeRequest {
  const raw = (req as { raw?: unknown }).raw;
  return (typeof raw === "object" && raw !== null && "rawHeaders" in raw ? raw : req) as NodeRequest;
}

function attachVerification(
  config: GatewayAuthConfig,
  verified: VerifiedRequests,
  req: NodeRequest,
): RequestVerification {
  const pre = verified.get(req);
  const verification = pre === undefined ? verify(config, req) : alreadyVerified(req, pre);
  if (verification.holdsBody) {
    // Connect reads the body through this iterator, which releases nothing
    // unverified, even if the gate were bypassed. A plain assignment, not
    // Object.defineProperty: an own property with non-default attributes
    // costs every later access to the request (measured: ~20 µs per call).
    (req as unknown as Record<symbol, unknown>)[Symbol.asyncIterator] = () => verifiedChunks(config, verification);
  }
  return verification;
}

function verify(config: GatewayAuthConfig, req: NodeRequest): RequestVerification {
  const check = checkRequestHead(config, req);
  let read: Promise<VerifiedBody> | undefined;
  return {
    check,
    holdsBody: !config.skipVerification,
    consumedEarly: bodyWasConsumed(req),
    contentLength: req.headers["content-length"],
    body: () =>
      (read ??= check.ok
        ? readVerifiedBody(req, check.verifies, config.maxBodyBytes)
        : Promise.resolve({ kind: "invalid_signature" })),
  };
}

// Verified by auth.express() / auth.fastify of the same instance, which
// consumed the body: hand Connect the bytes they verified.
function alreadyVerified(req: NodeRequest, pre: PreVerifiedRequest): RequestVerification {
  const fullpath = fullpathOf(req.url ?? "");
  const byteLength = pre.chunks.reduce((n, c) => n + c.byteLength, 0);
  return {
    check: { ok: true, method: req.method ?? "", fullpath, identity: pre.identity, verifies: () => true },
    holdsBody: true,
    consumedEarly: false,
    contentLength: undefined,
    body: () => Promise.resolve({ kind: "verified", chunks: [...pre.chunks], byteLength }),
  };
}

// A minimal async iterator rather than an async generator: this runs on
// every call, and a generator's machinery measured several times the cost of
// the hashing and HMAC it wraps.
function verifiedChunks(config: GatewayAuthConfig, verification: RequestVerification): AsyncIterator<Uint8Array> {
  let chunks: Uint8Array[] | undefined;
  let next = 0;
  const take = (body: VerifiedBody): IteratorResult<Uint8Array> => {
    if (body.kind !== "verified") throw bodyError(config, verification.check, body);
    chunks ??= body.chunks;
    if (next >= chunks.length) return { done: true, value: undefined };
    const chunk = chunks[next] as Uint8Array;
    // Drop each reference once handed over, so connect's copy can replace it.
    chunks[next++] = EMPTY;
    return { done: false, value: chunk };
  };
  return {
    next: () => verification.body().then(take),
    return: () => {
      if (chunks !== undefined) chunks.length = 0;
      return Promise.resolve({ done: true, value: undefined });
    },
  };
}

const EMPTY = new Uint8Array(0);

async function admit(config: GatewayAuthConfig, ctx: HandlerContext): Promise<void> {
  const verification = ctx.values.get(verificationKey);
  if (verification === undefined) {
    throw new ConnectError(
      "connect-gateway: requestGate ran without contextValues; pass the options through auth.connectOptions()",
      Code.Internal,
    );
  }
  const { check } = verification;
  if (!check.ok) throw rejectionError(config, check.reason, check);
  if (verification.consumedEarly) throw new ConnectError(BODY_ALREADY_READ_MESSAGE, Code.Internal);
  if (verification.holdsBody) {
    if (declaresTooLarge(verification.contentLength, config.maxBodyBytes)) {
      throw new ConnectError(bodyTooLargeMessage(config), Code.ResourceExhausted);
    }
    let body: VerifiedBody;
    try {
      body = await verification.body();
    } catch (e) {
      // The client went away mid-body.
      throw ConnectError.from(e, Code.Aborted);
    }
    if (body.kind !== "verified") throw bodyError(config, check, body);
  }
  setVerifiedIdentity(ctx.values, config, check.identity);
}

function bodyError(
  config: GatewayAuthConfig,
  check: RequestCheck,
  body: Exclude<VerifiedBody, { kind: "verified" }>,
): ConnectError {
  if (body.kind === "too_large") {
    return new ConnectError(bodyTooLargeMessage(config), Code.ResourceExhausted);
  }
  return rejectionError(config, check.ok ? "invalid_signature" : check.reason, check);
}
