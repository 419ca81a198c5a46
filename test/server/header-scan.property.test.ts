import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { resolveGatewayAuthConfig } from "../../src/server/gateway-auth-options.js";
import { checkRequestHead } from "../../src/server/request-check.js";
import {
  checkGatewayHeaders,
  gatewaySignatureHeaders,
  identityHeaderNames,
  readGatewayHeaders,
} from "../../src/signing/index.js";

// The verifier reads the gateway headers in one pass over `rawHeaders`, into
// fixed slots, lower-casing only the names that start with x or c. Whatever
// headers a request adds — any case, repeated or not, gateway-controlled,
// identity-looking, content ones — it must come to the same verdict as the
// public map-based reader (`readGatewayHeaders`) says it should: a repeat is
// malformed, an unsigned identity header is refused under v2, and the
// identity headers and the declared Content-Length are the first occurrences.

const NOW = 1_700_000_000;
const signed = gatewaySignatureHeaders(
  "scan-secret",
  { method: "POST", requestTarget: "/a", body: "{}", contentType: "application/json" },
  { clientId: "web-app", userId: "sub-42", scopes: ["read", "write"] },
  { nowSeconds: NOW, requestId: "AAAAAAAAAAAAAAAAAAAAAA" },
);
const base = ["Host", "example", "Content-Type", "application/json", ...Object.entries(signed).flat()];

const recase = (name: string) =>
  fc.array(fc.boolean(), { minLength: name.length, maxLength: name.length }).map((upper) =>
    [...name].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join(""),
  );

const names = fc.constantFrom(
  ...identityHeaderNames,
  "x-gateway-timestamp",
  "x-gateway-signature",
  "x-gateway-signature-v2",
  "x-gateway-request-id",
  "x-gateway-extra",
  "x-user-admin",
  "x_user_id",
  "x-org_id",
  "x_client_id",
  "content-type",
  "content-encoding",
  "content-length",
  "connect-protocol-version",
  "cookie",
  "x-request-id",
  "accept",
  "traceparent",
);
const extraHeaders = fc.array(fc.tuple(names.chain(recase), fc.constantFrom("1", "a b", "web-app", "12")), { maxLength: 6 });

describe("the verifier's one-pass header scan", () => {
  it("reaches the verdict the map-based reader implies, for any added headers", () => {
    const options = { nowSeconds: NOW, maxSkewSeconds: 30 };
    fc.assert(
      fc.property(extraHeaders, fc.nat(), (extra, at) => {
        const raw = [...base];
        const insertAt = 2 * (at % (raw.length / 2 + 1));
        raw.splice(insertAt, 0, ...extra.flat());
        const read = readGatewayHeaders(raw);
        const check = checkGatewayHeaders(raw, options);
        if (read.repeated) {
          expect(check).toEqual({ ok: false, reason: "malformed_gateway_headers" });
        } else if (read.unsignedIdentity) {
          expect(check).toEqual({ ok: false, reason: "unsigned_identity" });
        } else if (check.ok) {
          for (const name of identityHeaderNames) expect(check.headers.identityHeaders[name]).toBe(read.values.get(name));
          expect(check.headers.contentType).toBe(read.values.get("content-type"));
          expect(check.headers.contentEncoding).toBe(read.values.get("content-encoding"));
        } else {
          // Only a value added over a required header (a bad format) may be refused otherwise.
          expect(["malformed_gateway_headers", "missing_gateway_headers"]).toContain(check.reason);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("reads the declared Content-Length as req.headers keeps it: the first one, whatever its case", () => {
    const config = resolveGatewayAuthConfig({ hmacSecret: "scan-secret", now: () => NOW * 1000 });
    const head = (rawHeaders: string[]) => checkRequestHead(config, { method: "POST", url: "/a", rawHeaders });
    const first = head([...base, "Content-Length", "2", "content-length", "999"]);
    expect(first.ok && first.contentLength).toBe("2");
    const none = head(base);
    expect(none.ok && none.contentLength).toBeUndefined();
    const skipping = resolveGatewayAuthConfig({ hmacSecret: "scan-secret", skipVerification: true });
    const trusted = checkRequestHead(skipping, { method: "POST", url: "/a", rawHeaders: ["CONTENT-LENGTH", "7"] });
    expect(trusted.ok && trusted.contentLength).toBe("7");
  });
});
