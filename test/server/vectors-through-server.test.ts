import { connectNodeAdapter } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGatewayAuth } from "../../src/server/index.js";
import { hmacVectors, type HmacVector } from "../fixtures/hmac-vectors.js";
import { echoRoutes } from "../support/echo-routes.js";
import { rawRequest } from "../support/raw-request.js";
import { startServer, type RunningServer } from "../support/loopback-server.js";

// Every vector of the independent implementation, sent to real servers
// exactly as specified (method, raw request-target, body bytes), must be
// accepted; the same request with one byte changed must be refused.

let nowMs = 0;
const secrets = [...new Set(hmacVectors.map((v) => v.secret))];
const auth = createGatewayAuth({ hmacSecret: secrets, now: () => nowMs, exposeRejectionReason: true });
const seen: { target?: string; body?: Buffer } = {};

let plain: RunningServer;
let connect: RunningServer;
beforeAll(async () => {
  plain = await startServer(async (req, res) => {
    const verified = await auth.verifyNodeRequest(req, res);
    if (verified === undefined) return;
    seen.target = req.url;
    seen.body = verified.body;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ userId: verified.identity?.userId ?? null }));
  });
  connect = await startServer(connectNodeAdapter(auth.connectOptions({ routes: echoRoutes({ calls: 0, messages: 0 }) })));
});
afterAll(async () => {
  await plain.close();
  await connect.close();
});

function send(server: RunningServer, v: HmacVector, change: Partial<{ path: string; body: Buffer; signature: string; utf8Ids: boolean }> = {}) {
  nowMs = Number(v.timestamp) * 1000;
  // Node writes a header string one octet per character; `utf8Ids` sends the ids' UTF-8 octets, as the Ruby gateway does.
  const id = (value: string) => (change.utf8Ids === true ? Buffer.from(value, "utf8").toString("latin1") : value);
  const headers: [string, string][] = [
    ["X-Gateway-Timestamp", v.timestamp],
    ["X-Gateway-Signature", change.signature ?? v.signature],
    ["X-Client-Id", id(v.clientId)],
  ];
  if (v.userId !== "") headers.push(["X-User-Id", id(v.userId)]);
  if (v.requestTarget.startsWith("/example.v1.EchoService/")) {
    const json = v.body.length > 0 && v.body[0] === 0x7b;
    headers.push(["content-type", json ? "application/json" : "application/proto"]);
  }
  const body = change.body ?? v.body;
  return rawRequest(server.port, {
    method: v.method,
    path: change.path ?? v.requestTarget,
    headers,
    body: body.length > 0 || v.method !== "GET" ? body : undefined,
  });
}

function flipOneByte(b: Buffer, at: number): Buffer {
  const copy = Buffer.from(b);
  copy[at] = (copy[at] as number) ^ 0x01;
  return copy;
}

describe.each(hmacVectors.map((v) => [v.name, v] as const))("vector %s through a plain Node server", (_name, v) => {
  it("is accepted, and the handler gets the exact body and target", async () => {
    const res = await send(plain, v);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ userId: v.userId === "" ? null : v.userId });
    expect(seen.target).toBe(v.requestTarget);
    expect(seen.body?.equals(v.body)).toBe(true);
  });

  it("is accepted with its ids sent as UTF-8 octets, as the Ruby gateway sends them, and read back as text", async () => {
    const res = await send(plain, v, { utf8Ids: true });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ userId: v.userId === "" ? null : v.userId });
  });

  it("is refused with one byte of the body changed", async () => {
    const body = v.body.length > 0 ? flipOneByte(v.body, v.body.length >> 1) : Buffer.from("x");
    const res = await send(plain, v, { body });
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toEqual({ message: "invalid_signature" });
  });

  it("is refused with one byte of the request-target changed", async () => {
    const target = Buffer.from(v.requestTarget, "latin1");
    const res = await send(plain, v, { path: flipOneByte(target, target.length - 1).toString("latin1") });
    expect(res.status).toBe(403);
  });

  it("is refused with one hex digit of the signature changed", async () => {
    const last = v.signature.at(-1) === "0" ? "1" : "0";
    const res = await send(plain, v, { signature: v.signature.slice(0, -1) + last });
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toEqual({ message: "invalid_signature" });
  });
});

const connectVectors = hmacVectors.filter((v) => v.requestTarget.startsWith("/example.v1.EchoService/Echo"));

describe.each(connectVectors.map((v) => [v.name, v] as const))("vector %s through connectNodeAdapter", (_name, v) => {
  it("is accepted and answered by the handler", async () => {
    const res = await send(connect, v);
    expect(res.status).toBe(200);
    expect(res.body.length).toBeGreaterThan(0);
  });

  it("is refused with PermissionDenied when the body or query changes", async () => {
    const res =
      v.method === "GET"
        ? await send(connect, v, { path: v.requestTarget.replace("hi", "ho") })
        : await send(connect, v, { body: flipOneByte(v.body, v.body.length - 2) });
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toEqual({ code: "permission_denied", message: "invalid_signature" });
  });
});

it("sends the three Connect vectors to Connect (unary JSON, unary binary, GET)", () => {
  expect(connectVectors.map((v) => v.method)).toEqual(["POST", "POST", "GET"]);
});
