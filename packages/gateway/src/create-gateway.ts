import { randomUUID } from "node:crypto";
import type { AddressInfo, Socket } from "node:net";
import rateLimit from "@fastify/rate-limit";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type HTTPMethods } from "fastify";
import { ambiguousRequestHead, hasTooManyHeaderFields, MAX_CALLER_HEADER_FIELDS } from "./caller-headers.js";
import { clientNetworkOf } from "./client-network.js";
import { createDualProtocolServer, setPendingHeaders, type DualProtocolServer } from "./dual-protocol-server.js";
import { answerClientError, asGatewayHttpError, sendGatewayError } from "./error-response.js";
import { registerCors } from "./cors.js";
import { resolveGatewayConfig, type GatewayConfig, type ResolvedRateLimitConfig } from "./gateway-config.js";
import { GatewayHttpError } from "./gateway-http-error.js";
import { abandonHop, endHop, isTraced, startHop, traceTokenValidation } from "./hop-tracing.js";
import { GatewayLogController, gatewayLoggerOptions, logGatewayError, requestLogger } from "./gateway-logger.js";
import { AuthFailureLimitError, createRequestAuthenticator } from "./request-authenticator.js";
import { callerOf, declareRequestState, routeAccess, setCaller, setRoute } from "./request-state.js";
import { connectRateLimitStore, memoryWindowCounter, type RateLimitStore } from "./rate-limit-store.js";
import { createResponseCache } from "./response-cache.js";
import { RESERVED_PATHS, routeMethods, type RoutesFile } from "./routes-file.js";
import { noRouteMessage, RouteTable, type RouteEntry } from "./route-table.js";
import { createTokenVerifier } from "./token-verifier.js";
import { UpstreamDispatcher } from "./upstream-dispatcher.js";
import {
  registerForwarding,
  routeForwarding,
  type ForwarderContext,
  type RouteForwarding,
  type Upstream,
} from "./upstream-forwarder.js";

/** A gateway built by {@link createGateway}. */
export interface Gateway {
  /** The fastify instance (for `inject` in tests, or extra routes). */
  readonly app: FastifyInstance;
  /** The routes it serves. */
  readonly routes: RoutesFile;
  /**
   * Starts listening (HTTP/1.1 and cleartext HTTP/2 on the same port).
   * Defaults: port 0 (any free port) on 127.0.0.1. Resolves to the base URL.
   */
  listen(options?: { readonly port?: number; readonly host?: string }): Promise<string>;
  /** The base URL, once listening (`http://127.0.0.1:8080`). */
  readonly url: string;
  /** How long {@link Gateway.close} lets open calls finish (the resolved `drainTimeoutMs`). */
  readonly drainTimeoutMs: number;
  /**
   * Stops accepting connections, closes idle ones (HTTP/1.1 keep-alive, GOAWAY
   * on HTTP/2), lets open calls finish for up to `drainTimeoutMs`, then
   * ends the calls still open (a call not answered yet gets 503, which
   * Connect and gRPC clients see as Unavailable; a gRPC, gRPC-web or Connect
   * stream under way gets every whole message relayed so far, then ends with
   * Unavailable and its upstream stream is cancelled; a Connect unary or REST
   * answer under way is cut with a reset), and closes upstream pools and Redis.
   */
  close(): Promise<void>;
}

// Every default lives in gateway-config.ts (GATEWAY_DEFAULTS).
export { DEFAULT_DRAIN_TIMEOUT_MS } from "./gateway-config.js";
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const SLASH = 0x2f;
const CORS_REFUSED = "CORS preflight from an origin this gateway does not allow (CORS_ORIGINS, or cors.origins in routes.yaml)";
const ABSOLUTE_FORM = /^https?:\/\//i;

/**
 * A request-target that is neither origin-form (`/path`) nor absolute-form
 * (`http://host/path`): the router read `*` (asterisk-form, OPTIONS to the
 * server itself) as `/`, authorised it as that route, and URL parsing
 * forwarded it as `/*`.
 */
function isMalformedTarget(url: string): boolean {
  return url.charCodeAt(0) !== SLASH && !ABSOLUTE_FORM.test(url);
}
const BACKEND_METHODS: HTTPMethods[] = [...routeMethods];

