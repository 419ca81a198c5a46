/**
 * Why a `{placeholder}` value is refused, or `undefined` when it may be
 * forwarded.
 *
 * - `empty`: `/users/` is not `/users/{id}` with an empty id: a backend that
 *   routes it elsewhere (its list route, say) would run under the access rule
 *   of the `{id}` route.
 * - `shadows_static`: the router matches static segments exactly, so
 *   `/users/ADMIN` misses an admin-only `/users/admin` route and lands on a
 *   read-scoped `/users/{id}`. A backend that reads paths leniently would
 *   then serve its admin action under the weaker rule: one that routes
 *   case-insensitively (`ADMIN`, `adm%C4%B1n` with a dotless ı, full-width
 *   letters), cuts a segment at `;` (servlet containers' path parameters:
 *   `admin;x`), reads a format suffix (`admin.json`), trims whitespace or
 *   trailing dots (`admin%20`, `admin.`, as Windows servers and some
 *   frameworks do), or decodes an escaped `?`, `#` or `%` before routing
 *   (`admin%3F`, `%2561dmin`); see leniently. A value
 *   that reads as a static sibling of that `{placeholder}` in any of these
 *   ways, without being it, is refused; the exact spelling reached the
 *   static route in the first place (or, for another method, is that route's
 *   path under this route's rule, as the routes file says).
 * - `encoded_slash`: the router decodes a value after matching, so
 *   `/files/7%2Facl` is `/files/{id}` with the id `7/acl`. A backend that
 *   decodes `%2F` before routing (some proxies and frameworks do) would
 *   serve `/files/7/acl` — another route, or one the gateway does not
 *   expose at all — under the `{id}` route's rule. No `{placeholder}` value
 *   holds a `/`; a path that needs one goes through a backend's
 *   `/backend/<name>/…` prefix, where every path beneath is under one rule.
 */
export type RouteParameterProblem = "empty" | "shadows_static" | "encoded_slash";

/** Checks one matched request's parameters against the route it matched. */
export type RouteParameterGuard = (
  routePattern: string,
  params: Readonly<Record<string, string | undefined>>,
) => RouteParameterProblem | undefined;

interface PatternRule {
  /** The segments with a parameter that compete with static segments at their position. */
  readonly contested: readonly ContestedSegment[];
  readonly names: readonly string[];
}

interface ContestedSegment {
  /** The segment as the router holds it: `:id`, `:name.json`, `:a-:b`. */
  readonly pattern: string;
  /** The static segments at its position, as written. */
  readonly exact: ReadonlySet<string>;
  /** The same, as a lenient backend reads them (see leniently). */
  readonly lenient: ReadonlySet<string>;
}

const ANY_PARAMETER = /:([A-Za-z_][A-Za-z0-9_]*)/g;

/**
 * Builds the guard for a set of route patterns as the router holds them
 * (`/api/v1/users/:id`). Start-up builds a tree of their segments, in time
 * linear in the routes file (not every pattern against every other); a
 * request costs one map lookup and a comparison per parameter, and the first
 * request of a pattern also works out its rule from the tree.
 *
 * Services behind the gateway must still route case-sensitively and
 * strictly (no empty segments, no case folding): this guard only stops the
 * variants of paths the routes file names.
 */
export function createRouteParameterGuard(patterns: readonly string[]): RouteParameterGuard {
  const root = new SegmentNode();
  for (const pattern of new Set(patterns)) root.add(pattern.split("/"));
  // A pattern's rule is worked out when a request first matches it: start-up
  // stays one pass over the patterns, and a routes file of 10,000 entries
  // pays nothing for the entries nobody calls.
  const rules = new Map<string, PatternRule | null>();
  return (routePattern, params) => {
    let rule = rules.get(routePattern);
    if (rule === undefined) rules.set(routePattern, (rule = ruleOf(root, routePattern)));
    if (rule === null) return undefined;
    for (const name of rule.names) {
      const value = params[name];
      if (value === undefined || value === "") return "empty";
      if (value.includes("/") || value.includes("\\")) return "encoded_slash";
    }
    for (const segment of rule.contested) {
      // The request's segment, put back together from the parameters the router read.
      const value = segment.pattern.replace(ANY_PARAMETER, (_, name: string) => params[name] as string);
      if (!segment.exact.has(value) && readsAsOneOf(value, segment.lenient)) return "shadows_static";
    }
    return undefined;
  };
}

/** What a request matching `pattern` is checked against; `null` for a pattern without parameters. */
function ruleOf(root: SegmentNode, pattern: string): PatternRule | null {
  const names = [...pattern.matchAll(ANY_PARAMETER)].map((m) => m[1] as string);
  if (names.length === 0) return null;
  const segments = pattern.split("/");
  const contested: ContestedSegment[] = [];
  segments.forEach((segment, index) => {
    if (!segment.includes(":")) return;
    const exact = new Set<string>();
    for (const node of root.reachable(segments, index)) {
      for (const candidate of node.staticChildren()) exact.add(candidate);
    }
    // A static sibling is read as leniently as the request: `admin.json` and
    // `ADMIN.json` both read as `admin` to a backend with format suffixes.
    if (exact.size > 0) contested.push({ pattern: segment, exact, lenient: new Set([...exact].map(leniently)) });
  });
  return { contested, names };
}

