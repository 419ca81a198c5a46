// Callers are counted by network (the failed-authentication budget, the
// anonymous rate limit): an IPv6 client owns a whole /64 and can change the
// last 64 bits of its address at will, so a budget per address would be a
// budget per request. Loopback offers one IPv6 address, so the budget is
// exercised here on the gateway's own authenticator and counter, with the
// addresses a socket would report.
import { describe, expect, it } from "vitest";
import { clientNetworkOf } from "../../packages/gateway/src/client-network.js";
import { defaultClaimMapping } from "../../packages/gateway/src/identity-claims.js";
import { memoryWindowCounter } from "../../packages/gateway/src/rate-limit-store.js";
import { createRequestAuthenticator } from "../../packages/gateway/src/request-authenticator.js";
import { createTokenVerifier } from "../../packages/gateway/src/token-verifier.js";
import type { UpstreamAccess } from "../../packages/gateway/src/routes-file.js";

describe("clientNetworkOf", () => {
  it.each([
    ["203.0.113.7", "203.0.113.7"],
    ["::ffff:203.0.113.7", "203.0.113.7"],
    ["::FFFF:cb00:7107", "203.0.113.7"],
    ["2001:db8:1:2::1", "2001:db8:1:2::/64"],
    ["2001:0DB8:0001:0002:ffff:ffff:ffff:fffe", "2001:db8:1:2::/64"],
    ["2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"],
    ["2001:db8::1", "2001:db8:0:0::/64"],
    ["fe80::1%eth0", "fe80:0:0:0::/64"],
    ["64:ff9b::192.0.2.1", "64:ff9b:0:0::/64"],
    ["::1", "0:0:0:0::/64"],
    ["", "unknown"],
    [undefined, "unknown"],
  ])("%s → %s", (ip, network) => {
    expect(clientNetworkOf(ip)).toBe(network);
  });
});

describe("the failed-authentication budget", () => {
  const access: UpstreamAccess = { authRequired: true, scopes: [], timeoutMs: 30_000, line: 1 };

  function authenticatorCountingValidations() {
    const verifier = createTokenVerifier({
      hs256: { secret: "client-network-test-secret-0123456789", issuer: "issuer", audience: "audience" },
      clockToleranceSeconds: 5,
      cacheMs: 30_000,
    } as Parameters<typeof createTokenVerifier>[0]);
    const counted = { validations: 0 };
    const authenticate = createRequestAuthenticator({
      verifier: {
        cached: (key) => verifier.cached(key),
        verify: (token, key) => {
          counted.validations++;
          return verifier.verify(token, key);
        },
      },
      claims: defaultClaimMapping,
      anonymousClientId: "anonymous",
      failureLimit: { max: 20, counter: memoryWindowCounter(60_000), knownValidMs: 30_000 },
    });
    return { authenticate, counted };
  }

  async function statuses(authenticate: ReturnType<typeof authenticatorCountingValidations>["authenticate"], from: (i: number) => string, n: number) {
    const seen: Record<number, number> = {};
    for (let i = 0; i < n; i++) {
      try {
        await authenticate(`Bearer made-up-${i}.x.y`, access, from(i));
      } catch (e) {
        const status = (e as { statusCode: number }).statusCode;
        seen[status] = (seen[status] ?? 0) + 1;
      }
    }
    return seen;
  }

  it("is one per IPv6 /64: changing the interface id buys no new budget", async () => {
    const { authenticate, counted } = authenticatorCountingValidations();
    expect(await statuses(authenticate, (i) => `2001:db8:1:2::${(i + 1).toString(16)}`, 200)).toEqual({ 401: 20, 429: 180 });
    expect(counted.validations).toBe(20);
    // Another /64 has its own.
    expect(await statuses(authenticate, () => "2001:db8:1:3::1", 1)).toEqual({ 401: 1 });
  });

  it("counts an IPv4 caller the same whether the socket reports it plain or IPv4-mapped", async () => {
    const { authenticate, counted } = authenticatorCountingValidations();
    expect(await statuses(authenticate, (i) => (i % 2 === 0 ? "198.51.100.9" : "::ffff:198.51.100.9"), 40)).toEqual({ 401: 20, 429: 20 });
    expect(counted.validations).toBe(20);
  });
});
