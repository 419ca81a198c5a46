import { request as httpRequest } from "node:http";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gateway } from "../../packages/gateway/src/index.js";
import { createRouteParameterGuard } from "../../packages/gateway/src/route-parameters.js";
import { closeInTurn, route, routesFileText, seedToken, startGatewayWithBackend, type RecordingBackend } from "../support/gateway.js";

describe("createRouteParameterGuard", () => {
  const guard = createRouteParameterGuard(["/api/v1/users/admin", "/api/v1/users/:id", "/api/v1/orgs/:org/users/:id", "/api/v1/orgs/:org/users/me"]);

  it("lets ordinary values and the exact static spelling through", () => {
    expect(guard("/api/v1/users/:id", { id: "42" })).toBeUndefined();
    expect(guard("/api/v1/users/:id", { id: "admin" })).toBeUndefined();
    expect(guard("/api/v1/orgs/:org/users/:id", { org: "o1", id: "42" })).toBeUndefined();
  });

  it("refuses an empty value and a case variant of a static sibling", () => {
    expect(guard("/api/v1/users/:id", { id: "" })).toBe("empty");
    expect(guard("/api/v1/users/:id", { id: "ADMIN" })).toBe("shadows_static");
    expect(guard("/api/v1/users/:id", { id: "aDmIn" })).toBe("shadows_static");
    // The sibling is found behind a parameter of the prefix too.
    expect(guard("/api/v1/orgs/:org/users/:id", { org: "o1", id: "ME" })).toBe("shadows_static");
  });

  it("refuses a value holding a slash (an encoded %2F the router decoded), in any parameter", () => {
    expect(guard("/api/v1/users/:id", { id: "42/roles" })).toBe("encoded_slash");
    expect(guard("/api/v1/users/:id", { id: "/" })).toBe("encoded_slash");
    expect(guard("/api/v1/orgs/:org/users/:id", { org: "o1/users/me", id: "42" })).toBe("encoded_slash");
    expect(guard("/api/v1/users/:id", { id: "42%2Froles" })).toBeUndefined(); // a literal %2F (sent as %252F) is data
  });

  it("refuses a value that a lenient backend reads as a static sibling: a path parameter, whitespace, trailing dots", () => {
    for (const id of ["admin;x", "admin;", "ADMIN;jsessionid=1", "admin ", " admin", "admin\t", "admin.", "admin..", "Admin. ", "admin .;x"]) {
      expect([id, guard("/api/v1/users/:id", { id })]).toEqual([id, "shadows_static"]);
    }
    for (const id of ["admins", "admin-x", "x;admin", "ad min", "42;x", "42."]) {
      expect([id, guard("/api/v1/users/:id", { id })]).toEqual([id, undefined]);
    }
  });

  it("refuses a format suffix, an escaped ?, # or %, compatibility forms and case mappings a Java or .NET backend folds", () => {
    const refused = [
      "admin.json", // Rails' (.:format), Spring's suffix matching
      "Admin.XML",
      "admin.v2.json",
      "admin?", // sent as admin%3F: a backend decoding before routing ends the path there
      "admin#x",
      "%61dmin", // sent as %2561dmin: a backend decoding twice
      "%41DMIN",
      "adm\u0131n", // a dotless ı: Java's equalsIgnoreCase folds it to i
      "\uff41dmin", // a full-width a: NFKC folds it to a
      "\uff21\uff24\uff2d\uff29\uff2e",
      "admin\u200b", // a zero-width space some normalisers drop
      "ad\u00admin", // a soft hyphen
    ];
    for (const id of refused) {
      expect([id, guard("/api/v1/users/:id", { id })]).toEqual([id, "shadows_static"]);
    }
    // Sent as admin%5Cx: a Windows server reads admin/x — a separator, like an encoded slash.
    expect(guard("/api/v1/users/:id", { id: "admin\\x" })).toBe("encoded_slash");
    expect(guard("/api/v1/users/:id", { id: "x\\..\\admin" })).toBe("encoded_slash");
    expect(guard("/api/v1/orgs/:org/users/:id", { org: "o1", id: "me" })).toBeUndefined(); // the exact spelling
    expect(guard("/api/v1/orgs/:org/users/:id", { org: "o1", id: "ME.json" })).toBe("shadows_static");
    for (const id of ["42.json", "admins.json", "x.admin", "%zz", "%2542", "caf\u00e9", "\u00e0dmin", "adm1n"]) {
      expect([id, guard("/api/v1/users/:id", { id })]).toEqual([id, undefined]);
    }
  });
});