/**
 * A `{placeholder}` value as a lenient backend may read it, lower-cased:
 * - compatibility forms folded (NFKC: a full-width `ａdmin` is `admin`), and
 *   case folded as Java's and .NET's case-insensitive comparisons do, one
 *   character at a time (a dotless `ı` or a long `ſ` matches `i` or `s`);
 * - without invisible characters (a zero-width space, a soft hyphen);
 * - cut at the first `;` (servlet path parameters), `?` or `#` (a backend
 *   that decodes the path before routing reads an escaped one as the end of
 *   the path), `\` (read as `/` by Windows servers), and at the first `.`
 *   (a format suffix: Rails' `(.:format)` and Spring's suffix matching serve
 *   `admin.json` as `admin`);
 * - without surrounding whitespace (trimmed, as Windows servers and some
 *   frameworks do).
 */
function leniently(value: string): string {
  const folded = ASCII.test(value) ? value.toLowerCase() : foldCase(value.normalize("NFKC").replace(INVISIBLE, ""));
  const cut = folded.search(CUT_AT);
  return (cut === -1 ? folded : folded.slice(0, cut)).trim();
}

/**
 * True when a lenient backend may read `value` as one of `lenient` (see
 * leniently); a value that still holds a `%` is also read decoded once more
 * (a backend that decodes twice reads `%2561dmin` as `admin`).
 */
function readsAsOneOf(value: string, lenient: ReadonlySet<string>): boolean {
  if (lenient.has(leniently(value))) return true;
  if (!value.includes("%")) return false;
  try {
    return lenient.has(leniently(decodeURIComponent(value)));
  } catch {
    return false;
  }
}

const ASCII = /^[\x00-\x7f]*$/;

/**
 * Where a lenient backend stops reading a segment: a path parameter, a
 * query, a fragment, a format suffix, a backslash (which Windows servers
 * read as `/`).
 */
const CUT_AT = /[;?#.\\]/;

/** Characters with no appearance that some normalisers drop: soft hyphen, zero-width space and joiners, word joiner, BOM. */
const INVISIBLE = /[\u00ad\u200b-\u200f\u2060\ufeff]/g;

/** Lower case, each character on its own as a simple case mapping does (`ı` → `i`, `ſ` → `s`, `İ` → `i`). */
function foldCase(value: string): string {
  let out = "";
  for (const c of value) {
    const upper = c.toUpperCase();
    if (upper.length === 1 && upper.charCodeAt(0) < 0x80) out += upper.toLowerCase();
    else if (c === "\u0130") out += "i";
    else out += c.toLowerCase();
  }
  return out;
}

/**
 * The route patterns' segments as a tree: a pattern's static siblings at a
 * parameter's position are the static segments of the nodes reachable along
 * its prefix, where a segment reaches the child of the same spelling and
 * every parameter child (either side's parameter could match the same
 * request segment), and a parameter reaches every child.
 */
class SegmentNode {
  // Most nodes of a large routes file have one child or none (each route's
  // own tail): the first child is held inline, a Map made for the second.
  // An empty Map per leaf, then one per single child, were most of the
  // tree's memory and of its share of start-up.
  #onlySegment: string | undefined;
  #onlyChild: SegmentNode | undefined;
  #children: Map<string, SegmentNode> | undefined;
  // The children whose segment holds a parameter (`:id`, `:name.json`), also among the others.
  #parameterChildren: SegmentNode[] | undefined;

  add(segments: readonly string[]): void {
    let node: SegmentNode = this;
    for (const segment of segments) {
      let child = node.#child(segment);
      if (child === undefined) {
        child = new SegmentNode();
        if (node.#children !== undefined) node.#children.set(segment, child);
        else if (node.#onlyChild === undefined) [node.#onlySegment, node.#onlyChild] = [segment, child];
        else {
          node.#children = new Map([[node.#onlySegment as string, node.#onlyChild], [segment, child]]);
          [node.#onlySegment, node.#onlyChild] = [undefined, undefined];
        }
        if (segment.includes(":")) (node.#parameterChildren ??= []).push(child);
      }
      node = child;
    }
  }

  #child(segment: string): SegmentNode | undefined {
    return this.#children !== undefined ? this.#children.get(segment) : this.#onlySegment === segment ? this.#onlyChild : undefined;
  }

  #entries(): Iterable<[string, SegmentNode]> {
    if (this.#children !== undefined) return this.#children.entries();
    return this.#onlyChild === undefined ? [] : [[this.#onlySegment as string, this.#onlyChild]];
  }

  /** The nodes at depth `depth` that a pattern with these first `depth` segments could share a request with. */
  reachable(segments: readonly string[], depth: number): SegmentNode[] {
    let level: SegmentNode[] = [this];
    for (let i = 0; i < depth; i++) {
      const segment = segments[i] as string;
      const next = new Set<SegmentNode>();
      for (const node of level) {
        if (segment.includes(":")) {
          for (const [, child] of node.#entries()) next.add(child);
          continue;
        }
        const same = node.#child(segment);
        if (same !== undefined) next.add(same);
        for (const child of node.#parameterChildren ?? []) next.add(child);
      }
      level = [...next];
    }
    return level;
  }

  /** The spellings of the static children: no parameter, no wildcard. */
  *staticChildren(): Iterable<string> {
    for (const [spelling] of this.#entries()) {
      if (!spelling.includes(":") && spelling !== "*") yield spelling;
    }
  }
}
