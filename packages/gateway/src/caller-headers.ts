import type { IncomingHttpHeaders } from "node:http";
import type { IncomingHttpHeaders as Http2Headers } from "node:http2";
import { isGatewayControlledHeader, normalisedHeaderName } from "connect-gateway/signing";

/**
 * Which of a caller's request headers the gateway never forwards, and the
 * `X-Forwarded-*` / `Forwarded` headers it sets in their place.
 */

/**
 * Hop-by-hop and framing headers (RFC 9110 §7.6.1, RFC 9112 §6): they describe
 * the caller's connection to the gateway, not the gateway's to the upstream
 * (which sets its own framing), and undici refuses several of them outright
 * (`keep-alive`, `upgrade`, `expect`), which used to end the call with a 503.
 * `te` is handled on its own: `TE: trailers` is kept (see {@link isDroppedCallerHeader}).
 */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "upgrade",
  "expect",
  "transfer-encoding",
  "http2-settings",
]);

/** The upstream answer's hop-by-hop headers (and `Host`), never copied to the caller's response. */
const RESPONSE_HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "upgrade", "transfer-encoding", "te", "http2-settings", "host"]);

// Only the caller headers whose normalised name (`normalisedHeaderName`: how a
// server reading `_` as `-`, such as Rack or Puma, sees it) is controlled
// (identity, gateway, forwarding) are dropped, not every name with an `_`:
// `_` is a legal token character (RFC 9110 §5.6.2), gRPC metadata keys may
// contain it, and a backend may read such a header legitimately; what makes
// one dangerous is colliding with a header the gateway vouches for, which
// this catches for any spelling. (`-` and `_` are the only characters such
// servers conflate.)

/**
 * Headers that make a backend act on another method or path than the
 * request's: method overrides (Rack::MethodOverride in a default Rails
 * stack, Express's method-override and others read one of these) and URL
 * overrides (IIS URL Rewrite's `X-Original-URL` / `X-Rewrite-URL`, which
 * some frameworks route by). The gateway authorised the route for the
 * method and path it saw, and the signature covers those, not these.
 */
const REQUEST_OVERRIDES = new Set([
  "x-http-method-override",
  "x-http-method",
  "x-method-override",
  "x-original-method",
  "x-original-url",
  "x-rewrite-url",
]);

/** `X-Forwarded-For`, `-Host`, `-Proto`, … and `Forwarded`: set by the gateway alone. */
function isForwardingHeader(normalised: string): boolean {
  return normalised === "forwarded" || normalised.startsWith("x-forwarded-") || normalised === "x-real-ip";
}

/**
 * True for a caller header that must not reach the upstream: any spelling of
 * an identity / gateway header, of `X-Request-ID` (the gateway sets its own),
 * of a forwarding header, of a method or URL override, and every hop-by-hop header, `TE` included except
 * exactly `TE: trailers` on its way to an HTTP/2 upstream (gRPC requires it,
 * and RFC 9113 §8.2.2 allows no other TE there).
 */
export function isDroppedCallerHeader(name: string, value: unknown, http2Upstream: boolean): boolean {
  const normalised = normalisedHeaderName(name);
  if (
    isGatewayControlledHeader(normalised) ||
    normalised === "x-request-id" ||
    isForwardingHeader(normalised) ||
    REQUEST_OVERRIDES.has(normalised)
  ) {
    return true;
  }
  const lower = name.toLowerCase();
  if (HOP_BY_HOP.has(lower)) return true;
  if (lower === "te") return !(http2Upstream && typeof value === "string" && value.trim().toLowerCase() === "trailers");
  return false;
}

/** The header names a `Connection` header lists (RFC 9110 §7.6.1), lower-cased. */
export function connectionOptions(connection: string | string[] | undefined): ReadonlySet<string> {
  if (connection === undefined) return NO_OPTIONS;
  // What nearly every HTTP/1.1 request and answer says: no Set to make.
  if (connection === "keep-alive" || connection === "Keep-Alive") return KEEP_ALIVE;
  if (connection === "close" || connection === "Close") return CLOSE;
  const values = Array.isArray(connection) ? connection : [connection];
  const names = new Set<string>();
  for (const value of values) {
    for (const token of value.split(",")) {
      const name = token.trim().toLowerCase();
      if (name !== "") names.add(name);
    }
  }
  return names;
}

const NO_OPTIONS: ReadonlySet<string> = new Set();
const KEEP_ALIVE: ReadonlySet<string> = new Set(["keep-alive"]);
const CLOSE: ReadonlySet<string> = new Set(["close"]);

/**
 * Why a request's head is ambiguous, or `undefined` when it is not. Node
 * keeps the first of repeated `Host` and `Authorization` lines and drops the
 * others silently, so what the gateway acted on could differ from what
 * another reader of the same request (a log, a proxy in front) took:
 *
 * - more than one `Host` line: RFC 9112 §3.2 requires a 400;
 * - an HTTP/2 `host` that is not the request's `:authority`: a malformed
 *   request (RFC 9113 §8.3.1);
 * - more than one `Authorization` line: which credential counts would depend
 *   on who reads it (RFC 6750 §3.1: `invalid_request`, a 400).
 *
 * One pass over the raw header lines, comparing lengths before names.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc9112#section-3.2 | RFC 9112 §3.2}
 * @see {@link https://www.rfc-editor.org/rfc/rfc9113#section-8.3.1 | RFC 9113 §8.3.1}
 */
