import { Readable } from "node:stream";

/**
 * A Readable over chunks already in memory (a BufferedBody's), each pushed as
 * it is: a Buffer pushed in byte mode is not copied, and a flowing reader gets
 * it back whole. It is how undici takes a body of several chunks without a
 * copy. It keeps the chunks at hand: H2cUpstreamPool writes them itself,
 * and can send them again after a REFUSED_STREAM.
 */
export class ChunkStream extends Readable {
  readonly chunks: readonly Buffer[];
  #next = 0;

  constructor(chunks: readonly Buffer[]) {
    super();
    this.chunks = chunks;
  }

  override _read(): void {
    const chunks = this.chunks;
    while (this.#next < chunks.length) {
      if (!this.push(chunks[this.#next++])) return;
    }
    this.push(null);
  }
}
