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
import { declaresTooLarge, readVerifiedBody, releaseChunks, type VerifiedBody } from "./verified-body.js";

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
  options: O & ConnectOptionsLike,
): O {
  const { contextValues: ownContextValues, requestGate: ownRequestGate } = options;
  return {
    ...options,
    contextValues(req: never): ContextValues {
      const values = ownContextValues?.(req) ?? createContextValues();
      values.set(verificationKey, attachVerification(config, nodeRequestOf(req)));
      return values;
    },
    async requestGate(ctx: HandlerContext): Promise<void> {
      await admit(config, ctx);
      await ownRequestGate?.(ctx);
    },
  };
}

// connect-fastify passes the Fastify request; the Node one is its `raw`.
function nodeRequestOf(req: unknown): NodeRequest {
  const raw = (req as { raw?: unknown }).raw;
  return (typeof raw === "object" && raw !== null && "rawHeaders" in raw ? raw : req) as NodeRequest;
}

function attachVerification(config: GatewayAuthConfig, req: NodeRequest): RequestVerification {
  const check = checkRequestHead(config, req);
  const consumedEarly = bodyWasConsumed(req);
  let read: Promise<VerifiedBody> | undefined;
  const verification: RequestVerification = {
    check,
    consumedEarly,
    contentLength: req.headers["content-length"],
    body: () =>
      (read ??= check.ok
        ? readVerifiedBody(streamOf(req), check.verifies, config.maxBodyBytes)
        : Promise.resolve({ kind: "invalid_signature" })),
  };
  if (!config.skipVerification) {
    // Defence in depth: even if the gate were bypassed, connect reads the body
    // through this iterator, which releases nothing unverified.
    Object.defineProperty(req, Symbol.asyncIterator, {
      configurable: true,
      writable: true,
      value: () => verifiedChunks(config, verification),
    });
  }
  return verification;
}

// The request's own (inherited) iterator: the bytes as they arrive.
function streamOf(req: NodeRequest): AsyncIterable<Uint8Array | string> {
  const proto = Object.getPrototypeOf(req) as AsyncIterable<Uint8Array | string>;
  return { [Symbol.asyncIterator]: () => proto[Symbol.asyncIterator].call(req) };
}

async function* verifiedChunks(
  config: GatewayAuthConfig,
  verification: RequestVerification,
): AsyncGenerator<Uint8Array> {
  const body = await verification.body();
  if (body.kind !== "verified") throw bodyError(config, verification.check, body);
  yield* releaseChunks(body.chunks);
}

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
  if (!config.skipVerification) {
    if (declaresTooLarge(verification.contentLength, config.maxBodyBytes)) {
      throw new ConnectError(bodyTooLargeMessage(config), Code.ResourceExhausted);
    }
    const body = await verification.body().catch((e: unknown) => {
      throw ConnectError.from(e, Code.Aborted);
    });
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
