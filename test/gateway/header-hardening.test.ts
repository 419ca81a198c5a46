// Header hardening at the gateway edge, against a real gateway and a real
// recording upstream on loopback. Requests go out on a raw socket so the exact
// header spellings (underscores, hop-by-hop headers, Expect) reach the gateway
// untouched by any client library.
import * as http2 from "node:http2";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway } from "../../packages/gateway/src/index.js";
import { closeInTurn, gatewayHeaderNames, hasValidSignature, SIGNED_GATEWAY_HEADERS, type RecordedRequest, type RecordingBackend, seedToken, startGatewayWithBackends, DOCS_AND_AGENT_ROUTES } from "../support/gateway.js";

const yaml = `version: "1.0"
public_paths: [/api/v1/docs]
routes:
${DOCS_AND_AGENT_ROUTES}backends:
  echo:
    upstream: $UP/base
  h2:
    upstream: $UP2
    http2: true
`;

interface RawResponse {
  /** Every status code on the wire, interim (100 Continue) ones included. */
  readonly statuses: number[];
  /** The final status. */
  readonly status: number;
  readonly text: string;
}

/**
 * Writes `head` (request line and header lines, without the blank line) and
 * `body` on a fresh connection exactly as given, and reads until the gateway
 * closes it (every request here says `Connection: close`).
 */
function rawExchange(url: string, head: string[], body = ""): Promise<RawResponse> {
  const bytes = Buffer.byteLength(body);
  const lines = [...head, ...(bytes > 0 ? [`Content-Length: ${bytes}`] : [])];
  return rawWrite(url, `${lines.join("\r\n")}\r\n\r\n${body}`);
}

/** Writes `text` on a fresh connection, byte for byte, and reads until the gateway closes it. */
function rawWrite(url: string, text: string): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", reject);
    socket.on("close", () => {
      const text = Buffer.concat(chunks).toString("latin1");
      const statuses = [...text.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => Number(m[1]));
      resolve({ statuses, status: statuses.at(-1) ?? 0, text });
    });
    socket.write(text, "latin1");
  });
}

/** The header names a recorded request arrived with, lower-cased, in wire order. */
function namesOf(req: RecordedRequest): string[] {
  return req.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
}

/** Every value of a header the upstream received (repeats included). */
function valuesOf(req: RecordedRequest, name: string): string[] {
  return req.rawHeaders.filter((_, i) => i % 2 === 1 && req.rawHeaders[i - 1]?.toLowerCase() === name);
}

