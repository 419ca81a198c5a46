// A caller that goes away mid-call is normal traffic: the gateway logs it in
// one info/debug line without a stack, never at error level, never as
// INTERNAL_ERROR — over HTTP/1.1 and h2c upstreams alike.
import { request as httpRequest, type ServerResponse } from "node:http";
import { connect, constants as http2Constants, type ClientHttp2Session } from "node:http2";
import { connect as netConnect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGateway, parseRoutesFile, type Gateway } from "../../packages/gateway/src/index.js";
import { captureLogs, HMAC_SECRET, JWT_SECRET, SEED_AUDIENCE, SEED_ISSUER, seedToken, startRecordingBackend, type RecordingBackend } from "../support/gateway.js";

/** Answers slowly: a chunk every 20 ms for about a second. */
function slowly(res: ServerResponse, chunks = 50, everyMs = 20): void {
  res.writeHead(200, { "content-type": "application/octet-stream" });
  let sent = 0;
  const timer = setInterval(() => {
    if (res.destroyed || res.writableEnded) return clearInterval(timer);
    if (++sent >= chunks) {
      clearInterval(timer);
      res.end(Buffer.alloc(64, 2));
    } else {
      res.write(Buffer.alloc(64, 1));
    }
  }, everyMs);
  res.on("close", () => clearInterval(timer));
}

/** The moment a caller gives up on its call. */
type AbortPoint = "before-headers" | "mid-body";

/** An HTTP/1.1 POST that the caller abandons (closing its connection); resolves once it is gone. */
function abandonedCall(url: string, token: string, when: AbortPoint, afterMs = 60): Promise<void> {
  return new Promise((resolve) => {
    const req = httpRequest(url, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    });
    if (when === "before-headers") setTimeout(() => req.destroy(), afterMs);
    req.on("response", (res) => {
      res.on("error", () => {});
      res.once("data", () => req.destroy());
    });
    req.on("error", () => {});
    req.on("close", () => resolve());
    req.end("{}");
  });
}

/** The same over HTTP/2: the caller cancels its stream (RST_STREAM(CANCEL)) on a shared session. */
function abandonedH2Call(session: ClientHttp2Session, path: string, token: string, when: AbortPoint, afterMs = 60): Promise<void> {
  return new Promise((resolve) => {
    const stream = session.request({ ":method": "POST", ":path": path, authorization: `Bearer ${token}`, "content-type": "application/json" });
    stream.on("error", () => {});
    stream.on("close", () => resolve());
    if (when === "before-headers") setTimeout(() => stream.close(http2Constants.NGHTTP2_CANCEL), afterMs);
    else stream.once("data", () => stream.close(http2Constants.NGHTTP2_CANCEL));
    stream.end("{}");
  });
}

