import { readFileSync } from "node:fs";
import { RoutesFileError, type RoutesFileProblem } from "connect-gateway/errors";
import { httpUrlProblem, isScopeToken, type GatewayEnv, type HttpUrlProblem } from "connect-gateway/protocol";
import { exposableHeaderProblem } from "./cors.js";
import { parseDuration } from "./duration.js";
import { readYamlTree, type YamlMap, type YamlNode, type YamlScalar, type YamlSeq, type YamlTree } from "./yaml-tree.js";

// RoutesFileError lives with every other configuration error of the project
// (connect-gateway/errors); the gateway re-exports it.
export { RoutesFileError, type RoutesFileProblem };

/** The HTTP methods a route may declare (`OPTIONS` belongs to CORS preflight). */
export const routeMethods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] as const;

/** One of {@link routeMethods}. */
export type RouteMethod = (typeof routeMethods)[number];

/** Who may call an upstream, and for how long the gateway waits for it. */
export interface UpstreamAccess {
  /** A valid bearer token is required (`auth_required`, default `true`). */
  readonly authRequired: boolean;
  /** Every one of these scopes must be in the token (`scopes`). */
  readonly scopes: readonly string[];
  /** When set, only these OAuth2 client ids may call (`clients`); others get `FORBIDDEN`. */
  readonly clients?: readonly string[] | undefined;
  /** Upstream time to first byte, and longest silence while streaming (`timeout`, default 30s). */
  readonly timeoutMs: number;
  /** `description`, for humans. */
  readonly description?: string | undefined;
  /**
   * `forward_authorization: true`: the caller's `Authorization` header goes
   * to the upstream as sent. By default (unset, or `false`) it is removed:
   * the gateway has checked the token and vouches for the caller with its
   * signed identity headers, and an upstream that never sees the bearer
   * token cannot leak or replay it. Opt in only for an upstream that must
   * act with the caller's own token (call another API on their behalf).
   */
  readonly forwardAuthorization?: boolean | undefined;
  /**
   * `hmac_secret: $VAR`: the name of the environment variable holding the
   * secret this upstream's requests are signed with, instead of the
   * gateway's `hmacSecret`. One secret per service binds each signature to
   * the service it was made for: with one secret for all, a request signed
   * for one service verifies at every other (a caller on the hop could
   * replay it there, once per service).
   */
  readonly hmacSecretEnv?: string | undefined;
  /**
   * The value of {@link hmacSecretEnv}, read when the file is loaded. Not
   * enumerable: a spread, JSON or log of the route never shows it.
   */
  readonly hmacSecret?: string | undefined;
  /** Where it is declared in the routes file, for messages. */
  readonly line: number;
}

/** A `routes[]` entry of routes.yaml: one method on one path, forwarded unchanged. */
export interface GatewayRoute extends UpstreamAccess {
  /** The path as written, `{param}` placeholders included. */
  readonly path: string;
  readonly method: RouteMethod;
  /** `proxy_upstream` after `$ENV` expansion: an `http(s)://` URL. */
  readonly upstream: string;
  /**
   * `upstream`, parsed once when the file is read (one URL for all the
   * entries with the same upstream: read it, do not change it). Not
   * enumerable: a spread or JSON of the route shows the file's own fields only.
   */
  readonly upstreamUrl: URL;
  /** `cache_ttl`: GET answers are cached per caller for this long. */
  readonly cacheTtlMs?: number | undefined;
}

/**
 * A `backends.<name>` entry: every method under `/backend/<name>/…` goes to
 * `upstream` with the `/backend/<name>` prefix stripped. This is how Connect
 * clients (`createGatewayTransport`) reach a service.
 */
export interface GatewayBackend extends UpstreamAccess {
  /** The single path segment after `/backend/`. */
  readonly name: string;
  /** `upstream` after `$ENV` expansion: an `http(s)://` URL, maybe with a path prefix. */
  readonly upstream: string;
  /**
   * `upstream`, parsed once when the file is read (one URL for all the
   * entries with the same upstream: read it, do not change it). Not
   * enumerable: a spread or JSON of the backend shows the file's own fields only.
   */
  readonly upstreamUrl: URL;
  /**
   * `http2: true`: the upstream speaks cleartext HTTP/2 (prior knowledge),
   * which gRPC needs for its trailers. Default HTTP/1.1.
   */
  readonly http2: boolean;
}

