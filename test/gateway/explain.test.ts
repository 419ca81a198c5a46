// `connect-gateway explain`: a request signed by the real gateway, recorded
// by a real backend, then changed the way proxies and body parsers change
// requests; explain must name the field that changed (and nothing else).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gatewayRejectionReasons, gatewaySignatureHeaders } from "connect-gateway/signing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import type { Gateway } from "../../packages/gateway/src/index.js";
import {
  explainSignature,
  formatExplanation,
  parseCapture,
  CaptureFormatError,
  type CapturedRequest,
} from "../../packages/gateway/src/explain-signature.js";
import { HMAC_SECRET, seedToken, startRecordingBackend, startSeedGateway, type RecordingBackend } from "../support/gateway.js";

const dir = mkdtempSync(join(tmpdir(), "connect-gateway-explain-"));

let backend: RecordingBackend;
let gateway: Gateway;
/** What the backend received from the gateway for one JSON POST with a user token. */
let received: CapturedRequest;

beforeAll(async () => {
  backend = await startRecordingBackend();
  gateway = await startSeedGateway(
    `version: "1.0"\nroutes:\n  - path: /api/v1/agents/{id}\n    method: POST\n    proxy_upstream: $AGENTS\n    auth_required: true\n`,
    { AGENTS: backend.url },
  );
  const answer = await fetch(`${gateway.url}/api/v1/agents/42?verbose=1`, {
    method: "POST",
    headers: { authorization: `Bearer ${await seedToken()}`, "content-type": "application/json" },
    body: '{ "name": "Ada",  "tags": ["x"] }',
  });
  expect(answer.status).toBe(200);
  const r = backend.requests.at(-1)!;
  const headers: [string, string][] = [];
  for (let i = 0; i < r.rawHeaders.length; i += 2) headers.push([r.rawHeaders[i]!, r.rawHeaders[i + 1]!]);
  received = { method: r.method, target: r.url, headers, body: r.body };
});

afterAll(async () => {
  await gateway?.close();
  await backend?.close();
  rmSync(dir, { recursive: true, force: true });
});

const withHeader = (req: CapturedRequest, name: string, value: string): CapturedRequest => ({
  ...req,
  headers: [...req.headers.filter(([n]) => n.toLowerCase() !== name.toLowerCase()), [name, value]],
});