/**
 * Creates the API gateway: routes from `routes.yaml` and
 * `/backend/<service>/…` backends; middleware in this order — recovery
 * (the error handler), request id, CORS, logging, token validation, scopes —
 * then the per-caller rate limit, the response cache, and signed forwarding.
 * Throws `GatewayConfigError` or `RoutesFileError` for a configuration it
 * cannot run with.
 *
 * @example
 * ```ts
 * import { createGateway } from "@connect-gateway/gateway";
 *
 * const gateway = createGateway({
 *   routes: "routes.yaml", // loaded here, `$ENV` expanded from process.env
 *   hmacSecret: process.env.GATEWAY_HMAC_SECRET!, // shared with the backends
 *   tokens: {
 *     jwks: { url: "https://auth.example/jwks", issuer: "https://auth.example", audience: "urn:api" },
 *   },
 *   rateLimit: { max: 100, timeWindowMs: 60_000 },
 * });
 * const url = await gateway.listen({ port: 8080, host: "0.0.0.0" });
 * console.log(`gateway on ${url}`);
 * process.once("SIGTERM", () => void gateway.close()); // drains open calls, then closes
 * ```
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc6750 | RFC 6750} (bearer tokens in `Authorization`)
 * @see {@link https://www.rfc-editor.org/rfc/rfc7519 | RFC 7519} (JWT) and {@link https://www.rfc-editor.org/rfc/rfc7517 | RFC 7517} (JWKS)
 * @see {@link https://www.rfc-editor.org/rfc/rfc7662 | RFC 7662} (token introspection, for opaque tokens)
 * @see {@link https://www.rfc-editor.org/rfc/rfc6585#section-4 | RFC 6585 §4} (429 Too Many Requests, with `Retry-After`, RFC 9110 §10.2.3)
 */