export function ambiguousRequestHead(rawHeaders: readonly string[]): string | undefined {
  let host: string | undefined;
  let authority: string | undefined;
  let authorizations = 0;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (name.length === 4 && name.toLowerCase() === "host") {
      if (host !== undefined) return "More than one Host header";
      host = rawHeaders[i + 1] as string;
    } else if (name.length === 13 && name.toLowerCase() === "authorization") {
      if (++authorizations > 1) return "More than one Authorization header";
    } else if (name === ":authority") {
      authority = rawHeaders[i + 1] as string;
    }
  }
  if (host !== undefined && authority !== undefined && host.toLowerCase() !== authority.toLowerCase()) {
    return "The Host header is not the request's :authority";
  }
  return undefined;
}

/**
 * How many header fields a caller may send: 100, Envoy's default
 * (`max_headers_count`). Node's HTTP/1.1 parser takes up to 2,000 lines in
 * its 16 KiB, but an HTTP/2 upstream takes 128 fields by default (Node's
 * `maxHeaderListPairs`) and resets a stream with more — a caller's
 * oversized request would look like an upstream failure, and cost the
 * gateway its upstream session. 100 leaves room for the gateway's own
 * (identity, signatures, forwarding) and the pseudo-headers. A browser
 * sends some 20.
 */
export const MAX_CALLER_HEADER_FIELDS = 100;

/**
 * Whether the caller sent more than {@link MAX_CALLER_HEADER_FIELDS} header
 * fields: pseudo-headers not counted, and HTTP/2's `cookie` fields counted as
 * one (clients send one per cookie, RFC 9113 §8.2.3, where HTTP/1.1 has one
 * line; they are joined again before forwarding).
 */
export function hasTooManyHeaderFields(rawHeaders: readonly string[]): boolean {
  if (rawHeaders.length <= 2 * MAX_CALLER_HEADER_FIELDS) return false;
  let fields = 0;
  let cookies = false;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (name.charCodeAt(0) === COLON) continue;
    if (name.length === 6 && name.toLowerCase() === "cookie") {
      if (cookies) continue;
      cookies = true;
    }
    fields++;
  }
  return fields > MAX_CALLER_HEADER_FIELDS;
}

const COLON = 0x3a;

/**
 * The caller's headers that may reach the upstream, copied into a new object:
 * all but pseudo-headers, what {@link isDroppedCallerHeader} names and every header the
 * caller's own `Connection` header lists (`callerConnection`).
 *
 * Unless `keepAuthorization`, the caller's `Authorization` goes too, in any
 * spelling: the default for every route without `forward_authorization: true`
 * (as Envoy's jwt_authn does without `forward: true`). The gateway has
 * validated the bearer token and vouches for the caller with signed identity
 * headers, so the upstream has no use for the token — and one that never
 * receives it cannot log, leak or replay it against other services.
 *
 * A copy rather than `delete` on the given object: an object that loses a
 * property becomes a slow dictionary for V8, and every later reader of
 * these headers (undici's checks, the h2c pool's copy) would pay for it.
 */
export function keptCallerHeaders(
  headers: IncomingHttpHeaders | Http2Headers,
  callerConnection: string | string[] | undefined,
  http2Upstream: boolean,
  keepAuthorization: boolean,
): Record<string, string | string[] | undefined> {
  const listed = connectionOptions(callerConnection);
  const kept: Record<string, string | string[] | undefined> = {};
  for (const name in headers) {
    // An HTTP/2 caller's pseudo-headers (`:path`, `:authority`): the upstream request has its own.
    if (name.charCodeAt(0) === 0x3a) continue;
    const lower = name.toLowerCase();
    const value = headers[name];
    if (
      isDroppedCallerHeader(name, value, http2Upstream) ||
      listed.has(lower) ||
      (!keepAuthorization && lower === "authorization")
    ) {
      continue;
    }
    kept[name] = value;
  }
  return kept;
}

/**
 * Sets on `headers` `X-Forwarded-For`, `X-Forwarded-Host`,
 * `X-Forwarded-Proto` and `Forwarded` (RFC 7239) as the gateway sees the
 * caller's connection (its socket's peer `address`, its `Host` or HTTP/2
 * `:authority`, and `http` or `https`): a caller's values never go through,
 * nor are they appended to (the gateway is the edge, so nothing in front of
 * it vouches for them).
 */
export function setForwardingHeaders(
  headers: Record<string, string>,
  address: string | undefined,
  host: string | undefined,
  protocol: string,
): void {
  let forwarded = "";
  if (address !== undefined && address !== "") {
    headers["x-forwarded-for"] = address;
    forwarded = address.includes(":") ? `for="[${address}]";` : `for=${address};`;
  }
  if (host !== undefined && host !== "" && /^[\x21-\x7e]+$/.test(host)) {
    headers["x-forwarded-host"] = host;
    forwarded += `host="${host.replace(/["\\]/g, "\\$&")}";`;
  }
  headers["x-forwarded-proto"] = protocol;
  headers["forwarded"] = `${forwarded}proto=${protocol}`;
}

/**
 * True for an upstream answer's header that is not copied to the caller's
 * response: a hop-by-hop one (its `Connection: keep-alive` is not the
 * caller's), one its `Connection` header lists (`listed`, lower-case), and
 * `Host`, which describes a request, never an answer (and which an HTTP/2
 * response may not carry).
 */
export function isResponseHopByHop(name: string, listed: ReadonlySet<string>): boolean {
  const lower = name.toLowerCase();
  return RESPONSE_HOP_BY_HOP.has(lower) || (listed.size !== 0 && listed.has(lower));
}
