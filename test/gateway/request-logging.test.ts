import { createServer } from "node:http";
import { connect } from "node:net";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gatewayErrorCodes } from "../../packages/gateway/src/index.js";
import type { Gateway } from "../../packages/gateway/src/index.js";
import {
  captureLogs,
  closeInTurn,
  closeServer,
  listen,
  route,
  routesFileText,
  seedToken,
  startGatewayWithBackend,
  startSeedGateway,
  type RecordingBackend,
} from "../support/gateway.js";

type LogLine = Record<string, unknown>;

describe("request logging: one line per request", () => {
  const logs = captureLogs();
  let backend: RecordingBackend;
  let gateway: Gateway;
  let token: string;

  beforeAll(async () => {
    ({ backend, gateway } = await startGatewayWithBackend(
      routesFileText({ routes: [route("GET", "/api/v1/items/{id}", { scopes: ["read"] })] }),
      { logger: { level: "info", stream: logs.stream } },
    ));
    token = await seedToken({ scopes: ["read"] });
  });
  afterAll(() => closeInTurn(gateway, backend));

  const linesOf = (requestId: string): LogLine[] => logs.lines().filter((line) => line.reqId === requestId);

  it("logs an answered request once, when it is answered, with method, route, path, status, duration and request id", async () => {
    const response = await fetch(`${gateway.url}/api/v1/items/42?access_token=secret-in-query`, {
      headers: { authorization: `Bearer ${token}`, "x-request-id": "logged-once-1" },
    });
    expect(response.status).toBe(200);
    await response.arrayBuffer();
    // The line is written when the answer is finished: give the stream its turn.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const lines = linesOf("logged-once-1");
    expect(lines).toEqual([
      expect.objectContaining({
        level: 30,
        msg: "request completed",
        method: "GET",
        route: "/api/v1/items/:id",
        path: "/api/v1/items/42",
        remoteAddress: "127.0.0.1",
        statusCode: 200,
        durationMs: expect.any(Number),
      }),
    ]);
    expect(JSON.stringify(lines)).not.toContain("secret-in-query");
    expect(JSON.stringify(lines)).not.toContain(token);
  });

  it("a refused request: its reason and its one request line, nothing more", async () => {
    const response = await fetch(`${gateway.url}/api/v1/items/42`, { headers: { "x-request-id": "logged-once-2" } });
    expect(response.status).toBe(401);
    await response.arrayBuffer();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(linesOf("logged-once-2").map((line) => [line.msg, line.statusCode])).toEqual([
      ["Missing or invalid token", undefined],
      ["request completed", 401],
    ]);
  });
});

describe("a caller that stops reading", () => {
  it("cut after the send timeout: one line for the request, not fastify's 'stream closed prematurely' besides", async () => {
    const logs = captureLogs();
    // An answer far larger than the socket buffers: it waits on a caller that never reads.
    const big = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { "content-type": "application/octet-stream" });
      const chunk = Buffer.alloc(64 * 1024, 1);
      let sent = 0;
      const pump = () => {
        while (sent < 64 && res.write(chunk)) sent++;
        if (sent >= 64) res.end();
        else res.once("drain", () => (sent++, pump()));
      };
      pump();
    });
    const port = await listen(big);
    const gateway = await startSeedGateway(
      routesFileText({ routes: [route("GET", "/api/v1/big", { proxy_upstream: "$BIG", auth_required: false })] }),
      { BIG: `http://127.0.0.1:${port}` },
      { logger: { level: "info", stream: logs.stream }, sendTimeoutMs: 300 },
    );
    const socket = connect(Number(new URL(gateway.url).port), "127.0.0.1");
    socket.on("error", () => {});
    try {
      socket.write("GET /api/v1/big HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: never-reads\r\n\r\n");
      socket.pause(); // never reads a byte of the answer
      await expect.poll(() => logs.lines().filter((line) => line.reqId === "never-reads").length, { timeout: 5_000 }).toBeGreaterThan(0);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const lines = logs.lines().filter((line) => line.reqId === "never-reads");
      expect(lines.map((line) => line.msg)).toEqual(["caller went away"]);
    } finally {
      socket.destroy();
      await closeInTurn(gateway);
      await closeServer(big);
    }
  });
});

