import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createGatewayAuth } from "../../src/server/index.js";
import { identityHeaderNames, type IdentityHeaderValues } from "../../src/signing/index.js";
import { signedHeadersV2 } from "../support/signed-headers.js";
import { bodyMutationArbs, chars, forgeriesRefused, honestRequestsAccepted, mutateBodyOrPath, pathChar, pathMutationArb, propertyServers, send } from "../support/property-servers.js";

// Signature v2 under random requests against real servers: an honest
// signature is always accepted once; any change to a signed part (any
// identity header, either content header, the raw target, the request id, …)
// is always refused; random gateway headers never get through and never
// break the server.

const SECRET = "property-v2-secret";
const NOW = 1_700_000_000;
const auth = createGatewayAuth({ hmacSecret: SECRET, now: () => NOW * 1000, exposeRejectionReason: true });
const servers = propertyServers(auth, (verified) => ({ ok: true, bytes: verified.body.length, identity: verified.identity }));

// A header value HTTP carries unchanged: inner spaces, `|`, `:`, digits and latin1 octets allowed.
const valueChar = chars("abz019 -_.|:;,=+/\"'~!@#$%^&*()[]{}<>?\u00e9\u00ff");
const valueArb = fc.string({ unit: valueChar, minLength: 1, maxLength: 24 }).map((s) => s.trim()).filter((s) => s !== "");
const maybe = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });

const requestArb = fc.record({
  method: fc.constantFrom("GET", "POST", "PUT", "PATCH", "DELETE"),
  path: fc.string({ unit: pathChar, maxLength: 40 }).map((p) => `/${p}`),
  body: fc.uint8Array({ maxLength: 2048 }),
  contentType: maybe(fc.constantFrom("application/json", "application/proto", "text/plain; charset=utf-8")),
  contentEncoding: maybe(fc.constantFrom("gzip", "br", "identity")),
  identity: fc.record({
    clientId: valueArb.filter((v) => !v.includes("|")),
    userId: maybe(valueArb.filter((v) => !v.includes("|"))),
    email: maybe(valueArb),
    firstName: maybe(valueArb),
    lastName: maybe(valueArb),
    scopes: fc.array(fc.string({ unit: chars("abcrwd:"), minLength: 1, maxLength: 8 }), { maxLength: 3 }),
    orgId: maybe(valueArb),
    role: maybe(valueArb),
  }),
});

type Req = {
  method: string;
  path: string;
  body: Uint8Array;
  contentType: string | undefined;
  contentEncoding: string | undefined;
  identity: IdentityHeaderValues;
};

function headersOf(r: Req, secret = SECRET): [string, string][] {
  return signedHeadersV2(secret, { ...r, ...definedContent(r) }, r.identity, NOW);
}

function definedContent(r: Req) {
  return {
    ...(r.contentType !== undefined && { contentType: r.contentType }),
    ...(r.contentEncoding !== undefined && { contentEncoding: r.contentEncoding }),
  };
}

const signedHeaderNames = [...identityHeaderNames, "content-type", "content-encoding"];

// A change to something v2 covers, applied after signing.
const mutationArb = fc.oneof(
  ...bodyMutationArbs,
  pathMutationArb,
  fc.record({ kind: fc.constant("path-query" as const) }),
  fc.record({ kind: fc.constant("method" as const), method: fc.constantFrom("GET", "POST", "PUT", "PATCH", "DELETE") }),
  fc.record({ kind: fc.constant("set" as const), name: fc.constantFrom(...signedHeaderNames), value: fc.oneof(valueArb, fc.constant("")) }),
  fc.record({ kind: fc.constant("remove" as const), name: fc.constantFrom(...signedHeaderNames) }),
  fc.record({ kind: fc.constant("unsigned" as const), name: fc.constantFrom("x-user-admin", "X_User_Scopes", "x-org_id", "X-User-Tenant"), value: valueArb }),
  fc.record({ kind: fc.constant("timestamp" as const), delta: fc.integer({ min: -5, max: 5 }).filter((d) => d !== 0) }),
  fc.record({ kind: fc.constant("request-id" as const), char: chars("ABCxyz019-_"), at: fc.integer({ min: 0, max: 21 }) }),
  fc.record({ kind: fc.constant("signature" as const), at: fc.integer({ min: 0, max: 63 }), char: chars("0123456789abcdef") }),
  fc.record({ kind: fc.constant("secret" as const), secret: fc.string({ minLength: 1, maxLength: 20 }).filter((s) => s !== SECRET) }),
);

