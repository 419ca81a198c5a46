import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  EMPTY_BODY_SHA256,
  checkGatewayHeaders,
  fullpathOf,
  gatewaySignatureHeaders,
  GatewaySigningError,
  signGatewayRequest,
  stringToSign,
  verifyGatewaySignature,
  type SigningParts,
} from "../../src/signing/index.js";

const base: SigningParts = {
  method: "post",
  timestamp: "1700000000",
  clientId: "web-app",
  userId: "sub-42",
  fullpath: "/a",
  bodySha256: EMPTY_BODY_SHA256,
};
const now = { nowSeconds: 1_700_000_000, maxSkewSeconds: 30 };

describe("fullpathOf", () => {
  it.each([
    ["/a", "/a"],
    ["/a?", "/a"],
    ["/a?b=1", "/a?b=1"],
    ["/a/../b?x=%2F", "/a/../b?x=%2F"],
    ["/a??", "/a??"],
  ])("%s signs as %s", (target, expected) => {
    expect(fullpathOf(target)).toBe(expected);
  });
});

describe("stringToSign", () => {
  it("upper-cases the method and leaves an absent user id empty", () => {
    expect(stringToSign({ ...base, userId: undefined })).toBe(
      `POST|1700000000|web-app||/a|${EMPTY_BODY_SHA256}`,
    );
  });

  it.each([
    ["a | in the client id", { clientId: "a|b" }],
    ["a CR in the user id", { userId: "a\rb" }],
    ["a LF in the user id", { userId: "a\nb" }],
    ["a NUL in the client id", { clientId: "a\0b" }],
    ["a client id ending in a space (HTTP would strip it)", { clientId: "web-app " }],
    ["a user id starting with a tab (HTTP would strip it)", { userId: "\tsub-42" }],
    ["a non-digit timestamp", { timestamp: "17e8" }],
    ["a negative timestamp", { timestamp: "-1" }],
    ["an upper-case body hash", { bodySha256: EMPTY_BODY_SHA256.toUpperCase() }],
    ["a method with a separator", { method: "GET|" }],
  ])("refuses to sign %s", (_, change) => {
    expect(() => stringToSign({ ...base, ...change })).toThrow(GatewaySigningError);
  });
});

describe("verifyGatewaySignature", () => {
  const good = signGatewayRequest("s", base);

  it("accepts only exactly 64 lower-case hex characters", () => {
    expect(verifyGatewaySignature(["s"], base, good)).toBe(true);
    expect(verifyGatewaySignature(["s"], base, good.toUpperCase())).toBe(false);
    expect(verifyGatewaySignature(["s"], base, `${good}0`)).toBe(false);
    expect(verifyGatewaySignature(["s"], base, good.slice(1))).toBe(false);
    expect(verifyGatewaySignature(["s"], base, ` ${good.slice(1)}`)).toBe(false);
  });

  it("never verifies unsignable parts, even with a signature computed over them", () => {
    const smuggled = { ...base, clientId: "web-app|sub-42" , userId: "" };
    expect(verifyGatewaySignature(["s"], smuggled, good)).toBe(false);
  });

  it("never accepts a mutated request (property)", () => {
    const field = fc.constantFrom<keyof SigningParts>(
      "method",
      "timestamp",
      "clientId",
      "userId",
      "fullpath",
      "bodySha256",
    );
    fc.assert(
      fc.property(
        fc.string(),
        fc.string({ minLength: 1 }),
        fc.uint8Array({ maxLength: 64 }),
        field,
        (path, mutation, bodyBytes, name) => {
          const parts: SigningParts = {
            ...base,
            fullpath: `/${path}`,
            bodySha256: signGatewayRequest("h", { ...base, fullpath: Buffer.from(bodyBytes).toString("hex") }),
          };
          const signature = signGatewayRequest("secret", parts);
          const mutated = { ...parts, [name]: `${String(parts[name] ?? "")}${mutation}` };
          const sameString = (() => {
            try {
              return stringToSign(mutated) === stringToSign(parts);
            } catch {
              return false;
            }
          })();
          expect(verifyGatewaySignature(["secret"], mutated, signature)).toBe(sameString);
        },
      ),
    );
  });
});

describe("checkGatewayHeaders (a v1-only request, as a Ruby gateway sends it)", () => {
  const headers = gatewaySignatureHeaders(
    "s",
    { method: "GET", requestTarget: "/a", body: "" },
    { clientId: "web-app", userId: "sub-1", scopes: ["read", "write"] },
    now.nowSeconds,
  );
  delete headers["x-gateway-signature-v2"];
  delete headers["x-gateway-request-id"];
  const raw = Object.entries(headers).flat();

  it("reads the identity of a well-formed request", () => {
    const check = checkGatewayHeaders(raw, now);
    expect(check).toMatchObject({
      ok: true,
      headers: { identity: { clientId: "web-app", userId: "sub-1", scopes: ["read", "write"] } },
    });
  });

  it.each([
    ["x-gateway-timestamp"],
    ["x-gateway-signature"],
    ["x-client-id"],
  ])("rejects a request without %s", (name) => {
    const without = Object.entries(headers).filter(([n]) => n !== name).flat();
    expect(checkGatewayHeaders(without, now)).toEqual({ ok: false, reason: "missing_gateway_headers" });
  });

  it.each([
    ["X-Client-Id"],
    ["X-User-Id"],
    ["X-User-Scopes"],
    ["X-Gateway-Signature"],
  ])("rejects a repeated %s, whatever its case", (name) => {
    expect(checkGatewayHeaders([...raw, name, "x"], now)).toEqual({
      ok: false,
      reason: "malformed_gateway_headers",
    });
  });

  it.each([["1e9"], [" 1700000000"], ["0x6553f100"], ["1700000000.0"], [""]])(
    "rejects the timestamp %j",
    (ts) => {
      const check = checkGatewayHeaders([...raw.slice(2), "x-gateway-timestamp", ts], now);
      expect(check.ok).toBe(false);
    },
  );

  it("rejects a timestamp 31 s in the past or future and accepts 30 s", () => {
    for (const [skew, ok] of [[-31, false], [31, false], [-30, true], [30, true]] as const) {
      const h = { ...headers, "x-gateway-timestamp": String(now.nowSeconds + skew) };
      const check = checkGatewayHeaders(Object.entries(h).flat(), now);
      expect(check.ok ? "ok" : check.reason).toBe(ok ? "ok" : "timestamp_out_of_window");
    }
  });
});
