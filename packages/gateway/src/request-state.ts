import type { FastifyInstance, FastifyRequest } from "fastify";
import type { CallerIdentity } from "./identity-claims.js";
import type { RouteMatch } from "./route-table.js";
import type { UpstreamAccess } from "./routes-file.js";

/**
 * What the gateway learns about a request as it goes through it: the route
 * it matched (first thing, for every request), who is calling (once the
 * token, or its absence, is accepted), and the forwarded call under way.
 *
 * Held in slots declared once on the root instance (fastify initialises
 * declared slots in its request constructor), so every request has the same
 * object shape from birth: no hidden-class change when a slot is filled, no
 * WeakMap entry for the garbage collector to trace, and no declaration
 * merging into fastify's types for every other user of fastify.
 */
const ROUTE = Symbol("connect-gateway.route");
const CALLER = Symbol("connect-gateway.caller");
const CALL = Symbol("connect-gateway.call");

/** What a forwarding route leads to: at least its access rule. */
export interface RouteTarget {
  readonly access: UpstreamAccess;
}

type StatefulRequest = FastifyRequest & {
  [ROUTE]: RouteMatch<RouteTarget> | null;
  [CALLER]: CallerIdentity | null;
  [CALL]: unknown;
};

/** Declares the per-request slots; once, on the root instance, before any route or plugin. */
export function declareRequestState(app: FastifyInstance): void {
  app.decorateRequest(ROUTE as unknown as string, null);
  app.decorateRequest(CALLER as unknown as string, null);
  app.decorateRequest(CALL as unknown as string, null);
}

/** Records the forwarding route a request matched. */
export function setRoute(request: FastifyRequest, match: RouteMatch<RouteTarget>): void {
  (request as StatefulRequest)[ROUTE] = match;
}

/** The forwarding route the request matched; `undefined` for `/health`, `/ready`, CORS preflight, 404. */
export function routeOf<T extends RouteTarget = RouteTarget>(request: FastifyRequest): RouteMatch<T> | undefined {
  return ((request as StatefulRequest)[ROUTE] ?? undefined) as RouteMatch<T> | undefined;
}

/** The access rule of the matched route; `undefined` for `/health`, `/ready`, CORS preflight, 404. */
export function routeAccess(request: FastifyRequest): UpstreamAccess | undefined {
  return (request as StatefulRequest)[ROUTE]?.store.target.access;
}

/** The fastify route every forwarded request takes (see registerForwarding): the table matches within it. */
export const FORWARDING_URL = "/*";

/**
 * The route a request matched, as logs and traces name it: a forwarding
 * route's pattern (`/api/v1/users/:id`, `/backend/echo/*`), a gateway route's
 * (`/health`); `undefined` for a request no route takes.
 */
export function routePatternOf(request: FastifyRequest): string | undefined {
  const match = (request as StatefulRequest)[ROUTE];
  if (match !== null) return match.store.pattern;
  const url = request.routeOptions.url;
  return url === FORWARDING_URL ? undefined : url;
}

/** Records who is calling, once the token (or its absence) has been accepted. */
export function setCaller(request: FastifyRequest, identity: CallerIdentity): void {
  (request as StatefulRequest)[CALLER] = identity;
}

/** Who is calling; `undefined` before authentication or on gateway-owned routes. */
export function callerOf(request: FastifyRequest): CallerIdentity | undefined {
  return (request as StatefulRequest)[CALLER] ?? undefined;
}

/** Records the forwarded call under way (see upstream-forwarder.ts). */
export function setCall<T>(request: FastifyRequest, call: T): void {
  (request as StatefulRequest)[CALL] = call;
}

/** The forwarded call under way; only asked once {@link setCall} has run. */
export function callOf<T>(request: FastifyRequest): T {
  return (request as StatefulRequest)[CALL] as T;
}
