import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { IncomingHttpHeaders as Http2Headers, Http2ServerResponse, ServerHttp2Stream } from "node:http2";
import type { Readable } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from "fastify";
import { EMPTY_BODY_SHA256, gatewaySignatureHeaders, GatewaySigningError } from "connect-gateway/signing";
import { BufferedBody } from "./buffered-body.js";
import { bufferedBodyParser } from "./buffered-body-parser.js";
import { ChunkStream } from "./chunk-stream.js";
import { connectionOptions, isResponseHopByHop, keptCallerHeaders, setForwardingHeaders } from "./caller-headers.js";
import { envelopedProtocolOf } from "./caller-protocol.js";
import { setDrainDeadlineEnding } from "./dual-protocol-server.js";
import { EnvelopedRelay } from "./enveloped-relay.js";
import { GatewayHttpError } from "./gateway-http-error.js";
import { CLIENT_CLOSED_REQUEST, logCallerGone, markAnswerCut, type AnswerCut } from "./gateway-logger.js";
import type { DispatchResponse, H2cUpstreamPool } from "./h2c-upstream-pool.js";
import { forwardedTraceContext } from "./hop-tracing.js";
import type { CallerIdentity } from "./identity-claims.js";
import { callerOf, callOf, FORWARDING_URL, routeOf, setCall, type RouteTarget } from "./request-state.js";
import { noRouteMessage, type RouteMatch } from "./route-table.js";
import {
  cacheableHeaders,
  isCacheable,
  requestCacheUse,
  responseCacheKey,
  type ResponseCache,
} from "./response-cache.js";
import type { UpstreamAccess } from "./routes-file.js";
import type { UpstreamDispatcher } from "./upstream-dispatcher.js";

/** One upstream server: every route forwarding to it shares its connection pool. */
export interface Upstream {
  /** `http(s)://host:port`. */
  readonly origin: string;
  /** Cleartext HTTP/2 with prior knowledge (needed by gRPC); otherwise HTTP/1.1. */
  readonly http2: boolean;
}

/** A routes file entry (a route, or a backend's `/backend/<name>/*`) that forwards to an {@link Upstream}. */
export interface ForwardingRoute {
  readonly access: UpstreamAccess;
  /** The path prefix of the upstream URL, prepended to what is forwarded (`""` for none). */
  readonly basePath: string;
  /** Removed from the front of the request-target before forwarding (`/backend/echo`). */
  readonly stripPrefix?: string;
  /** GET answers are cached per caller for this long. */
  readonly cacheTtlMs?: number;
}

/** What forwarding needs from the gateway. */
export interface ForwarderContext {
  readonly hmacSecret: string;
  readonly cache: ResponseCache;
  readonly dispatcher: UpstreamDispatcher;
}

/** An upstream answer, as it is relayed (or cached). */
interface UpstreamResponse {
  readonly statusCode: number;
  readonly headers: IncomingHttpHeaders | Http2Headers;
  readonly stream: Readable;
}

/**
 * A forwarding route with what every call on it shares, fixed when the
 * gateway starts: the target of its entry in the gateway's route table.
 */
export interface RouteForwarding extends RouteTarget {
  readonly upstream: Upstream;
  readonly route: ForwardingRoute;
  readonly context: ForwarderContext;
  /** The h2c pool of an HTTP/2 upstream (see UpstreamDispatcher). */
  readonly h2c: H2cUpstreamPool | undefined;
  /** The upstream's `Host`: what it is reached as, never the caller's. */
  readonly host: string;
}

/** Builds what every call on `route` shares. */
export function routeForwarding(upstream: Upstream, route: ForwardingRoute, context: ForwarderContext): RouteForwarding {
  return {
    access: route.access,
    upstream,
    route,
    context,
    h2c: upstream.http2 ? context.dispatcher.h2cPool(upstream.origin) : undefined,
    host: hostOf(upstream.origin),
  };
}

// One URL parse per upstream origin, not per route (10,000 routes name a handful of upstreams).
const hostByOrigin = new Map<string, string>();

function hostOf(origin: string): string {
  let host = hostByOrigin.get(origin);
  if (host === undefined) hostByOrigin.set(origin, (host = new URL(origin).host));
  return host;
}

/**
 * Registers the one fastify route every forwarded request takes (any path,
 * each of `methods`), in a scope of its own, whose handler forwards through
 * the upstream dispatcher. The gateway's route table has
 * already matched the request (see RouteTable): a request it matched
 * nothing for is refused here with 404, before its body is read or the rate
 * limit counts it.
 */