export function createGateway(options: GatewayConfig): Gateway {
  // Every option checked, every default applied, once: below, only resolved values.
  const config = resolveGatewayConfig(options);
  const routes = config.routes;
  let dual: DualProtocolServer | undefined;
  const app = Fastify({
    logger: gatewayLoggerOptions(config.logger),
    // 4. Logging: one line per request, when its answer is complete.
    logController: new GatewayLogController(),
    childLoggerFactory: requestLogger,
    genReqId: requestIdOf,
    requestIdHeader: false,
    // The router's own refusals, in the gateway's envelope (never fastify's,
    // whose message echoes the path): a path that does not percent-decode is
    // a 400, like every other malformed path.
    frameworkErrors: (error, request, reply) => {
      reply.header("x-request-id", request.id);
      return sendGatewayError(request, reply, frameworkError(error));
    },
    // And the HTTP/1.1 parser's, before there is a request: see answerClientError.
    clientErrorHandler(this: FastifyInstance, error: Error & { code?: string }, socket: Socket) {
      answerClientError(error, socket, this.log);
    },
    bodyLimit: config.bodyLimit,
    // Behind a load balancer: request.ip (rate limit, failure budget, log, X-Forwarded-For upstream)
    // is the caller's, from the trusted proxies' X-Forwarded-For; none trusted by default.
    trustProxy: config.trustProxy.length === 0 ? false : [...config.trustProxy],
    exposeHeadRoutes: false,
    serverFactory: (handler) => {
      dual = createDualProtocolServer(handler, {
        headersTimeoutMs: config.headersTimeoutMs,
        requestTimeoutMs: config.requestTimeoutMs,
        http2IdleTimeoutMs: config.http2IdleTimeoutMs,
        sendTimeoutMs: config.sendTimeoutMs,
        http2MaxConcurrentStreams: config.http2MaxConcurrentStreams,
      });
      return dual.server;
    },
  });
  const limits = config.rateLimit === false ? undefined : config.rateLimit;
  const store =
    limits?.redisUrl === undefined
      ? undefined
      : connectRateLimitStore(limits.redisUrl, app.log, { timeoutMs: limits.redisTimeoutMs, onFailure: limits.onRedisFailure });

  // 1. Recovery: every error becomes the caller's protocol's error, never a stack.
  app.setErrorHandler((error, request, reply) => {
    const gatewayError = asGatewayHttpError(error);
    logGatewayError(request.log, gatewayError);
    return sendGatewayError(request, reply, gatewayError);
  });
  app.setNotFoundHandler((request, reply) => {
    // A browser's preflight that CORS did not answer: its origin is not allowed (or CORS is
    // off). Still a 404, as for any request the gateway does not serve, but one that says why —
    // to the page, whose browser hides it, and in the log, where its developer looks.
    if (isPreflight(request)) {
      request.log.info({ origin: String(request.headers.origin ?? "").slice(0, 200) }, CORS_REFUSED);
      return sendGatewayError(request, reply, new GatewayHttpError("NOT_FOUND", CORS_REFUSED));
    }
    return sendGatewayError(request, reply, new GatewayHttpError("NOT_FOUND", noRouteMessage(request.url)));
  });
  // Every forwarding route is in the gateway's own route table, behind one
  // fastify route (see RouteTable): built here, in linear time.
  const context: ForwarderContext = {
    hmacSecret: config.hmacSecret,
    cache: createResponseCache(config.cache),
    dispatcher: new UpstreamDispatcher((error, upstream) =>
      // Each call on the session logs its own failure; this is only the detail.
      app.log.debug({ err: error, upstream }, "upstream HTTP/2 session failed"),
    ),
  };
  const table = routeTable(routes, context);
  declareRequestState(app);
  // The route, tracing (a span per request, continuing the caller's trace:
  // see hop-tracing.ts) and 2. the request id (propagated from X-Request-ID
  // or generated by genReqId, returned and forwarded), in one synchronous
  // hook: the first thing every request meets costs no promise. A request
  // the table matches nothing for (no route; or an empty `{id}`, or one that
  // is a case variant of a static sibling: `/users/ADMIN` beside an
  // admin-only `/users/admin`) is refused with 404 after CORS and before any
  // token is validated (see registerForwarding).
  app.addHook("onRequest", (request, reply, done) => {
    const url = request.url;
    // The gateway's own /health and /ready answer even beside a route such as `/{page}`;
    // a malformed target matches nothing (it is refused below, after CORS).
    const match = isMalformedTarget(url) || isReservedPath(url) ? undefined : table.find(request.method, url);
    if (match !== undefined) setRoute(request, match);
    startHop(request);
    reply.header("x-request-id", request.id);
    markHttp2Body(request);
    done();
  });
  app.addHook("onRequestAbort", (request, done) => {
    abandonHop(request);
    done();
  });
  app.addHook("onResponse", (request, reply, done) => {
    endHop(request, reply);
    done();
  });
  // 3. CORS.
  if (config.cors) {
    registerCors(app, config.cors, routeMethodsOf(routes));
    // A call the drain timeout answers itself (a bare 503, past fastify) still
    // carries the CORS headers meant for it: a page can then read Unavailable.
    app.addHook("onRequest", (_request, reply, done) => {
      setPendingHeaders(reply.raw, () => reply.getHeaders());
      done();
    });
  }
  // The request head's own refusals, after CORS so that a page can read them
  // (they carry its CORS headers), and before anything acts on the head: a
  // request-target that is not a path, too many header fields, a repeated
  // Host or Authorization.
  app.addHook("onRequest", (request, _reply, done) => {
    if (isMalformedTarget(request.url)) return done(new GatewayHttpError("BAD_REQUEST", "Malformed request target"));
    if (hasTooManyHeaderFields(request.raw.rawHeaders)) {
      return done(new GatewayHttpError("HEADERS_TOO_LARGE", `More than ${MAX_CALLER_HEADER_FIELDS} request header fields`));
    }
    const ambiguous = ambiguousRequestHead(request.raw.rawHeaders);
    done(ambiguous === undefined ? undefined : new GatewayHttpError("BAD_REQUEST", ambiguous));
  });
  // 5. Token validation and 6. scopes, before the body is read; before any
  // validation, the per-IP budget of failed authentications (see
  // createRequestAuthenticator): in the rate limit's Redis when it has one,
  // else in memory, per instance.
  const failureLimit = config.authFailureLimit === false ? undefined : config.authFailureLimit;
  const authenticate = createRequestAuthenticator({
    verifier: createTokenVerifier(config.tokens),
    claims: config.claims,
    anonymousClientId: config.anonymousClientId,
    ...(failureLimit && {
      failureLimit: {
        max: failureLimit.max,
        counter:
          store?.windowCounter("auth-failures", failureLimit.timeWindowMs) ?? memoryWindowCounter(failureLimit.timeWindowMs),
        // What the token verifier's cache holds (its default: 30 s) passes an over-budget IP.
        knownValidMs: config.tokens.cacheMs,
      },
    }),
  });
  const refuse = (reply: FastifyReply, e: unknown): unknown => {
    if (e instanceof AuthFailureLimitError) reply.header("retry-after", String(e.retryAfterSeconds));
    return e;
  };
  app.addHook("onRequest", (request, reply, done) => {
    const access = routeAccess(request);
    if (access === undefined) return done();
    let caller: ReturnType<typeof authenticate>;
    try {
      // Traced requests get their validation span (see traceTokenValidation).
      caller = isTraced(request)
        ? traceTokenValidation(request, async () => authenticate(request.headers.authorization, access, request.ip))
        : authenticate(request.headers.authorization, access, request.ip);
    } catch (e) {
      return done(refuse(reply, e) as Error);
    }
    // Most calls: a token verified before, answered without a promise.
    if (!(caller instanceof Promise)) {
      setCaller(request, caller);
      return done();
    }
    caller.then(
      (identity) => {
        setCaller(request, identity);
        done();
      },
      (e: unknown) => done(refuse(reply, e) as Error),
    );
  });
  // Then the rate limit per caller; a route-level hook, so it runs after the above.
  if (limits !== undefined) registerRateLimit(app, limits, store);
  // Bodies are never parsed. This parser (a Buffer, bounded by bodyLimit)
  // serves the gateway's own routes and requests no route takes; forwarding
  // routes have their own, which hashes a body chunk by chunk as it arrives
  // and forwards it byte for byte without copying it (see registerUpstream).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer" }, (_request, body, done) => done(null, body));

  app.get("/health", { config: { rateLimit: false } }, async () => ({ status: "ok" }));
  app.get("/ready", { config: { rateLimit: false } }, async (request, reply) => {
    // From the periodic health check (a write) (same budget as the rate limiter): /ready never waits on Redis longer than that.
    if (store && !(await store.ready())) {
      // Answered, not thrown: the outage is logged once by the store, and a
      // readiness probe polling through it must not add a warning per poll
      // (its access line still says 503).
      return sendGatewayError(request, reply, new GatewayHttpError("SERVICE_UNAVAILABLE", "Rate limit store is unavailable"));
    }
    return { status: "ready" };
  });
  void registerForwarding(app, BACKEND_METHODS);

  // Graceful close (SIGTERM, close()): no new connections, idle ones closed
  // at once, open calls given drainTimeoutMs to finish, then cut.
  const drainTimeoutMs = config.drainTimeoutMs;
  let drainTimer: NodeJS.Timeout | undefined;
  app.addHook("preClose", async () => {
    app.log.info({ drainTimeoutMs }, "closing: no new connections; the calls still open get drainTimeoutMs to finish");
    dual?.drain();
    drainTimer = setTimeout(() => {
      app.log.warn({ drainTimeoutMs }, "drain timeout: closing the calls still open");
      dual?.destroyConnections();
    }, drainTimeoutMs);
  });
  app.addHook("onClose", async () => {
    clearTimeout(drainTimer);
    await Promise.all([store?.close(), context.dispatcher.close()]);
    app.log.info("closed");
  });

  return gatewayHandle(app, routes, drainTimeoutMs);
}

