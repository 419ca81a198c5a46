import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createGatewayAuth } from "../../src/server/index.js";
import { fullpathOf, type IdentityHeaderValues } from "../../src/signing/index.js";
import { rawRequest } from "./raw-request.js";
import { signedHeaders } from "./signed-headers.js";
import { propertyServers } from "./property-servers.js";
import type { RunningServer } from "./servers.js";

// Random requests against real servers: an honest signature is always
// accepted; any change to what was signed is always refused; random header
// garbage never gets through and never breaks the server.

const SECRET = "property-secret";
const NOW = 1_700_000_000;
const auth = createGatewayAuth({ hmacSecret: SECRET, now: () => NOW * 1000, exposeRejectionReason: true });
const servers = propertyServers(auth, (verified) => ({ ok: true, bytes: verified.body.length }));

const chars = (s: string) => fc.constantFrom(...s.split(""));
const pathChar = chars("abcxyzAZ019-._~%/=&?+!$'()*,;:@");
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

function send(server: RunningServer, r: Req, headers: [string, string][]) {
  return rawRequest(server.port, { method: r.method, path: r.path, headers, body: Buffer.from(r.body) });
}

// A change to something the signature covers, applied after signing.
const mutationArb = fc.oneof(
  fc.record({ kind: fc.constant("body-byte" as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant("body-append" as const), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant("path-char" as const), at: fc.nat(), char: pathChar }),
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
    case "body-byte": {
      if (r.body.length === 0) return undefined;
      const body = Uint8Array.from(r.body);
      const i = m.at % body.length;
      body[i] = (body[i] as number) ^ m.xor;
      return { req: { ...r, body }, headers };
    }
    case "body-append":
      return { req: { ...r, body: Uint8Array.from([...r.body, m.byte]) }, headers };
    case "path-char": {
      const i = 1 + (m.at % r.path.length);
      const path = r.path.slice(0, i) + m.char + r.path.slice(i + 1);
      if (fullpathOf(path) === fullpathOf(r.path)) return undefined;
      return { req: { ...r, path }, headers };
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
    await fc.assert(
      fc.asyncProperty(requestArb, async (r) => {
        const res = await send(servers.plain, r, headersOf(r));
        expect(res.status).toBe(200);
        expect(JSON.parse(res.body)).toEqual({ ok: true, bytes: r.body.length });
      }),
      { numRuns: 150 },
    );
  });

  it("never accepts a request changed after signing (plain Node and Connect)", async () => {
    await fc.assert(
      fc.asyncProperty(requestArb, mutationArb, fc.boolean(), async (r, m, toConnect) => {
        const forged = mutate(r, m);
        fc.pre(forged !== undefined);
        const { req, headers } = forged as NonNullable<typeof forged>;
        const server = toConnect ? servers.connect : servers.plain;
        const res = await send(server, req, headers);
        // Connect may refuse the path or method itself (404/405/415) before
        // verification; what matters is that nothing forged is ever served.
        expect(res.status).not.toBe(200);
        if (!toConnect) expect(res.status).toBe(403);
      }),
      { numRuns: 200 },
    );
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