describe("explainSignature", () => {
  it("the request as the gateway sent it: both signatures match, inside the window", () => {
    const e = explainSignature(received, HMAC_SECRET);
    expect(e.outsideWindow).toBe(false);
    expect(e.signatures.map((s) => [s.version, s.matches])).toEqual([
      ["v1", true],
      ["v2", true],
    ]);
  });

  it("v1 over a request-target whose octets are not UTF-8: no match, and why — as the service decides", () => {
    // Signed (v1 only) for "/files/é", whose UTF-8 is C3 A9; received with the single octet E9.
    const signed = gatewaySignatureHeaders(HMAC_SECRET, { method: "GET", requestTarget: "/files/\u00e9", body: new Uint8Array(0) }, { clientId: "web-app", userId: "u-1" });
    const headers = Object.entries(signed).filter(([name]) => !/signature-v2|request-id/i.test(name));
    const e = explainSignature({ method: "GET", target: "/files/\u00e9", headers, body: Buffer.alloc(0) }, HMAC_SECRET);
    const v1 = e.signatures.find((s) => s.version === "v1");
    expect(v1?.matches).toBe(false);
    expect(v1?.problems.join("\n")).toContain("the request-target's octets are not UTF-8");
  });

  it("a proxy added a path prefix: the path field, with the prefix named", () => {
    const e = explainSignature({ ...received, target: `/internal${received.target}` }, HMAC_SECRET);
    for (const s of e.signatures) {
      expect(s.matches).toBe(false);
      expect(s.change?.field).toBe(s.version === "v1" ? "fullpath" : "request-target");
      expect(s.change?.what).toContain("added the prefix /internal");
      const differing = s.fields.filter((f) => f.gateway !== f.server).map((f) => f.name);
      expect(differing).toEqual([s.version === "v1" ? "fullpath" : "request-target"]);
    }
  });

  it("a body parser re-serialised the JSON: the body hash", () => {
    const body = Buffer.from(JSON.stringify(JSON.parse(received.body.toString())));
    expect(body.equals(Buffer.from(received.body))).toBe(false);
    // The verifier hashed the re-serialised body: explain is given what it hashed.
    const e = explainSignature({ ...received, body }, HMAC_SECRET);
    // The gateway signed the original bytes, which no variant of the compact JSON rebuilds exactly,
    // so the answer is honest: no single change found — but the body hash is the only field it can show.
    for (const s of e.signatures) expect(s.matches).toBe(false);
    // The other way round (gateway signed compact JSON, a proxy pretty-printed it) is found.
    const compact = Buffer.from('{"a":1}');
    const pretty = Buffer.from('{\n  "a": 1\n}');
    const signedCompact = { ...received, body: compact };
    const resigned = resign(signedCompact);
    const e2 = explainSignature({ ...resigned, body: pretty }, HMAC_SECRET);
    for (const s of e2.signatures) {
      expect(s.change?.field).toBe("body sha256");
      expect(s.change?.what).toContain("re-serialised");
    }
    // And the common case: a client wrote JSON with spaces (curl by hand, Python's json.dumps, a
    // pretty-printer), the gateway signed that, and the service's body parser made it compact.
    for (const sent of ['{"a": 1, "name": "Jos\\u00e9", "tags": ["x", null]}', '{\n  "a": 1\n}']) {
      const signed = resign({ ...received, body: Buffer.from(sent) });
      const hashed = Buffer.from(JSON.stringify(JSON.parse(sent)));
      for (const s of explainSignature({ ...signed, body: hashed }, HMAC_SECRET).signatures) {
        expect([sent, s.change?.field, s.change?.what]).toEqual([sent, "body sha256", expect.stringContaining("re-serialised")]);
      }
    }
  });

  it("a Content-Type changed on the way: v2 names it; v1 does not cover it and still matches", () => {
    const e = explainSignature(withHeader(received, "content-type", "application/json; charset=utf-8"), HMAC_SECRET);
    const [v1, v2] = e.signatures;
    expect(v1!.matches).toBe(true);
    expect(v2!.matches).toBe(false);
    expect(v2!.change?.field).toBe("content-type");
    expect(v2!.change?.what).toContain('"application/json"');
  });

  it("an identity header added on the way: v2 names it", () => {
    expect(received.headers.some(([n]) => n.toLowerCase() === "x-user-first-name")).toBe(false);
    const e = explainSignature(withHeader(received, "X-User-First-Name", "Mallory"), HMAC_SECRET);
    expect(e.signatures[1]!.change?.field).toBe("x-user-first-name");
    // A changed value cannot be guessed back: explain says no single change explains it.
    const changed = explainSignature(withHeader(received, "X-Org-ID", "org-evil"), HMAC_SECRET);
    expect(changed.signatures[1]!.matches).toBe(false);
    expect(changed.signatures[1]!.change).toBeUndefined();
  });

  it("a different secret: v2 says so by key id; nothing else is blamed", () => {
    const e = explainSignature(received, "another-secret-0123456789abcdef");
    expect(e.signatures[0]!.matches).toBe(false);
    expect(e.signatures[0]!.change).toBeUndefined();
    expect(e.signatures[1]!.otherKey).toBeDefined();
    expect(e.signatures[1]!.change).toBeUndefined();
    // The key id row shows each side's own: the request's, and the service's secret's.
    const { requestKeyId, secretKeyId } = e.signatures[1]!.otherKey!;
    expect(e.signatures[1]!.fields.find((f) => f.name === "key id")).toEqual({ name: "key id", server: secretKeyId, gateway: requestKeyId });
    expect(secretKeyId).not.toBe(requestKeyId);
  });

  it("a stale timestamp is outside the window, whatever the signature", () => {
    const e = explainSignature(received, HMAC_SECRET, { nowSeconds: Math.floor(Date.now() / 1000) + 3600 });
    expect(e.outsideWindow).toBe(true);
    expect(e.ageSeconds).toBeGreaterThanOrEqual(3599);
    // It names the reason the service gives, from the library's own list.
    const named = /refuses it \(([a-z_]+)\)/.exec(formatExplanation(e))?.[1];
    expect(named).toBe("timestamp_out_of_window");
    expect(gatewayRejectionReasons).toContain(named);
  });

  it("prints a hostile capture's control characters escaped, never raw to the terminal", () => {
    const hostile = {
      ...received,
      headers: received.headers.map(([n, v]): [string, string] =>
        n.toLowerCase() === "x-user-email" ? [n, `${v}\u001b[2J\u001b[H\u001b]0;owned\u0007signature v2: MATCHES\u009b`] : [n, v],
      ),
    };
    const text = formatExplanation(explainSignature(hostile, HMAC_SECRET));
    expect(text).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/);
    expect(text).toContain("\\x1b[2J");
  });

  it("reads raw HTTP captures (chunked too) and JSON ones; a malformed one names the part", () => {
    const raw = Buffer.concat([
      Buffer.from(`${received.method} ${received.target} HTTP/1.1\r\n${received.headers.map(([n, v]) => `${n}: ${v}`).join("\r\n")}\r\n\r\n`),
      Buffer.from(received.body),
    ]);
    expect(explainSignature(parseCapture(raw), HMAC_SECRET).signatures.every((s) => s.matches)).toBe(true);
    const chunkedHeaders = received.headers.filter(([n]) => n.toLowerCase() !== "content-length");
    const chunked = Buffer.concat([
      Buffer.from(`${received.method} ${received.target} HTTP/1.1\r\n${chunkedHeaders.map(([n, v]) => `${n}: ${v}`).join("\r\n")}\r\nTransfer-Encoding: chunked\r\n\r\n`),
      Buffer.from(`5\r\n${Buffer.from(received.body).subarray(0, 5).toString()}\r\n`),
      Buffer.from(`${(received.body.length - 5).toString(16)}\r\n${Buffer.from(received.body).subarray(5).toString()}\r\n0\r\n\r\n`),
    ]);
    expect(explainSignature(parseCapture(chunked), HMAC_SECRET).signatures[0]!.matches).toBe(true);
    const json = JSON.stringify({ method: received.method, target: received.target, headers: received.headers, body: Buffer.from(received.body).toString() });
    expect(explainSignature(parseCapture(Buffer.from(json)), HMAC_SECRET).signatures.every((s) => s.matches)).toBe(true);

    expect(() => parseCapture(Buffer.from("POST /x\r\nA: b\r\n\r\n"))).toThrow(new CaptureFormatError("request line", 'expected "METHOD request-target HTTP/1.1", got "POST /x"'));
    expect(() => parseCapture(Buffer.from("POST /x HTTP/1.1\r\nno colon here\r\n\r\n"))).toThrow(/header line 2/);
    expect(() => parseCapture(Buffer.from("POST /x HTTP/1.1\r\nA: b\r\n"))).toThrow(/capture: headers: no empty line/);
    expect(() => parseCapture(Buffer.from('{"method":"GET","target":"x","headers":{}}'))).toThrow(/capture: target:/);
    expect(() => parseCapture(Buffer.from('{"method":"GET"'))).toThrow(/capture: JSON:/);
  });
});

