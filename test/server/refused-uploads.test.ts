// A caller with no secret sends headers, then trickles a body for as long as
// it likes. When the verifier refuses such a request while its body is still
// coming — on its headers, or once it grew past maxBodyBytes — the answer over
// HTTP/1.1 closes the connection, on every adapter: otherwise Node (or
// connect-node, which reads up to 256 KiB of a refused body before it
// answers) keeps reading the trickle, holding the connection for minutes.
import * as http from "node:http";
import { connect as tcpConnect, type AddressInfo } from "node:net";
import { inspect } from "node:util";
import { expressConnectMiddleware } from "@connectrpc/connect-express";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { fastifyConnectPlugin } from "@connectrpc/connect-fastify";
import express from "express";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import { createGatewayAuth } from "../../src/server/index.js";
import { echoRoutes, type Observed } from "../support/echo-routes.js";
import { signedHeadersV2 } from "../support/signed-headers.js";

const SECRET = "refused-uploads-secret-77";
const ECHO = "/example.v1.EchoService/Echo";
const MAX_BODY = 1000;
const observed: Observed = { calls: 0, messages: 0 };
let handled = 0;
// A body deadline far away: what closes the connection here is the refusal itself.
const auth = createGatewayAuth({ hmacSecret: SECRET, maxBodyBytes: MAX_BODY, bodyTimeoutMs: 30_000 });

const servers: http.Server[] = [];
const fastifies: FastifyInstance[] = [];
const ports: Record<string, number> = {};

async function listen(name: string, server: http.Server): Promise<void> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  ports[name] = (server.address() as AddressInfo).port;
}

beforeAll(async () => {
  await listen(
    "auth.verifyNodeRequest",
    http.createServer(async (req, res) => {
      if ((await auth.verifyNodeRequest(req, res)) === undefined) return;
      handled++;
      res.end("{}");
    }),
  );
  await listen("Connect (connectNodeAdapter)", http.createServer(connectNodeAdapter(auth.connectOptions({ routes: echoRoutes(observed) }))));
  const plain = express();
  plain.use(auth.express());
  plain.post(ECHO, (_req, res) => {
    handled++;
    res.json({});
  });
  await listen("auth.express()", http.createServer(plain));
  const connectExpress = express();
  connectExpress.use(expressConnectMiddleware(auth.connectOptions({ routes: echoRoutes(observed) })));
  await listen("Connect on Express", http.createServer(connectExpress));
  const fastify = Fastify();
  await fastify.register(auth.fastify);
  fastify.post(ECHO, async () => {
    handled++;
    return {};
  });
  const fastifyConnect = Fastify();
  await fastifyConnect.register(auth.fastify);
  await fastifyConnect.register(fastifyConnectPlugin, auth.connectOptions({ routes: echoRoutes(observed) }));
  for (const [name, app] of [["auth.fastify", fastify], ["Connect on Fastify", fastifyConnect]] as const) {
    await app.listen({ port: 0, host: "127.0.0.1" });
    fastifies.push(app);
    ports[name] = (app.server.address() as AddressInfo).port;
  }
});