export async function registerForwarding(app: FastifyInstance, methods: readonly HTTPMethods[]): Promise<void> {
  await app.register(async (scope) => {
    // A caller that goes away mid-call is normal traffic, not a gateway failure:
    // one info line, and a 499 (nginx's "client closed request") for the access
    // log; anything else goes on to the gateway's error handler.
    scope.setErrorHandler((error, request, reply) => {
      if (!callerIsGone(reply)) {
        // The upstream answered, then failed before the first body byte went
        // out (it closed, reset, sent a bad chunk or stalled): that is the
        // upstream's failure (503, or 504 for a stall), not the gateway's.
        if (callOf<ForwardedCall | undefined>(request)?.relaying === true && !(error instanceof GatewayHttpError)) {
          throw upstreamError(error as Error, request);
        }
        throw error;
      }
      logCallerGone(request, reply, { headersSent: reply.raw.headersSent });
      return reply.code(CLIENT_CLOSED_REQUEST).send();
    });
    // Forwarded bodies are read chunk by chunk, hashed as they come and never
    // concatenated, then forwarded as those chunks (see bufferedBodyParser).
    scope.removeAllContentTypeParsers();
    // initialConfig always has fastify's resolved bodyLimit (1 MiB unless set).
    scope.addContentTypeParser("*", bufferedBodyParser(scope.initialConfig.bodyLimit ?? 1024 * 1024));
    scope.route({
      method: [...methods],
      url: FORWARDING_URL,
      // Runs after the gateway-wide hooks (request id, CORS, token) and before the rate limit's.
      onRequest: refuseUnmatched,
      handler: (request, reply) => forward(request, reply, (routeOf(request) as RouteMatch<RouteForwarding>).store.target),
    });
  });
}

function refuseUnmatched(request: FastifyRequest, _reply: FastifyReply, done: (error?: Error) => void): void {
  if (routeOf(request) === undefined) done(new GatewayHttpError("NOT_FOUND", noRouteMessage(request.url)));
  else done();
}

/**
 * One call under way: what the answer's handling needs of it, found from its
 * request (see callOf), and by the gateway's error handler.
 */
interface ForwardedCall {
  readonly forwarding: RouteForwarding;
  readonly cacheKey: string | undefined;
  /** Its answer may refresh the cache entry under `cacheKey`. */
  readonly storeInCache: boolean;
  readonly upstreamAnswered: () => void;
  /** Set once the upstream's answer is being relayed: a failure from then on is the upstream body's. */
  relaying: boolean;
}

function forward(request: FastifyRequest, reply: FastifyReply, forwarding: RouteForwarding): FastifyReply {
  const { upstream, route, context } = forwarding;
  const identity = callerOf(request);
  if (identity === undefined) throw new GatewayHttpError("INTERNAL_ERROR", "Internal gateway error");
  const target = forwardedTarget(request.url, route, upstream.origin);
  // A request with a Cookie, an unrecognised header or `Cache-Control: no-store`
  // never meets the cache; `no-cache` (or `Pragma: no-cache`) skips only the
  // lookup, and its fresh answer refreshes the entry (see requestCacheUse).
  const cacheUse = route.cacheTtlMs !== undefined && request.method === "GET" ? requestCacheUse(request.headers) : undefined;
  const cacheKey = cacheUse === undefined ? undefined : responseCacheKey(upstream.origin, target, identity, request.headers, route.access.forwardAuthorization === true);
  const cached = cacheKey === undefined || cacheUse?.lookup !== true ? undefined : context.cache.get(cacheKey);
  if (cached !== undefined) {
    reply.code(cached.status);
    for (const [name, value] of Object.entries(cached.headers)) {
      if (name === "vary") mergeVary(reply, value);
      else reply.header(name, value);
    }
    return reply.header("x-cache", "HIT").send(cached.body);
  }
  const body = forwardedBody(request, upstream);
  // One object for all of the gateway's headers, built in place (no spreads).
  // The upstream's own secret (`hmac_secret`), else the gateway's.
  const headers = signedHeaders(route.access.hmacSecret ?? context.hmacSecret, request, target, body, identity);
  headers["x-request-id"] = request.id;
  setForwardingHeaders(headers, request.ip, request.host, request.protocol);
  // After signing: the trace context is not among the signed headers.
  const upstreamAnswered = forwardedTraceContext(request, headers);
  // Aborted when the caller goes away before the upstream answers, or when the
  // route's timeout passes first: the upstream request is then aborted
  // (HTTP/1.1: its connection goes back or is closed) or cancelled (HTTP/2:
  // RST_STREAM CANCEL), rather than held until the upstream answers. Once
  // its answer is relayed, fastify lets go of the upstream body itself when
  // the caller goes. `writableEnded`, not `writableFinished`: an HTTP/2
  // compatibility response reports itself finished once its stream closes,
  // a reset included.
  const abortUpstream = new AbortController();
  reply.raw.once("close", () => {
    if (reply.raw.writableEnded) return;
    if (!callOf<ForwardedCall>(request).relaying) abortUpstream.abort(callerWentAway());
    // Its one access line (status 499), whoever else notices: fastify writes none for an
    // HTTP/1.1 caller whose connection closed mid-answer (see logCallerGone).
    logCallerGone(request, reply, { headersSent: reply.raw.headersSent });
  });
  setCall<ForwardedCall>(request, {
    forwarding,
    cacheKey,
    storeInCache: cacheUse?.store === true,
    upstreamAnswered,
    relaying: false,
  });
  // A body that came in one piece (most small ones) goes as a Buffer: undici
  // writes it with the headers, at a fraction of a stream's cost per call. A
  // body of several pieces goes as those pieces, never joined: undici reads
  // the ChunkStream, the h2c pool writes its chunks itself.
  const payload = body === undefined ? undefined : body.chunks.length === 1 ? body.chunks[0] : new ChunkStream(body.chunks);
  const timeoutMs = route.access.timeoutMs;
  // The route's timeout counts from now. undici's own headers timeout starts
  // only once the request is written to a connection: behind 128 stalled
  // ones, a queued call would wait for a connection, then a timeout more.
  // (The h2c pool keeps such a deadline itself.)
  const deadline = forwarding.h2c === undefined ? setTimeout(abortAtDeadline, timeoutMs, abortUpstream) : undefined;
  context.dispatcher.request(
    {
      origin: upstream.origin,
      path: target,
      method: request.method,
      headers: upstreamHeaders(request, forwarding, headers, body?.byteLength),
      body: payload,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: abortUpstream.signal,
    },
    forwarding.h2c,
    (error, response) => {
      clearTimeout(deadline);
      // Nothing more to say once an answer went out (a shutdown's 503): only the upstream's body to let go of.
      if (error !== null || response === undefined) {
        if (!reply.sent) answerUpstreamFailure(reply, error ?? new Error("the upstream request ended without an answer"));
      } else if (reply.sent) {
        response.body.destroy();
      } else {
        receiveAnswer(request, reply, response);
      }
    },
  );
  return reply;
}

