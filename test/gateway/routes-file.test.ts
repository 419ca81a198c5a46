import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parseDuration } from "../../packages/gateway/src/duration.js";
import { loadRoutesFile, parseRoutesFile, RoutesFileError } from "../../packages/gateway/src/index.js";

const seedFile = fileURLToPath(new URL("./fixtures/seed-routes.yaml", import.meta.url));
const exampleFile = fileURLToPath(new URL("../../examples/routes.yaml", import.meta.url));
const env = { AGENTS_SERVICE_URL: "http://agents:80", ECHO_URL: "http://127.0.0.1:9000" };

function problemsOf(text: string, environment: Record<string, string> = env): string[] {
  try {
    parseRoutesFile(text, { source: "routes.yaml", env: environment });
  } catch (e) {
    expect(e).toBeInstanceOf(RoutesFileError);
    return (e as Error).message.split("\n");
  }
  throw new Error("expected the routes file to be refused");
}

const route = (extra: string) => `version: "1.0"
routes:
  - path: /api/v1/agents
    method: GET
    proxy_upstream: $AGENTS_SERVICE_URL
${extra}`;

describe("routes.yaml", () => {
  it("loads the seed's own example unchanged", () => {
    const file = loadRoutesFile(seedFile, { env });
    expect(file.version).toBe("1.0");
    expect(file.publicPaths).toEqual(["/health", "/ready", "/api/v1/docs"]);
    expect(file.routes.map((r) => [r.method, r.path, r.upstream, r.scopes, r.cacheTtlMs, r.authRequired])).toEqual([
      ["GET", "/api/v1/agents", "http://agents:80", [], 60_000, true],
      ["POST", "/api/v1/agents", "http://agents:80", ["write:agents"], undefined, true],
      ["PUT", "/api/v1/agents/{id}", "http://agents:80", ["write:agents"], undefined, true],
    ]);
  });

  it("loads the local stack's examples/routes.yaml", () => {
    const file = loadRoutesFile(exampleFile, { env });
    expect(file.backends.map((b) => b.name)).toContain("echo");
  });

  it("reads backends, every option, ${VAR} expansion and an upstream base path", () => {
    const file = parseRoutesFile(
      `version: "1.0"
backends:
  echo:
    upstream: \${ECHO_URL}/v2/
    http2: true
    auth_required: true
    scopes: [echo:read]
    clients: [billing]
    timeout: 500ms
    description: Example service
`,
      { source: "inline", env },
    );
    expect(file.backends).toEqual([
      {
        name: "echo",
        upstream: "http://127.0.0.1:9000/v2",
        http2: true,
        authRequired: true,
        scopes: ["echo:read"],
        clients: ["billing"],
        timeoutMs: 500,
        description: "Example service",
        line: 3,
      },
    ]);
  });

  it("names file, line and problem for an unknown key", () => {
    expect(problemsOf(route("    cache: 60s"))).toEqual([
      'routes.yaml:6: unknown key "cache" in a route (allowed: path, method, proxy_upstream, auth_required, scopes, clients, cache_ttl, timeout, description, forward_authorization, hmac_secret)',
    ]);
  });

  it("refuses an upstream variable that is not set, naming the variable", () => {
    expect(problemsOf(route(""), {})).toEqual([
      "routes.yaml:5: proxy_upstream: environment variable AGENTS_SERVICE_URL is not set",
    ]);
  });

  it("refuses bad durations", () => {
    for (const bad of ["60", "1.5s", "0s", "5 m", "soon", "-1s"]) {
      expect(problemsOf(route(`    cache_ttl: ${bad}`))[0]).toMatch(/^routes\.yaml:6: cache_ttl .* is not a duration/);
    }
    expect(parseDuration("300s")).toBe(300_000);
    expect(parseDuration("5m")).toBe(300_000);
    expect(parseDuration("250ms")).toBe(250);
    expect(parseDuration("1h")).toBe(3_600_000);
  });

  it("refuses a duplicate route, whatever its placeholder names", () => {
    const text = `version: "1.0"
routes:
  - path: /a/{id}
    method: PUT
    proxy_upstream: http://a:1
  - path: /a/{key}
    method: PUT
    proxy_upstream: http://a:1
`;
    expect(problemsOf(text)).toEqual(["routes.yaml:6: duplicate route PUT /a/{key} (first declared at line 3)"]);
  });

  it("refuses a placeholder the router would read as something else", () => {
    for (const path of ["/files/{name}json", "/a/{x}{y}", "/a/{id}(x)"]) {
      expect(problemsOf(route("").replace("/api/v1/agents", path))).toEqual([
        `routes.yaml:3: path ${path}: a {placeholder} must be followed by /, ., - or the end of the path`,
      ]);
    }
    const ok = parseRoutesFile(route("").replace("/api/v1/agents", "/a/{id}.{format}/{b}-{c}/{d}"), { source: "r", env });
    expect(ok.routes[0]?.path).toBe("/a/{id}.{format}/{b}-{c}/{d}");
  });

  it("lists every problem at once, each with its line", () => {
    const text = `version: "2"
public_paths: /health
routes:
  - path: api/v1
    method: FETCH
    proxy_upstream: ftp://x
    auth_required: yes
    scopes: [ "two words" ]
    timeout: 10
  - method: GET
    path: /ok
    proxy_upstream: http://user:pw@host
  - path: /post
    method: POST
    proxy_upstream: http://x:1
    cache_ttl: 5m
  - path: /health
    method: GET
    proxy_upstream: http://x:1
backends:
  Bad/Name:
    upstream: http://x:1
  echo:
    upstream: http://x:1
    http2: "yes"
    extra: 1
`;
    const problems = problemsOf(text);
    expect(problems).toEqual([
      'routes.yaml:1: version must be "1.0"',
      "routes.yaml:2: public_paths must be a list",
      'routes.yaml:4: path "api/v1" must be an absolute path; placeholders are written {name}',
      'routes.yaml:5: method "FETCH" must be one of GET, HEAD, POST, PUT, PATCH, DELETE',
      "routes.yaml:6: proxy_upstream must be an http:// or https:// URL",
      "routes.yaml:7: auth_required must be true or false",
      'routes.yaml:8: scopes entry "two words" must be one word without spaces or quotes',
      'routes.yaml:9: timeout "10" is not a duration: write e.g. 500ms, 60s, 5m or 1h',
      "routes.yaml:12: proxy_upstream must not carry credentials",
      "routes.yaml:16: cache_ttl applies to GET routes only, not POST",
      "routes.yaml:17: path /health is reserved by the gateway (/health, /ready, /backend/…)",
      'routes.yaml:21: backend name "Bad/Name" must be one lower-case path segment (a-z, 0-9, ., _, -)',
      "routes.yaml:25: http2 must be true or false",
      expect.stringMatching(/^routes\.yaml:26: unknown key "extra" in backend echo/),
    ]);
  });

  it("refuses YAML syntax errors, missing keys, keys without values and empty files", () => {
    expect(problemsOf("version: [\n")[0]).toMatch(/^routes\.yaml:\d+: /);
    expect(problemsOf(`version: "1.0"\nroutes:\n  - path: /x\n    method:\n`)).toEqual([
      "routes.yaml:3: proxy_upstream is required",
      "routes.yaml:4: method has no value",
    ]);
    expect(problemsOf("")).toEqual(["routes.yaml:1: the file is empty: expected version, routes and/or backends"]);
    expect(problemsOf(`version: "1.0"\n`)).toEqual(["routes.yaml:1: nothing to serve: declare routes and/or backends"]);
  });

  it("makes public_paths routes public and refuses a contradiction", () => {
    const text = `version: "1.0"
public_paths: [/api/v1/docs]
routes:
  - path: /api/v1/docs
    method: GET
    proxy_upstream: http://docs:1
`;
    expect(parseRoutesFile(text, { source: "r", env }).routes[0]?.authRequired).toBe(false);
    expect(problemsOf(`${text}    auth_required: true\n`)).toEqual([
      "routes.yaml:4: /api/v1/docs is in public_paths but the route says auth_required: true",
    ]);
    // A public path opens every method on it: a scoped or client-restricted
    // route there would take anonymous callers unchecked, so it is refused.
    const scoped = `${text}  - path: /api/v1/docs
    method: POST
    proxy_upstream: http://docs:1
    scopes: [write]
  - path: /api/v1/docs
    method: DELETE
    proxy_upstream: http://docs:1
    clients: [admin-console]
`;
    expect(problemsOf(scoped)).toEqual([
      "routes.yaml:7: POST /api/v1/docs has scopes or clients, but /api/v1/docs is in public_paths, which opens every method on it without a token: take the path out of public_paths and give its public routes auth_required: false",
      "routes.yaml:11: DELETE /api/v1/docs has scopes or clients, but /api/v1/docs is in public_paths, which opens every method on it without a token: take the path out of public_paths and give its public routes auth_required: false",
    ]);
  });

  it("reads YAML 1.2 core types, and refuses duplicate keys, aliases, tags and second documents by line", () => {
    // Plain scalars take the core schema's types; quoted ones stay strings.
    expect(problemsOf(route(`    auth_required: "false"`))).toEqual(["routes.yaml:6: auth_required must be true or false"]);
    expect(problemsOf(route(`    auth_required: yes`))).toEqual(["routes.yaml:6: auth_required must be true or false"]);
    const typed = parseRoutesFile(route(`    auth_required: FALSE\n    timeout: "90s"`), { source: "routes.yaml", env });
    expect(typed.routes[0]).toMatchObject({ authRequired: false, timeoutMs: 90_000 });
    expect(parseRoutesFile(`version: 1.0\nbackends:\n  echo:\n    upstream: http://127.0.0.1:1\n`, { source: "r", env }).version).toBe("1.0");

    expect(problemsOf(route(`    method: POST`))).toEqual(["routes.yaml:6: method is given twice in a route"]);
    expect(problemsOf(`version: "1.0"\nx: &up http://127.0.0.1:1\nroutes:\n  - path: /a\n    method: GET\n    proxy_upstream: *up\n`)).toEqual([
      'routes.yaml:2: unknown key "x" in the top level (allowed: version, public_paths, routes, backends, cors)',
      "routes.yaml:6: an alias (*up) is not supported in a routes file: write the value itself",
    ]);
    expect(problemsOf(route(`    scopes: !!seq [read]`))).toEqual([
      "routes.yaml:6: a YAML tag (!!seq) is not supported in a routes file: write the value itself",
    ]);
    expect(problemsOf(route(`    timeout: !!str 5s`))).toEqual([
      "routes.yaml:6: a YAML tag (!!str) is not supported in a routes file: write the value itself",
    ]);
    expect(problemsOf(`${route("")}---\nversion: "1.0"\n`)).toEqual(["routes.yaml:7: expected one YAML document, found several (---)"]);
    expect(problemsOf("---\n# nothing yet\n")).toEqual(["routes.yaml:1: the file is empty: expected version, routes and/or backends"]);
    const twice = `version: "1.0"\nbackends:\n  echo:\n    upstream: http://127.0.0.1:1\n  echo:\n    upstream: http://127.0.0.1:2\n`;
    expect(problemsOf(twice)).toEqual(["routes.yaml:5: backend echo is declared twice (first at line 3)"]);
    expect(problemsOf(`version: "1.0"\nroutes:\n  - path: /a\n   method: GET\n`)).toEqual([expect.stringMatching(/^routes\.yaml:4: /)]);
  });

  it("refuses hostile YAML with a line, never a crash: deep nesting, NUL, tab indentation; CRLF keeps line numbers", () => {
    expect(problemsOf(`version: ${"[".repeat(5000)}${"]".repeat(5000)}\n`)).toEqual(["routes.yaml:1: nesting exceeded maxDepth (100)"]);
    expect(problemsOf(`version: "1.0"\u0000\n`)).toEqual([expect.stringMatching(/^routes\.yaml:1: .*null byte/)]);
    expect(problemsOf(`version: "1.0"\nbackends:\n\techo:\n    upstream: http://127.0.0.1:1\n`)).toEqual([
      expect.stringMatching(/^routes\.yaml:3: .*tab/),
    ]);
    const crlf = `version: "1.0"\r\nbackends:\r\n  echo:\r\n    upstream: http://127.0.0.1:1\r\n    timeout: soon\r\n`;
    expect(problemsOf(crlf)).toEqual(['routes.yaml:5: timeout "soon" is not a duration: write e.g. 500ms, 60s, 5m or 1h']);
  });

  it("names the file when it cannot be read", () => {
    expect(() => loadRoutesFile("/nonexistent/routes.yaml")).toThrow("/nonexistent/routes.yaml: cannot read the routes file (ENOENT)");
  });

  it("lists its problems in the file's order, whatever order the checks found them in", () => {
    const error = new RoutesFileError("routes.yaml", [
      { line: 6, message: "six" },
      { line: 5, message: "five" },
      { line: 0, message: "the file" },
      { line: 7, message: "seven" },
    ]);
    expect(error.message).toBe("routes.yaml: the file\nroutes.yaml:5: five\nroutes.yaml:6: six\nroutes.yaml:7: seven");
  });
});
