import { createContextValues, type ContextValues } from "@connectrpc/connect";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { bodyWasConsumed } from "../body-was-consumed.js";
import { endUnreadStream, hasUnreadBody } from "../end-unread-stream.js";
import { setVerifiedIdentity } from "../current-user.js";
import type { GatewayAuthConfig } from "../gateway-auth-options.js";
import type { GatewayIdentity } from "../gateway-identity.js";
import { rejectionOf, type Rejection } from "../rejections.js";
import { checkRequestHead, readAndVerifyBody, refusalBeforeBody, refusalOfBody } from "../request-check.js";
import { startVerificationSpan, type VerificationSpan } from "../verification-tracing.js";
import type { VerifiedBody } from "../verified-body.js";

/** A verified plain-Node request: who is calling, and the exact body bytes. */
export interface VerifiedNodeRequest {
  /** `undefined` only in `skipVerification` mode without `X-Client-Id`. */
  readonly identity: GatewayIdentity | undefined;
  /** The raw body, exactly as received and verified. */
  readonly body: Buffer;
  /** For `currentUser(result)`, `requireUser(result)`, `requireScopes(result, …)`. */
  readonly values: ContextValues;
}

type NodeRequest = IncomingMessage | Http2ServerRequest;
type NodeResponse = ServerResponse | Http2ServerResponse;

/**
 * Verifies a plain Node request (what a Rack middleware does for Ruby): checks the
 * headers before reading anything, then reads the body (at most
 * `maxBodyBytes`), hashing it as it arrives, and verifies the signature.
 * Returns the identity and the body; otherwise answers the request itself
 * with the status and message of the rejection table, as JSON
 * `{"message": …}` (403 with the reason or `Forbidden`, 503 when the replay
 * store did not answer, 413 when too large, 500 when a body parser consumed
 * the body first, 400 when the body was cut off) and returns `undefined`.
 * Never rejects on a request's input.
 */
export function verifyNodeRequest(
  config: GatewayAuthConfig,
  req: NodeRequest,
  res: NodeResponse,
  // Express rewrites `url` under a mount point (Fastify with rewriteUrl too); the raw target is `originalUrl`.
  requestTarget: string | undefined = (req as { originalUrl?: string }).originalUrl ?? req.url,
): Promise<VerifiedNodeRequest | undefined> {
  const span = startVerificationSpan(req);
  if (span === undefined) return verifyAndAnswer(config, req, res, requestTarget, undefined);
  return span.run(() => verifyAndAnswer(config, req, res, requestTarget, span));
}

/**
 * The verification itself: the result, or `undefined` once the refusal is
 * answered. Ends the span, when there is one, with the outcome: `verified`,
 * the refusal's kind, or `error` for an unexpected failure.
 */
async function verifyAndAnswer(
  config: GatewayAuthConfig,
  req: NodeRequest,
  res: NodeResponse,
  requestTarget: string | undefined,
  span: VerificationSpan | undefined,
): Promise<VerifiedNodeRequest | undefined> {
  let refusal: Rejection | undefined;
  let verified: VerifiedNodeRequest | undefined;
  try {
    const check = checkRequestHead(config, { method: req.method, url: requestTarget, rawHeaders: req.rawHeaders });
    if (!check.ok) {
      refusal = rejectionOf(config, check.reason, check);
    } else {
      const early = refusalBeforeBody(config, { consumed: bodyWasConsumed(req), contentLength: check.contentLength });
      if (early !== undefined) {
        refusal = rejectionOf(config, early, check);
      } else {
        let body: VerifiedBody | undefined;
        try {
          body = await readAndVerifyBody(config, check, req);
        } catch {
          // The client went away mid-body: a rejected promise here would crash a
          // plain `async (req, res) =>` handler's process, so answer (to nobody) instead.
          body = undefined;
        }
        if (body === undefined) refusal = rejectionOf(config, "body_cut_off", check);
        else if (body.kind !== "verified") refusal = rejectionOf(config, refusalOfBody(body), check);
        else verified = verifiedRequest(config, check.identity, body.chunks, body.byteLength);
      }
    }
    if (refusal !== undefined) {
      refuse(res, refusal, req);
      endUnreadStream(req, refusal.kind === "body_timeout" ? 0 : config.bodyTimeoutMs);
    }
  } catch (error) {
    span?.end("error");
    throw error;
  }
  if (refusal !== undefined) span?.end(refusal.kind);
  else span?.end("verified", verified?.identity);
  return verified;
}

function verifiedRequest(
  config: GatewayAuthConfig,
  identity: GatewayIdentity | undefined,
  chunks: readonly Uint8Array[],
  byteLength: number,
): VerifiedNodeRequest {
  const values = createContextValues();
  setVerifiedIdentity(values, config, identity);
  return { identity, body: asOneBuffer(chunks, byteLength), values };
}

// A single chunk is handed over as is; several are joined once (the chunks
// are garbage afterwards), as any body reader does.
function asOneBuffer(chunks: readonly Uint8Array[], byteLength: number): Buffer {
  const [only] = chunks;
  if (chunks.length === 1 && only !== undefined) {
    return Buffer.from(only.buffer, only.byteOffset, only.byteLength);
  }
  return Buffer.concat(chunks, byteLength);
}

/**
 * Answers a refusal with its status from the rejection table and
 * `{"message": …}`. Over HTTP/1.1, a refusal while the body is still
 * arriving (refused on its headers, past `maxBodyBytes`, too slow) closes
 * the connection with the answer: Node would otherwise read the rest of the
 * body to keep the connection, for as long as a caller with no secret
 * cares to trickle it. (Over HTTP/2, see endUnreadStream.)
 */
export function refuse(res: NodeResponse, rejection: Rejection, req?: NodeRequest): undefined {
  const payload = JSON.stringify({ message: rejection.message });
  if (!res.headersSent) {
    const http1 = !("stream" in res);
    const unread = rejection.kind === "body_timeout" || (req !== undefined && hasUnreadBody(req));
    (res as ServerResponse).writeHead(rejection.status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(payload),
      ...(http1 && unread && { connection: "close" }),
    });
  }
  res.end(payload);
  return undefined;
}