describe("createRouteParameterGuard: static siblings with a suffix, parameters inside a segment", () => {
  const guard = createRouteParameterGuard(["/users/admin.json", "/users/:id", "/reports/admin.json", "/reports/:name.json", "/keys/root-key", "/keys/:a-:b"]);

  it("reads a static sibling as leniently as the value: ADMIN.json and admin both read as admin.json's admin", () => {
    for (const id of ["ADMIN.json", "Admin.JSON", "admin.JSON", "admin.json ", "admin.json;x", "admin", "ADMIN", "admin.xml"]) {
      expect([id, guard("/users/:id", { id })]).toEqual([id, "shadows_static"]);
    }
    expect(guard("/users/:id", { id: "admin.json" })).toBeUndefined(); // the exact spelling
    expect(guard("/users/:id", { id: "42.json" })).toBeUndefined();
  });

  it("checks a segment that holds a parameter and text as a whole: {name}.json, {a}-{b}", () => {
    for (const name of ["ADMIN", "Admin", "admin;x", "admin ", "%41dmin"]) {
      expect([name, guard("/reports/:name.json", { name })]).toEqual([name, "shadows_static"]);
    }
    expect(guard("/reports/:name.json", { name: "q3" })).toBeUndefined();
    expect(guard("/keys/:a-:b", { a: "ROOT", b: "KEY" })).toBe("shadows_static");
    expect(guard("/keys/:a-:b", { a: "Root", b: "key" })).toBe("shadows_static");
    expect(guard("/keys/:a-:b", { a: "root", b: "key" })).toBeUndefined(); // the exact spelling
    expect(guard("/keys/:a-:b", { a: "user", b: "7" })).toBeUndefined();
    expect(guard("/keys/:a-:b", { a: "", b: "7" })).toBe("empty");
  });
});

/**
 * The guard's rule stated directly, every pattern against every other (what
 * the guard computed before it used a tree): the static segments at a
 * parameter's position of the patterns whose earlier segments could match
 * the same request (equal, or either one a parameter).
 */
function referenceSiblings(patterns: readonly string[], pattern: string, index: number): Set<string> {
  const segments = pattern.split("/");
  const statics = new Set<string>();
  for (const other of patterns.map((p) => p.split("/"))) {
    const candidate = other[index];
    if (candidate === undefined || candidate.includes(":") || candidate === "*") continue;
    const samePrefix = segments
      .slice(0, index)
      .every((x, i) => other[i] !== undefined && (x === other[i] || x.startsWith(":") || (other[i] as string).startsWith(":")));
    if (samePrefix) statics.add(candidate);
  }
  return statics;
}

