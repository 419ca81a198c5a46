import FindMyWay from "find-my-way";
import { RoutesFileError } from "connect-gateway/errors";
import { createRouteParameterGuard, type RouteParameterGuard } from "./route-parameters.js";

/** One entry of a {@link RouteTable}: a path pattern, the methods it takes, and what a match leads to. */
export interface RouteEntry<T> {
  /** The pattern as the router holds it (`/api/v1/users/:id`, `/backend/echo/*`): also what logs and traces name. */
  readonly pattern: string;
  readonly methods: readonly string[];
  /** What a request matching this entry is handed to. */
  readonly target: T;
  /** Its line in the routes file, for a conflict between two entries. */
  readonly line: number;
}

/** A request's match: the entry, and the values of its `:placeholders` (decoded) or `*`. */
export interface RouteMatch<T> {
  readonly store: RouteEntry<T>;
  readonly params: Readonly<Record<string, string | undefined>>;
}

// The router's own defaults are fastify's (a caller meets the same matching
// as on any fastify route): case-sensitive, a trailing or doubled slash is
// another path, a placeholder value of more than 100 characters matches
// nothing (404). The query string is split off and never parsed here.
const ROUTER_OPTIONS = {
  caseSensitive: true,
  ignoreTrailingSlash: false,
  ignoreDuplicateSlashes: false,
  maxParamLength: 100,
  useSemicolonDelimiter: false,
  querystringParser: () => NO_QUERY,
} as const;
const NO_QUERY = Object.freeze({});

// find-my-way wants a handler per route; the gateway dispatches on the store.
function unused(): void {}

/**
 * Every forwarding route of the gateway in one table, looked up once per
 * request by the gateway itself. The gateway registers a single fastify
 * route for all of them, not one per entry: fastify's per-route set-up
 * (hooks, schemas, encapsulation) grows with the square of the route count
 * at start-up, while this table is built in linear time — 10,000 routes
 * load in a fraction of a second and cost a request no more than 10.
 *
 * A match has passed the route parameter guard (see
 * {@link createRouteParameterGuard}): an empty `{id}`, or one that is a case
 * variant of a static sibling, is no match at all.
 */
export class RouteTable<T> {
  readonly #router = FindMyWay(ROUTER_OPTIONS);
  readonly #guard: RouteParameterGuard;

  /**
   * Throws a `RoutesFileError` (naming `source` and the entry's line) for two
   * entries the router cannot tell apart (`/users/:id` and `/users/:name`
   * for the same method).
   */
  constructor(entries: readonly RouteEntry<T>[], source: string) {
    for (const entry of entries) {
      try {
        this.#router.on(entry.methods as FindMyWay.HTTPMethod[], entry.pattern, unused, entry);
      } catch (e) {
        const why = e instanceof Error ? e.message : String(e);
        throw new RoutesFileError(source, [{ line: entry.line, message: `${entry.pattern} cannot be routed: ${why}` }]);
      }
    }
    this.#guard = createRouteParameterGuard(entries.map((entry) => entry.pattern));
  }

  /** The entry `method` and the request-target `url` (query included or not) match, if any. */
  find(method: string, url: string): RouteMatch<T> | undefined {
    const found = this.#router.find(method as FindMyWay.HTTPMethod, url) as RouteMatch<T> | null;
    if (found === null || this.#guard(found.store.pattern, found.params) !== undefined) return undefined;
    return found;
  }
}

/**
 * What a 404 for `url` says. Under `/backend/<name>/…` it asks whether the
 * name is one of the routes file's backends (the usual cause: a client's
 * service name that no backend has), echoing the name only when it is
 * spelled as a backend name can be; nothing else of the caller's is echoed.
 */
export function noRouteMessage(url: string): string {
  const backend = /^\/backend\/([a-z0-9][a-z0-9._-]{0,63})(?:[/?]|$)/.exec(url)?.[1];
  return backend === undefined
    ? "No route matches this request"
    : `No route matches this request (is "${backend}" a backend of the routes file? Connect calls go to /backend/<name>/<package.Service>/<Method>)`;
}
