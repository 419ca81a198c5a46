// bufferedBodyParser and ChunkStream on their own: a request body is read
// chunk by chunk, hashed as it comes, kept without copying (tiny pieces
// gathered), within fastify's limits, and read back as the same chunks.
import { createHash, randomBytes } from "node:crypto";
import { PassThrough, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { FastifyRequest } from "fastify";
import { describe, expect, it } from "vitest";
import { BufferedBody } from "../../packages/gateway/src/buffered-body.js";
import { bufferedBodyParser } from "../../packages/gateway/src/buffered-body-parser.js";
import { ChunkStream } from "../../packages/gateway/src/chunk-stream.js";

interface Outcome {
  readonly error: (Error & { code?: string; statusCode?: number }) | null;
  readonly body: BufferedBody | undefined;
}

/** Runs the parser on a fresh payload stream: `feed` writes to it; resolves with what the parser gave. */
function parse(
  limit: number,
  headers: Record<string, string>,
  feed: (payload: PassThrough) => void,
): { payload: PassThrough; outcome: Promise<Outcome> } {
  const payload = new PassThrough();
  const outcome = new Promise<Outcome>((resolve) => {
    bufferedBodyParser(limit)({ headers } as unknown as FastifyRequest, payload, (error, body) => resolve({ error, body }));
  });
  feed(payload);
  return { payload, outcome };
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

describe("bufferedBodyParser", () => {
  it("keeps socket-sized chunks as they came (the same Buffers, never concatenated) and hashes them as they arrive", async () => {
    const pieces = [randomBytes(65536), randomBytes(4096), randomBytes(20000)];
    const { outcome } = parse(1 << 20, {}, (payload) => {
      for (const piece of pieces) payload.write(piece);
      payload.end();
    });
    const { error, body } = await outcome;
    expect(error).toBeNull();
    expect(body).toBeInstanceOf(BufferedBody);
    expect(body!.chunks.length).toBe(3);
    body!.chunks.forEach((chunk, i) => expect(chunk).toBe(pieces[i]));
    expect(body!.byteLength).toBe(89632);
    expect(body!.sha256).toBe(sha256(Buffer.concat(pieces)));
  });

  it("gathers tiny pieces into blocks, in order, and keeps a lone small piece as it is", async () => {
    const pieces = Array.from({ length: 20_000 }, (_, i) => randomBytes(1 + (i % 5)));
    pieces.splice(10_000, 0, randomBytes(30_000)); // a large chunk in between
    const all = Buffer.concat(pieces);
    const { outcome } = parse(1 << 20, {}, (payload) => {
      for (const piece of pieces) payload.write(piece);
      payload.end();
    });
    const { body } = await outcome;
    expect(Buffer.concat(body!.chunks).equals(all)).toBe(true);
    expect(body!.sha256).toBe(sha256(all));
    expect(body!.byteLength).toBe(all.length);
    // 60 000 small bytes in 16 KiB blocks, on either side of the large chunk.
    expect(body!.chunks.length).toBeLessThanOrEqual(7);
    expect(body!.chunks).toContain(pieces[10_000]);

    const lone = Buffer.from('{"a":1}');
    const single = await parse(1 << 20, {}, (payload) => payload.end(lone)).outcome;
    expect(single.body!.chunks).toEqual([lone]);
    expect(single.body!.chunks[0]).toBe(lone);
  });

  it("gives no body for an empty one", async () => {
    const { error, body } = await parse(1024, { "content-length": "0" }, (payload) => payload.end()).outcome;
    expect([error, body]).toEqual([null, undefined]);
  });

  it("takes a body of exactly the limit, and refuses one byte more as soon as it arrives, reading no further", async () => {
    const exact = await parse(1000, {}, (payload) => payload.end(Buffer.alloc(1000))).outcome;
    expect(exact.body!.byteLength).toBe(1000);

    const { payload, outcome } = parse(1000, {}, (p) => {
      p.write(Buffer.alloc(600));
      p.write(Buffer.alloc(401)); // never ended: the refusal does not wait for the rest
    });
    const { error, body } = await outcome;
    expect(body).toBeUndefined();
    expect([error?.code, error?.statusCode]).toEqual(["FST_ERR_CTP_BODY_TOO_LARGE", 413]);
    expect(payload.listenerCount("data")).toBe(0);
    // The caller going away after the refusal: its stream's failure is not an unhandled 'error'.
    expect(() => payload.destroy(new Error("caller went away"))).not.toThrow();
    await new Promise((resolve) => payload.once("close", resolve));
  });

  it("refuses a declared Content-Length over the limit before reading a byte", async () => {
    const { payload, outcome } = parse(1000, { "content-length": "1001" }, () => {});
    const { error } = await outcome;
    expect([error?.code, error?.statusCode]).toEqual(["FST_ERR_CTP_BODY_TOO_LARGE", 413]);
    expect(payload.listenerCount("data")).toBe(0);
    expect(payload.readableFlowing).toBeNull();
  });

  it("refuses a body shorter than its Content-Length, and passes a failing stream's error on as a 400", async () => {
    const short = await parse(1000, { "content-length": "10" }, (payload) => payload.end(Buffer.alloc(9))).outcome;
    expect([short.error?.code, short.error?.statusCode]).toEqual(["FST_ERR_CTP_INVALID_CONTENT_LENGTH", 400]);

    const aborted = await parse(1000, {}, (payload) => {
      payload.write(Buffer.alloc(10));
      payload.destroy(Object.assign(new Error("aborted"), { code: "ECONNRESET" }));
    }).outcome;
    expect([aborted.error?.message, aborted.error?.statusCode, aborted.body]).toEqual(["aborted", 400, undefined]);
  });
});

describe("ChunkStream", () => {
  it("reads back as its very chunks, in order, however the reader paces itself", async () => {
    const chunks = Array.from({ length: 40 }, () => randomBytes(65536));
    const seen: Buffer[] = [];
    const slow = new Writable({
      highWaterMark: 1,
      write(chunk: Buffer, _encoding, callback) {
        seen.push(chunk);
        setImmediate(callback);
      },
    });
    await pipeline(new ChunkStream(chunks), slow);
    expect(seen.length).toBe(40);
    seen.forEach((chunk, i) => expect(chunk).toBe(chunks[i]));
  });
});
