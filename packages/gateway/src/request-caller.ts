import type { FastifyRequest } from "fastify";
import type { CallerIdentity } from "./identity-claims.js";
import type { UpstreamAccess } from "./routes-file.js";

// Per-request state lives beside the request, not on it: no declaration
// merging into fastify's types for every other user of fastify.
const callers = new WeakMap<FastifyRequest, CallerIdentity>();

/** Records who is calling, once the token (or its absence) has been accepted. */
export function setCaller(request: FastifyRequest, identity: CallerIdentity): void {
  callers.set(request, identity);
}

/** Who is calling; `undefined` before authentication or on gateway-owned routes. */
export function callerOf(request: FastifyRequest): CallerIdentity | undefined {
  return callers.get(request);
}

/** What the gateway attaches to every forwarding route (fastify route `config`). */
export interface ForwardingRouteConfig {
  readonly access: UpstreamAccess;
}

/** The access rule of the matched route; `undefined` for `/health`, `/ready`, CORS preflight, 404. */
export function routeAccess(request: FastifyRequest): UpstreamAccess | undefined {
  return (request.routeOptions.config as Partial<ForwardingRouteConfig> | undefined)?.access;
}