/**
 * The upstream's answer has come (status and headers): its headers go on the
 * reply, without the hop-by-hop ones (its `Connection: keep-alive` is not the
 * caller's), pseudo-headers (`:status`) or its own `X-Request-ID`, then its
 * status and body. A status no HTTP response has (`099`, `600`: an
 * upstream that answers garbage), or two different values of a field that
 * has one (two `Location`s, two `Content-Type`s, which clients would each
 * pick from differently, and which an HTTP/2 answer cannot carry at all), is
 * the upstream's failure, a 503, rather than relayed; repeated identical
 * values are sent once.
 */
function receiveAnswer(request: FastifyRequest, reply: FastifyReply, response: DispatchResponse): void {
  const { statusCode, headers, body } = response;
  if (!Number.isInteger(statusCode) || statusCode < 200 || statusCode > 599) {
    body.destroy();
    answerUpstreamFailure(reply, new Error(`the upstream answered with status ${String(statusCode)}, which no HTTP response has`));
    return;
  }
  const ambiguous = ambiguousAnswerField(headers);
  if (ambiguous !== undefined) {
    body.destroy();
    answerUpstreamFailure(reply, new Error(`the upstream answered with ${ambiguous} twice, with different values`));
    return;
  }
  const listed = connectionOptions(headers["connection"]);
  for (const name in headers) {
    let value = headers[name];
    // The gateway's X-Request-ID stays: it is what the caller finds in the gateway's log.
    if (value === undefined || name.charCodeAt(0) === COLON || isResponseHopByHop(name, listed) || name === "x-request-id") continue;
    if (isCorsHeader(name)) continue;
    if (Array.isArray(value) && SINGLE_VALUE_FIELDS.has(name)) value = value[0] as string;
    if (name === "vary") mergeVary(reply, value);
    else reply.header(name, value);
  }
  // An HTTP/1.1 connection whose request was not read to its end (a GET
  // with a body, which fastify does not read) cannot carry another request.
  if (!request.raw.complete && (reply.raw as { stream?: unknown }).stream === undefined) reply.header("connection", "close");
  reply.code(statusCode);
  // No body, whatever the upstream's headers say (a 304 may carry the
  // Content-Length of the body it stands for, RFC 9110 §8.6, which undici
  // would take as a body cut short): its headers are the answer.
  if (statusCode === 204 || statusCode === 304) {
    body.on("error", ignoreError);
    body.destroy();
    // A 204 has no content at all (RFC 9110 §8.6): with a Content-Length an
    // HTTP/2 caller takes it as malformed and resets the stream.
    if (statusCode === 204) reply.removeHeader("content-length");
    callOf<ForwardedCall>(request).upstreamAnswered();
    void reply.send();
    return;
  }
  relayAnswer(request, reply, { statusCode, headers, stream: body });
}

function ignoreError(): void {}

/**
 * `Access-Control-*` from an upstream: never relayed. Cross-origin access is
 * the gateway's decision (`cors:` in routes.yaml): a backend that answers
 * every Origin with itself and `Allow-Credentials: true` (a permissive
 * framework default) would otherwise open it to any site, past the
 * gateway's own list — and without `cors:`, to every site at all.
 */
