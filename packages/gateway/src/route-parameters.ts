/**
 * Why a `{placeholder}` value is refused, or `undefined` when it may be
 * forwarded.
 *
 * - `empty`: `/users/` is not `/users/{id}` with an empty id: a backend that
 *   routes it elsewhere (its list route, say) would run under the access rule
 *   of the `{id}` route.
 * - `shadows_static`: the router matches static segments case-sensitively,
 *   so `/users/ADMIN` misses an admin-only `/users/admin` route and lands on
 *   a read-scoped `/users/{id}`. A backend that routes case-insensitively
 *   would then serve its admin action under the weaker rule. A value equal to
 *   a static sibling of that `{placeholder}` in another case is refused; the
 *   exact spelling reached the static route in the first place (or, for
 *   another method, is that route's path under this route's rule, as the
 *   routes file says).
 */
export type RouteParameterProblem = "empty" | "shadows_static";

/** Checks one matched request's parameters against the route it matched. */
export type RouteParameterGuard = (
  routePattern: string,
  params: Readonly<Record<string, string | undefined>>,
) => RouteParameterProblem | undefined;

interface PatternRule {
  /** Parameter name → the static segments its position competes with, as written and lower-cased. */
  readonly siblings: ReadonlyMap<string, { readonly exact: ReadonlySet<string>; readonly folded: ReadonlySet<string> }>;
  readonly names: readonly string[];
}

const WHOLE_PARAMETER = /^:([A-Za-z_][A-Za-z0-9_]*)$/;
const ANY_PARAMETER = /:([A-Za-z_][A-Za-z0-9_]*)/g;

/**
 * Builds the guard for a set of route patterns as the router holds them
 * (`/api/v1/users/:id`). Built once at start-up: a request costs one map
 * lookup and a comparison per parameter.
 *
 * Services behind the gateway must still route case-sensitively and
 * strictly (no empty segments, no case folding): this guard only stops the
 * variants of paths the routes file names.
 */
export function createRouteParameterGuard(patterns: readonly string[]): RouteParameterGuard {
  const split = [...new Set(patterns)].map((pattern) => ({ pattern, segments: pattern.split("/") }));
  const rules = new Map<string, PatternRule>();
  for (const { pattern, segments } of split) {
    const siblings = new Map<string, { exact: Set<string>; folded: Set<string> }>();
    segments.forEach((segment, index) => {
      const name = WHOLE_PARAMETER.exec(segment)?.[1];
      if (name === undefined) return;
      const exact = new Set<string>();
      for (const other of split) {
        const candidate = other.segments[index];
        if (candidate === undefined || candidate.includes(":") || candidate === "*") continue;
        if (!samePrefix(segments, other.segments, index)) continue;
        exact.add(candidate);
      }
      siblings.set(name, { exact, folded: new Set([...exact].map((s) => s.toLowerCase())) });
    });
    const names = [...pattern.matchAll(ANY_PARAMETER)].map((m) => m[1] as string);
    if (names.length > 0) rules.set(pattern, { siblings, names });
  }
  return (routePattern, params) => {
    const rule = rules.get(routePattern);
    if (rule === undefined) return undefined;
    for (const name of rule.names) {
      const value = params[name];
      if (value === undefined || value === "") return "empty";
      const statics = rule.siblings.get(name);
      if (statics?.folded.has(value.toLowerCase()) && !statics.exact.has(value)) return "shadows_static";
    }
    return undefined;
  };
}

// The segments before `index` could match the same request: equal, or either
// one a parameter.
function samePrefix(a: readonly string[], b: readonly string[], index: number): boolean {
  for (let i = 0; i < index; i++) {
    const x = a[i] as string;
    const y = b[i];
    if (y === undefined) return false;
    if (x !== y && !x.startsWith(":") && !y.startsWith(":")) return false;
  }
  return true;
}
