import type { FastifyInstance } from "fastify";

/**
 * The response headers browsers may read by default
 * (`Access-Control-Expose-Headers`): what Connect and gRPC-web browser
 * clients need to see an error's status and details when it comes in
 * headers (`Grpc-Status`, `Grpc-Message`, `Grpc-Status-Details-Bin`), the
 * request id to quote in a bug report, and the rate limit the gateway sends
 * (`X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`,
 * `Retry-After`). Connect's own trailers of a unary call arrive as
 * `Trailer-<name>` headers: list each one you need (see the README, "CORS").
 */
export const DEFAULT_CORS_EXPOSE_HEADERS: readonly string[] = [
  "grpc-status",
  "grpc-message",
  "grpc-status-details-bin",
  "x-request-id",
  "retry-after",
  "x-ratelimit-limit",
  "x-ratelimit-remaining",
  "x-ratelimit-reset",
];

// An HTTP field name (RFC 9110 §5.1, a token) without `*`: browsers read
// `Access-Control-Expose-Headers` as exact names, never patterns (a lone `*`
// would mean "all", but not for credentialed requests, and never `Trailer-*`).
const HEADER_NAME = /^[!#$%&'+.^_`|~0-9A-Za-z-]+$/;

/**
 * Why `name` cannot be listed in `Access-Control-Expose-Headers`, or
 * `undefined` when it can: it must be one header name — no spaces, commas
 * or patterns. The message quotes the value (a header name is no secret).
 */
export function exposableHeaderProblem(name: unknown): string | undefined {
  if (typeof name !== "string" || name === "") return "each must be a non-empty string";
  if (name.includes("*")) {
    return `${JSON.stringify(name)} is a pattern: browsers only match exact names, so list each header (e.g. Trailer-Cost)`;
  }
  if (!HEADER_NAME.test(name)) return `${JSON.stringify(name)} is not a header name`;
  return undefined;
}

/** Browser access to the gateway from other origins, as `registerCors` applies it. */
export interface CorsPolicy {
  /** The origins allowed (`https://app.example.com`), or `true` for any. */
  readonly origins: readonly string[] | true;
  /** How long a browser may cache a preflight answer (`Access-Control-Max-Age`), in seconds. */
  readonly maxAgeSeconds: number;
  /** The response headers a page may read (`Access-Control-Expose-Headers`). */
  readonly exposeHeaders: readonly string[];
  /** Whether a page may send cookies / HTTP auth with its calls (`Access-Control-Allow-Credentials`). */
  readonly credentials: boolean;
}

/**
 * Lets browsers on `policy.origins` call the gateway: answers preflights
 * (before any token check, since a preflight carries no `Authorization`)
 * allowing every method in `methods` — every method some route or backend
 * accepts — and whatever request headers the browser asks for, with
 * `Access-Control-Max-Age`; and marks answers to allowed origins with the
 * exposed headers and, when asked, credentials. A request from any other
 * origin gets no CORS header at all (its preflight: 404), so the browser
 * refuses it.
 */
export function registerCors(app: FastifyInstance, policy: CorsPolicy, methods: readonly string[]): void {
  const allowed = policy.origins === true ? undefined : new Set(policy.origins);
  // Imported here, not at the top: a gateway without CORS (the default) never loads the plugin.
  // fastify takes the plugin module's promise and registers it in order.
  void app.register(import("@fastify/cors"), {
    // A function rather than a list: an origin not on it gets no CORS headers,
    // and its preflight is not answered with the methods and headers we allow.
    origin: (origin, callback) => callback(null, origin !== undefined && (allowed === undefined || allowed.has(origin)) ? origin : false),
    methods: [...methods],
    maxAge: policy.maxAgeSeconds,
    exposedHeaders: [...policy.exposeHeaders],
    credentials: policy.credentials,
  });
  // A preflight allows the headers it asked for and, always, those of every
  // wire a page may use (Connect, gRPC-web): browsers cache one preflight
  // answer per URL, so a page calling a method over two wires (or with and
  // without a timeout) would otherwise replace one answer with the other and
  // send a preflight before every call.
  app.addHook("onSend", (request, reply, payload, done) => {
    if (request.method === "OPTIONS") {
      const asked = reply.getHeader("access-control-allow-headers");
      if (asked !== undefined) reply.header("access-control-allow-headers", withWireHeaders(String(asked)));
    }
    done(null, payload);
  });
}

/** The request headers Connect's and gRPC-web's browser transports send, besides `authorization`. */
const WIRE_HEADERS = [
  "authorization",
  "content-type",
  "connect-protocol-version",
  "connect-timeout-ms",
  "connect-content-encoding",
  "connect-accept-encoding",
  "x-grpc-web",
  "x-user-agent",
  "grpc-timeout",
  "x-request-id",
];

function withWireHeaders(asked: string): string {
  const names = new Set(asked.split(",").map((name) => name.trim().toLowerCase()).filter((name) => name !== ""));
  for (const name of WIRE_HEADERS) names.add(name);
  return [...names].join(", ");
}