function isCorsHeader(name: string): boolean {
  return name.length > 15 && name.charCodeAt(0) === 97 /* a */ && name.toLowerCase().startsWith("access-control-");
}

/**
 * The upstream's `Vary` added to what the gateway set already (`Origin`,
 * by CORS), rather than replacing it: a cache in front of the gateway must
 * keep one origin's answer from another.
 */
function mergeVary(reply: FastifyReply, value: string | string[] | number): void {
  const own = reply.getHeader("vary");
  if (own === undefined) {
    reply.header("vary", value);
    return;
  }
  const names = new Map<string, string>();
  for (const list of [own, value]) {
    for (const item of (Array.isArray(list) ? list : [String(list)]).flatMap((v) => String(v).split(","))) {
      const name = item.trim();
      if (name !== "" && !names.has(name.toLowerCase())) names.set(name.toLowerCase(), name);
    }
  }
  reply.header("vary", names.has("*") ? "*" : [...names.values()].join(", "));
}

/** The route's timeout passed before the upstream answered: the upstream request is aborted, and the caller gets a 504. */
function abortAtDeadline(abort: AbortController): void {
  const error = Object.assign(new Error("Upstream did not answer in time"), { code: "UND_ERR_HEADERS_TIMEOUT" });
  error.stack = undefined;
  abort.abort(error);
}

const COLON = 0x3a;

/**
 * Answer fields that have one value (RFC 9110 §5.3: no list syntax), as
 * Node's HTTP/2 server enforces them on a response.
 */
const SINGLE_VALUE_FIELDS = new Set([
  "access-control-allow-credentials",
  "access-control-max-age",
  "age",
  "content-encoding",
  "content-language",
  "content-length",
  "content-location",
  "content-md5",
  "content-range",
  "content-type",
  "date",
  "etag",
  "expires",
  "last-modified",
  "location",
  "retry-after",
  "x-content-type-options",
]);

/** The first single-value field the answer repeats with different values; `undefined` when none. */
function ambiguousAnswerField(headers: DispatchResponse["headers"]): string | undefined {
  for (const name in headers) {
    const value = headers[name];
    if (Array.isArray(value) && SINGLE_VALUE_FIELDS.has(name) && value.some((v) => v !== value[0])) return name;
  }
  return undefined;
}

/** Relays (or caches) the upstream answer, unless the caller is gone. */
function relayAnswer(request: FastifyRequest, reply: FastifyReply, response: UpstreamResponse): void {
  const call = callOf<ForwardedCall>(request);
  const { upstream, route, context } = call.forwarding;
  call.upstreamAnswered();
  call.relaying = true;
  if (callerIsGone(reply)) {
    // Nobody to answer: let go of the upstream answer at once.
    response.stream.destroy();
    logCallerGone(reply.request, reply, { headersSent: false });
    void reply.code(CLIENT_CLOSED_REQUEST).send();
    return;
  }
  // Trailers are relayed from h2c upstreams only: an HTTP/1.1 upstream's
  // `Trailer` header would promise the caller fields that never come.
  if (!upstream.http2 && reply.hasHeader("trailer")) reply.removeHeader("trailer");
  if (call.cacheKey !== undefined && call.storeInCache && isStorable(response, context.cache.maxEntryBytes)) {
    if (upstream.http2) forwardTrailers(response.stream, reply, undefined);
    void sendAndCache(reply, response, context.cache, call.cacheKey, { ttlMs: route.cacheTtlMs as number, timeoutMs: route.access.timeoutMs });
    return;
  }
  const relay = envelopedRelayOf(response, reply);
  if (upstream.http2) forwardTrailers(response.stream, reply, relay);
  const body = relay ?? response.stream;
  // The upstream failing mid-answer (not the caller leaving) cuts the
  // caller's answer: its access line says so (see markAnswerCut).
  body.once("error", (error: Error & { code?: unknown }) => {
    if (!callerIsGone(reply)) markAnswerCut(reply.raw, upstreamCut(error, request));
  });
  const callerStream = (reply.raw as { stream?: ServerHttp2Stream }).stream;
  if (callerStream !== undefined) resetOnFailure(body, callerStream);
  void reply.send(body);
}

/**
 * For an HTTP/2 caller: the upstream body fails once the caller has the
 * headers, and the caller's stream is reset (RST_STREAM INTERNAL_ERROR).
 * fastify would end it with `destroy()` and no error, which Node sends as a
 * clean end of stream, so a truncated answer would pass for a complete one
 * (HTTP/1.1 callers have their connection closed, which they see).
 */
function resetOnFailure(body: Readable, callerStream: ServerHttp2Stream): void {
  body.once("error", (error) => {
    if (callerStream.headersSent && !callerStream.destroyed) callerStream.destroy(error);
  });
}