function registerRateLimit(
  app: FastifyInstance,
  limits: ResolvedRateLimitConfig,
  store: RateLimitStore | undefined,
): void {
  void app.register(rateLimit, {
    global: true,
    hook: "onRequest",
    max: limits.max,
    timeWindow: limits.timeWindowMs,
    keyGenerator: rateLimitKey,
    // Redis-backed counts answer within redisTimeoutMs, then fail open or closed
    // as configured (see connectRateLimitStore); /ready reports the outage.
    ...(store && { store: store.storeClass }),
    skipOnError: limits.onRedisFailure === "open",
    errorResponseBuilder: () => new GatewayHttpError("RATE_LIMITED", "Too many requests"),
  });
}

function gatewayHandle(app: FastifyInstance, routes: RoutesFile, drainTimeoutMs: number): Gateway {
  let url: string | undefined;
  return {
    app,
    routes,
    drainTimeoutMs,
    async listen(options = {}) {
      await app.listen({ port: options.port ?? 0, host: options.host ?? "127.0.0.1" });
      const { port } = app.server.address() as AddressInfo;
      // A wildcard address is reached through loopback.
      const host = [undefined, "0.0.0.0", "::"].includes(options.host) ? "127.0.0.1" : (options.host as string);
      url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
      return url;
    },
    get url() {
      if (url === undefined) throw new Error("the gateway is not listening: call listen() first");
      return url;
    },
    close: () => app.close(),
  };
}

/** Every method some route or backend accepts (and GET/HEAD of /health and /ready): what a CORS preflight allows. */
/** True for a request for one of the gateway's own endpoints (its path, whatever its query). */
function isReservedPath(url: string): boolean {
  const query = url.indexOf("?");
  return RESERVED_PATHS.includes(query === -1 ? url : url.slice(0, query));
}

function routeMethodsOf(routes: RoutesFile): string[] {
  const methods = new Set<string>(["GET", "HEAD"]);
  for (const route of routes.routes) methods.add(route.method);
  if (routes.backends.length > 0) for (const method of BACKEND_METHODS) methods.add(method);
  return routeMethods.filter((m) => methods.has(m));
}

/** A routes file path as the router holds it: `{id}` becomes `:id`. */
function routerPattern(path: string): string {
  return path.replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, ":$1");
}

