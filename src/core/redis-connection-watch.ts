/**
 * Watches the commands a Redis store sends on its client's one connection,
 * for the day that connection loses answers without closing (a faulty
 * proxy or middlebox on the way): Redis answers in order, so from then on
 * the client pairs every answer with an older command — a replay claim
 * could receive a fresh claim's `OK`, a token read another key's value —
 * and the lost commands stay pending for good.
 *
 * Each command is noted as it is sent ({@link sent}) and settles in order.
 * Once the oldest unanswered one has waited {@link STALE_AFTER_MS}, the next
 * check ({@link check}, made as the next command goes out: no timer) has a
 * client that can (ioredis: `disconnect(true)`) drop its connection and make
 * it again, which fails what it held and puts answers back in step. At most
 * once per {@link STALE_AFTER_MS}. A client without `disconnect` (a
 * node-redis adapter of `{ get, set }`) is left alone.
 */
export class RedisConnectionWatch {
  // When each unanswered command was sent, oldest first, from `oldest` on.
  readonly #sentAt: number[] = [];
  #oldest = 0;
  #lastReconnect = 0;
  readonly #client: object;

  constructor(client: object) {
    this.#client = client;
  }

  /** How many commands are unanswered. */
  get pending(): number {
    return this.#sentAt.length - this.#oldest;
  }

  /** Notes a command sent now; returns what to call once it settles (either way). */
  sent(now: number): () => void {
    this.#sentAt.push(now);
    return this.#settled;
  }

  /** Remakes the connection when its oldest unanswered command is stale (see the class comment). */
  check(now: number): void {
    const first = this.#sentAt[this.#oldest];
    if (first === undefined || now - first < STALE_AFTER_MS || now - this.#lastReconnect < STALE_AFTER_MS) return;
    const disconnect = (this.#client as { disconnect?: (reconnect?: boolean) => void }).disconnect;
    if (typeof disconnect !== "function") return;
    this.#lastReconnect = now;
    disconnect.call(this.#client, true);
  }

  readonly #settled = (): void => {
    this.#oldest++;
    if (this.#oldest >= this.#sentAt.length) {
      this.#sentAt.length = 0;
      this.#oldest = 0;
    }
  };
}

/** How long a command may go unanswered before its connection is remade. */
export const STALE_AFTER_MS = 1_000;
