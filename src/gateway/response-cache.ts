import { LRUCache } from "lru-cache";
import type { CallerIdentity } from "./identity-claims.js";

/** A cached upstream answer. */
export interface CachedResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[]>>;
  readonly body: Buffer;
}

/** Options of {@link createResponseCache}. */
export interface ResponseCacheOptions {
  /** Total bytes of cached bodies. Default 64 MiB. */
  readonly maxBytes?: number;
  /** Larger answers are never cached. Default 1 MiB. */
  readonly maxEntryBytes?: number;
}

/** The response cache of GET routes with `cache_ttl`; see {@link createResponseCache}. */
export interface ResponseCache {
  readonly maxEntryBytes: number;
  get(key: string): CachedResponse | undefined;
  set(key: string, response: CachedResponse, ttlMs: number): void;
}

// Headers that describe one exchange, not the resource. CORS headers answer
// one caller's Origin and are set afresh on every request, hit or miss.
const NOT_CACHED = new Set(["x-request-id", "set-cookie", "connection", "transfer-encoding", "keep-alive", "date"]);
const NOT_CACHED_PREFIX = "access-control-";

/**
 * A byte-bounded LRU of upstream answers. Keys come from
 * {@link responseCacheKey}, which includes the caller, so an answer cached
 * for one user or client is never served to another.
 */
export function createResponseCache(options: ResponseCacheOptions = {}): ResponseCache {
  const maxEntryBytes = options.maxEntryBytes ?? 1024 * 1024;
  const lru = new LRUCache<string, CachedResponse>({
    maxSize: options.maxBytes ?? 64 * 1024 * 1024,
    maxEntrySize: maxEntryBytes,
    sizeCalculation: (r) => Math.max(1, r.body.length),
  });
  return {
    maxEntryBytes,
    get: (key) => lru.get(key),
    set: (key, response, ttlMs) => lru.set(key, response, { ttl: ttlMs }),
  };
}

/**
 * The cache key of a GET: who asks (client and user), the exact
 * request-target, and the negotiated representation (`Accept`,
 * `Accept-Encoding`), so a gzip answer never reaches a caller that did not ask for it.
 */
export function responseCacheKey(
  identity: CallerIdentity,
  requestTarget: string,
  headers: Readonly<Record<string, string | string[] | undefined>>,
): string {
  const negotiated = [headers["accept"], headers["accept-encoding"]].map((v) => String(v ?? ""));
  return JSON.stringify([identity.clientId, identity.userId ?? "", requestTarget, ...negotiated]);
}

/** True when an upstream answer may be cached: a 200 that sets no cookie and allows storing. */
export function isCacheable(status: number, headers: Readonly<Record<string, unknown>>): boolean {
  if (status !== 200 || headers["set-cookie"] !== undefined) return false;
  return !/no-store/i.test(String(headers["cache-control"] ?? ""));
}

/** The headers of an answer worth keeping with it in the cache. */
export function cacheableHeaders(headers: Readonly<Record<string, unknown>>): Record<string, string | string[]> {
  const kept: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || NOT_CACHED.has(name) || name.startsWith(NOT_CACHED_PREFIX) || name.startsWith(":")) continue;
    kept[name] = Array.isArray(value) ? value.map(String) : String(value);
  }
  return kept;
}
