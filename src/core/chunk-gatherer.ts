/**
 * A body held as the pieces it arrived in — except that a body arriving a
 * few bytes at a time is copied together into blocks.
 *
 * Node hands each piece of a body over as its own Buffer, and the sender
 * chooses the pieces: HTTP/1.1 chunked encoding, HTTP/2 DATA frames, small
 * writes. A body of 1 MiB sent a byte at a time would otherwise be held as a
 * million Buffers, over a hundred times its size in memory, which a limit
 * counting bytes does not bound. So past the first {@link LOOSE_PIECES}
 * pieces, pieces shorter than {@link SMALL_PIECE} are copied into blocks of
 * {@link GATHER_BLOCK} bytes. Bodies that arrive in a few pieces, or in
 * socket-sized ones (the usual case), are kept as they came, never copied.
 *
 * The server's verifier and the client's HTTP requests hold bodies this way;
 * a subclass hears of each piece kept, in order, through {@link kept}.
 */
export class ChunkGatherer {
  /** The pieces kept so far, in order (the block being filled is not among them yet). */
  protected readonly chunks: Uint8Array[] = [];
  #block: Buffer | undefined = undefined;
  #blockFill = 0;

  /** Adds the next piece of the body. */
  add(piece: Uint8Array): void {
    if (piece.byteLength === 0) return;
    if (piece.byteLength < SMALL_PIECE && (this.#block !== undefined || this.chunks.length >= LOOSE_PIECES)) {
      this.#gather(piece);
    } else {
      this.#keepBlock();
      this.#keep(piece);
    }
  }

  /** The whole body, in order: call once every piece was added. */
  finish(): Uint8Array[] {
    this.#keepBlock();
    return this.chunks;
  }

  /** Drops everything held (a body refused halfway). */
  clear(): void {
    this.chunks.length = 0;
    this.#block = undefined;
  }

  /** Called with each piece as it is kept, in order; `index` is its place in the body's pieces. */
  protected kept(_chunk: Uint8Array, _index: number): void {}

  #keep(chunk: Uint8Array): void {
    this.kept(chunk, this.chunks.length);
    this.chunks.push(chunk);
  }

  #gather(piece: Uint8Array): void {
    let block = this.#block;
    if (block !== undefined && this.#blockFill + piece.byteLength > GATHER_BLOCK) {
      this.#keepBlock();
      block = undefined;
    }
    if (block === undefined) {
      block = this.#block = Buffer.allocUnsafe(GATHER_BLOCK);
      this.#blockFill = 0;
    }
    block.set(piece, this.#blockFill);
    this.#blockFill += piece.byteLength;
  }

  #keepBlock(): void {
    const block = this.#block;
    if (block === undefined) return;
    this.#block = undefined;
    this.#keep(block.subarray(0, this.#blockFill));
  }
}

/** Pieces shorter than this are gathered, past the first {@link LOOSE_PIECES}. */
export const SMALL_PIECE = 1024;
/** How many pieces are kept as they came before small ones are gathered. */
export const LOOSE_PIECES = 16;
/** The size of the blocks small pieces are copied into. */
export const GATHER_BLOCK = 16 * 1024;
