// Which request paths the gateway forwards and which it refuses as
// traversal or undecodable: dot segments in any spelling, backslashes and
// bad percent-escapes and control characters are refused (400, never
// forwarded); encoded look-alikes
// that URL parsing leaves alone go through exactly as sent.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gateway } from "../../packages/gateway/src/index.js";
import { closeInTurn, hasValidSignature, startGatewayWithBackend, type RecordingBackend } from "../support/gateway.js";
import { rawRequest } from "../support/raw-request.js";

const yaml = `version: "1.0"
backends:
  up:
    upstream: $UP/base
    auth_required: false
`;

let backend: RecordingBackend;
let gateway: Gateway;
let port: number;

beforeAll(async () => {
  ({ backend, gateway } = await startGatewayWithBackend(yaml, { rateLimit: false }));
  port = Number(new URL(gateway.url).port);
});

afterAll(async () => {
  await closeInTurn(gateway, backend);
});

describe("forwarded paths", () => {
  it.each([
    "/backend/up/a/%2e%2e/x",
    "/backend/up/a/%2E./x",
    "/backend/up/a/.%2e",
    "/backend/up/a/%2e",
    "/backend/up/a/./b",
    "/backend/up/a/..",
    "/backend/up/%2e%2e",
    "/backend/up/a/%zz/b",
    "/backend/up/a/%E2%82/b",
    "/backend/up/a/%",
    "/backend/up/a\\..\\b?x=1",
    "/backend/up//evil.example/x",
    "/backend/up/a?b=%zz",
    "/backend/up/a?discount=50%",
    "/backend/up/%C0%AE",
    // Control characters, escaped: a NUL that cuts a C string, a line break in a log, DEL.
    "/backend/up/a%00b",
    "/backend/up/a/%00",
    "/backend/up/a%0d%0aX-Injected:%20yes",
    "/backend/up/%09tab",
    "/backend/up/x%7F",
    "/backend/up/caf%C3%A9%1f",
    // Separators a backend that decodes before routing would act on: an escaped backslash, dot pieces between escaped slashes.
    "/backend/up/a%5c..%5cb",
    "/backend/up/dom%5Cuser",
    "/backend/up/a%2F..%2F..%2Finternal",
    "/backend/up/a%2f.%2fb",
    // A fragment: never part of a request-target; URL parsing would drop it from what is signed.
    "/backend/up/a#x?y=1",
    "/backend/up/a?y=1#x",
    "/backend/up/a#",
  ])("refuses %s (400) and never forwards it", async (target) => {
    const before = backend.requests.length;
    const res = await rawRequest(port, { method: "GET", path: target, headers: [] });
    expect([target, res.status]).toEqual([target, 400]);
    expect(backend.requests.length).toBe(before);
  });

  it.each([
    ["/backend/up/a%2Fb", "/base/a%2Fb"],
    ["/backend/up/caf%C3%A9/x%20y", "/base/caf%C3%A9/x%20y"],
    ["/backend/up/", "/base/"],
  ])("forwards %s as %s, signed", async (target, forwarded) => {
    const res = await rawRequest(port, { method: "GET", path: target, headers: [] });
    expect([target, res.status]).toEqual([target, 200]);
    const received = backend.requests.at(-1)!;
    expect(received.url).toBe(forwarded);
    expect(hasValidSignature(received)).toBe(true);
  });

  it("answers a path the router cannot decode in the gateway's own envelope, with a request id, without echoing the path", async () => {
    const res = await rawRequest(port, { method: "GET", path: "/backend/up/%C0%AE-secret-looking", headers: [["x-request-id", "bad-url-1"]] });
    expect(res.status).toBe(400);
    expect(res.headers["x-request-id"]).toBe("bad-url-1");
    expect(JSON.parse(res.body)).toMatchObject({ error: { code: "BAD_REQUEST", message: "Malformed request path", request_id: "bad-url-1" }, metadata: { success: false } });
    expect(res.body).not.toContain("secret-looking");
  });
});