/** The upstream could not be reached, or did not answer. */
function answerUpstreamFailure(reply: FastifyReply, error: Error): void {
  callOf<ForwardedCall>(reply.request).upstreamAnswered();
  failReply(reply, upstreamError(error, reply.request));
}

/** The Content-Type a forwarded body goes with (application/octet-stream when the caller sent none); none without a body. */
function forwardedContentType(request: FastifyRequest, body: BufferedBody | undefined): string | undefined {
  const given = request.headers["content-type"];
  return body === undefined ? given : (given ?? "application/octet-stream");
}

/** What is signed for a call without a body: the digest of no bytes, not computed each time. */
const NO_BODY = { sha256: EMPTY_BODY_SHA256 };

/**
 * The identity headers and both signatures (v1 for Ruby services, v2 over
 * every identity header, the content headers and a fresh request id), for the
 * request exactly as it will be sent: the content headers are set to the
 * signed values, so what the upstream receives is what was signed. A caller's
 * value that cannot be signed unambiguously (a control character in a
 * content header) is a 400, not a 500. The body is signed by the digest
 * taken as it was read (a BufferedBody is a `{ sha256 }` body). Returns a
 * fresh object, which the caller adds its other headers to.
 */
function signedHeaders(
  secret: string,
  request: FastifyRequest,
  target: string,
  body: BufferedBody | undefined,
  identity: CallerIdentity,
): Record<string, string> {
  const contentType = forwardedContentType(request, body);
  const contentEncoding = request.headers["content-encoding"];
  try {
    const headers = gatewaySignatureHeaders(
      secret,
      { method: request.method, requestTarget: target, body: body ?? NO_BODY, contentType, contentEncoding },
      identity,
    );
    if (contentType !== undefined) headers["content-type"] = contentType;
    if (contentEncoding !== undefined) headers["content-encoding"] = contentEncoding;
    return headers;
  } catch (e) {
    if (e instanceof GatewaySigningError) throw new GatewayHttpError("BAD_REQUEST", "Request cannot be forwarded as sent");
    throw e;
  }
}

/**
 * The request-target sent upstream: the upstream's base path, plus the
 * request-target with the `/backend/<service>` prefix removed, normalised
 * by WHATWG URL parsing (percent-encoding what a request-target cannot hold
 * raw) and sent exactly so, because the signature covers these very bytes.
 */
function forwardedTarget(rawUrl: string, route: ForwardingRoute, origin: string): string {
  let rest = rawUrl;
  if (route.stripPrefix !== undefined) {
    // The router matched a decoded path; strip only what was sent literally
    // (the prefix and a `/`).
    if (!rawUrl.startsWith(route.stripPrefix) || rawUrl.charCodeAt(route.stripPrefix.length) !== SLASH) {
      throw new GatewayHttpError("NOT_FOUND", "No route matches this request");
    }
    rest = rawUrl.slice(route.stripPrefix.length);
  }
  const joined = route.basePath + rest;
  if (!isPlainPath(rest)) throw new GatewayHttpError("BAD_REQUEST", "Malformed request path");
  if (!isDecodableQuery(rest)) throw new GatewayHttpError("BAD_REQUEST", "Malformed request query");
  const url = new URL(joined, origin);
  // An empty but present query (`/a?`) stays on the wire; it signs as `/a` (fullpathOf).
  return url.pathname + (url.search !== "" ? url.search : joined.includes("?") ? "?" : "");
}

/**
 * URL parsing resolves `.` and `..` segments, `%2e%2e` and `\` included (and a
 * backend that decodes before routing, `%2F..%2F` and `%5C`), which
 * would let a caller climb out of an upstream's base path or off the route it
 * was authorised for: such paths are refused rather than normalised, and so
 * is a target with a fragment (`#`), a path that does not percent-decode, and one with a control character,
 * raw or escaped (`%00`, `%0a`, …): no resource is named with one, and a
 * backend that decodes the path may cut it at a NUL or split a log line. Walks the path in place: only a
 * segment with a `%` in it is decoded (a path decodes if and only if each of
 * its segments does, as no escape spans a `/`).
 */
function isPlainPath(target: string): boolean {
  // A request-target never holds a fragment (RFC 9112 §3.2): URL parsing
  // would drop `#…`, so what is forwarded would not be what was asked for.
  if (target.includes("#")) return false;
  const query = target.indexOf("?");
  const end = query === -1 ? target.length : query;
  const backslash = target.indexOf("\\");
  if (target.startsWith("//") || (backslash !== -1 && backslash < end)) return false;
  for (let start = 0; start <= end; ) {
    const slash = target.indexOf("/", start);
    const stop = slash === -1 || slash > end ? end : slash;
    if (!isPlainSegment(target, start, stop)) return false;
    start = stop + 1;
  }
  return true;
}

/**
 * True unless the query has a percent-escape that does not decode (`?q=%zz`):
 * such a query is refused (400) like such a path, rather than forwarded to
 * backends that would each read it their own way.
 */