/** A loaded and validated `routes.yaml`. */
export interface RoutesFile {
  /** The file name (or label) the routes came from. */
  readonly source: string;
  /** The file's `version` (e.g. `"1.0"`). */
  readonly version: string;
  /** Paths that never need a token (`public_paths`), exact matches. */
  readonly publicPaths: readonly string[];
  /** The REST routes (`routes:`), in file order. */
  readonly routes: readonly GatewayRoute[];
  /** The Connect backends (`backends:`), served under `/backend/<name>/`. */
  readonly backends: readonly GatewayBackend[];
  /** The `cors:` block, when there is one; `createGateway`'s CORS options win over each of its fields. */
  readonly cors?: RoutesFileCors | undefined;
}

/**
 * The top-level `cors:` block of routes.yaml: which browser pages may call
 * the gateway. Each field is optional; `createGateway`'s options (and so the
 * `CORS_*` environment variables of `connect-gateway serve`) win over it.
 */
export interface RoutesFileCors {
  /** `origins`: a list of origins (`https://app.example.com`), or `"*"` (`true`) for any. */
  readonly origins?: readonly string[] | true | undefined;
  /** `max_age`: a duration (`2h`, `600s`) or a whole number of seconds; `Access-Control-Max-Age`. */
  readonly maxAgeSeconds?: number | undefined;
  /** `expose_headers`: header names pages may read, besides the ones always exposed. */
  readonly exposeHeaders?: readonly string[] | undefined;
  /** `credentials`: `Access-Control-Allow-Credentials: true` (not with `origins: "*"`). */
  readonly credentials?: boolean | undefined;
  /** Where the block is, for messages. */
  readonly line: number;
}

/** Options of {@link parseRoutesFile} and {@link loadRoutesFile}. */
export interface RoutesFileOptions {
  /** Where `$VAR` upstreams come from. Default `process.env`. */
  readonly env?: GatewayEnv;
}

/** Reads and validates a `routes.yaml` file; throws {@link RoutesFileError}. */
export function loadRoutesFile(file: string, options: RoutesFileOptions = {}): RoutesFile {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? "unreadable";
    throw new RoutesFileError(file, [{ line: 0, message: `cannot read the routes file (${why})` }]);
  }
  return parseRoutesFile(text, { ...options, source: file });
}

/** Validates the text of a `routes.yaml`; throws {@link RoutesFileError} naming `source`. */
export function parseRoutesFile(
  text: string,
  options: RoutesFileOptions & { readonly source: string },
): RoutesFile {
  const tree = readYamlTree(text);
  const reader = new Reader(tree, options.env ?? process.env);
  if (tree.error !== undefined) reader.fail(tree.error.offset, tree.error.message);
  const file = reader.problems.length === 0 ? readTop(reader, tree.root, options.source) : undefined;
  if (file === undefined || reader.problems.length > 0) {
    throw new RoutesFileError(options.source, reader.problems);
  }
  return file;
}

const TOP_KEYS = ["version", "public_paths", "routes", "backends", "cors"];
const CORS_KEYS = ["origins", "max_age", "expose_headers", "credentials"];
const ROUTE_KEYS = [
  "path",
  "method",
  "proxy_upstream",
  "auth_required",
  "scopes",
  "clients",
  "cache_ttl",
  "timeout",
  "description",
  "forward_authorization",
  "hmac_secret",
];
const BACKEND_KEYS = [
  "upstream",
  "http2",
  "auth_required",
  "scopes",
  "clients",
  "timeout",
  "description",
  "forward_authorization",
  "hmac_secret",
];
const DEFAULT_TIMEOUT_MS = 30_000;
/**
 * The gateway's own endpoints: no route may be one, and a route whose
 * pattern would match one (`/{page}`) never takes a request for it.
 */
