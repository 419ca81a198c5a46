import { createHash } from "node:crypto";
import { LRUCache } from "lru-cache";
import { identityHeaders } from "connect-gateway/signing";
import { connectionOptions, isDroppedCallerHeader } from "./caller-headers.js";
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

// Headers that describe one exchange, not the resource: never kept with a
// cached answer, so a hit never replays another exchange's request id, date,
// age, cookie, hop-by-hop framing or rate-limit counters. CORS and rate-limit
// headers are set afresh on every request, hit or miss.
const NOT_CACHED = new Set([
  "x-request-id",
  "set-cookie",
  "connection",
  "transfer-encoding",
  "keep-alive",
  "proxy-connection",
  "upgrade",
  "te",
  "trailer",
  "date",
  "age",
  "x-cache",
  "retry-after",
  "server-timing",
]);
const NOT_CACHED_PREFIXES = ["access-control-", "x-ratelimit-", "ratelimit-"];

/** The request headers the cache key covers (besides the caller and the request-target). */
const KEYED_REQUEST_HEADERS = new Set(["accept", "accept-encoding", "host"]);

/**
 * Request headers the cache knows how to treat: the keyed ones, the
 * credentials the caller identity comes from, the cache's own directives and
 * validators, and what every browser or HTTP client sends by itself. A backend
 * whose answer depends on one of the unkeyed ones must say so in `Vary` (the
 * answer is then not stored). Any other header may select or be reflected into
 * the answer, so a request carrying one is kept out of the cache.
 */
const RECOGNISED_REQUEST_HEADERS = new Set([
  ...KEYED_REQUEST_HEADERS,
  "authorization",
  "cache-control",
  "pragma",
  "if-none-match",
  "if-modified-since",
  "user-agent",
  "accept-language",
  "origin",
  "referer",
  "dnt",
  "priority",
  "upgrade-insecure-requests",
]);
const RECOGNISED_REQUEST_PREFIXES = ["sec-fetch-", "sec-ch-"];

/**
 * A byte-bounded LRU of upstream answers. Keys come from
 * {@link responseCacheKey}, which includes the caller, so an answer cached
 * for one user or client is never served to another.
 */
