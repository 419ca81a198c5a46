/**
 * A request body read in full (see bufferedBodyParser), kept as the chunks it
 * arrived in: never concatenated, so the gateway holds it once. It is signed
 * by `sha256`, computed chunk by chunk as the body came in (it is a
 * `{ sha256 }` body for `gatewaySignatureHeaders`), and forwarded as those
 * chunks (see ChunkStream).
 */
export class BufferedBody {
  /** The body, in order; together exactly `byteLength` bytes. Never modified. */
  readonly chunks: readonly Buffer[];
  readonly byteLength: number;
  /** Lower-case hex SHA-256 of the whole body. */
  readonly sha256: string;

  constructor(chunks: readonly Buffer[], byteLength: number, sha256: string) {
    this.chunks = chunks;
    this.byteLength = byteLength;
    this.sha256 = sha256;
  }
}
