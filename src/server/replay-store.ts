import { randomFillSync } from "node:crypto";
import { assertFunction, assertPositiveInteger } from "../core/assertions.js";
import { ReplayStoreFullError } from "../core/errors.js";

/**
 * Where a service remembers the v2 request ids it accepted, so that a
 * captured request cannot run twice. One store is shared by every instance
 * of the service that should refuse each other's replays: the in-memory
 * default covers one process; {@link createRedisReplayStore} covers a fleet.
 *
 * Only requests whose signature verified reach the store, so only the
 * gateway can add ids to it.
 */
export interface ReplayStore {
  /**
   * Records `requestId` for `ttlSeconds` (until its timestamp leaves the
   * window). Returns `true` when the id was new, `false` when it was already
   * recorded (a replay). May throw or reject when the store cannot answer:
   * the service then refuses the request (or accepts it, if configured so).
   */
  claim(requestId: string, ttlSeconds: number): boolean | Promise<boolean>;
}

/** Options of {@link createMemoryReplayStore}. */
export interface MemoryReplayStoreOptions {
  /**
   * The most unexpired ids held at once (default 500,000; the table then
   * takes at most 16 MiB, outside the JavaScript heap). An id is held for
   * the window and the longest wait for a body (62 s with the defaults: 30 s
   * skew, 30 s `bodyTimeoutMs`), so this bounds the sustained rate at
   * about 8,000 requests per second per process; past it,
   * requests are refused as `replay_check_unavailable` rather than replays
   * let through. Use a Redis store for more.
   */
  readonly maxEntries?: number;
  /** The clock, milliseconds since the epoch (default `Date.now`): for tests. */
  readonly now?: () => number;
}

// Thrown by the memory store when it is full; it lives with every other error of the library.
export { ReplayStoreFullError };

/**
 * The default replay store: a table in this process, each id held until its
 * window has passed, and not after.
 *
 * The table keeps a 64-bit keyed hash of each id and its expiry in typed
 * arrays (open addressing, linear probing), not the ids themselves: a busy
 * service holds some 200,000 ids at once, and as strings in a `Map` they
 * cost ~140 bytes each on the JavaScript heap, which every major collection
 * walks, and every insertion rehashes. Here an id costs no heap object, and
 * a claim allocates nothing.
 *
 * A hash can collide; the consequence decides which way that is allowed to
 * err. A collision makes a fresh id look seen, so the request is refused
 * as a replay — it never lets a replay through (the same id always has the
 * same hash). With 64 bits, keyed by random seeds drawn when the store is
 * made, the chance that a given fresh id is refused is at most the ids held
 * ÷ 2⁶⁴: below 10⁻¹³ for a full default store. TLS 1.3 accepts the same
 * trade for its 0-RTT anti-replay caches.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8446#section-8 | RFC 8446 §8} (anti-replay caches may err towards refusal)
 */
export function createMemoryReplayStore(options: MemoryReplayStoreOptions = {}): ReplayStore {
  const maxEntries = assertPositiveInteger("maxEntries", options.maxEntries ?? 500_000);
  const now = options.now === undefined ? Date.now : assertFunction<() => number>("now", options.now);
  return new MemoryReplayStore(maxEntries, now);
}

/** The fewest slots a table has; it grows (and shrinks) by powers of two from there. */
const MIN_SLOTS = 1024;
/** When a full store may look again for ids that expired (a sweep walks the whole table). */
const FULL_SWEEP_INTERVAL_MS = 250;

class MemoryReplayStore implements ReplayStore {
  /** The most slots: the table never fills past half, so twice `maxEntries`, as a power of two. */
  private readonly maxSlots: number;
  private readonly seeds = randomFillSync(new Uint32Array(2));
  // Slot i is 16 bytes of one buffer, so that a probe touches one cache
  // line: when its id expires (a float64, ms; 0 marks a slot never used
  // since the table was built), then the two halves of the id's hash.
  // A slot whose id expired is reused by the next id that probes past it.
  private expiresAt!: Float64Array; // [2i]
  private words!: Uint32Array; // [4i + 2], [4i + 3]
  private mask = 0;
  /** Slots in use (unexpired or expired): past half the table, it is rebuilt. */
  private used = 0;
  /** At least the unexpired ids: exact at a sweep, then one more per id added. */
  private held = 0;
  /** The earliest expiry among the ids held: before it, a sweep would find nothing to drop. */
  private earliestExpiry = Infinity;
  private nextFullSweep = 0;

  constructor(
    private readonly maxEntries: number,
    private readonly now: () => number,
  ) {
    let maxSlots = MIN_SLOTS;
    while (maxSlots < maxEntries * 2) maxSlots *= 2;
    this.maxSlots = maxSlots;
    this.allocate(MIN_SLOTS);
  }