export function createResponseCache(options: Required<ResponseCacheOptions>): ResponseCache {
  const { maxEntryBytes } = options;
  const lru = new LRUCache<string, CachedResponse>({
    maxSize: options.maxBytes,
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
 * The cache key of a GET: the upstream and the exact request-target it is
 * sent (two routes can forward the same target to different upstreams), who
 * asks as the upstream sees it (every identity header the gateway forwards,
 * not only the client and user: the same user with a narrower token, another
 * role or organisation may be answered differently, and must not be served
 * an answer made for the wider one), the negotiated representation
 * (`Accept`, `Accept-Encoding`), so a gzip answer never reaches a caller
 * that did not ask for it, and the `Host` the caller named, which the
 * gateway forwards as `X-Forwarded-Host` (a backend building links from it
 * must not hand one caller's host to another).
 */
export function responseCacheKey(
  upstreamOrigin: string,
  requestTarget: string,
  identity: CallerIdentity,
  headers: Readonly<Record<string, string | string[] | undefined>>,
  forwardsAuthorization = false,
): string {
  const negotiated = [headers["accept"], headers["accept-encoding"], headers["host"] ?? headers[":authority"]].map((v) =>
    String(v ?? ""),
  );
  // A route that forwards the caller's token lets the backend answer from
  // any claim in it, not only those the gateway maps to identity headers:
  // the token itself is then part of the key — as its SHA-256, so that no
  // token is ever kept in the cache.
  const token = forwardsAuthorization ? createHash("sha256").update(String(headers["authorization"] ?? "")).digest("hex") : "";
  // identityHeaders lists the fields in one fixed order, absent ones left out.
  return JSON.stringify([upstreamOrigin, requestTarget, identityHeaders(identity), ...negotiated, token]);
}

/** What a request lets the cache do: answer it from a stored entry, and store its answer. */
export interface RequestCacheUse {
  readonly lookup: boolean;
  readonly store: boolean;
}

const NO_CACHE: RequestCacheUse = { lookup: false, store: false };

/**
 * What the cache may do for a GET with these headers:
 * - `Cookie`: nothing. The answer may depend on the cookie, which is not in
 *   the key, so it is neither answered from nor stored in the cache.
 * - a header the cache does not recognise (`X-Original-URL`, any custom
 *   header): nothing, since it is not in the key and the backend may reflect
 *   it into its answer, which would then be served to the next caller.
 * - a `Connection` header listing any header (beyond `close` / `keep-alive`):
 *   nothing, since the listed headers are dropped before forwarding.
 * - `Cache-Control: no-store`: nothing (RFC 9111: nothing of this exchange is stored).
 * - `Cache-Control: no-cache` or `Pragma: no-cache`: no lookup, the caller
 *   asked for a fresh answer; that answer still replaces the entry when it is
 *   storable, so it is what the next caller gets.
 */
export function requestCacheUse(headers: Readonly<Record<string, string | string[] | undefined>>): RequestCacheUse {
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !isRecognisedRequestHeader(name.toLowerCase(), value)) return NO_CACHE;
  }
  // The headers `Connection` lists are dropped before forwarding: one the key
  // covers (`Connection: close, accept`) would key an answer the upstream made
  // without it, served to every caller who sends that value.
  for (const option of connectionOptions(headers["connection"])) {
    if (option !== "close" && option !== "keep-alive") return NO_CACHE;
  }
  const directives = cacheDirectives(headers["cache-control"]);
  if (directives.has("no-store")) return NO_CACHE;
  const refresh = directives.has("no-cache") || cacheDirectives(headers["pragma"]).has("no-cache");
  return { lookup: !refresh, store: true };
}

function isRecognisedRequestHeader(name: string, value: string | string[]): boolean {
  if (name === "cookie") return false;
  if (name.startsWith(":") || RECOGNISED_REQUEST_HEADERS.has(name)) return true;
  if (RECOGNISED_REQUEST_PREFIXES.some((prefix) => name.startsWith(prefix))) return true;
  // Headers the gateway drops or replaces (hop-by-hop, identity, forwarding,
  // X-Request-ID) never reach the backend, so they cannot shape its answer.
  return isDroppedCallerHeader(name, value, false);
}

/**
 * True when an upstream answer may be cached: a 200 that sets no cookie, whose
 * `Cache-Control` has none of `private`, `no-store` or `no-cache` (nor, without
 * `Cache-Control`, `Pragma: no-cache`), and whose `Vary` names only headers
 * the cache key covers (`Accept`, `Accept-Encoding`, `Host`; never `*`).
 */
export function isCacheable(status: number, headers: Readonly<Record<string, unknown>>): boolean {
  if (status !== 200 || headers["set-cookie"] !== undefined) return false;
  if (headers["cache-control"] !== undefined) {
    const directives = cacheDirectives(headers["cache-control"]);
    if (directives.has("private") || directives.has("no-store") || directives.has("no-cache")) return false;
  } else if (cacheDirectives(headers["pragma"]).has("no-cache")) {
    return false;
  }
  return listValues(headers["vary"]).every((name) => KEYED_REQUEST_HEADERS.has(name));
}

/**
 * The directive names of a `Cache-Control` or `Pragma` value (RFC 9111
 * §5.2), lower-cased, without their arguments: `Private="Set-Cookie",
 * max-age=0` has `private` and `max-age`. Commas inside a quoted argument do
 * not separate directives.
 */
export function cacheDirectives(value: unknown): Set<string> {
  const names = new Set<string>();
  const add = (directive: string) => {
    const name = (directive.split("=")[0] as string).trim().toLowerCase();
    if (name !== "") names.add(name);
  };
  for (const text of headerValues(value)) {
    let start = 0;
    let quoted = false;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === "\\") i++;
        else if (c === '"') quoted = false;
      } else if (c === '"') {
        quoted = true;
      } else if (c === ",") {
        add(text.slice(start, i));
        start = i + 1;
      }
    }
    add(text.slice(start));
  }
  return names;
}

/** The lower-cased members of a comma-separated list header such as `Vary`. */
function listValues(value: unknown): string[] {
  return headerValues(value)
    .flatMap((text) => text.split(","))
    .map((member) => member.trim().toLowerCase())
    .filter((member) => member !== "");
}

function headerValues(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  return Array.isArray(value) ? value.map(String) : [String(value)];
}

/** The headers of an answer worth keeping with it in the cache. */
export function cacheableHeaders(headers: Readonly<Record<string, unknown>>): Record<string, string | string[]> {
  const kept: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || NOT_CACHED.has(name) || name.startsWith(":")) continue;
    if (NOT_CACHED_PREFIXES.some((prefix) => name.startsWith(prefix))) continue;
    kept[name] = Array.isArray(value) ? value.map(String) : String(value);
  }
  return kept;
}