function isDecodableQuery(target: string): boolean {
  const query = target.indexOf("?");
  if (query === -1 || target.indexOf("%", query) === -1) return true;
  try {
    decodeURIComponent(target.slice(query + 1));
    return true;
  } catch {
    return false;
  }
}

const SLASH = 0x2f;
const DOT = 0x2e;

/**
 * True unless `target[start, stop)` is `.` or `..`, literally or
 * percent-encoded, does not decode, holds a control character or an escaped
 * `\` (read as `/` by Windows servers), or decodes to pieces `.` or `..`
 * between escaped slashes.
 */
function isPlainSegment(target: string, start: number, stop: number): boolean {
  const percent = target.indexOf("%", start);
  if (percent === -1 || percent >= stop) {
    for (let i = start; i < stop; i++) {
      const code = target.charCodeAt(i);
      if (code < 0x20 || code === 0x7f) return false;
    }
    const length = stop - start;
    return !(
      (length === 1 && target.charCodeAt(start) === DOT) ||
      (length === 2 && target.charCodeAt(start) === DOT && target.charCodeAt(start + 1) === DOT)
    );
  }
  let decoded: string;
  try {
    decoded = decodeURIComponent(target.slice(start, stop));
  } catch {
    return false;
  }
  if (decoded === "." || decoded === ".." || CONTROL.test(decoded) || decoded.includes("\\")) return false;
  // An escaped `/` is data to a strict backend, but one that decodes before
  // it routes reads `a%2F..%2F..%2Fadmin` as `a/../../admin`: no such piece.
  return !decoded.includes("/") || decoded.split("/").every((piece) => piece !== "." && piece !== "..");
}

/** C0 controls and DEL. */
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * The body to forward (and sign), if any: fastify reads none for GET and
 * HEAD, and bufferedBodyParser gives none for an empty one. What cannot reach
 * an HTTP/2 upstream intact is refused rather than mangled on the way: Node's
 * HTTP/2 client ends a GET, HEAD or DELETE request with its headers (no
 * body), and a HEAD answer's headers describe a body that never comes.
 */
function forwardedBody(request: FastifyRequest, upstream: Upstream): BufferedBody | undefined {
  const body = request.body instanceof BufferedBody ? request.body : undefined;
  if (upstream.http2 && request.method === "HEAD") {
    throw new GatewayHttpError("BAD_REQUEST", "HEAD is not forwarded to an HTTP/2 backend");
  }
  if (upstream.http2 && body !== undefined && request.method === "DELETE") {
    throw new GatewayHttpError("BAD_REQUEST", "This backend takes no DELETE request body");
  }
  return body;
}

/**
 * The headers sent upstream: the caller's, without every identity, gateway
 * or forwarding header it sent, in any spelling (`X_User_Id` too), nor its
 * hop-by-hop headers (see caller-headers.ts), then the gateway's own
 * (`own`: identity, signatures, content headers, request id, forwarding
 * headers, trace context) and the upstream's `Host`. The Content-Length is
 * the forwarded body's exact length (the caller's may be absent: chunked),
 * and without a forwarded body the caller's goes too (an HTTP/2 upstream
 * resets a stream shorter than its content-length). The caller's
 * `Authorization` (its bearer token) goes too, unless the route says
 * `forward_authorization: true`.
 */
function upstreamHeaders(
  request: FastifyRequest,
  forwarding: RouteForwarding,
  own: Record<string, string>,
  bodyLength: number | undefined,
): Record<string, string | string[] | undefined> {
  const headers = keptCallerHeaders(request.headers, request.headers.connection, forwarding.upstream.http2, forwarding.route.access.forwardAuthorization === true);
  headers["host"] = forwarding.host;
  // Without a body, no Content-Length (undici and the h2c pool skip undefined).
  headers["content-length"] = bodyLength === undefined ? undefined : String(bodyLength);
  for (const name in own) headers[name] = own[name];
  return headers;
}

/**
 * gRPC ends every call with HTTP/2 trailers (`grpc-status`, …), which
 * relaying the upstream body does not carry. The HTTP/2 client stream emits `trailers` after its last data frame
 * and before it ends, so they are added to the caller's response here and go
 * out when fastify ends the piped response. One exception: when no body byte
 * was or will be written, Node's compatibility response ends with its headers
 * (END_STREAM) and would drop the trailers, so they become headers instead —
 * gRPC's "Trailers-Only" response. (An HTTP/1.1 caller gets trailers only
 * with chunked encoding; gRPC-web carries them in the body anyway.) Once
 * `relay` has ended the stream for a shutdown, with its own trailers, late
 * upstream trailers are dropped.
 */
