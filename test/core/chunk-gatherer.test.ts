// How the library holds a body it reads (the verifier's request bodies, the
// client's HTTP answers): the pieces as they came, except that a body sent a
// few bytes at a time is copied together into blocks, so that its memory is
// bounded by its size rather than by how many pieces the sender chose.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { sendHttpRequest } from "../../src/client/http-request.js";
import { ChunkGatherer, GATHER_BLOCK, LOOSE_PIECES, SMALL_PIECE } from "../../src/core/chunk-gatherer.js";

/** A gatherer that records what it kept, in order, with the index it was told. */
class Recording extends ChunkGatherer {
  readonly seen: [Uint8Array, number][] = [];
  protected override kept(chunk: Uint8Array, index: number): void {
    this.seen.push([chunk, index]);
  }
}

const piece = fc.oneof(
  { weight: 5, arbitrary: fc.uint8Array({ minLength: 0, maxLength: 8 }) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: SMALL_PIECE - 2, maxLength: SMALL_PIECE + 2 }) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 3000, maxLength: 5000 }) },
);

describe("ChunkGatherer", () => {
  it("gives back exactly the bytes added, in order, whatever the pieces", () => {
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 400 }), (pieces) => {
        const gatherer = new Recording();
        for (const p of pieces) gatherer.add(p);
        const chunks = gatherer.finish();
        expect(Buffer.concat(chunks).equals(Buffer.concat(pieces))).toBe(true);
        // Every piece kept was announced once, in order, with its index; none is empty.
        expect(gatherer.seen.map(([c]) => c)).toEqual(chunks);
        expect(gatherer.seen.map(([, i]) => i)).toEqual(chunks.map((_, i) => i));
        expect(chunks.every((c) => c.byteLength > 0)).toBe(true);
        // Large pieces are the very objects added, never copies.
        for (const p of pieces) if (p.byteLength >= SMALL_PIECE) expect(chunks).toContain(p);
        // Bounded: the first loose pieces, the large ones, and one block boundary per large
        // piece or full block.
        const large = pieces.filter((p) => p.byteLength >= SMALL_PIECE).length;
        const total = pieces.reduce((n, p) => n + p.byteLength, 0);
        expect(chunks.length).toBeLessThanOrEqual(LOOSE_PIECES + 2 * large + Math.ceil(total / GATHER_BLOCK) + 1);
      }),
      { numRuns: 300 },
    );
  });

  it("keeps a body of a few pieces as it came", () => {
    const pieces = Array.from({ length: LOOSE_PIECES }, (_, i) => Buffer.from([i]));
    const gatherer = new ChunkGatherer();
    for (const p of pieces) gatherer.add(p);
    const chunks = gatherer.finish();
    expect(chunks.length).toBe(LOOSE_PIECES);
    chunks.forEach((c, i) => expect(c).toBe(pieces[i]));
  });

  it("drops everything on clear()", () => {
    const gatherer = new ChunkGatherer();
    for (let i = 0; i < 100; i++) gatherer.add(Buffer.from([i]));
    gatherer.clear();
    expect(gatherer.finish()).toEqual([]);
  });
});

describe("the client's HTTP requests", () => {
  it("read an answer sent a byte at a time, exactly", async () => {
    const text = JSON.stringify({ items: Array.from({ length: 300 }, (_, i) => `item-${i}`) });
    const server = createServer((_req, res) => {
      res.setHeader("content-type", "application/json");
      let at = 0;
      const step = () => {
        if (at >= text.length) return void res.end();
        res.write(text[at++] as string);
        setImmediate(step);
      };
      step();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const answer = await sendHttpRequest({
        method: "GET",
        origin: new URL(`http://127.0.0.1:${port}`),
        path: "/",
        headers: {},
        timeoutMs: 10_000,
        maxResponseBytes: 1 << 20,
      });
      expect(answer.status).toBe(200);
      expect(answer.body.toString()).toBe(text);
    } finally {
      server.close();
    }
  });
});
