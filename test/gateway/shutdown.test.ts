// Graceful shutdown of `connect-gateway serve`: the real CLI as a child
// process, a real upstream on loopback, SIGTERM in the middle of calls.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest, Agent, createServer, type Server } from "node:http";
import { connect as http2Connect, constants as http2Constants, createServer as createHttp2Server, type Http2Server } from "node:http2";
import { connect as netConnect, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import { createGateway, GatewayConfigError, parseRoutesFile } from "../../packages/gateway/src/index.js";
import { gatewayConfigFromEnv } from "../../packages/gateway/src/gateway-env.js";
import { captureLogs, HMAC_SECRET, JWT_SECRET, SEED_AUDIENCE, SEED_ISSUER } from "../support/gateway.js";
import { within } from "../support/within.js";

const cli = new URL("../../packages/gateway/src/cli.ts", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "connect-gateway-shutdown-"));
const DRAIN_MS = 500;

let upstream: Server;
let upstreamUrl: string;
// An h2c Connect backend whose server stream never ends by itself (one message every 20 ms).
let echoBackend: Http2Server;
let echoUrl: string;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  // /stream: an endless slow response; /slow: answers after 300 ms; else at once.
  upstream = createServer((req, res) => {
    if (req.url?.startsWith("/stream")) {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      res.write("first\n");
      const timer = setInterval(() => res.write("tick\n"), 50);
      res.once("close", () => clearInterval(timer));
      return;
    }
    const delay = req.url?.startsWith("/slow") ? 300 : 0;
    setTimeout(() => res.writeHead(200, { "content-type": "text/plain" }).end("done"), delay);
  });
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  echoBackend = createHttp2Server(
    connectNodeAdapter({
      routes: (router) =>
        router.service(EchoService, {
          echo: (req) => ({ text: req.text }),
          async *echoStream(req, ctx) {
            for (let i = 1; !ctx.signal.aborted; i++) {
              yield { text: `${req.text} ${i}` };
              await new Promise((resolve) => setTimeout(resolve, 20));
            }
          },
          collect: async () => ({ text: "" }),
          async *chat() {},
        }),
    }),
  );
  echoBackend.on("session", (session) => session.on("error", () => {}));
  await new Promise<void>((resolve) => echoBackend.listen(0, "127.0.0.1", resolve));
  echoUrl = `http://127.0.0.1:${(echoBackend.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => {
    echoBackend.close(resolve);
    setTimeout(resolve, 1_000).unref();
  });
  upstream.closeAllConnections();
  await new Promise((resolve) => upstream.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

afterEach(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  children.clear();
});

interface Started {
  readonly child: ChildProcess;
  readonly url: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

/** Starts `connect-gateway serve` with one public backend pointing at the test upstream. */
async function startCli(): Promise<Started> {
  const routes = join(dir, "routes.yaml");
  writeFileSync(
    routes,
    `version: "1.0"\nbackends:\n  up:\n    upstream: $UP_URL\n    auth_required: false\n` +
      `  echo:\n    upstream: $ECHO_URL\n    http2: true\n    auth_required: false\n`,
  );
  const child = spawn(process.execPath, ["--conditions=connect-gateway-source", "--import", "tsx", cli, "serve", "--routes", routes, "--port", "0", "--host", "127.0.0.1"], {
    env: {
      PATH: process.env.PATH ?? "",
      GATEWAY_HMAC_SECRET: HMAC_SECRET,
      JWT_SECRET,
      UP_URL: upstreamUrl,
      ECHO_URL: echoUrl,
      LOG_LEVEL: "warn",
      GATEWAY_DRAIN_TIMEOUT_MS: String(DRAIN_MS),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  let stderr = "";
  child.stderr?.on("data", (c: Buffer) => (stderr += c.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    let stdout = "";
    const timer = setTimeout(() => reject(new Error(`the CLI did not start: ${stdout} ${stderr}`)), 15_000);
    child.stdout?.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout);
      if (match) {
        clearTimeout(timer);
        resolve(match[1] as string);
      }
    });
    void exited.then(() => reject(new Error(`the CLI exited early: ${stdout} ${stderr}`)));
  });
  return { child, url, exited };
}

/** Waits up to `waitMs` for the gateway to exit: it must exit 0, less than `boundMs` after `signalledAt`. */
async function expectExit(exited: Started["exited"], signalledAt: number, boundMs: number, waitMs = DRAIN_MS + 4_000): Promise<void> {
  const { code, at } = await within(exited, waitMs, "the gateway did not exit");
  expect(code).toBe(0);
  expect(at - signalledAt).toBeLessThan(boundMs);
}

describe("connect-gateway serve: graceful shutdown", () => {
  it("ends an open HTTP/1.1 stream after the drain timeout and exits 0", async () => {
    const { child, url, exited } = await startCli();
    const agent = new Agent({ keepAlive: true });
    const ended = new Promise<string>((resolve) => {
      const req = httpRequest(`${url}/backend/up/stream`, { agent }, (res) => {
        expect(res.statusCode).toBe(200);
        res.on("data", () => {});
        res.once("error", () => resolve("error"));
        res.once("aborted", () => resolve("aborted"));
        res.once("close", () => resolve(res.complete ? "complete" : "closed"));
        child.kill("SIGTERM");
      });
      req.once("error", () => resolve("error"));
      req.end();
    });
    const signalledAt = Date.now();
    const outcome = await within(ended, DRAIN_MS + 4_000, "the stream's caller saw no end");
    expect(["error", "aborted", "closed"]).toContain(outcome);
    await expectExit(exited, signalledAt, DRAIN_MS + 2_000);
    agent.destroy();
  }, 30_000);

  it("resets an open HTTP/2 stream after the drain timeout and exits 0", async () => {
    const { child, url, exited } = await startCli();
    const session = http2Connect(url);
    session.on("error", () => {});
    const ended = new Promise<number>((resolve) => {
      const stream = session.request({ ":path": "/backend/up/stream", ":method": "GET" });
      stream.on("response", (headers) => {
        expect(headers[":status"]).toBe(200);
        child.kill("SIGTERM");
      });
      stream.on("data", () => {});
      stream.once("close", () => resolve(stream.rstCode));
    });
    const signalledAt = Date.now();
    const rstCode = await within(ended, DRAIN_MS + 4_000, "the HTTP/2 stream's caller saw no end");
    // A reset (RST_STREAM CANCEL), not an ordinary end of the response.
    expect(rstCode).toBe(http2Constants.NGHTTP2_CANCEL);
    await expectExit(exited, signalledAt, DRAIN_MS + 2_000);
    session.destroy();
  }, 30_000);

  it("SIGTERM with an open gRPC server stream: the caller gets every message then Unavailable, and the gateway exits 0", async () => {
    const { child, url, exited } = await startCli();
    const client = createClient(EchoService, createGrpcTransport({ baseUrl: `${url}/backend/echo` }));
    const received: string[] = [];
    let signalledAt = 0;
    const outcome = (async () => {
      try {
        for await (const message of client.echoStream({ text: "tick" })) {
          received.push(message.text);
          if (received.length === 3) {
            signalledAt = Date.now();
            child.kill("SIGTERM");
          }
        }
        return "ended without an error";
      } catch (e) {
        return ConnectError.from(e);
      }
    })();
    const error = await within(outcome, DRAIN_MS + 5_000, "the stream's caller saw no end");
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.Unavailable);
    // Whole messages, in order, none missing, up to the end.
    expect(received.length).toBeGreaterThan(3);
    expect(received).toEqual(received.map((_, i) => `tick ${i + 1}`));
    await expectExit(exited, signalledAt, DRAIN_MS + 2_000);
  }, 30_000);

  it("closes an idle keep-alive connection at once and exits within a second", async () => {
    const { child, url, exited } = await startCli();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const status = await within(
      new Promise<number | undefined>((resolve, reject) => {
        httpRequest(`${url}/backend/up/fast`, { agent }, (res) => {
          res.resume();
          res.once("end", () => resolve(res.statusCode));
        })
          .once("error", reject)
          .end();
      }),
      5_000,
      "the unary call",
    );
    expect(status).toBe(200);
    // The socket stays open in the agent's pool, idle.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(Object.values(agent.freeSockets).flat().length).toBe(1);
    const signalledAt = Date.now();
    child.kill("SIGTERM");
    // Well under the drain timeout's margin and Node's 5 s keep-alive wait,
    // with room for a loaded CI machine.
    await expectExit(exited, signalledAt, 2_000, 5_000);
    agent.destroy();
  }, 30_000);

  it.each(["SIGTERM", "SIGHUP"] as const)("%s: lets a unary call in flight finish with 200", async (signal) => {
    const { child, url, exited } = await startCli();
    const agent = new Agent({ keepAlive: true });
    const call = new Promise<{ status: number | undefined; body: string }>((resolve, reject) => {
      const req = httpRequest(`${url}/backend/up/slow`, { agent }, (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.once("end", () => resolve({ status: res.statusCode, body }));
        res.once("error", reject);
      });
      req.once("error", reject);
      req.end();
    });
    // The upstream answers after 300 ms: signal while the call is in flight.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const signalledAt = Date.now();
    child.kill(signal);
    const result = await within(call, 5_000, "the unary call");
    expect(result).toEqual({ status: 200, body: "done" });
    await expectExit(exited, signalledAt, DRAIN_MS + 2_000, 5_000);
    agent.destroy();
  }, 30_000);
});

describe("drain timeout configuration and close()", () => {
  it("reads GATEWAY_DRAIN_TIMEOUT_MS and refuses a bad one, like the other options", () => {
    const env = { GATEWAY_HMAC_SECRET: HMAC_SECRET, JWT_SECRET };
    expect(gatewayConfigFromEnv("r.yaml", { ...env, GATEWAY_DRAIN_TIMEOUT_MS: "250" }).drainTimeoutMs).toBe(250);
    expect(gatewayConfigFromEnv("r.yaml", env).drainTimeoutMs).toBeUndefined();
    expect(() => gatewayConfigFromEnv("r.yaml", { ...env, GATEWAY_DRAIN_TIMEOUT_MS: "10s" })).toThrow(GatewayConfigError);
    expect(() => gatewayConfigFromEnv("r.yaml", { ...env, GATEWAY_DRAIN_TIMEOUT_MS: "10s" })).toThrow("GATEWAY_DRAIN_TIMEOUT_MS");
    const config = {
      routes: { source: "test", routes: [], backends: [], publicPaths: [] } as unknown as Parameters<typeof createGateway>[0]["routes"],
      hmacSecret: HMAC_SECRET,
      tokens: { hs256: { secret: JWT_SECRET, issuer: SEED_ISSUER, audience: SEED_AUDIENCE } },
      logger: false as const,
    };
    for (const bad of [-1, 1.5, Number.NaN, "100" as unknown as number]) {
      expect(() => createGateway({ ...config, drainTimeoutMs: bad })).toThrow("drainTimeoutMs");
    }
  });

  it("close() ends an open stream after drainTimeoutMs and resolves; its access line says the gateway cut it", async () => {
    const logs = captureLogs();
    const routes = join(dir, "close-routes.yaml");
    writeFileSync(routes, `version: "1.0"\nbackends:\n  up:\n    upstream: ${upstreamUrl}\n    auth_required: false\n`);
    const gateway = createGateway({
      routes,
      hmacSecret: HMAC_SECRET,
      tokens: { hs256: { secret: JWT_SECRET, issuer: SEED_ISSUER, audience: SEED_AUDIENCE } },
      logger: { level: "info", stream: logs.stream },
      drainTimeoutMs: 300,
    });
    const url = await gateway.listen();
    const agent = new Agent({ keepAlive: true });
    try {
      // The end of the response, wrapped: a promise resolved with a promise would wait for it.
      const started = new Promise<{ ended: Promise<string> }>((resolve, reject) => {
        const req = httpRequest(`${url}/backend/up/stream`, { agent }, (res) => {
          res.on("data", () => {});
          resolve({
            ended: new Promise<string>((done) => {
              res.once("error", () => done("error"));
              res.once("close", () => done(res.complete ? "complete" : "closed"));
            }),
          });
        });
        req.once("error", reject);
        req.end();
      });
      const { ended } = await within(started, 5_000, "the stream did not start");
      const closedAt = Date.now();
      await within(gateway.close(), 3_000, "close() did not resolve");
      expect(Date.now() - closedAt).toBeGreaterThanOrEqual(250);
      expect(await within(ended, 1_000, "the caller saw no end")).not.toBe("complete");
      await new Promise((resolve) => setTimeout(resolve, 100)); // the line is written as the response closes
      const access = logs.lines().filter((line) => line.path === "/backend/up/stream");
      expect(access).toEqual([expect.objectContaining({ msg: "answer cut short: the gateway shut down", statusCode: 503 })]);
      // The shutdown itself is in the log: its start (with the drain timeout), the cut, its end.
      const messages = logs.lines().map((line) => String(line.msg));
      expect(messages).toContain("closing: no new connections; the calls still open get drainTimeoutMs to finish");
      expect(messages.indexOf("drain timeout: closing the calls still open")).toBeGreaterThan(messages.findIndex((m) => m.startsWith("closing:")));
      expect(messages).toContain("closed");
    } finally {
      agent.destroy();
    }
  }, 15_000);

  it("a call the drain timeout answers 503 itself keeps its CORS headers: a page reads Unavailable, not a CORS failure", async () => {
    // An upstream that takes longer than the drain timeout to answer.
    const slow = createServer((req, res) => {
      req.resume();
      setTimeout(() => res.end("late"), 5_000).unref();
    });
    await new Promise<void>((resolve) => slow.listen(0, "127.0.0.1", resolve));
    const gateway = createGateway({
      routes: parseRoutesFile(`version: "1.0"\nroutes:\n  - path: /api/slow\n    method: GET\n    proxy_upstream: http://127.0.0.1:${(slow.address() as AddressInfo).port}\n    auth_required: false\n`, { source: "inline" }),
      hmacSecret: HMAC_SECRET,
      tokens: { hs256: { secret: JWT_SECRET, issuer: SEED_ISSUER, audience: SEED_AUDIENCE } },
      corsOrigins: ["https://app.example.com"],
      logger: false,
      drainTimeoutMs: 300,
    });
    const url = await gateway.listen();
    try {
      const answer = new Promise<{ status: number; headers: Record<string, unknown> }>((resolve, reject) => {
        const req = httpRequest(`${url}/api/slow`, { headers: { origin: "https://app.example.com" } }, (res) => {
          res.resume();
          resolve({ status: res.statusCode ?? 0, headers: res.headers });
        });
        req.once("error", reject);
        req.end();
      });
      await new Promise((resolve) => setTimeout(resolve, 100));
      const closing = gateway.close();
      const { status, headers } = await within(answer, 3_000, "no answer");
      expect(status).toBe(503);
      expect(headers["access-control-allow-origin"]).toBe("https://app.example.com");
      expect(String(headers.vary)).toMatch(/origin/i);
      await within(closing, 3_000, "close() did not resolve");
    } finally {
      slow.closeAllConnections();
      slow.close();
    }
  }, 15_000);

  it("close() resolves within drainTimeoutMs when HTTP/2 clients never close their side, whatever stage they stopped at", async () => {
    const gateway = createGateway({
      routes: parseRoutesFile(`version: "1.0"\nroutes: []\n`, { source: "inline" }),
      hmacSecret: HMAC_SECRET,
      tokens: { hs256: { secret: JWT_SECRET, issuer: SEED_ISSUER, audience: SEED_AUDIENCE } },
      logger: false,
      drainTimeoutMs: 300,
    });
    const { port } = new URL(await gateway.listen());
    const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const settings = "\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    // Half the preface; the preface alone; the preface and SETTINGS, then silence. None ever closes its side.
    const sockets = [preface.slice(0, 16), preface, preface + settings].map((bytes) => {
      const socket = netConnect({ port: Number(port), host: "127.0.0.1", allowHalfOpen: true });
      socket.on("error", () => {});
      socket.resume();
      socket.write(Buffer.from(bytes, "latin1"));
      return socket;
    });
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      const closedAt = Date.now();
      await within(gateway.close(), 2_000, "close() waited for clients that never close");
      expect(Date.now() - closedAt).toBeLessThan(1_500);
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  }, 15_000);
});