export const RESERVED_PATHS: readonly string[] = ["/health", "/ready"];
const PATH = /^(\/([A-Za-z0-9._~!$&'()+,;=@-]|%[0-9A-Fa-f]{2}|\{[A-Za-z_][A-Za-z0-9_]*\})*)+$/;
const PLACEHOLDER_END = /^(?:[^}]|\}(?=[/.-]|$))*$/;
const BACKEND_NAME = /^[a-z0-9][a-z0-9._-]*$/;
const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g;

/** The values of one YAML map's keys; `empty` holds the keys written without a value. */
class Fields {
  readonly #values = new Map<string, YamlNode>();
  #empty: string[] | undefined;

  get(name: string): YamlNode | undefined {
    return this.#values.get(name);
  }

  has(name: string): boolean {
    return this.#values.has(name);
  }

  isEmpty(name: string): boolean {
    return this.#empty?.includes(name) === true;
  }

  set(name: string, value: YamlNode): void {
    this.#values.set(name, value);
  }

  setEmpty(name: string): void {
    (this.#empty ??= []).push(name);
  }
}

function readTop(reader: Reader, root: YamlNode | null, source: string): RoutesFile | undefined {
  // No document, or one that is only `---` or comments (its root is then an empty scalar).
  if (root === null || (isScalar(root) && root.value === null)) {
    reader.fail(0, "the file is empty: expected version, routes and/or backends");
    return undefined;
  }
  const top = reader.fields(root, TOP_KEYS, "the top level");
  if (top === undefined) return undefined;
  const version = readVersion(reader, top, root);
  const publicPaths = readPublicPaths(reader, top.get("public_paths"));
  const routes = readRoutes(reader, top.get("routes"), publicPaths);
  const backends = readBackends(reader, top.get("backends"));
  const corsNode = top.get("cors");
  const cors = corsNode === undefined ? undefined : readCors(reader, corsNode);
  if (!top.has("routes") && !top.has("backends")) {
    reader.fail(root, "nothing to serve: declare routes and/or backends");
  }
  return { source, version, publicPaths, routes, backends, ...(cors !== undefined && { cors }) };
}

function readVersion(reader: Reader, top: Fields, root: YamlNode): string {
  const node = top.get("version");
  if (node === undefined) {
    reader.fail(root, 'version is missing: add version: "1.0"');
    return "";
  }
  const value = isScalar(node) ? String(node.value) : "";
  if (value !== "1.0" && value !== "1") reader.fail(node, 'version must be "1.0"');
  return "1.0";
}

function readCors(reader: Reader, node: YamlNode): RoutesFileCors | undefined {
  const fields = reader.fields(node, CORS_KEYS, "cors");
  if (fields === undefined) return undefined;
  const originsNode = fields.get("origins");
  const origins = originsNode === undefined ? undefined : readCorsOrigins(reader, originsNode);
  const maxAgeNode = fields.get("max_age");
  const maxAgeSeconds = maxAgeNode === undefined ? undefined : readMaxAge(reader, maxAgeNode);
  const exposeNode = fields.get("expose_headers");
  const exposeHeaders =
    exposeNode === undefined
      ? undefined
      : reader.list(exposeNode, "cors.expose_headers").flatMap((item) => {
          const name = reader.string(item, "an entry of cors.expose_headers");
          const problem = name === undefined ? undefined : exposableHeaderProblem(name);
          if (problem !== undefined) reader.fail(item, `cors.expose_headers: ${problem}`);
          return name === undefined || problem !== undefined ? [] : [name];
        });
  const credentialsNode = fields.get("credentials");
  const credentials = credentialsNode === undefined ? undefined : reader.boolean(credentialsNode, "cors.credentials");
  if (credentials === true && origins === true) {
    reader.fail(credentialsNode!, 'cors.credentials: true cannot be combined with origins: "*": list the origins');
  }
  return { origins, maxAgeSeconds, exposeHeaders, credentials, line: reader.line(node) };
}

function readCorsOrigins(reader: Reader, node: YamlNode): readonly string[] | true | undefined {
  if (isScalar(node) && node.value === "*") return true;
  if (!isSeq(node)) {
    reader.fail(node, 'cors.origins must be a list of origins such as https://app.example.com, or "*" for any');
    return undefined;
  }
  return reader.list(node, "cors.origins").flatMap((item) => {
    const origin = reader.string(item, "an entry of cors.origins");
    if (origin === undefined) return [];
    if (origin === "*") {
      reader.fail(item, 'cors.origins: write "*" on its own (origins: "*"), not in a list');
      return [];
    }
    if (!URL.canParse(origin) || !/^https?:$/.test(new URL(origin).protocol) || new URL(origin).origin !== origin) {
      reader.fail(item, `cors.origins entry ${JSON.stringify(origin)} must be an origin such as https://app.example.com (no path, no trailing /)`);
      return [];
    }
    return [origin];
  });
}

function readMaxAge(reader: Reader, node: YamlNode): number | undefined {
  const value = isScalar(node) ? node.value : undefined;
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) return value;
  const ms = typeof value === "string" ? parseDuration(value) : undefined;
  if (ms !== undefined && ms % 1000 === 0) return ms / 1000;
  reader.fail(node, `cors.max_age ${JSON.stringify(String(value ?? ""))} must be a whole number of seconds or a duration such as 600s or 2h`);
  return undefined;
}

function readPublicPaths(reader: Reader, node: YamlNode | null | undefined): string[] {
  if (node === undefined || node === null) return [];
  return reader.list(node, "public_paths").flatMap((item) => {
    const path = reader.string(item, "a public path");
    if (path !== undefined && !PATH.test(path)) {
      reader.fail(item, `public path ${JSON.stringify(path)} must be an absolute path like /api/v1/docs`);
      return [];
    }
    return path === undefined ? [] : [path];
  });
}

function readRoutes(
  reader: Reader,
  node: YamlNode | null | undefined,
  publicPaths: readonly string[],
): GatewayRoute[] {
  if (node === undefined || node === null) return [];
  const seen = new Map<string, number>();
  const routes: GatewayRoute[] = [];
  for (const item of reader.list(node, "routes")) {
    const route = readRoute(reader, item, publicPaths);
    if (route === undefined) continue;
    const key = `${route.method} ${route.path.replace(/\{[^}]*\}/g, "{}")}`;
    const first = seen.get(key);
    if (first !== undefined) {
      reader.fail(item, `duplicate route ${route.method} ${route.path} (first declared at line ${first})`);
      continue;
    }
    seen.set(key, route.line);
    routes.push(route);
  }
  return routes;
}

function readRoute(
  reader: Reader,
  node: YamlNode,
  publicPaths: readonly string[],
): GatewayRoute | undefined {
  const fields = reader.fields(node, ROUTE_KEYS, "a route");
  if (fields === undefined) return undefined;
  const before = reader.problems.length;
  const path = reader.required(fields, node, "path", (n) => readPath(reader, n));
  const method = reader.required(fields, node, "method", (n) => readMethod(reader, n));
  const upstream = reader.required(fields, node, "proxy_upstream", (n) => reader.upstream(n, "proxy_upstream"));
  const access = readAccess(reader, fields, node);
  const cacheNode = fields.get("cache_ttl");
  const cacheTtlMs = cacheNode === undefined ? undefined : reader.duration(cacheNode, "cache_ttl");
  if (path === undefined || method === undefined || upstream === undefined || access === undefined) {
    return undefined;
  }
  if (cacheNode !== undefined && method !== "GET") {
    reader.fail(cacheNode, `cache_ttl applies to GET routes only, not ${method}`);
  }
  // public_paths names a path, not a method: every route on it takes callers
  // without a token, so a scope or client list there would never be checked
  // (an anonymous caller would get what a low-scope token is refused).
  const isPublic = publicPaths.includes(path);
  if (isPublic && fields.has("auth_required") && access.authRequired) {
    reader.fail(node, `${path} is in public_paths but the route says auth_required: true`);
  } else if (isPublic && (access.scopes.length > 0 || access.clients !== undefined)) {
    reader.fail(
      node,
      `${method} ${path} has scopes or clients, but ${path} is in public_paths, which opens every method on it without a token: ` +
        "take the path out of public_paths and give its public routes auth_required: false",
    );
  }
  if (reader.problems.length > before) return undefined;
  return withSecrets(reader, {
    ...access,
    authRequired: access.authRequired && !isPublic,
    path,
    method,
    upstream,
    cacheTtlMs,
  });
}

function readBackends(reader: Reader, node: YamlNode | null | undefined): GatewayBackend[] {
  if (node === undefined || node === null) return [];
  if (!isMap(node)) {
    reader.fail(node, "backends must be a map of service name to { upstream, … }");
    return [];
  }
  const backends: GatewayBackend[] = [];
  const seen = new Map<string, number>();
  for (let i = 0; i < node.keys.length; i++) {
    const keyNode = node.keys[i] as YamlNode;
    const valueNode = node.values[i] as YamlNode;
    const name = reader.string(keyNode, "a backend name");
    if (name === undefined) continue;
    const first = seen.get(name);
    if (first !== undefined) {
      reader.fail(keyNode, `backend ${name} is declared twice (first at line ${first})`);
      continue;
    }
    seen.set(name, reader.line(keyNode));
    if (!BACKEND_NAME.test(name)) {
      reader.fail(keyNode, `backend name ${JSON.stringify(name)} must be one lower-case path segment (a-z, 0-9, ., _, -)`);
      continue;
    }
    const fields = reader.fields(valueNode, BACKEND_KEYS, `backend ${name}`);
    if (fields === undefined) continue;
    const upstream = reader.required(fields, valueNode, "upstream", (n) => reader.upstream(n, "upstream"));
    const http2Node = fields.get("http2");
    const http2 = http2Node === undefined ? false : reader.boolean(http2Node, "http2");
    const access = readAccess(reader, fields, valueNode);
    if (upstream === undefined || access === undefined || http2 === undefined) continue;
    backends.push(withSecrets(reader, { ...access, name, upstream, http2, line: reader.line(keyNode) }));
  }
  return backends;
}

function readAccess(reader: Reader, fields: Fields, node: YamlNode): UpstreamAccess | undefined {
  const before = reader.problems.length;
  const authNode = fields.get("auth_required");
  const authRequired = authNode === undefined ? true : reader.boolean(authNode, "auth_required");
  const scopesNode = fields.get("scopes");
  const scopes = scopesNode === undefined ? [] : readScopes(reader, scopesNode, "scopes");
  const clientsNode = fields.get("clients");
  const clients = clientsNode === undefined ? undefined : readScopes(reader, clientsNode, "clients");
  const timeoutNode = fields.get("timeout");
  const timeoutMs = timeoutNode === undefined ? DEFAULT_TIMEOUT_MS : reader.duration(timeoutNode, "timeout");
  const descriptionNode = fields.get("description");
  const description = descriptionNode === undefined ? undefined : reader.string(descriptionNode, "description");
  const forwardNode = fields.get("forward_authorization");
  const forwardAuthorization = forwardNode === undefined ? undefined : reader.boolean(forwardNode, "forward_authorization");
  const secretNode = fields.get("hmac_secret");
  const hmacSecretEnv = secretNode === undefined ? undefined : reader.secretVariable(secretNode, "hmac_secret");
  if (authRequired === false && (scopes.length > 0 || clients !== undefined)) {
    reader.fail(authNode ?? node, "auth_required: false cannot be combined with scopes or clients");
  }
  if (reader.problems.length > before || authRequired === undefined || timeoutMs === undefined) {
    return undefined;
  }
  return { authRequired, scopes, clients, timeoutMs, description, forwardAuthorization, hmacSecretEnv, line: reader.line(node) };
}

function readPath(reader: Reader, node: YamlNode): string | undefined {
  const path = reader.string(node, "path");
  if (path === undefined) return undefined;
  if (!PATH.test(path)) {
    reader.fail(node, `path ${JSON.stringify(path)} must be an absolute path; placeholders are written {name}`);
    return undefined;
  }
  if (!PLACEHOLDER_END.test(path)) {
    // The router reads `{id}json` as one parameter named `idjson`, matching any segment.
    reader.fail(node, `path ${path}: a {placeholder} must be followed by /, ., - or the end of the path`);
    return undefined;
  }
  if (RESERVED_PATHS.includes(path) || path === "/backend" || path.startsWith("/backend/")) {
    reader.fail(node, `path ${path} is reserved by the gateway (/health, /ready, /backend/…)`);
    return undefined;
  }
  return path;
}

function readMethod(reader: Reader, node: YamlNode): RouteMethod | undefined {
  const method = reader.string(node, "method");
  if (method === undefined) return undefined;
  if (!(routeMethods as readonly string[]).includes(method)) {
    reader.fail(node, `method ${JSON.stringify(method)} must be one of ${routeMethods.join(", ")}`);
    return undefined;
  }
  return method as RouteMethod;
}

function readScopes(reader: Reader, node: YamlNode, what: string): string[] {
  return reader.list(node, what).flatMap((item) => {
    const scope = reader.string(item, `an entry of ${what}`);
    // Scopes are RFC 6749 §3.3 scope-tokens, see https://www.rfc-editor.org/rfc/rfc6749#section-3.3
    if (scope !== undefined && !isScopeToken(scope)) {
      reader.fail(item, `${what} entry ${JSON.stringify(scope)} must be one word without spaces or quotes`);
      return [];
    }
    return scope === undefined ? [] : [scope];
  });
}

/** Turns YAML nodes into values, collecting every problem with its line. */
class Reader {
  readonly problems: RoutesFileProblem[] = [];
  readonly #upstreams = new Map<string, string>();
  readonly #urls = new Map<string, URL>();

  constructor(
    private readonly tree: YamlTree,
    readonly env: GatewayEnv,
  ) {}

  line(at: YamlNode | number): number {
    return this.tree.line(typeof at === "number" ? at : at.offset);
  }

  /** Records a problem; for an alias or a tagged node, the problem is that it is one. */
  fail(at: YamlNode | number, message: string): void {
    const because =
      typeof at !== "number" && at.kind === "unsupported"
        ? `${at.what} is not supported in a routes file: write the value itself`
        : message;
    this.problems.push({ line: this.line(at), message: because });
  }

  fields(node: YamlNode, allowed: readonly string[], what: string): Fields | undefined {
    if (!isMap(node)) {
      this.fail(node, `${what} must be a map with keys ${allowed.join(", ")}`);
      return undefined;
    }
    const fields = new Fields();
    for (let i = 0; i < node.keys.length; i++) {
      const key = node.keys[i] as YamlNode;
      const value = node.values[i] as YamlNode;
      const name = isScalar(key) ? String(key.value) : "";
      if (!allowed.includes(name)) {
        this.fail(key, `unknown key ${JSON.stringify(name)} in ${what} (allowed: ${allowed.join(", ")})`);
        continue;
      }
      if (fields.has(name) || fields.isEmpty(name)) {
        this.fail(key, `${name} is given twice in ${what}`);
        continue;
      }
      if (isScalar(value) && value.value === null) {
        this.fail(key, `${name} has no value`);
        fields.setEmpty(name);
        continue;
      }
      fields.set(name, value);
    }
    return fields;
  }

  required<T>(fields: Fields, owner: YamlNode, key: string, read: (node: YamlNode) => T | undefined) {
    const value = fields.get(key);
    if (value === undefined) {
      if (!fields.isEmpty(key)) this.fail(owner, `${key} is required`);
      return undefined;
    }
    return read(value);
  }

  list(node: YamlNode, what: string): YamlNode[] {
    if (!isSeq(node)) {
      this.fail(node, `${what} must be a list`);
      return [];
    }
    return [...node.items];
  }

  string(node: YamlNode, what: string): string | undefined {
    if (isScalar(node) && typeof node.value === "string" && node.value !== "") return node.value;
    this.fail(node, `${what} must be a non-empty string`);
    return undefined;
  }

  boolean(node: YamlNode, what: string): boolean | undefined {
    if (isScalar(node) && typeof node.value === "boolean") return node.value;
    this.fail(node, `${what} must be true or false`);
    return undefined;
  }

  duration(node: YamlNode, what: string): number | undefined {
    const text = isScalar(node) ? String(node.value) : "";
    const ms = parseDuration(text);
    if (ms === undefined) {
      this.fail(node, `${what} ${JSON.stringify(text)} is not a duration: write e.g. 500ms, 60s, 5m or 1h`);
    }
    return ms;
  }

  /** Expands `$VAR` / `${VAR}` and checks the result is an http(s) URL. */
  upstream(node: YamlNode, what: string): string | undefined {
    const raw = this.string(node, what);
    if (raw === undefined) return undefined;
    // Routes files repeat a few upstreams many times: each spelling is expanded and checked once.
    const known = this.#upstreams.get(raw);
    if (known !== undefined) return known;
    const missing: string[] = [];
    const expanded = raw.replace(ENV_REF, (_, braced: string | undefined, bare: string | undefined) => {
      const name = (braced ?? bare) as string;
      const value = this.env[name];
      if (value === undefined || value === "") missing.push(name);
      return value ?? "";
    });
    if (missing.length > 0) {
      this.fail(node, `${what}: environment variable ${missing.join(", ")} is not set`);
      return undefined;
    }
    // The expanded value is not echoed: an upstream URL may come from a secret store.
    const { problem } = httpUrlProblem(expanded);
    if (problem !== undefined) {
      const text = URL.canParse(expanded) ? UPSTREAM_PROBLEMS[problem] : "is not a URL: expected http(s)://host:port";
      this.fail(node, `${what} ${raw === expanded ? "" : `(${raw}) `}${text}`);
      return undefined;
    }
    const upstream = expanded.replace(/\/+$/, "");
    this.#upstreams.set(raw, upstream);
    return upstream;
  }

  /**
   * `hmac_secret`: the name of an environment variable, written `$NAME` or
   * `${NAME}` — never the secret itself, which would then sit in a file
   * that is read, copied and committed — set to at least 16 characters.
   * The value is never echoed.
   */
  secretVariable(node: YamlNode, what: string): string | undefined {
    const raw = this.string(node, what);
    if (raw === undefined) return undefined;
    const name = /^\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))$/.exec(raw);
    if (name === null) {
      this.fail(node, `${what} must name an environment variable ($NAME) that holds the secret, never the secret itself`);
      return undefined;
    }
    const variable = (name[1] ?? name[2]) as string;
    const value = this.env[variable];
    if (value === undefined || value === "") {
      this.fail(node, `${what}: environment variable ${variable} is not set`);
      return undefined;
    }
    if (value.length < 16) {
      this.fail(node, `${what}: environment variable ${variable} must hold at least 16 characters`);
      return undefined;
    }
    return variable;
  }

  /** `upstream` parsed, one URL per distinct upstream. */
  upstreamUrl(upstream: string): URL {
    let url = this.#urls.get(upstream);
    if (url === undefined) this.#urls.set(upstream, (url = new URL(upstream)));
    return url;
  }
}