  claim(requestId: string, ttlSeconds: number): boolean {
    const t = this.now();
    hashId(requestId, this.seeds);
    let slot = this.find(t);
    if (slot < 0) return false;
    const empty = this.expiresAt[2 * slot] === 0;
    if (empty || this.words[4 * slot + 2] !== hashHigh || this.words[4 * slot + 3] !== hashLow) {
      // A new id: make room first, when the table or the store is full.
      if ((empty && (this.used + 1) * 2 > this.mask + 1) || this.held >= this.maxEntries) {
        this.makeRoom(t);
        if (this.held >= this.maxEntries) throw new ReplayStoreFullError(this.maxEntries);
        slot = this.find(t);
      }
      if (this.expiresAt[2 * slot] === 0) this.used++;
      this.held++;
    }
    // A new id, or this very id again after its window passed (a slot the probe stopped at).
    const expiresAt = t + ttlSeconds * 1000;
    this.put(slot, hashHigh, hashLow, expiresAt);
    if (expiresAt < this.earliestExpiry) this.earliestExpiry = expiresAt;
    return true;
  }

  /**
   * Where the id hashed last goes: `-1` when it is held and unexpired (a
   * replay); else its own expired slot, or the first expired slot on its
   * probe, or the empty slot that ends the probe.
   */
  private find(t: number): number {
    const { words, expiresAt, mask } = this;
    let reusable = -1;
    for (let i = hashHigh & mask; ; i = (i + 1) & mask) {
      const expiry = expiresAt[2 * i] as number;
      if (expiry === 0) return reusable >= 0 ? reusable : i;
      if (words[4 * i + 2] === hashHigh && words[4 * i + 3] === hashLow) return expiry > t ? -1 : i;
      if (reusable < 0 && expiry <= t) reusable = i;
    }
  }

  /**
   * Rebuilds the table with only the unexpired ids, sized for them (so it
   * also shrinks after a burst). When the store is full, at most every
   * {@link FULL_SWEEP_INTERVAL_MS}: a sweep walks every slot, and a store
   * kept full by a flood must not pay that on every request.
   */
  private makeRoom(t: number): void {
    const full = this.held >= this.maxEntries;
    // Full, and nothing expired since the last sweep (or it was just now): the claim is refused.
    if (full && (t < this.earliestExpiry || t < this.nextFullSweep)) return;
    if (full) this.nextFullSweep = t + FULL_SWEEP_INTERVAL_MS;
    const { words, expiresAt } = this;
    const oldSlots = this.mask + 1;
    let held = 0;
    for (let i = 0; i < oldSlots; i++) if ((expiresAt[2 * i] as number) > t) held++;
    let slots = MIN_SLOTS;
    // Room for twice the ids held (at most half full), and for as many again to come.
    while (slots < this.maxSlots && slots < held * 4) slots *= 2;
    this.allocate(slots);
    let earliest = Infinity;
    for (let i = 0; i < oldSlots; i++) {
      const expiry = expiresAt[2 * i] as number;
      if (expiry <= t) continue;
      const high = words[4 * i + 2] as number;
      let j = high & this.mask;
      while (this.expiresAt[2 * j] !== 0) j = (j + 1) & this.mask;
      this.put(j, high, words[4 * i + 3] as number, expiry);
      if (expiry < earliest) earliest = expiry;
    }
    this.used = held;
    this.held = held;
    this.earliestExpiry = earliest;
  }

  private put(slot: number, high: number, low: number, expiresAt: number): void {
    this.expiresAt[2 * slot] = expiresAt;
    this.words[4 * slot + 2] = high;
    this.words[4 * slot + 3] = low;
  }

  private allocate(slots: number): void {
    const table = new ArrayBuffer(slots * 16);
    this.expiresAt = new Float64Array(table);
    this.words = new Uint32Array(table);
    this.mask = slots - 1;
  }
}

// The hash of the last id given to hashId: two 32-bit halves, kept here
// rather than returned in a new object on every claim.
let hashHigh = 0;
let hashLow = 0;

/**
 * A 64-bit hash of `id`, keyed by two random seeds: two MurmurHash3 (x86,
 * 32-bit) lanes over its UTF-16 code units, two to a block. Not a
 * cryptographic hash, and it need not be one: only requests the gateway
 * signed reach the store, so no attacker chooses the ids that could collide
 * (and a collision only refuses a request, see above).
 */
function hashId(id: string, seeds: Uint32Array): void {
  let a = seeds[0] as number;
  let b = seeds[1] as number;
  const n = id.length;
  let i = 0;
  for (; i + 1 < n; i += 2) {
    const block = id.charCodeAt(i) | (id.charCodeAt(i + 1) << 16);
    a = mixBlock(a, block);
    b = mixBlock(b, block ^ 0x9e3779b9);
  }
  if (i < n) {
    const block = mixTail(id.charCodeAt(i));
    a ^= block;
    b ^= block ^ 0x9e3779b9;
  }
  hashHigh = finish(a ^ n) >>> 0;
  hashLow = finish(b ^ n) >>> 0;
}

function mixTail(k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, 0x1b873593);
}

function mixBlock(h: number, k: number): number {
  h ^= mixTail(k);
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function finish(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}
