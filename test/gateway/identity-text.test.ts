// A person's e-mail and names in any script reach the service as the token
// says them: the gateway sends them as UTF-8 octets, signed as sent, and
// createGatewayAuth reads them back. Real gateway, real verifying service.
import { createHmac } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gateway } from "../../packages/gateway/src/index.js";
import { createGatewayAuth } from "../../src/server/index.js";
import { bodySha256, identityFromHeaders, identityHeaders } from "../../src/signing/index.js";
import { closeInTurn, HMAC_SECRET, route, routesFileText, seedToken, startSeedGateway } from "../support/gateway.js";
import { startServer, type RunningServer } from "../support/loopback-server.js";

const auth = createGatewayAuth({ hmacSecret: HMAC_SECRET, exposeRejectionReason: true });
let service: RunningServer;
let gateway: Gateway;

beforeAll(async () => {
  service = await startServer(async (req, res) => {
    const verified = await auth.verifyNodeRequest(req, res);
    if (verified === undefined) return;
    // What arrived on the wire, octet by octet, beside what the service reads.
    const octets = (name: string) => Buffer.from(String(req.headers[name] ?? ""), "latin1").toString("hex");
    res.writeHead(200, { "content-type": "application/json" });
    // v1 as a Ruby service checks it: HMAC over the octets as received, joined with "|".
    const h = (name: string) => String(req.headers[name] ?? "");
    const rubyString = [req.method, h("x-gateway-timestamp"), h("x-client-id"), h("x-user-id"), req.url, bodySha256(verified.body ?? Buffer.alloc(0))].join("|");
    const v1AsRuby = createHmac("sha256", HMAC_SECRET).update(rubyString, "latin1").digest("hex") === h("x-gateway-signature");
    res.end(JSON.stringify({ identity: verified.identity, firstNameOctets: octets("x-user-first-name"), userIdOctets: octets("x-user-id"), v1AsRuby }));
  });
  gateway = await startSeedGateway(routesFileText({ routes: [route("GET", "/api/v1/me")] }), { UP: service.baseUrl });
});
afterAll(() => closeInTurn(gateway, service));

async function me(claims: Record<string, unknown>) {
  const token = await seedToken({ user_id: "u-42", ...claims });
  const res = await fetch(`${gateway.url}/api/v1/me`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

describe("names and e-mail addresses in any script", () => {
  it.each([
    ["山田", "太郎", "taro@example.jp"],
    ["Zoë", "Ångström", "zoe@example.com"],
    ["Дмитрий", "Шостакович", "дмитрий@пример.рф"],
    ["José", "Muñoz", "jose@example.es"],
    ["Ada 🧮", "O'Brien-Łukasz", "ada+tag@example.com"],
  ])("%s %s <%s> reaches the service as sent, signed", async (firstName, lastName, email) => {
    const { status, body } = await me({ given_name: firstName, family_name: lastName, email });
    expect(status).toBe(200);
    expect(body.identity).toMatchObject({ userId: "u-42", firstName, lastName, email });
    // On the wire: the UTF-8 octets, whatever the script.
    expect(body.firstNameOctets).toBe(Buffer.from(firstName, "utf8").toString("hex"));
  });

  it("ids in any script too: UTF-8 octets on the wire, as the Ruby gateway sends them, both signatures verified", async () => {
    for (const user_id of ["josé-42", "ユーザー42", "пользователь"]) {
      const { status, body } = await me({ user_id, given_name: "A" });
      expect([user_id, status, body.identity?.userId, body.identity?.signature, body.v1AsRuby]).toEqual([user_id, 200, user_id, "v2", true]);
      expect(body.userIdOctets).toBe(Buffer.from(user_id, "utf8").toString("hex"));
    }
  });

  it("still refuses a name that would break a header line", async () => {
    for (const given_name of ["Ada\nX-User-Scopes: admin", "Ada\r", " Ada", "Ada\u0000", "Ada\u0085", "Ada\u009b[2J"]) {
      const { status, body } = await me({ given_name });
      expect([JSON.stringify(given_name), status, body.error?.message]).toEqual([
        JSON.stringify(given_name),
        401,
        "Token carries claims that cannot be forwarded",
      ]);
    }
  });

  it("refuses a claim holding a lone surrogate: it has no UTF-8 form, and would reach the service as U+FFFD, the same as any other", async () => {
    // JSON allows "\ud800"; as UTF-8 it becomes EF BF BD, as "\udc00" and U+FFFD itself do.
    for (const claims of [{ user_id: "alice\ud800" }, { user_id: "alice\udc00" }, { email: "a\udfff@example.com" }, { given_name: "\ud83eAda" }, { scope: "read \ud800" }]) {
      const { status, body } = await me(claims);
      expect([JSON.stringify(claims), status, body.error?.message]).toEqual([JSON.stringify(claims), 401, "Token carries claims that cannot be forwarded"]);
    }
    // U+FFFD itself, and a pair that makes one character, are text like any other.
    for (const user_id of ["alice\ufffd", "alice\ud83e\uddee"]) {
      const { status, body } = await me({ user_id });
      expect([status, body.identity?.userId]).toEqual([200, user_id]);
    }
  });

  it("takes a numeric id only as a safe integer: one past 2^53 was rounded by JSON parsing and would name someone else", async () => {
    const ok = await me({ user_id: 42, org_id: -7 });
    expect([ok.status, ok.body.identity?.userId, ok.body.identity?.orgId]).toEqual([200, "42", "-7"]);
    for (const claims of [{ user_id: 2 ** 53 + 2 }, { org_id: 1.5 }, { user_id: "u-1", org_id: 12345678901234567000 }]) {
      const { status, body } = await me(claims);
      expect([JSON.stringify(claims), status, body.error?.message]).toEqual([
        JSON.stringify(claims),
        401,
        "Token carries a numeric claim that cannot be forwarded exactly",
      ]);
    }
  });

  it("refuses a subject of only whitespace, which the service would read as no user at all", async () => {
    for (const user_id of ["\u00a0", " ", "\u2003"]) {
      const { status, body } = await me({ user_id });
      expect([JSON.stringify(user_id), status, body.error?.message]).toEqual([JSON.stringify(user_id), 401, "Token names a blank user"]);
    }
  });

  it("identityFromHeaders reads back what identityHeaders wrote; Latin-1 octets from an older gateway read as Latin-1", () => {
    const identity = { clientId: "web", userId: "u-1", email: "用户@例子.中国", firstName: "Zoë", lastName: "山田", scopes: ["read"] };
    const headers = identityHeaders(identity);
    expect(headers["x-user-last-name"]).toBe(Buffer.from("山田").toString("latin1"));
    expect(identityFromHeaders("web", (name) => headers[name])).toEqual({ ...identity, orgId: undefined, role: undefined });
    // 0xE9 alone is not UTF-8: it is read as the Latin-1 é it was sent as.
    expect(identityFromHeaders("web", (name) => (name === "x-user-first-name" ? "Jos\u00e9" : undefined)).firstName).toBe("José");
  });
});