type Mutation = typeof mutationArb extends fc.Arbitrary<infer M> ? M : never;

/** The mutated request and headers, or undefined when the mutation changes nothing that is signed. */
function mutate(r: Req, m: Mutation): { req: Req; headers: [string, string][] } | undefined {
  const headers = headersOf(r);
  const valueOf = (name: string) => headers.find(([n]) => n === name)?.[1];
  const set = (name: string, value: string) => headers.map(([n, v]): [string, string] => (n === name ? [n, value] : [n, v]));
  switch (m.kind) {
    case "body-byte":
    case "body-append":
    case "path-char": {
      const req = mutateBodyOrPath(r, m);
      return req && { req, headers };
    }
    case "path-query":
      // v1 signs `/a?` as `/a`; v2 signs the target exactly as sent.
      return { req: { ...r, path: r.path.endsWith("?") ? r.path.slice(0, -1) : `${r.path}?` }, headers };
    case "method":
      return m.method === r.method ? undefined : { req: { ...r, method: m.method }, headers };
    case "set": {
      const current = valueOf(m.name);
      if (current === m.value) return undefined;
      return { req: r, headers: current === undefined ? [...headers, [m.name, m.value]] : set(m.name, m.value) };
    }
    case "remove":
      return valueOf(m.name) === undefined ? undefined : { req: r, headers: headers.filter(([n]) => n !== m.name) };
    case "unsigned":
      return { req: r, headers: [...headers, [m.name, m.value]] };
    case "timestamp":
      return { req: r, headers: set("x-gateway-timestamp", String(NOW + m.delta)) };
    case "request-id": {
      const id = valueOf("x-gateway-request-id") as string;
      if (id[m.at] === m.char) return undefined;
      return { req: r, headers: set("x-gateway-request-id", id.slice(0, m.at) + m.char + id.slice(m.at + 1)) };
    }
    case "signature": {
      const [keyId, sig] = (valueOf("x-gateway-signature-v2") as string).split(":") as [string, string];
      if (sig[m.at] === m.char) return undefined;
      return { req: r, headers: set("x-gateway-signature-v2", `${keyId}:${sig.slice(0, m.at)}${m.char}${sig.slice(m.at + 1)}`) };
    }
    case "secret":
      return { req: r, headers: headersOf(r, m.secret) };
  }
}

describe("property: signature v2 behind a real server", () => {
  it("accepts every honestly signed request once, with the exact body and the whole identity", async () => {
    const honest = honestRequestsAccepted(servers, requestArb, (r) => headersOf(r), async (r, res, headers) => {
      const answer = JSON.parse(res.body) as { bytes: number; identity: Record<string, unknown> };
      expect(answer.bytes).toBe(r.body.length);
      expect(answer.identity).toMatchObject({ signature: "v2", clientId: r.identity.clientId });
      for (const field of ["email", "firstName", "lastName", "orgId", "role"] as const) {
        expect(answer.identity[field]).toBe(r.identity[field]);
      }
      const again = await send(servers.plain, r, headers);
      expect(JSON.parse(again.body)).toEqual({ message: "replayed_request" });
    });
    await fc.assert(honest, { numRuns: 150 });
  });

  it("never accepts a request changed after signing (plain Node and Connect)", async () => {
    await fc.assert(forgeriesRefused(servers, requestArb, mutationArb, mutate), { numRuns: 300 });
  });

  it("refuses random and repeated v2 headers without ever failing", async () => {
    const names = fc.constantFrom(
      "x-gateway-timestamp",
      "x-gateway-signature-v2",
      "x-gateway-request-id",
      "x-client-id",
      "x-user-id",
      "x-user-scopes",
      "x-org-id",
      "content-type",
    );
    const value = fc.oneof(
      fc.string({ unit: valueChar, maxLength: 90 }),
      fc.integer({ min: NOW - 100, max: NOW + 100 }).map(String),
      fc.constant(`k:${"0".repeat(64)}`),
      fc.constant("A".repeat(22)),
    );
    await fc.assert(
      fc.asyncProperty(requestArb, fc.array(fc.tuple(names, value), { maxLength: 10 }), async (r, extra) => {
        const res = await send(servers.plain, r, extra);
        expect(res.status).toBe(403);
        expect([
          "missing_gateway_headers",
          "malformed_gateway_headers",
          "unsigned_identity",
          "timestamp_out_of_window",
          "invalid_signature",
        ]).toContain((JSON.parse(res.body) as { message: string }).message);
      }),
      { numRuns: 150 },
    );
  });
});