function forwardTrailers(stream: Readable, reply: FastifyReply, relay: EnvelopedRelay | undefined): void {
  // The body stream H2cUpstreamPool hands over passes the upstream's 'trailers' event on.
  stream.once("trailers", (trailers: Http2Headers) => {
    // The gateway has ended the stream itself (shutting down), with its own trailers.
    if (relay?.cut === true) return;
    const copy: OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(trailers)) {
      if (!name.startsWith(":") && value !== undefined) copy[name] = value as string | string[];
    }
    const raw = reply.raw;
    if (!raw.headersSent && stream.readableLength === 0 && (relay?.readableLength ?? 0) === 0) {
      for (const [name, value] of Object.entries(copy)) raw.setHeader(name, value as string | string[]);
    } else {
      raw.addTrailers(copy);
    }
  });
}

/**
 * For a gRPC, gRPC-web (binary) or Connect streaming answer, the body the
 * caller gets: the upstream body through an {@link EnvelopedRelay}, which
 * the drain timeout of a graceful close ends at a message boundary with
 * `Unavailable` (see setDrainDeadlineEnding) rather than with a reset.
 * `undefined` for any other answer (Connect unary, REST, gRPC-web-text, an
 * error status): those are passed on as they are, and reset at the drain
 * timeout if still open, as nothing more can be said in their protocol.
 */
function envelopedRelayOf(response: UpstreamResponse, reply: FastifyReply): EnvelopedRelay | undefined {
  if (response.statusCode !== 200) return undefined;
  const protocol = envelopedProtocolOf(response.headers["content-type"]);
  if (protocol === undefined) return undefined;
  const raw = reply.raw as ServerResponse | Http2ServerResponse;
  // An upstream failing between two messages: the caller's stream ends with an error in its protocol (see EnvelopedRelay); said here.
  const relay = new EnvelopedRelay(response.stream, protocol, raw, (error) => {
    const upstream = upstreamNameOf(reply.request);
    reply.log.warn(
      { err: error, ...(upstream !== undefined && { upstream }) },
      "upstream failed mid-stream, between two messages: the caller's stream was ended with an error (Unavailable; DeadlineExceeded for a stall)",
    );
  });
  setDrainDeadlineEnding(raw, () => relay.endAtMessageBoundary());
  return relay;
}

/**
 * True when an upstream answer goes into the cache: {@link isCacheable} allows
 * it (a 200, no cookie, no `private`/`no-store`/`no-cache`, no `Vary` on an
 * unkeyed header) and it declares a length small enough to buffer.
 */
function isStorable(response: UpstreamResponse, maxBytes: number): boolean {
  const length = Number(response.headers["content-length"]);
  return isCacheable(response.statusCode, response.headers) && Number.isInteger(length) && length <= maxBytes;
}

/**
 * Reads a cacheable answer whole, stores it and sends it: a body cut short
 * is a 503 (never relayed half, never stored), one not whole within the
 * route's timeout a 504; either way the upstream answer is let go of, as it
 * is at once when the caller goes away.
 */
async function sendAndCache(
  reply: FastifyReply,
  response: UpstreamResponse,
  cache: ResponseCache,
  key: string,
  limits: { readonly ttlMs: number; readonly timeoutMs: number },
): Promise<void> {
  // The declared length (isStorable checked it) is allocated once and filled
  // in place: however small the pieces the upstream sends, one Buffer.
  const body = Buffer.allocUnsafe(Number(response.headers["content-length"]));
  let filled = 0;
  // The whole body within the route's timeout from its headers: a trickle of
  // a byte now and then never trips undici's timeout between two pieces, and
  // the caller, who gets nothing until the body is whole, would wait on it.
  const stalled = setTimeout(() => response.stream.destroy(bodyTimeout(limits.timeoutMs)), limits.timeoutMs);
  // A caller gone is no reason to go on reading (and holding an upstream connection).
  const callerGone = () => response.stream.destroy(callerWentAway());
  reply.raw.once("close", callerGone);
  try {
    for await (const chunk of response.stream) {
      const piece = chunk as Uint8Array;
      if (filled + piece.byteLength > body.byteLength) throw new Error("the upstream sent more than its Content-Length");
      body.set(piece, filled);
      filled += piece.byteLength;
    }
    if (filled !== body.byteLength) throw new Error("the upstream sent less than its Content-Length");
  } catch (e) {
    failReply(reply, upstreamError(e as Error, reply.request));
    return;
  } finally {
    clearTimeout(stalled);
    reply.raw.off("close", callerGone);
  }
  cache.set(key, { status: response.statusCode, headers: cacheableHeaders(reply.getHeaders()), body }, limits.ttlMs);
  void reply.header("x-cache", "MISS").send(body);
}

/** How an upstream failure mid-answer shows in the caller's access line. */
function upstreamCut(error: unknown, request: FastifyRequest): AnswerCut {
  const upstream = upstreamNameOf(request);
  return (error as { code?: unknown } | undefined)?.code === "UND_ERR_BODY_TIMEOUT"
    ? { statusCode: 504, code: "GATEWAY_TIMEOUT", message: "answer cut short: the upstream stalled mid-answer", upstream }
    : { statusCode: 503, code: "SERVICE_UNAVAILABLE", message: "answer cut short: the upstream failed mid-answer", upstream };
}