// The URL rules are connect-gateway's (httpUrlProblem); the wording is the routes file's.
const UPSTREAM_PROBLEMS: Record<HttpUrlProblem, string> = {
  invalid: "must be an http:// or https:// URL",
  credentials: "must not carry credentials",
  query: "must not have a query or fragment",
};

function isScalar(node: YamlNode): node is YamlScalar {
  return node.kind === "scalar";
}

function isMap(node: YamlNode): node is YamlMap {
  return node.kind === "map";
}

function isSeq(node: YamlNode): node is YamlSeq {
  return node.kind === "seq";
}

/**
 * Adds `upstreamUrl` (see {@link withUpstreamUrl}) and, with `hmac_secret`,
 * the secret itself, both as non-enumerable properties.
 */
function withSecrets<T extends { readonly upstream: string; readonly hmacSecretEnv?: string | undefined }>(
  reader: Reader,
  entry: T,
): T & { readonly upstreamUrl: URL } {
  const withUrl = withUpstreamUrl(reader, entry);
  if (entry.hmacSecretEnv !== undefined) {
    Object.defineProperty(withUrl, "hmacSecret", { value: reader.env[entry.hmacSecretEnv], enumerable: false });
  }
  return withUrl;
}

/** Adds `upstreamUrl`, the parsed `upstream` (checked by the reader), as a non-enumerable property. */
function withUpstreamUrl<T extends { readonly upstream: string }>(reader: Reader, entry: T): T & { readonly upstreamUrl: URL } {
  return Object.defineProperty(entry, "upstreamUrl", { value: reader.upstreamUrl(entry.upstream), enumerable: false }) as T & {
    readonly upstreamUrl: URL;
  };
}
