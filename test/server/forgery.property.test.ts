import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createGatewayAuth } from "../../src/server/index.js";
import { fullpathOf, type IdentityHeaderValues } from "../../src/signing/index.js";
import { signedHeaders } from "../support/signed-headers.js";
import { bodyMutationArbs, chars, forgeriesRefused, honestRequestsAccepted, mutateBodyOrPath, pathChar, pathMutationArb, propertyServers, send } from "../support/property-servers.js";

// Random requests against real servers: an honest signature is always
// accepted; any change to what was signed is always refused; random header
// garbage never gets through and never breaks the server.

const SECRET = "property-secret";
const NOW = 1_700_000_000;
const auth = createGatewayAuth({ hmacSecret: SECRET, now: () => NOW * 1000, exposeRejectionReason: true });
const servers = propertyServers(auth, (verified) => ({ ok: true, bytes: verified.body.length }));

const idChar = chars("abcdefghijklmnopqrstuvwxyz0123456789-_.@ ");
// HTTP strips a header value's surrounding whitespace, so an honest gateway's
// ids never have any (see the report: the signer could refuse them).
const idArb = fc.string({ unit: idChar, minLength: 1, maxLength: 20 }).map((s) => s.trim()).filter((s) => s !== "");
const headerChar = chars("abz019 -_.|:;,=+/\\\"'~!@#$%^&*()[]{}<>?`\t\u00e9\u00ff");

const requestArb = fc.record({
  method: fc.constantFrom("GET", "POST", "PUT", "PATCH", "DELETE"),
  path: fc.string({ unit: pathChar, maxLength: 40 }).map((p) => `/${p}`),
  body: fc.uint8Array({ maxLength: 2048 }),
  identity: fc.record({
    clientId: idArb,
    userId: fc.option(idArb, { nil: undefined }),
    scopes: fc.array(fc.string({ unit: chars("abcrwd:"), minLength: 1, maxLength: 8 }), { maxLength: 3 }),
  }),
});

type Req = { method: string; path: string; body: Uint8Array; identity: IdentityHeaderValues };

function headersOf(r: Req, secret = SECRET): [string, string][] {
  return signedHeaders(secret, r, r.identity, NOW);
}

// A change to something the signature covers, applied after signing.
const mutationArb = fc.oneof(
  ...bodyMutationArbs,
  pathMutationArb,
  fc.record({ kind: fc.constant("method" as const), method: fc.constantFrom("GET", "POST", "PUT", "PATCH", "DELETE") }),
  fc.record({ kind: fc.constant("header" as const), name: fc.constantFrom("x-client-id", "x-user-id"), value: idArb }),
  fc.record({ kind: fc.constant("timestamp" as const), delta: fc.integer({ min: -5, max: 5 }).filter((d) => d !== 0) }),
  fc.record({ kind: fc.constant("signature" as const), at: fc.integer({ min: 0, max: 63 }), char: chars("0123456789abcdef") }),
  fc.record({ kind: fc.constant("secret" as const), secret: fc.string({ minLength: 1, maxLength: 20 }).filter((s) => s !== SECRET) }),
);

type Mutation = typeof mutationArb extends fc.Arbitrary<infer M> ? M : never;

/** The mutated request and headers, or undefined when the mutation changes nothing that is signed. */
function mutate(r: Req, m: Mutation): { req: Req; headers: [string, string][] } | undefined {
  const headers = headersOf(r);
  const set = (name: string, value: string) => headers.map(([n, v]): [string, string] => (n === name ? [n, value] : [n, v]));
  switch (m.kind) {
    case "body-byte":
    case "body-append":
    case "path-char": {
      // v1 signs the path as fullpathOf() reads it.
      const req = mutateBodyOrPath(r, m, (a, b) => fullpathOf(a) === fullpathOf(b));
      return req && { req, headers };
    }
    case "method":
      return m.method === r.method ? undefined : { req: { ...r, method: m.method }, headers };
    case "header": {
      const current = m.name === "x-client-id" ? r.identity.clientId : (r.identity.userId ?? "");
      if (m.value === current || (m.name === "x-user-id" && m.value.trim() === "" && current === "")) return undefined;
      const present = headers.some(([n]) => n === m.name);
      return { req: r, headers: present ? set(m.name, m.value) : [...headers, [m.name, m.value]] };
    }
    case "timestamp":
      return { req: r, headers: set("x-gateway-timestamp", String(NOW + m.delta)) };
    case "signature": {
      const sig = headers.find(([n]) => n === "x-gateway-signature")?.[1] as string;
      if (sig[m.at] === m.char) return undefined;
      return { req: r, headers: set("x-gateway-signature", sig.slice(0, m.at) + m.char + sig.slice(m.at + 1)) };
    }
    case "secret":
      return { req: r, headers: headersOf(r, m.secret) };
  }
}

describe("property: the verifier behind a real server", () => {
  it("accepts every honestly signed request, with the exact body", async () => {
    const honest = honestRequestsAccepted(servers, requestArb, (r) => headersOf(r), (r, res) => {
      expect(JSON.parse(res.body)).toEqual({ ok: true, bytes: r.body.length });
    });
    await fc.assert(honest, { numRuns: 150 });
  });

  it("never accepts a request changed after signing (plain Node and Connect)", async () => {
    await fc.assert(forgeriesRefused(servers, requestArb, mutationArb, mutate), { numRuns: 200 });
  });

  it("refuses random and repeated gateway headers without ever failing", async () => {
    const names = fc.constantFrom("x-gateway-timestamp", "x-gateway-signature", "x-client-id", "x-user-id", "x-user-scopes", "x-user-email", "X-Gateway-Timestamp");
    const value = fc.oneof(fc.string({ unit: headerChar, maxLength: 70 }), fc.integer({ min: NOW - 100, max: NOW + 100 }).map(String), fc.constant("0".repeat(64)));
    await fc.assert(
      fc.asyncProperty(requestArb, fc.array(fc.tuple(names, value), { maxLength: 8 }), async (r, extra) => {
        const res = await send(servers.plain, r, extra);
        expect(res.status).toBe(403);
        expect(["missing_gateway_headers", "malformed_gateway_headers", "timestamp_out_of_window", "invalid_signature"]).toContain(
          (JSON.parse(res.body) as { message: string }).message,
        );
      }),
      { numRuns: 150 },
    );
  });
});