describe("a refused token", () => {
  it("its log line says which check failed (secret, issuer, audience), never the token", async () => {
    const logs = captureLogs();
    const { backend, gateway } = await startGatewayWithBackend(routesFileText({ routes: [route("GET", "/api/v1/items", { scopes: ["read"] })] }), {
      logger: { level: "info", stream: logs.stream },
    });
    try {
      const tokens: [string, string, RegExp][] = [
        ["wrong-secret", await seedToken({ scopes: ["read"] }, { secret: "another-jwt-secret-that-is-long-enough-0123" }), /signature does not verify with this gateway's HS256 secret \(JWT_SECRET\)/],
        ["wrong-issuer", await seedToken({ scopes: ["read"] }, { issuer: "someone-else" }), /its iss is not this gateway's issuer ".+" \(JWT_ISSUER\)/],
        ["wrong-audience", await seedToken({ scopes: ["read"] }, { audience: "another-api" }), /its aud does not include this gateway's audience ".+" \(JWT_AUDIENCE\)/],
      ];
      for (const [id, token, reason] of tokens) {
        const response = await fetch(`${gateway.url}/api/v1/items`, { headers: { authorization: `Bearer ${token}`, "x-request-id": id } });
        expect(response.status).toBe(401);
        await response.arrayBuffer();
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
      for (const [id, token, reason] of tokens) {
        const refusal = logs.lines().find((line) => line.reqId === id && line.msg === "Invalid or expired token");
        expect([id, refusal?.reason]).toEqual([id, expect.stringMatching(reason)]);
        expect(logs.text()).not.toContain(token);
        expect(logs.text()).not.toContain(token.split(".")[2]);
      }
    } finally {
      await closeInTurn(gateway, backend);
    }
  });
});

describe("an answer the gateway had to cut", () => {
  it("an upstream that fails mid-answer: one access line, 503 and why — never 'caller went away' (499)", async () => {
    const logs = captureLogs();
    // Headers and half the body, then the connection reset.
    const failing = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { "content-type": "application/json", "content-length": "100" });
      res.write('{"half":');
      setTimeout(() => res.socket?.resetAndDestroy(), 30);
    });
    const port = await listen(failing);
    const gateway = await startSeedGateway(
      routesFileText({ routes: [route("GET", "/api/v1/items", { proxy_upstream: "$FAILING" })] }),
      { FAILING: `http://127.0.0.1:${port}` },
      { logger: { level: "info", stream: logs.stream } },
    );
    try {
      const token = await seedToken({ scopes: ["read"] });
      const failed = await fetch(`${gateway.url}/api/v1/items`, { headers: { authorization: `Bearer ${token}`, "x-request-id": "cut-1" } })
        .then((r) => r.arrayBuffer())
        .then(() => "complete", () => "failed");
      expect(failed).toBe("failed");
      await new Promise((resolve) => setTimeout(resolve, 50));
      const access = logs.lines().filter((line) => line.reqId === "cut-1" && "statusCode" in line);
      expect(access).toEqual([
        expect.objectContaining({ msg: "answer cut short: the upstream failed mid-answer", statusCode: 503, code: "SERVICE_UNAVAILABLE", headersSent: true }),
      ]);
    } finally {
      await closeInTurn(gateway);
      await closeServer(failing);
    }
  });
});

describe("requests Node's parser refuses before there is a request", () => {
  const logs = captureLogs();
  let gateway: Gateway;
  let backend: RecordingBackend;
  beforeAll(async () => {
    ({ backend, gateway } = await startGatewayWithBackend(routesFileText({ routes: [route("GET", "/api/v1/items/{id}")] }), {
      logger: { level: "info", stream: logs.stream },
    }));
  });
  afterAll(() => closeInTurn(gateway, backend));

  /** Writes `head` on a fresh connection and reads until the gateway closes it. */
  function raw(head: string): Promise<string> {
    const { hostname, port } = new URL(gateway.url);
    return new Promise((resolve, reject) => {
      const socket = connect(Number(port), hostname, () => socket.write(head));
      let text = "";
      socket.setEncoding("latin1");
      socket.on("data", (c: string) => (text += c));
      socket.on("error", reject);
      socket.on("close", () => resolve(text));
    });
  }

  it.each([
    ["a request head over 16 KiB (a long Connect GET URL)", `GET /api/v1/items/1?message=${"x".repeat(20_000)} HTTP/1.1\r\nHost: gw\r\n\r\n`, 431, "HEADERS_TOO_LARGE", "HPE_HEADER_OVERFLOW"],
    ["a malformed head", "GET /api/v1/items/1 HTTP/1.1\r\nHost gw\r\n\r\n", 400, "BAD_REQUEST", "HPE_INVALID_HEADER_TOKEN"],
  ])("%s: answered in the gateway's envelope, and one log line says why", async (_label, head, status, code, parserCode) => {
    const before = logs.lines().length;
    const answer = await raw(head);
    expect(answer.split("\r\n")[0]).toBe(`HTTP/1.1 ${status} ${status === 431 ? "Request Header Fields Too Large" : "Bad Request"}`);
    expect(JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4))).toMatchObject({ error: { code }, metadata: { success: false } });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(logs.lines().slice(before)).toEqual([
      expect.objectContaining({ level: 30, code: parserCode, statusCode: status, remoteAddress: "127.0.0.1", msg: expect.stringMatching(/^request refused before it could be read/) }),
    ]);
  });
});

describe("the gateway's Connect codes", () => {
  it("are Connect's own (the gateway names them by number, not to load Connect at start-up)", () => {
    expect(Object.fromEntries(Object.entries(gatewayErrorCodes).map(([name, { code }]) => [name, Code[code]]))).toEqual({
      BAD_REQUEST: "InvalidArgument",
      UNAUTHORIZED: "Unauthenticated",
      EXPIRED_TOKEN: "Unauthenticated",
      FORBIDDEN: "PermissionDenied",
      INSUFFICIENT_SCOPE: "PermissionDenied",
      NOT_FOUND: "Unimplemented",
      PAYLOAD_TOO_LARGE: "ResourceExhausted",
      RATE_LIMITED: "ResourceExhausted",
      HEADERS_TOO_LARGE: "ResourceExhausted",
      INTERNAL_ERROR: "Internal",
      SERVICE_UNAVAILABLE: "Unavailable",
      GATEWAY_TIMEOUT: "DeadlineExceeded",
    });
  });
});