/** How a lenient backend reads a segment (ASCII, no escapes), stated directly: up to a `;`, `?`, `#`, `.` or `\\`, trimmed of whitespace, any case. */
function lenientReading(value: string): string {
  return (value.split(/[;?#.\\]/)[0] ?? "").trim().toLowerCase();
}

describe("createRouteParameterGuard, against the rule stated directly", () => {
  const segment = fc.constantFrom("a", "b", "B", "admin", "ADMIN", "admin.json", "me", ":id", ":org", "*");
  const pattern = fc.array(segment, { minLength: 1, maxLength: 4 }).map((segments) => `/${segments.join("/")}`);

  it("refuses exactly the lenient readings of the statics the rule names, empty values and slashes", () => {
    fc.assert(
      fc.property(fc.array(pattern, { minLength: 1, maxLength: 8 }), fc.constantFrom("a", "A", "b", "ADMIN", "Admin", "me", "ME", "x", "", "a/b", "ADMIN/x", "admin;x", "me.", " b ", "admin.json", "B?x", "a#", "x.a", "me\\x"), (patterns, value) => {
        const guard = createRouteParameterGuard(patterns);
        for (const p of patterns) {
          const segments = p.split("/");
          segments.forEach((s, index) => {
            if (!/^:[A-Za-z_][A-Za-z0-9_]*$/.test(s)) return;
            const name = s.slice(1);
            // Every other parameter gets a harmless value; this one is under test.
            const params: Record<string, string> = {};
            for (const other of segments) if (other.startsWith(":")) params[other.slice(1)] = "zz-harmless";
            params[name] = value;
            const statics = referenceSiblings(patterns, p, index);
            const lenient = new Set([...statics].map(lenientReading));
            // Two parameters of one name in one pattern share their value: skip that shape.
            if (segments.filter((x) => x === s).length > 1) return;
            const expected =
              value === "" ? "empty" : value.includes("/") || value.includes("\\") ? "encoded_slash" : lenient.has(lenientReading(value)) && !statics.has(value) ? "shadows_static" : undefined;
            expect(guard(p, params)).toBe(expected);
          });
        }
      }),
      { numRuns: 300 },
    );
  });
});

const yaml = routesFileText({
  routes: [
    route("GET", "/api/v1/users/admin", { scopes: ["admin"] }),
    route("GET", "/api/v1/users/{id}", { scopes: ["read"] }),
    route("GET", "/api/v1/files/admin.json", { scopes: ["admin"] }),
    route("GET", "/api/v1/files/{id}", { scopes: ["read"] }),
    route("GET", "/api/v1/reports/admin.json", { scopes: ["admin"] }),
    route("GET", "/api/v1/reports/{name}.json", { scopes: ["read"] }),
  ],
});

function get(url: string, target: string, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url + target, { headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.path = target; // exactly as given, not normalised
    req.setTimeout(5_000, () => req.destroy(new Error("no answer within 5 s")));
    req.on("error", reject);
    req.end();
  });
}

describe("route parameters through the gateway", () => {
  let backend: RecordingBackend;
  let gateway: Gateway;
  let readOnly: string;

  beforeAll(async () => {
    ({ backend, gateway } = await startGatewayWithBackend(yaml));
    readOnly = await seedToken({ scopes: ["read"] });
  });
  afterAll(() => closeInTurn(gateway, backend));

  it("a read-scoped caller reaches {id}, not the admin route", async () => {
    expect(await get(gateway.url, "/api/v1/users/42", readOnly)).toBe(200);
    expect(await get(gateway.url, "/api/v1/users/admin", readOnly)).toBe(403);
    expect(await get(gateway.url, "/api/v1/files/42.json", readOnly)).toBe(200);
    expect(await get(gateway.url, "/api/v1/files/admin.json", readOnly)).toBe(403);
    expect(await get(gateway.url, "/api/v1/reports/q3.json", readOnly)).toBe(200);
    expect(await get(gateway.url, "/api/v1/reports/admin.json", readOnly)).toBe(403);
  });

  it.each([
    "/api/v1/users/ADMIN",
    "/api/v1/users/Admin",
    "/api/v1/users/%41DMIN",
    "/api/v1/users/",
    "/api/v1/users/42%2Fdelete",
    "/api/v1/users/42%2fdelete",
    "/api/v1/users/%2F",
    "/api/v1/users/admin;x",
    "/api/v1/users/admin%3Bx",
    "/api/v1/users/admin.",
    "/api/v1/users/admin%2e",
    "/api/v1/users/admin%20",
    "/api/v1/users/%20admin",
    "/api/v1/users/admin.json",
    "/api/v1/users/admin%2Ejson",
    "/api/v1/users/admin%3F",
    "/api/v1/users/admin%23",
    "/api/v1/users/%2561dmin",
    "/api/v1/users/adm%C4%B1n",
    "/api/v1/users/%EF%BD%81dmin",
    "/api/v1/users/admin%5C",
    "/api/v1/users/admin%E2%80%8B",
    "/api/v1/users/x%5C..%5Cadmin",
    // A static sibling with a suffix, and a parameter that shares its segment with text.
    "/api/v1/files/ADMIN.json",
    "/api/v1/files/Admin.JSON",
    "/api/v1/files/admin.json%20",
    "/api/v1/files/admin.json;x",
    "/api/v1/reports/ADMIN.json",
    "/api/v1/reports/admin;x.json",
    "/api/v1/reports/admin%20.json",
  ])(
    "%s is refused (404) and never forwarded",
    async (target) => {
      const before = backend.requests.length;
      expect(await get(gateway.url, target, readOnly)).toBe(404);
      expect(backend.requests.length).toBe(before);
    },
  );
});