describe("callers that go away mid-call", () => {
  const logs = captureLogs();
  let gateway: Gateway;
  let token: string;
  let h1: RecordingBackend;
  let h2: RecordingBackend;

  beforeAll(async () => {
    [h1, h2] = await Promise.all([startRecordingBackend(), startRecordingBackend({ http2: true })]);
    // Headers after 150 ms, then a chunk every 20 ms for a second.
    const late = (res: ServerResponse) => setTimeout(() => !res.destroyed && slowly(res), 150);
    h1.respond = (_req, res) => late(res);
    h2.respond = (_req, res) => late(res);
    gateway = createGateway({
      routes: parseRoutesFile(
        `version: "1.0"
backends:
  h1:
    upstream: ${h1.url}
  h2:
    upstream: ${h2.url}
    http2: true
`,
        { source: "inline" },
      ),
      hmacSecret: HMAC_SECRET,
      tokens: { hs256: { secret: JWT_SECRET, issuer: SEED_ISSUER, audience: SEED_AUDIENCE } },
      rateLimit: false,
      logger: { level: "debug", stream: logs.stream },
    });
    await gateway.listen();
    token = await seedToken({ client_id: "svc", user_id: undefined });
  });
  afterAll(async () => {
    await gateway?.close();
    await Promise.all([h1?.close(), h2?.close()]);
  });

  it.each(["h1", "h2"])("logs calls to the %s backend abandoned before and during the answer without an error or a stack", async (backend) => {
    const before = logs.text().length;
    const session = connect(gateway.url);
    session.on("error", () => {});
    const path = (i: number) => `/backend/${backend}/pkg.S/M${i}`;
    await Promise.all(
      (["before-headers", "mid-body"] as const).flatMap((when) => [
        ...Array.from({ length: 4 }, (_, i) => abandonedCall(`${gateway.url}${path(i)}`, token, when)),
        ...Array.from({ length: 4 }, (_, i) => abandonedH2Call(session, path(i), token, when)),
      ]),
    );
    session.close();
    // Let the gateway get its upstream answers and notice nobody is there: a line for each of the
    // 8 calls abandoned mid-answer (those certainly reached it), then a moment for any other.
    const midAnswerLines = () => logs.text().slice(before).split('"headersSent":true,"msg":"caller went away"').length - 1;
    await expect.poll(midAnswerLines, { timeout: 10_000, interval: 50 }).toBeGreaterThanOrEqual(8);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const text = logs.text().slice(before);
    const lines = text.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.filter((l) => (l.level as number) >= 40)).toEqual([]);
    expect(text).not.toMatch(/"stack"/);
    expect(text).not.toMatch(/INTERNAL_ERROR|Internal gateway error/);
    expect(lines.filter((l) => (l.res as { statusCode?: number } | undefined)?.statusCode === 500)).toEqual([]);
    const gone = lines.filter((l) => l.msg === "caller went away");
    // One access line per abandoned call that reached the gateway (a call given up before the gateway
    // read it leaves none), with status 499, never also "completed"; the 8 given up mid-answer are all there.
    expect(gone.filter((l) => l.headersSent === true)).toHaveLength(8);
    expect(gone.length).toBeLessThanOrEqual(16);
    expect(new Set(gone.map((l) => l.reqId)).size).toBe(gone.length);
    for (const line of gone) {
      expect(line.level).toBeLessThanOrEqual(30);
      expect(line).toMatchObject({ statusCode: 499, method: "POST", path: expect.stringMatching(new RegExp(`^/backend/${backend}/pkg\\.S/M[0-3]$`)) });
    }
    expect(lines.filter((l) => l.msg === "request completed" && String(l.path).startsWith(`/backend/${backend}/`))).toEqual([]);
    // And it keeps answering.
    h1.respond = h2.respond = (_req, res) => res.end("ok");
    try {
      const ok = await fetch(`${gateway.url}/backend/${backend}/x`, { method: "POST", headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5_000) });
      expect([ok.status, await ok.text()]).toEqual([200, "ok"]);
    } finally {
      h1.respond = h2.respond = (_req, res) => setTimeout(() => !res.destroyed && slowly(res), 150);
    }
  });

  it.each(["h1", "h2"])("cancels a streaming answer from the %s backend when an HTTP/2 caller's connection dies under it", async (backend) => {
    // The upstream streams forever: only the gateway letting go of it ends it.
    let open = 0;
    h1.respond = h2.respond = (_req, res) => {
      open++;
      res.once("close", () => open--);
      res.writeHead(200, { "content-type": "application/octet-stream" });
      const timer = setInterval(() => res.write("tick"), 20);
      res.once("close", () => clearInterval(timer));
    };
    try {
      // Our own sockets under the sessions (Node 22 forbids destroying a session's socket through it).
      const sockets: Socket[] = [];
      const port = Number(new URL(gateway.url).port);
      const sessions = Array.from({ length: 3 }, () =>
        connect(gateway.url, { createConnection: () => sockets[sockets.push(netConnect(port, "127.0.0.1")) - 1] as Socket }),
      );
      await Promise.all(
        sessions.map(
          (session, i) =>
            new Promise<void>((resolve) => {
              session.on("error", () => {});
              const stream = session.request({ ":method": "POST", ":path": `/backend/${backend}/pkg.S/Tick${i}`, authorization: `Bearer ${token}` });
              stream.on("error", () => {});
              stream.once("data", () => resolve());
              stream.end("x");
            }),
        ),
      );
      expect(open).toBe(3);
      // The callers' connections go away without a word of HTTP/2 (no RST_STREAM, no GOAWAY).
      for (const socket of sockets) socket.destroy();
      const deadline = Date.now() + 3_000;
      while (open > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(open).toBe(0);
    } finally {
      h1.respond = h2.respond = (_req, res) => setTimeout(() => !res.destroyed && slowly(res), 150);
    }
  });

  it.each(["h1", "h2"])("cancels the upstream request to the %s backend when its caller goes away before the answer", async (backend) => {
    // The upstream holds every request: only a cancellation by the gateway ends one before the 30 s route timeout.
    let held = 0;
    let released = 0;
    h1.respond = h2.respond = (_req, res) => {
      held++;
      res.once("close", () => released++);
    };
    const session = connect(gateway.url);
    session.on("error", () => {});
    try {
      const path = (i: number) => `/backend/${backend}/pkg.S/Hold${i}`;
      await Promise.all([
        ...Array.from({ length: 4 }, (_, i) => abandonedCall(`${gateway.url}${path(i)}`, token, "before-headers", 100)),
        ...Array.from({ length: 4 }, (_, i) => abandonedH2Call(session, path(i + 4), token, "before-headers", 100)),
      ]);
      const deadline = Date.now() + 3_000;
      while (released < 8 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      expect([held, released]).toEqual([8, 8]);
    } finally {
      session.close();
      h1.respond = h2.respond = (_req, res) => setTimeout(() => !res.destroyed && slowly(res), 150);
    }
  });
});