/** The route table of the routes and backends: one upstream (and connection pool) per origin and protocol. */
function routeTable(routes: RoutesFile, context: ForwarderContext): RouteTable<RouteForwarding> {
  const upstreams = new Map<string, Upstream>();
  // The upstream URL was parsed (and checked) once, when the routes file was read.
  const upstreamOf = (url: URL, http2: boolean): Upstream => {
    const key = `${http2 ? "h2c" : "http/1.1"} ${url.origin}`;
    let upstream = upstreams.get(key);
    if (upstream === undefined) upstreams.set(key, (upstream = { origin: url.origin, http2 }));
    return upstream;
  };
  const basePath = (url: URL) => url.pathname.replace(/\/+$/, "");
  const entries: RouteEntry<RouteForwarding>[] = [];
  for (const route of routes.routes) {
    const upstream = upstreamOf(route.upstreamUrl, false);
    entries.push({
      pattern: routerPattern(route.path),
      methods: [route.method],
      line: route.line,
      target: routeForwarding(upstream, { access: route, basePath: basePath(route.upstreamUrl), cacheTtlMs: route.cacheTtlMs }, context),
    });
  }
  for (const backend of routes.backends) {
    const upstream = upstreamOf(backend.upstreamUrl, backend.http2);
    const prefix = `/backend/${backend.name}`;
    entries.push({
      pattern: `${prefix}/*`,
      methods: BACKEND_METHODS,
      line: backend.line,
      target: routeForwarding(upstream, { access: backend, basePath: basePath(backend.upstreamUrl), stripPrefix: prefix }, context),
    });
  }
  return new RouteTable(entries, routes.source);
}

/** The router's refusal of a request before any route, as the gateway answers it. */
function frameworkError(error: Error & { code?: string }): GatewayHttpError {
  if (error.code === "FST_ERR_BAD_URL") return new GatewayHttpError("BAD_REQUEST", "Malformed request path");
  if (error.code === "FST_ERR_MAX_PARAM_LENGTH") return new GatewayHttpError("NOT_FOUND", "No route matches this request");
  return new GatewayHttpError("INTERNAL_ERROR", "Internal gateway error", { cause: error });
}

/** A propagated `X-Request-ID` when it is a sane token, else a fresh UUID. */
function requestIdOf(request: { headers: Record<string, string | string[] | undefined> }): string {
  const given = request.headers["x-request-id"];
  return typeof given === "string" && REQUEST_ID.test(given) ? given : randomUUID();
}

/** One bucket per user of a client, per service client, or per IP for anonymous calls. */
/**
 * An HTTP/2 request says it has a body by not ending its stream with its
 * headers — no header need say so. Fastify reads a body only when the request
 * has a `Content-Type`, a `Content-Length` or a `Transfer-Encoding`, so an
 * HTTP/2 POST with none of them would be forwarded (and signed) empty while
 * its caller was told it succeeded. Such a request is marked as HTTP/1.1
 * would send it, chunked: the body is read, and forwarded as
 * `application/octet-stream` like an HTTP/1.1 one without a type.
 * (`Transfer-Encoding` is hop-by-hop: it is never forwarded, and an HTTP/2
 * caller cannot send one itself: Node refuses it.)
 */
function markHttp2Body(request: FastifyRequest): void {
  const stream = (request.raw as { stream?: { endAfterHeaders?: boolean } }).stream;
  if (stream === undefined || stream.endAfterHeaders !== false) return;
  // GET and HEAD bodies are never forwarded (nor read): nothing to mark.
  if (request.method === "GET" || request.method === "HEAD") return;
  const headers = request.raw.headers;
  if (headers["content-type"] === undefined && headers["content-length"] === undefined && headers["transfer-encoding"] === undefined) {
    headers["transfer-encoding"] = "chunked";
  }
}

/** A CORS preflight: `OPTIONS` with an `Origin` and the method the page wants to send. */
function isPreflight(request: FastifyRequest): boolean {
  return request.method === "OPTIONS" && request.headers.origin !== undefined && request.headers["access-control-request-method"] !== undefined;
}

function rateLimitKey(request: FastifyRequest): string {
  const caller = callerOf(request);
  if (caller === undefined || (caller.isServiceRequest && routeAccess(request)?.authRequired === false)) {
    return `ip:${clientNetworkOf(request.ip)}`;
  }
  // The client id's length first: ids may hold `:`, and client `urn:a` with
  // user `b:1` must not share a budget with client `urn:a:b` and user `1`.
  return caller.userId === undefined ? `client:${caller.clientId}` : `user:${caller.clientId.length}:${caller.clientId}:${caller.userId}`;
}
