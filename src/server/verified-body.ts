import { createHash } from "node:crypto";

/** The outcome of {@link readVerifiedBody}. */
export type VerifiedBody =
  | {
      readonly kind: "verified";
      /** The chunks as received (the same objects, not copies). */
      readonly chunks: Uint8Array[];
      readonly byteLength: number;
    }
  | { readonly kind: "invalid_signature" }
  | { readonly kind: "too_large" };

/**
 * Reads a body to its end, hashing each chunk once as it arrives and holding
 * a reference to it (never a copy), then asks `verifies` whether the
 * signature covers that hash. The chunks are handed out only when it does:
 * a handler can never act on bytes whose signature has not been checked.
 *
 * Stops reading, and drops what it holds, past `maxBodyBytes`.
 */
export async function readVerifiedBody(
  source: AsyncIterable<Uint8Array | string>,
  verifies: (bodySha256: string) => boolean,
  maxBodyBytes: number,
): Promise<VerifiedBody> {
  const hash = createHash("sha256");
  const chunks: Uint8Array[] = [];
  let byteLength = 0;
  for await (const piece of source) {
    // Node streams yield Buffers; a string only appears after setEncoding().
    const chunk = typeof piece === "string" ? Buffer.from(piece) : piece;
    byteLength += chunk.byteLength;
    if (byteLength > maxBodyBytes) return { kind: "too_large" };
    hash.update(chunk);
    chunks.push(chunk);
  }
  if (!verifies(hash.digest("hex"))) return { kind: "invalid_signature" };
  return { kind: "verified", chunks, byteLength };
}

/** True when the declared `content-length` alone exceeds the limit: refuse before reading. */
export function declaresTooLarge(contentLength: string | undefined, maxBodyBytes: number): boolean {
  return contentLength !== undefined && Number(contentLength) > maxBodyBytes;
}

/** Yields the held chunks, dropping each reference once handed over so memory is freed early. */
export async function* releaseChunks(chunks: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < chunks.length; i++) {
    const chunk = chunks[i] as Uint8Array;
    chunks[i] = EMPTY;
    yield chunk;
  }
}

const EMPTY = new Uint8Array(0);