/** A cacheable answer whose body did not come whole within the route's timeout: a 504, as for a body that stalled. */
function bodyTimeout(timeoutMs: number): Error {
  const error = Object.assign(new Error(`the upstream did not send its whole answer within ${timeoutMs} ms`), { code: "UND_ERR_BODY_TIMEOUT" });
  error.stack = undefined;
  return error;
}

/**
 * Answers an upstream failure, unless the caller already has the response
 * headers (the upstream failed mid-body): then no error answer can be written,
 * and the caller's stream is reset (the connection, for HTTP/1.1) instead.
 */
function failReply(reply: FastifyReply, error: GatewayHttpError): void {
  if (callerIsGone(reply)) {
    logCallerGone(reply.request, reply, { headersSent: reply.raw.headersSent });
    if (!reply.sent) void reply.code(CLIENT_CLOSED_REQUEST).send();
    return;
  }
  if (reply.raw.headersSent) {
    reply.log.warn({ err: error.cause ?? error }, "upstream failed after the response started");
    markAnswerCut(reply.raw, upstreamCut(error.cause ?? error, reply.request));
    reply.raw.destroy(error);
    return;
  }
  void reply.send(error);
}

/**
 * Why an upstream request is aborted when its caller goes away: undici's own
 * code for an aborted request (which the logger knows as the caller's doing),
 * and no stack, which would say nothing about the caller.
 */
function callerWentAway(): Error {
  const error = Object.assign(new Error("The caller went away before the upstream answered"), { code: "UND_ERR_ABORTED" });
  error.stack = undefined;
  return error;
}

/**
 * True once the caller can no longer receive the answer: its HTTP/2 stream
 * closed (RST_STREAM, or the connection went), or its HTTP/1.1 connection
 * closed, before the answer was complete. Only asked while the answer is not.
 */
export function callerIsGone(reply: FastifyReply): boolean {
  const raw = reply.raw as unknown as {
    stream?: { destroyed: boolean; closed: boolean };
    socket?: { destroyed: boolean } | null;
    destroyed?: boolean;
    writableFinished?: boolean;
  };
  if (raw.stream !== undefined) return raw.stream.destroyed || raw.stream.closed;
  if (raw.writableFinished === true) return false;
  return raw.destroyed === true || raw.socket?.destroyed === true;
}

/** Upstream failures, as the gateway reports them: 504 for timeouts (no answer, or a body that stalled), 503 for the rest. */
/**
 * The upstream a call was forwarded to, as its log lines name it (never
 * its answer): its origin and, for a backend, the backend's name —
 * `http://127.0.0.1:8081 (backend echo)`.
 */
function upstreamNameOf(request: FastifyRequest): string | undefined {
  const forwarding = callOf<ForwardedCall | undefined>(request)?.forwarding;
  if (forwarding === undefined) return undefined;
  const prefix = forwarding.route.stripPrefix;
  return prefix?.startsWith("/backend/") === true ? `${forwarding.upstream.origin} (backend ${prefix.slice("/backend/".length)})` : forwarding.upstream.origin;
}

function upstreamError(error: Error & { code?: unknown }, request: FastifyRequest): GatewayHttpError {
  const upstream = upstreamNameOf(request);
  if (error.code === "UND_ERR_BODY_TIMEOUT" || error.code === "UND_ERR_HEADERS_TIMEOUT") {
    return new GatewayHttpError("GATEWAY_TIMEOUT", "Upstream service did not answer in time", { cause: error, upstream });
  }
  return new GatewayHttpError("SERVICE_UNAVAILABLE", "Upstream service is unavailable", { cause: protocolMismatchOf(error) ?? error, upstream });
}

/**
 * The likeliest misconfiguration of all, said in the log line (the caller
 * only gets its 503): a route forwarding HTTP/1.1 to an h2c-only server
 * (`http2.createServer`), which answers with HTTP/2 frames that do not parse
 * as HTTP/1.1; or a route with `http2: true` to a server that does not speak
 * HTTP/2. The hint is the innermost cause, which is what the log shows.
 */
function protocolMismatchOf(error: Error): Error | undefined {
  let root: unknown = error;
  while (root instanceof Error && root.cause !== undefined) root = root.cause;
  const { code, message } = (root ?? {}) as { code?: unknown; message?: unknown };
  if (typeof message === "string" && message.includes("does not match the HTTP/1.1 protocol")) {
    return new Error(`the upstream did not answer in HTTP/1.1 (${message}): if it serves HTTP/2 only (h2c), add http2: true to its route or backend`);
  }
  if (code === "ERR_HTTP2_ERROR" || code === "ERR_HTTP2_SESSION_ERROR") {
    return new Error(`the upstream did not speak HTTP/2 (${String(code)}): if it serves HTTP/1.1, remove http2: true from its route or backend`);
  }
  return undefined;
}