describe("header hardening", () => {
  let backend: RecordingBackend;
  let h2Backend: RecordingBackend;
  let gateway: Gateway;
  let host: string;
  let token: string;

  beforeAll(async () => {
    ({ backend, h2Backend, gateway } = await startGatewayWithBackends(yaml, { bodyLimit: 64 * 1024 }));
    host = new URL(gateway.url).host;
    token = await seedToken();
  });
  afterAll(() => closeInTurn(gateway, backend, h2Backend));

  /** An authorised JSON `PUT /api/v1/agents/7` with `lines` added to its head, sent raw. */
  const putAgent = (lines: string[], body = "{}") =>
    rawExchange(
      gateway.url,
      [`PUT /api/v1/agents/7 HTTP/1.1`, `Host: ${host}`, `Authorization: Bearer ${token}`, "Content-Type: application/json", ...lines],
      body,
    );

  describe("underscore spellings of controlled headers", () => {
    const spoofed = [
      "X_User_Scopes: admin",
      "X_Org_ID: other-org",
      "X-User_Id: admin",
      "x_user_id: admin",
      "X_User_Email: root@example.com",
      "X_User_Role: admin",
      "x_gateway_signature: " + "0".repeat(64),
      "X_Gateway_Timestamp: 1",
      "X-Gateway_Anything: 1",
      "X_Client_Id: trusted-service",
      "x-client_id: trusted-service",
    ];

    it("drops them on an authenticated call (user token)", async () => {
      const res = await putAgent([...spoofed, "Connection: close"]);
      expect(res.status).toBe(200);
      const forwarded = backend.requests.at(-1)!;
      const names = namesOf(forwarded);
      expect(names.filter((n) => n.includes("_"))).toEqual([]);
      // The gateway's own headers, once each, and the signature verifies.
      expect(forwarded.headers["x-user-id"]).toBe("user-uuid");
      expect(forwarded.headers["x-org-id"]).toBe("org-uuid");
      expect(forwarded.headers["x-user-scopes"]).toBe("read write write:agents");
      expect(gatewayHeaderNames(forwarded)).toEqual(SIGNED_GATEWAY_HEADERS);
      expect(hasValidSignature(forwarded)).toBe(true);
    });

    it("drops them on an anonymous call to a public path", async () => {
      const res = await rawExchange(gateway.url, [`GET /api/v1/docs HTTP/1.1`, `Host: ${host}`, ...spoofed, "Connection: close"]);
      expect(res.status).toBe(200);
      const forwarded = backend.requests.at(-1)!;
      expect(namesOf(forwarded).filter((n) => n.includes("_"))).toEqual([]);
      expect(forwarded.headers["x-user-id"]).toBeUndefined();
      expect(forwarded.headers["x-org-id"]).toBeUndefined();
      expect(hasValidSignature(forwarded)).toBe(true);
    });

    it("keeps an ordinary header that merely contains an underscore", async () => {
      const res = await rawExchange(gateway.url, [`GET /api/v1/docs HTTP/1.1`, `Host: ${host}`, "X_Trace_Tag: abc", "Connection: close"]);
      expect(res.status).toBe(200);
      expect(backend.requests.at(-1)!.headers["x_trace_tag"]).toBe("abc");
    });
  });

  describe("hop-by-hop and framing headers", () => {
    const hopByHop = (connection: string) => [
      "Keep-Alive: timeout=5, max=100",
      "Upgrade: websocket",
      "TE: gzip, trailers",
      "Proxy-Connection: keep-alive",
      "X-Hop-One: secret",
      "X-Hop-Two: secret",
      "X-Kept: yes",
      `Connection: ${connection}`,
    ];
    const stripped = ["keep-alive", "upgrade", "te", "proxy-connection", "expect", "x-hop-one", "x-hop-two", "connection-token"];

    it("strips them on a GET to an HTTP/1.1 upstream and answers 200", async () => {
      const res = await rawExchange(gateway.url, [`GET /api/v1/docs HTTP/1.1`, `Host: ${host}`, ...hopByHop("close, X-Hop-One, x-hop-two")]);
      expect(res.status).toBe(200);
      const names = namesOf(backend.requests.at(-1)!);
      for (const name of stripped) expect(names).not.toContain(name);
      expect(backend.requests.at(-1)!.headers["x-kept"]).toBe("yes");
    });

    it("strips them on a PUT with a body, and each one alone never causes a 503", async () => {
      const singles = [
        ["Keep-Alive: timeout=5"],
        ["Upgrade: h2c"],
        ["Upgrade: websocket"],
        ["TE: gzip"],
        ["TE: trailers"],
        ["Proxy-Connection: keep-alive"],
        ["X-Hop-One: secret"],
      ];
      for (const extra of singles) {
        const res = await putAgent([...extra, "Connection: close, X-Hop-One"]);
        expect(res.status, extra.join()).toBe(200);
        const forwarded = backend.requests.at(-1)!;
        for (const name of stripped) expect(namesOf(forwarded), extra.join()).not.toContain(name);
        expect(forwarded.body.toString()).toBe("{}");
        expect(hasValidSignature(forwarded)).toBe(true);
      }
    });

    it("handles Expect: 100-continue without forwarding it", async () => {
      const res = await putAgent(
        [
          "Expect: 100-continue",
          ...hopByHop("close, X-Hop-One, X-Hop-Two"),
        ],
        '{"a":1}',
      );
      expect(res.status).toBe(200);
      const forwarded = backend.requests.at(-1)!;
      for (const name of stripped) expect(namesOf(forwarded)).not.toContain(name);
      expect(forwarded.body.toString()).toBe('{"a":1}');
      expect(hasValidSignature(forwarded)).toBe(true);
    });

    it("keeps TE: trailers (and only that) for an HTTP/2 upstream, strips the rest", async () => {
      const res = await rawExchange(
        gateway.url,
        [
          `POST /backend/h2/pkg.v1.Service/Method HTTP/1.1`,
          `Host: ${host}`,
          `Authorization: Bearer ${token}`,
          "Content-Type: application/grpc-web+proto",
          ...hopByHop("close, X-Hop-One, X-Hop-Two").map((l) => (l.startsWith("TE:") ? "TE: trailers" : l)),
        ],
        "abc",
      );
      expect(res.status).toBe(200);
      const forwarded = h2Backend.requests.at(-1)!;
      expect(forwarded.headers["te"]).toBe("trailers");
      for (const name of stripped.filter((n) => n !== "te")) expect(namesOf(forwarded)).not.toContain(name);
      expect(forwarded.headers["x-kept"]).toBe("yes");
    });

    it("strips TE other than trailers for an HTTP/2 upstream", async () => {
      const res = await rawExchange(
        gateway.url,
        [`POST /backend/h2/pkg.v1.Service/Method HTTP/1.1`, `Host: ${host}`, `Authorization: Bearer ${token}`, "TE: gzip, trailers", "Connection: close"],
        "abc",
      );
      expect(res.status).toBe(200);
      expect(h2Backend.requests.at(-1)!.headers["te"]).toBeUndefined();
    });
  });

  describe("method and URL overrides", () => {
    it("never forwards a header that would make the backend act on another method or path, in any spelling", async () => {
      const res = await putAgent(
        [
          "X-HTTP-Method-Override: DELETE",
          "X_HTTP_Method_Override: DELETE",
          "X-HTTP-Method: DELETE",
          "x-method-override: DELETE",
          "X-Original-Method: DELETE",
          "X-Original-URL: /api/v1/admin",
          "X_Rewrite_URL: /api/v1/admin",
          "X-Method-Overridden: kept",
          "Connection: close",
        ],
        "{}",
      );
      expect(res.status).toBe(200);
      const forwarded = backend.requests.at(-1)!;
      expect(forwarded.method).toBe("PUT");
      const overrides = ["x-http-method-override", "x-http-method", "x-method-override", "x-original-method", "x-original-url", "x-rewrite-url"];
      expect(namesOf(forwarded).filter((n) => overrides.includes(n.replaceAll("_", "-")))).toEqual([]);
      expect(JSON.stringify(forwarded.rawHeaders)).not.toContain("/api/v1/admin");
      expect(forwarded.headers["x-method-overridden"]).toBe("kept");
      expect(hasValidSignature(forwarded)).toBe(true);
    });
  });

  describe("X-Forwarded-* and Forwarded", () => {
    it("replaces spoofed values with the gateway's view of the connection", async () => {
      const res = await rawExchange(gateway.url, [
        `GET /api/v1/docs HTTP/1.1`,
        `Host: ${host}`,
        "X-Forwarded-For: 1.2.3.4",
        "X-Forwarded-For: 5.6.7.8",
        "X-Forwarded-Host: evil.example.com",
        "X-Forwarded-Proto: https",
        "Forwarded: for=1.2.3.4;proto=https;host=evil.example.com",
        "X_Forwarded_For: 9.9.9.9",
        "Connection: close",
      ]);
      expect(res.status).toBe(200);
      const forwarded = backend.requests.at(-1)!;
      expect(valuesOf(forwarded, "x-forwarded-for")).toEqual(["127.0.0.1"]);
      expect(valuesOf(forwarded, "x-forwarded-host")).toEqual([host]);
      expect(valuesOf(forwarded, "x-forwarded-proto")).toEqual(["http"]);
      expect(valuesOf(forwarded, "forwarded")).toEqual([`for=127.0.0.1;host="${host}";proto=http`]);
      expect(namesOf(forwarded)).not.toContain("x_forwarded_for");
      expect(JSON.stringify(forwarded.rawHeaders)).not.toMatch(/1\.2\.3\.4|5\.6\.7\.8|9\.9\.9\.9|evil/);
    });

    it("sets them on an HTTP/2 upstream too, and when the caller sent none", async () => {
      const res = await rawExchange(
        gateway.url,
        [`POST /backend/h2/pkg.v1.Service/Method HTTP/1.1`, `Host: ${host}`, `Authorization: Bearer ${token}`, "X-Forwarded-For: 1.2.3.4", "Forwarded: for=1.2.3.4", "Connection: close"],
        "abc",
      );
      expect(res.status).toBe(200);
      const forwarded = h2Backend.requests.at(-1)!;
      expect(forwarded.headers["x-forwarded-for"]).toBe("127.0.0.1");
      expect(forwarded.headers["forwarded"]).toBe(`for=127.0.0.1;host="${host}";proto=http`);

      const plain = await rawExchange(gateway.url, [`GET /api/v1/docs HTTP/1.1`, `Host: ${host}`, "Connection: close"]);
      expect(plain.status).toBe(200);
      expect(backend.requests.at(-1)!.headers["x-forwarded-for"]).toBe("127.0.0.1");
      expect(backend.requests.at(-1)!.headers["x-forwarded-proto"]).toBe("http");
    });
  });

  describe("ambiguous request heads", () => {
    // Node keeps the first of each and drops the rest without a word: refused instead.
    it.each([
      ["two Host lines", [`Host: ${"$HOST"}`, "Host: other.example"], "More than one Host header"],
      ["two Authorization lines", [`Host: ${"$HOST"}`, "Authorization: Bearer $TOKEN", "Authorization: Bearer made-up"], "More than one Authorization header"],
      ["the same Authorization twice", [`Host: ${"$HOST"}`, "Authorization: Bearer $TOKEN", "authorization: Bearer $TOKEN"], "More than one Authorization header"],
    ])("refuses %s with 400 before any token is checked, forwarding nothing", async (_label, lines, message) => {
      const before = backend.requests.length;
      const head = lines.map((l) => l.replace("$HOST", host).replace("$TOKEN", token));
      const res = await rawExchange(gateway.url, [`PUT /api/v1/agents/7 HTTP/1.1`, ...head, "Content-Type: application/json", "Connection: close"], "{}");
      expect(res.status).toBe(400);
      expect(JSON.parse(res.text.slice(res.text.indexOf("\r\n\r\n") + 4))).toMatchObject({ error: { code: "BAD_REQUEST", message } });
      expect(res.text).not.toContain(token);
      expect(backend.requests.length).toBe(before);
    });

    it("refuses an HTTP/2 request whose host is not its :authority, and serves one whose host agrees", async () => {
      const session = http2.connect(gateway.url);
      session.on("error", () => {});
      const ask = (headers: http2.OutgoingHttpHeaders) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const stream = session.request({ ":path": "/api/v1/docs", ...headers });
          let body = "";
          let status = 0;
          stream.on("response", (h) => (status = Number(h[":status"])));
          stream.on("data", (c: Buffer) => (body += c.toString()));
          stream.on("end", () => resolve({ status, body }));
          stream.on("error", reject);
          stream.end();
        });
      try {
        const before = backend.requests.length;
        const refused = await ask({ ":authority": host, host: "other.example" });
        expect(refused.status).toBe(400);
        expect(JSON.parse(refused.body)).toMatchObject({ error: { message: "The Host header is not the request's :authority" } });
        expect(backend.requests.length).toBe(before);
        expect((await ask({ ":authority": host, host: host.toUpperCase() })).status).toBe(200);
        expect((await ask({ ":authority": host })).status).toBe(200);
      } finally {
        session.close();
      }
    });

    it("refuses more than 100 header fields with 431 before anything else; 100 reach an HTTP/2 upstream that takes Node's default 128", async () => {
      // Host, Authorization and Connection count: 97 more make 100.
      const fields = (count: number) => Array.from({ length: count }, (_, i) => `X-Extra-${i}: v`);
      const send = (count: number) =>
        rawExchange(gateway.url, [`GET /backend/h2/many HTTP/1.1`, `Host: ${host}`, `Authorization: Bearer ${token}`, ...fields(count), "Connection: close"]);
      const before = h2Backend.requests.length;
      const accepted = await send(97);
      expect(accepted.status).toBe(200);
      expect(h2Backend.requests.length).toBe(before + 1);
      expect(valuesOf(h2Backend.requests.at(-1)!, "x-extra-96")).toEqual(["v"]);
      const refused = await send(98);
      expect(refused.status).toBe(431);
      expect(JSON.parse(refused.text.slice(refused.text.indexOf("\r\n\r\n") + 4))).toMatchObject({
        error: { code: "HEADERS_TOO_LARGE", message: "More than 100 request header fields" },
      });
      expect(h2Backend.requests.length).toBe(before + 1);
      // The upstream session is still the one it was: the next call goes through as before.
      expect((await send(0)).status).toBe(200);
    });

    it("counts HTTP/2's cookie fields (one per cookie) as one: 120 cookies are no 431", async () => {
      const session = http2.connect(gateway.url);
      session.on("error", () => {});
      try {
        const cookies = Array.from({ length: 120 }, (_, i) => `c${i}=v`);
        const status = await new Promise<number>((resolve, reject) => {
          const stream = session.request({ ":path": "/api/v1/docs", cookie: cookies });
          stream.on("response", (h) => resolve(Number(h[":status"])));
          stream.on("error", reject);
          stream.resume();
          stream.end();
        });
        expect(status).toBe(200);
      } finally {
        session.close();
      }
    });

    it("never forwards a request's trailers (a chunked body's identity-looking trailer lines stay behind)", async () => {
      const res = await rawWrite(
        gateway.url,
        [
          "PUT /api/v1/agents/7 HTTP/1.1",
          `Host: ${host}`,
          `Authorization: Bearer ${token}`,
          "Content-Type: application/json",
          "Transfer-Encoding: chunked",
          "Trailer: X-User-Scopes",
          "Connection: close",
          "",
          "2",
          "{}",
          "0",
          "X-User-Scopes: admin",
          "X-Client-Id: evil",
          "",
          "",
        ].join("\r\n"),
      );
      expect(res.status).toBe(200);
      const forwarded = backend.requests.at(-1)!;
      expect(forwarded.body.toString()).toBe("{}");
      expect(forwarded.rawTrailers).toEqual([]);
      expect(forwarded.headers["x-client-id"]).not.toBe("evil");
      expect(hasValidSignature(forwarded)).toBe(true);
    });
  });
});
