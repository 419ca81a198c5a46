// A captured v2 request replayed with its head at the very end of the window
// and its body sent slowly: the window is checked when the head arrives, the
// request id claimed once the body has, up to bodyTimeoutMs later. The id
// must still be remembered then. Real servers on loopback, every adapter.
import { connect } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { createGatewayAuth } from "../../src/server/index.js";
import { startAdapterServers, type Adapter } from "../support/adapter-servers.js";
import { echoRoutes, type Observed } from "../support/echo-routes.js";
import { signedHeadersV2 } from "../support/signed-headers.js";

const SECRET = "slow-body-replay-secret-0123456789";
const MAX_SKEW = 1;
const BODY_TIMEOUT_MS = 2_500;
const auth = createGatewayAuth({ hmacSecret: SECRET, maxSkewSeconds: MAX_SKEW, bodyTimeoutMs: BODY_TIMEOUT_MS, requireSignatureV2: true });
const observed: Observed = { messages: 0, calls: 0 };
let ran = 0;
const servers = await startAdapterServers(auth, {
  routes: echoRoutes(observed),
  path: "/transfer",
  answer: () => {
    ran++;
    return "{}";
  },
});
afterAll(() => servers.close());

const sleepUntil = (epochMs: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, epochMs - Date.now())));

/** The request as the gateway sent it (head and body), and its timestamp. */
function captured(path: string) {
  const body = Buffer.from(JSON.stringify({ text: "pay 100" }));
  const headers = signedHeadersV2(SECRET, { method: "POST", path, body, contentType: "application/json" });
  const head =
    `POST ${path} HTTP/1.1\r\nhost: svc\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join("")}` +
    `content-length: ${body.byteLength}\r\nconnection: close\r\n\r\n`;
  return { head, body, ts: Number(headers.find(([k]) => k === "x-gateway-timestamp")?.[1]) };
}

/** Sends the head and all but the last body byte now, the last byte at `lastByteAt`; the status line. */
function send(port: number, request: { head: string; body: Buffer }, lastByteAt = 0): Promise<string> {
  return new Promise((resolve) => {
    let answer = "";
    const socket = connect(port, "127.0.0.1", () => {
      socket.write(request.head);
      socket.write(request.body.subarray(0, -1));
      void sleepUntil(lastByteAt).then(() => socket.write(request.body.subarray(-1)));
    });
    socket.on("data", (d: Buffer) => (answer += d.toString("latin1")));
    socket.on("close", () => resolve(answer.split("\r\n")[0] ?? ""));
    socket.on("error", () => resolve(answer.split("\r\n")[0] ?? "error"));
  });
}

describe("a replay whose head arrives at the end of the window and whose body comes slowly", () => {
  it("is still refused, on every adapter: the id is held for the window plus bodyTimeoutMs", { timeout: 15_000 }, async () => {
    const kinds: Adapter[] = ["node", "connect", "express", "fastify"];
    const requests = kinds.map((kind) => ({ kind, request: captured(kind === "connect" ? "/example.v1.EchoService/Echo" : "/transfer") }));
    for (const { kind, request } of requests) expect([kind, await send(servers.ports[kind], request)]).toEqual([kind, "HTTP/1.1 200 OK"]);
    const handled = ran + observed.calls;
    const ts = requests[0]!.request.ts;
    // The head in the last second of the window (now - ts = maxSkew passes), the body's last byte
    // two seconds later: past the window, within bodyTimeoutMs.
    await sleepUntil((ts + MAX_SKEW) * 1000 + 50);
    const late = await Promise.all(
      requests.map(async ({ kind, request }) => [kind, await send(servers.ports[kind], request, (ts + MAX_SKEW + 2) * 1000 + 200)]),
    );
    for (const [kind, status] of late) expect([kind, status]).not.toEqual([kind, expect.stringContaining("200")]);
    expect(ran + observed.calls).toBe(handled);
  });
});