afterAll(async () => {
  for (const app of fastifies) await app.close();
  for (const server of servers) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/**
 * Sends the head (chunked), a first chunk, then one byte every 50 ms for up
 * to 4 s, never ending the body. Resolves with what the server answered and
 * how long after its answer it closed the connection (`undefined`: it kept it).
 */
function trickle(port: number, headers: [string, string][], first: Buffer): Promise<{ text: string; closedAfterMs: number | undefined }> {
  return new Promise((resolve) => {
    const socket = tcpConnect(port, "127.0.0.1");
    let text = "";
    let answeredAt = 0;
    const timer = setInterval(() => {
      if (!socket.destroyed && socket.writable) socket.write("1\r\nx\r\n");
    }, 50);
    const done = (closed: boolean) => {
      clearInterval(timer);
      clearTimeout(giveUp);
      socket.destroy();
      resolve({ text, closedAfterMs: closed && answeredAt > 0 ? performance.now() - answeredAt : undefined });
    };
    const giveUp = setTimeout(() => done(false), 4_000);
    socket.on("data", (d: Buffer) => {
      answeredAt ||= performance.now();
      text += d.toString("latin1");
    });
    socket.on("end", () => done(true));
    socket.on("error", () => done(true));
    const lines = [`POST ${ECHO} HTTP/1.1`, `Host: 127.0.0.1:${port}`, "Transfer-Encoding: chunked"];
    for (const [name, value] of headers) lines.push(`${name}: ${value}`);
    socket.write(`${lines.join("\r\n")}\r\n\r\n${first.byteLength.toString(16)}\r\n`);
    socket.write(first);
    socket.write("\r\n");
  });
}

const adapters = [
  "auth.verifyNodeRequest",
  "Connect (connectNodeAdapter)",
  "auth.express()",
  "Connect on Express",
  "auth.fastify",
  "Connect on Fastify",
] as const;

describe("a refusal while the body is still arriving closes the HTTP/1.1 connection", () => {
  it.each(adapters)("%s: refused on its headers (a malformed v2 signature, no secret needed)", async (adapter) => {
    const before = { handled, calls: observed.calls };
    const body = Buffer.from('{"text":"');
    const headers = signedHeadersV2(SECRET, { method: "POST", path: ECHO, body, contentType: "application/json" }).map(
      ([name, value]): [string, string] => [name, name.toLowerCase() === "x-gateway-signature-v2" ? "zz" : value],
    );
    const { text, closedAfterMs } = await trickle(ports[adapter] as number, [...headers, ["connect-protocol-version", "1"]], body);
    expect(text).toMatch(/^HTTP\/1\.1 (403|400)/);
    expect(text).toMatch(/\r\nconnection: close\r\n/i);
    expect(closedAfterMs).toBeDefined();
    expect(closedAfterMs).toBeLessThan(1_000);
    expect({ handled, calls: observed.calls }).toEqual(before);
  });

  it.each(adapters)("%s: past maxBodyBytes", async (adapter) => {
    const before = { handled, calls: observed.calls };
    const body = Buffer.from(JSON.stringify({ text: "x".repeat(2 * MAX_BODY) }));
    const headers = signedHeadersV2(SECRET, { method: "POST", path: ECHO, body, contentType: "application/json" });
    const { text, closedAfterMs } = await trickle(ports[adapter] as number, [...headers, ["connect-protocol-version", "1"]], body);
    // 413 in the rejection table; Connect answers ResourceExhausted (429).
    expect(text).toMatch(/^HTTP\/1\.1 (413|429)/);
    expect(text).toMatch(/\r\nconnection: close\r\n/i);
    expect(closedAfterMs).toBeDefined();
    expect(closedAfterMs).toBeLessThan(1_000);
    expect({ handled, calls: observed.calls }).toEqual(before);
  });
});

describe("what a handler can reach", () => {
  it("ctx.values and ctx, printed in full, hold no secret", async () => {
    const seen: string[] = [];
    const server = http.createServer(
      connectNodeAdapter(
        auth.connectOptions({
          routes: (router) =>
            router.service(EchoService, {
              echo(req, ctx) {
                seen.push(inspect(ctx.values, { depth: 12, showHidden: true }), inspect(ctx, { depth: 8, showHidden: true }));
                return { text: req.text };
              },
            }),
        }),
      ),
    );
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const body = Buffer.from(JSON.stringify({ text: "hi" }));
    const headers = signedHeadersV2(SECRET, { method: "POST", path: ECHO, body, contentType: "application/json" });
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(
        { port: (server.address() as AddressInfo).port, host: "127.0.0.1", method: "POST", path: ECHO, headers: [["host", "127.0.0.1"], ...headers, ["connect-protocol-version", "1"], ["content-length", String(body.byteLength)]].flat() },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on("error", reject);
      req.end(body);
    });
    expect(status).toBe(200);
    expect(seen).toHaveLength(2);
    for (const text of seen) {
      expect(text).toContain("sub-42"); // the identity is there
      expect(text).not.toContain(SECRET);
    }
  });
});
