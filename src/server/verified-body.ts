import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import type { GatewayRejectionReason } from "../signing/index.js";
import type { BodyVerdict } from "./replay-check.js";

/** The outcome of {@link readVerifiedBody}. */
export type VerifiedBody =
  | {
      readonly kind: "verified";
      /** The chunks as received (the same objects, not copies). */
      readonly chunks: Uint8Array[];
      readonly byteLength: number;
    }
  | { readonly kind: "rejected"; readonly reason: GatewayRejectionReason }
  | { readonly kind: "too_large" };

/**
 * Reads a body to its end, hashing each chunk once as it arrives and holding
 * a reference to it (never a copy), then asks `verifyBody` whether the
 * signature covers that hash (and the request is not a replay). The chunks
 * are handed out only when it does: a handler can never act on bytes whose
 * signature has not been checked.
 *
 * Stops reading, and drops what it holds, past `maxBodyBytes`. Rejects when
 * the stream fails or closes before its end (the client went away).
 * Listens to `data` events rather than async-iterating: it costs one
 * listener per request instead of a promise per chunk.
 */
export function readVerifiedBody(
  stream: Readable,
  verifyBody: (bodySha256: string) => BodyVerdict | Promise<BodyVerdict>,
  maxBodyBytes: number,
): Promise<VerifiedBody> {
  const hash = createHash("sha256");
  const chunks: Uint8Array[] = [];
  let byteLength = 0;
  return new Promise((resolve, reject) => {
    const onData = (piece: Uint8Array | string) => {
      // Node streams yield Buffers; a string only appears after setEncoding().
      const chunk = typeof piece === "string" ? Buffer.from(piece) : piece;
      byteLength += chunk.byteLength;
      if (byteLength > maxBodyBytes) {
        done();
        stream.pause();
        chunks.length = 0;
        resolve({ kind: "too_large" });
        return;
      }
      hash.update(chunk);
      chunks.push(chunk);
    };
    const onEnd = () => {
      done();
      const verdict = verifyBody(hash.digest("hex"));
      if (verdict instanceof Promise) verdict.then((v) => resolve(outcome(v, chunks, byteLength)), reject);
      else resolve(outcome(verdict, chunks, byteLength));
    };
    const onError = (err: Error) => {
      done();
      reject(err);
    };
    const onClose = () => onError(new Error("the request closed before its body ended"));
    const done = () => {
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("error", onError);
      stream.off("close", onClose);
    };
    if (stream.readableEnded) {
      onEnd();
      return;
    }
    // Gone before anyone read it (the client hung up while the request
    // waited): no event will ever come, so say so now rather than hang.
    if (stream.destroyed) {
      onClose();
      return;
    }
    stream.on("data", onData);
    stream.on("end", onEnd);
    stream.on("error", onError);
    stream.on("close", onClose);
  });
}

/** The body as verified, or why it was refused. */
export function outcome(verdict: BodyVerdict, chunks: Uint8Array[], byteLength: number): VerifiedBody {
  return verdict === undefined ? { kind: "verified", chunks, byteLength } : { kind: "rejected", reason: verdict };
}

/** True when the declared `content-length` alone exceeds the limit: refuse before reading. */
export function declaresTooLarge(contentLength: string | undefined, maxBodyBytes: number): boolean {
  return contentLength !== undefined && Number(contentLength) > maxBodyBytes;
}
