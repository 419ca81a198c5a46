// `hmac_secret: $VAR` on a route or backend: that upstream's requests are
// signed with its own secret, so a request signed for one service never
// verifies at another — with one secret for all, a caller on the hop could
// replay a request captured at one service to every other service that
// serves the same target. Real gateway and services on loopback.
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseRoutesFile, RoutesFileError, type Gateway } from "../../packages/gateway/src/index.js";
import { createGatewayAuth } from "../../src/server/index.js";
import { closeInTurn, HMAC_SECRET, routesFileText, seedToken, startSeedGateway } from "../support/gateway.js";
import { rawRequest } from "../support/raw-request.js";

const USERS_SECRET = "users-service-secret-0123456789";
const BILLING_SECRET = "billing-service-secret-9876543210";

interface Service {
  readonly url: string;
  readonly port: number;
  /** The raw headers and body of each request it accepted. */
  readonly accepted: { headers: [string, string][]; body: Buffer; url: string }[];
  close(): Promise<void>;
}

async function startService(secret: string, name: string): Promise<Service> {
  const auth = createGatewayAuth({ hmacSecret: secret, exposeRejectionReason: true, requireSignatureV2: true });
  const accepted: Service["accepted"] = [];
  const server: Server = createServer(async (req: IncomingMessage, res) => {
    const verified = await auth.verifyNodeRequest(req, res);
    if (verified === undefined) return;
    const headers: [string, string][] = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i] as string, req.rawHeaders[i + 1] as string]);
    accepted.push({ headers, body: verified.body, url: req.url ?? "" });
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ from: name, caller: verified.identity?.clientId }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    accepted,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe("hmac_secret: one secret per upstream", () => {
  let users: Service;
  let billing: Service;
  let shared: Service;
  let gateway: Gateway;
  let token: string;

  beforeAll(async () => {
    [users, billing, shared] = await Promise.all([
      startService(USERS_SECRET, "users"),
      startService(BILLING_SECRET, "billing"),
      startService(HMAC_SECRET, "shared"),
    ]);
    gateway = await startSeedGateway(
      routesFileText({
        routes: [
          { path: "/v1/profile", method: "POST", proxy_upstream: "$USERS/api", hmac_secret: "$USERS_SECRET" },
          { path: "/api/v1/profile", method: "POST", proxy_upstream: "$BILLING", hmac_secret: "${BILLING_SECRET}" },
          { path: "/api/v1/shared", method: "POST", proxy_upstream: "$SHARED" },
        ],
        backends: { billing: { upstream: "$BILLING", hmac_secret: "$BILLING_SECRET" } },
      }),
      { USERS: users.url, BILLING: billing.url, SHARED: shared.url, USERS_SECRET, BILLING_SECRET },
    );
    token = await seedToken({ client_id: "svc", user_id: undefined });
  });
  afterAll(() => closeInTurn(gateway, users, billing, shared));

  const call = async (path: string) => {
    const res = await fetch(gateway.url + path, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: '{"id":1}',
    });
    return [res.status, await res.text()];
  };

  it("each upstream verifies the requests signed for it; one without hmac_secret uses the gateway's secret", async () => {
    expect(await call("/v1/profile")).toEqual([200, '{"from":"users","caller":"svc"}']);
    expect(await call("/api/v1/profile")).toEqual([200, '{"from":"billing","caller":"svc"}']);
    expect(await call("/backend/billing/pkg.S/M")).toEqual([200, '{"from":"billing","caller":"svc"}']);
    expect(await call("/api/v1/shared")).toEqual([200, '{"from":"shared","caller":"svc"}']);
  });

  it("a request captured at one service does not verify at another that serves the same target", async () => {
    await call("/v1/profile");
    const captured = users.accepted.at(-1)!;
    expect(captured.url).toBe("/api/v1/profile");
    // Every header as the gateway sent it; the framing ones are rawRequest's own.
    const framing = new Set(["host", "content-length", "connection", "transfer-encoding"]);
    const headers = captured.headers.filter(([name]) => !framing.has(name.toLowerCase()));
    const replayed = await rawRequest(billing.port, { method: "POST", path: captured.url, headers, body: captured.body });
    expect(replayed.status).toBe(403);
    expect(JSON.parse(replayed.body)).toEqual({ message: "invalid_signature" });
  });
});

describe("hmac_secret in the routes file", () => {
  const yaml = (value: string) =>
    routesFileText({ backends: { billing: { upstream: "http://127.0.0.1:9", hmac_secret: value } } });
  const problems = (value: string, env: Record<string, string>) => {
    try {
      parseRoutesFile(yaml(value), { source: "routes.yaml", env });
      return [];
    } catch (e) {
      expect(e).toBeInstanceOf(RoutesFileError);
      return (e as RoutesFileError).problems.map((p) => p.message);
    }
  };

  it("must name an environment variable, never hold the secret, which is never echoed", () => {
    const literal = "a-secret-written-into-the-file";
    const messages = problems(literal, {});
    expect(messages).toEqual([expect.stringContaining("must name an environment variable ($NAME)")]);
    expect(messages.join(" ")).not.toContain(literal);
  });

  it("the variable must be set, to at least 16 characters (never echoed)", () => {
    expect(problems("$NOPE", {})).toEqual([expect.stringContaining("environment variable NOPE is not set")]);
    const short = problems("$SHORT", { SHORT: "too-short" });
    expect(short).toEqual([expect.stringContaining("SHORT must hold at least 16 characters")]);
    expect(short.join(" ")).not.toContain("too-short");
  });

  it("keeps the secret off the route's enumerable fields: a spread, JSON or log of it never shows it", () => {
    const routes = parseRoutesFile(yaml("$BILLING_SECRET"), { source: "routes.yaml", env: { BILLING_SECRET } });
    const [backend] = routes.backends;
    expect(backend?.hmacSecretEnv).toBe("BILLING_SECRET");
    expect(backend?.hmacSecret).toBe(BILLING_SECRET);
    expect(JSON.stringify(routes)).not.toContain(BILLING_SECRET);
    expect(JSON.stringify({ ...backend })).not.toContain(BILLING_SECRET);
  });
});
