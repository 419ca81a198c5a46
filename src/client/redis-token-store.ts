import { randomUUID } from "node:crypto";
import { assertDurationMs, assertFunction, assertNonEmptyString } from "../core/assertions.js";
import { setAnswerBudget } from "../core/answer-budget.js";
import { RedisConnectionWatch } from "../core/redis-connection-watch.js";
import { isStoredToken, type CoordinatedToken, type StoredToken, type TokenRefresh, type TokenStore } from "./token-store.js";

/**
 * The Redis commands the token store needs, in ioredis's spelling — an
 * ioredis `Redis` (or `Cluster`) fits as is:
 *
 * - `get(key)`, resolving to the string stored or `null`;
 * - `set(key, value, "PX", ms)` and `set(key, value, "PX", ms, "NX")`, the
 *   latter resolving to `"OK"` only when the key did not exist yet (the lock);
 * - optionally `eval(script, 1, key, value)`, to release the lock as soon as
 *   the token is stored (only if it is still this process's lock). Without
 *   it the lock is left to expire after its lease.
 *
 * With node-redis (v4+), pass an adapter:
 *
 * ```ts
 * const store = createRedisTokenStore({
 *   get: (key) => client.get(key),
 *   set: (key, value, _px, ms, nx?) => client.set(key, value, nx ? { PX: ms, NX: true } : { PX: ms }),
 *   eval: (script, keys, ...args) => client.eval(script, { keys: args.slice(0, keys), arguments: args.slice(keys) }),
 * });
 * ```
 */
export interface RedisTokenClient {
  /** `GET key`: the stored string, or `null`. */
  get(key: string): Promise<unknown>;
  /** `SET key value PX ms`: stores the token until it expires. */
  set(key: string, value: string, expiry: "PX", milliseconds: number): Promise<unknown>;
  /** `SET key value PX ms NX`: takes the lock, resolving to `"OK"` only when it was free. */
  set(key: string, value: string, expiry: "PX", milliseconds: number, mode: "NX"): Promise<unknown>;
  /** Optional `EVAL script numkeys key… arg…`: releases the lock early. */
  eval?(script: string, numberOfKeys: number, ...keysAndArgs: string[]): Promise<unknown>;
}

/** Options of {@link createRedisTokenStore}; every one has a default. */
export interface RedisTokenStoreOptions {
  /** Prefix of the keys, default `connect-gateway:token:`. */
  readonly keyPrefix?: string;
  /**
   * The longest wait for one Redis command, in ms; past it Redis counts as
   * down and the process requests its own token. Default 100.
   */
  readonly commandTimeoutMs?: number;
  /**
   * How long the process refreshing the token holds the lock, in ms: if it
   * dies (or takes longer), another process takes over once the lease is
   * over. Default 5000.
   */
  readonly lockLeaseMs?: number;
  /** How often a process waiting for another's token looks for it, in ms. Default 50. */
  readonly pollIntervalMs?: number;
  /**
   * The longest a process waits for another's token, in ms, before it
   * requests its own. Default twice `lockLeaseMs`.
   */
  readonly maxWaitMs?: number;
}

// Deletes the lock only if it still holds this process's value.
const RELEASE_SCRIPT = 'if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end';

/**
 * A token store in Redis, shared by every process (and every transport and
 * REST client in them) that uses the same credentials: one token request
 * per refresh between them all. The first process to need a token takes a
 * lock (`SET … NX PX lease`), requests the token and stores it (`SET … PX`,
 * expiring with the token); the others wait for it to appear, polling. A
 * lock whose holder died expires after its lease, and another process takes
 * over.
 *
 * Redis never stands between a caller and its token: each command is
 * bounded (`commandTimeoutMs`, default 100 ms), and when Redis is down, slow
 * or holds something that is not a token, the process requests its own
 * token, as if there were no store. Failures are reported to the
 * `onTokenEvent` hook, never thrown, and no message carries a token or the
 * secret.
 *
 * The tokens stored are bearer secrets: protect the Redis (ACL, TLS, no
 * public network). Only the token and its issue and expiry times are
 * stored, under a key that is a hash of the credentials, expiring with the
 * token.
 *
 * Bring your own client (see {@link RedisTokenClient}); this package depends
 * on none. Give it a short connect timeout so that a dead Redis fails fast.
 *
 * @example
 * ```ts
 * import { Redis } from "ioredis";
 * import { createGatewayTransport, createRedisTokenStore } from "connect-gateway/client";
 *
 * const tokenStore = createRedisTokenStore(new Redis(process.env.REDIS_URL!, { connectTimeout: 500 }));
 * const transport = createGatewayTransport({ tokenStore });
 * ```
 */
