// An https upstream is reached with its certificate verified: a certificate
// no trusted authority signed (here a self-signed one, for 127.0.0.1) fails
// the hop with 503, and the upstream never receives the request — the
// caller's identity headers and signatures are not handed to whoever
// answers on that address. (@fastify/reply-from, which the gateway once
// forwarded through, turned verification off unless told otherwise.)
import { readFileSync } from "node:fs";
import { createServer, request, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Gateway } from "../../packages/gateway/src/index.js";
import { closeInTurn, route, routesFileText, startSeedGateway } from "../support/gateway.js";

const fixture = (name: string) => readFileSync(new URL(`../fixtures/untrusted-tls/${name}`, import.meta.url));
const cert = fixture("cert.pem");

describe("an https upstream with a certificate no trusted authority signed", () => {
  let upstream: Server;
  let url: string;
  let gateway: Gateway;
  let received = 0;

  beforeAll(async () => {
    upstream = createServer({ key: fixture("key.pem"), cert }, (_req, res) => {
      received++;
      res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    url = `https://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    gateway = await startSeedGateway(
      routesFileText({ routes: [route("GET", "/api/v1/secure", { auth_required: false })], backends: { tls: { upstream: "$UP", auth_required: false } } }),
      { UP: url },
      { rateLimit: false, logger: false },
    );
  });
  afterAll(async () => {
    await closeInTurn(gateway);
    upstream.closeAllConnections();
    await new Promise((resolve) => upstream.close(resolve));
  });

  it("answers a client that trusts it (the upstream itself is fine)", async () => {
    const status = await new Promise<number | undefined>((resolve, reject) => {
      request(`${url}/api/v1/secure`, { ca: cert }, (res) => {
        res.resume();
        resolve(res.statusCode);
      })
        .on("error", reject)
        .end();
    });
    expect(status).toBe(200);
    expect(received).toBe(1);
  });

  it("is never sent the request through the gateway: 503, for a route and for a backend", async () => {
    for (const path of ["/api/v1/secure", "/backend/tls/svc.v1.Echo/Say"]) {
      const response = await fetch(`${gateway.url}${path}`);
      expect([path, response.status]).toEqual([path, 503]);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe("SERVICE_UNAVAILABLE");
    }
    expect(received).toBe(1);
  });
});