describe("connect-gateway explain (the command)", () => {


  it("prints the changed field and both sides, exits 1, and never prints the secret or a signature", async () => {
    const file = join(dir, "prefixed.http");
    const r = { ...received, target: `/internal${received.target}` };
    writeFileSync(file, Buffer.concat([
      Buffer.from(`${r.method} ${r.target} HTTP/1.1\r\n${r.headers.map(([n, v]) => `${n}: ${v}`).join("\r\n")}\r\n\r\n`),
      Buffer.from(r.body),
    ]));
    const result = await runCli(["explain", "--request", file], { GATEWAY_HMAC_SECRET: HMAC_SECRET });
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("signature v1: DOES NOT MATCH");
    expect(result.stdout).toContain("first field that differs: fullpath — a proxy between the gateway and the service added the prefix /internal");
    expect(result.stdout).toMatch(/≠ fullpath +\/api\/v1\/agents\/42\?verbose=1 +\/internal\/api\/v1\/agents\/42\?verbose=1/);
    const signatures = received.headers.filter(([n]) => n.toLowerCase().startsWith("x-gateway-signature")).map(([, v]) => v.split(":").at(-1)!);
    for (const secretish of [HMAC_SECRET, ...signatures]) expect(result.stdout + result.stderr).not.toContain(secretish);
  });

  it("a missing secret variable or file (exit 1), an unknown flag (exit 2): specific messages", async () => {
    const noSecret = await runCli(["explain", "--request", "x.http"], {});
    expect(noSecret.code).toBe(1);
    expect(noSecret.stderr).toContain("explain reads the secret from GATEWAY_HMAC_SECRET, which is not set");
    const noFile = await runCli(["explain", "--request", join(dir, "missing.http")], { GATEWAY_HMAC_SECRET: HMAC_SECRET });
    expect(noFile.code).toBe(1);
    expect(noFile.stderr).toContain("missing.http: no such file");
    const badFlag = await runCli(["explain", "--secret", HMAC_SECRET], {});
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toContain("Unknown option '--secret'");
    expect(badFlag.stderr).not.toContain(HMAC_SECRET);
  });
});

/** A capture re-signed by the gateway's signing function for a different body (same headers otherwise). */
function resign(req: CapturedRequest): CapturedRequest {
  const get = (n: string) => req.headers.find(([k]) => k.toLowerCase() === n)?.[1];
  const signed = gatewaySignatureHeaders(
    HMAC_SECRET,
    { method: req.method, requestTarget: req.target, body: req.body, contentType: get("content-type"), contentEncoding: get("content-encoding") },
    {
      clientId: get("x-client-id")!,
      userId: get("x-user-id"),
      email: get("x-user-email"),
      firstName: get("x-user-first-name"),
      lastName: get("x-user-last-name"),
      scopes: get("x-user-scopes")?.split(" "),
      orgId: get("x-org-id"),
      role: get("x-user-role"),
    },
  );
  const lower = new Set(Object.keys(signed).map((k) => k.toLowerCase()));
  return { ...req, headers: [...req.headers.filter(([n]) => !lower.has(n.toLowerCase())), ...Object.entries(signed)] };
}