export function createRedisTokenStore(client: RedisTokenClient, options: RedisTokenStoreOptions = {}): TokenStore {
  const expected = "a Redis client with get() and set() methods (ioredis, or a node-redis adapter)";
  assertFunction("client.get", (client as Partial<RedisTokenClient> | undefined)?.get, { expected });
  assertFunction("client.set", client.set, { expected });
  const release = typeof client.eval === "function" ? client.eval.bind(client) : undefined;
  const prefix = assertNonEmptyString("keyPrefix", options.keyPrefix ?? "connect-gateway:token:");
  const commandTimeoutMs = assertDurationMs("commandTimeoutMs", options.commandTimeoutMs ?? 100);
  const lockLeaseMs = assertDurationMs("lockLeaseMs", options.lockLeaseMs ?? 5000);
  const pollIntervalMs = assertDurationMs("pollIntervalMs", options.pollIntervalMs ?? 50);
  const maxWaitMs = assertDurationMs("maxWaitMs", options.maxWaitMs ?? 2 * lockLeaseMs);

  // Answers lost on a connection that stayed open: remade (see RedisConnectionWatch).
  const watch = new RedisConnectionWatch(client);

  // One Redis command, bounded: rejects with a message of ours (the client's
  // error is reduced to its class and message, scrubbed of `secrets`).
  function command<T>(what: string, run: () => Promise<T>, secrets: readonly string[] = []): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setAnswerBudget(
        () => reject(new StoreFailure(what, `Redis did not answer within ${commandTimeoutMs} ms`)),
        commandTimeoutMs,
      );
      const now = Date.now();
      watch.check(now);
      let pending: Promise<T>;
      try {
        pending = Promise.resolve(run());
      } catch (error) {
        pending = Promise.reject(error);
      }
      const settled = watch.sent(now);
      pending.then(settled, settled);
      pending.then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(new StoreFailure(what, `Redis failed (${describe(error, secrets)})`));
        },
      );
    });
  }

  // The token stored, `undefined` when none; garbage is reported and counts as none.
  async function read(key: string, report: TokenRefresh["report"]): Promise<StoredToken | undefined> {
    const raw = await command("get", () => client.get(prefix + key));
    if (raw === null || raw === undefined) return undefined;
    const token = parse(raw);
    if (token === undefined) report("get", "the value stored in Redis is not a token: ignored (it will be replaced)");
    return token;
  }

  async function write(key: string, token: StoredToken): Promise<void> {
    const ttl = Math.floor(token.expiresAt - Date.now());
    if (ttl < 1) return;
    const value = JSON.stringify({ accessToken: token.accessToken, issuedAt: token.issuedAt, expiresAt: token.expiresAt });
    await command("set", () => client.set(prefix + key, value, "PX", ttl), [token.accessToken]);
  }

  async function lock(key: string, id: string): Promise<boolean> {
    return (await command("lock", () => client.set(`${prefix}${key}:lock`, id, "PX", lockLeaseMs, "NX"))) === "OK";
  }

  function unlock(key: string, id: string, report: TokenRefresh["report"]): void {
    if (release === undefined) return; // the lease ends it
    command("unlock", () => release(RELEASE_SCRIPT, 1, `${prefix}${key}:lock`, id)).catch((failure: unknown) =>
      report("unlock", messageOf(failure)),
    );
  }

  // Holding the lock: look once more (a holder may have just finished), then request.
  async function asHolder(key: string, id: string, refresh: TokenRefresh): Promise<CoordinatedToken> {
    try {
      let again: StoredToken | undefined;
      try {
        again = await read(key, () => {}); // garbage was reported on the first look
      } catch (failure) {
        refresh.report("get", messageOf(failure));
      }
      if (again !== undefined && refresh.usable(again)) return { token: again, source: "store" };
      const token = await refresh.fetch();
      await write(key, token).catch((failure: unknown) => refresh.report("set", messageOf(failure)));
      return { token, source: "fetched" };
    } finally {
      unlock(key, id, refresh.report);
    }
  }

  return {
    async get(key) {
      return read(key, () => {});
    },
    async set(key, token) {
      await write(key, token);
    },
    async coordinate(key, refresh) {
      const id = randomUUID();
      const waitUntil = performance.now() + maxWaitMs;
      try {
        for (;;) {
          const stored = await read(key, refresh.report);
          if (stored !== undefined && refresh.usable(stored)) return { token: stored, source: "store" };
          if (await lock(key, id)) break;
          // Another process is requesting the token: wait for it, bounded.
          if (performance.now() + pollIntervalMs > waitUntil) {
            throw new StoreFailure("wait", `no token appeared in Redis within ${maxWaitMs} ms`);
          }
          await new Promise((resolve) => setTimeout(resolve, pollIntervalMs));
        }
      } catch (failure) {
        // Redis down, slow or stuck: this process requests its own token, and
        // stores it if Redis takes it (without waiting for it).
        refresh.report(failure instanceof StoreFailure ? failure.operation : "coordinate", messageOf(failure));
        const token = await refresh.fetch();
        write(key, token).catch(() => {});
        return { token, source: "fetched" };
      }
      return asHolder(key, id, refresh);
    },
  };
}

// A store failure, worded by us: safe to report.
class StoreFailure extends Error {
  constructor(
    readonly operation: string,
    message: string,
  ) {
    super(message);
  }
}

function messageOf(failure: unknown): string {
  return failure instanceof StoreFailure ? failure.message : "unexpected failure";
}

// A client error as `Class: message`, bounded, without the values given.
function describe(error: unknown, secrets: readonly string[]): string {
  let text = error instanceof Error ? `${error.name}: ${error.message}` : typeof error;
  for (const secret of secrets) if (secret !== "") text = text.split(secret).join("[redacted]");
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

function parse(raw: unknown): StoredToken | undefined {
  if (typeof raw !== "string" && !Buffer.isBuffer(raw)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(raw.toString());
  } catch {
    return undefined;
  }
  if (!isStoredToken(value)) return undefined;
  return { accessToken: value.accessToken, issuedAt: value.issuedAt, expiresAt: value.expiresAt };
}
