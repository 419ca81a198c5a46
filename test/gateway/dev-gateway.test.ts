// `connect-gateway dev` as a developer uses it: their own backends (here the
// example ones) added through a routes file and the environment, a service
// client with nothing but the client's defaults and env, user tokens from the
// CLI and from the issuer's endpoint, secrets kept across restarts.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, createClient } from "@connectrpc/connect";
import { createGatewayTransport, withUserToken } from "connect-gateway/client";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { runCli } from "../support/cli.js";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import { startAgentsBackend, startEchoBackend, type ExampleBackend } from "../../examples/dev/example-backends.js";
import { startDevGateway, type DevGateway } from "../../packages/gateway/src/index.js";
import { rejectionOf, route, routesFileText } from "../support/gateway.js";

const dir = mkdtempSync(join(tmpdir(), "connect-gateway-dev-"));
const HMAC_SECRET = "my-backends-keep-this-hmac-secret-0123";
const JWT_SECRET = "my-frontend-keeps-this-jwt-secret-0123456789";
const routesFile = join(dir, "routes.yaml");
const agentsRoute = (method: string, scope: string) =>
  route(method, "/api/v1/agents", { proxy_upstream: "$MY_AGENTS_URL", auth_required: true, scopes: [scope] });
writeFileSync(
  routesFile,
  routesFileText({
    routes: [agentsRoute("GET", "read"), agentsRoute("POST", "write:agents")],
    backends: { echo: { upstream: "$MY_ECHO_URL", http2: true, auth_required: true, scopes: ["read"] } },
  }),
);

let echo: ExampleBackend;
let agents: ExampleBackend;
let dev: DevGateway;

beforeAll(async () => {
  // "Add your own backend": it verifies with the HMAC secret you chose, and the routes file names it by $VAR.
  echo = await startEchoBackend(HMAC_SECRET);
  agents = await startAgentsBackend(HMAC_SECRET);
  dev = await startDevGateway({
    routes: routesFile,
    env: {
      GATEWAY_HMAC_SECRET: HMAC_SECRET,
      JWT_SECRET,
      MY_ECHO_URL: echo.url,
      MY_AGENTS_URL: agents.url,
      LOG_LEVEL: "silent",
      // Read as `serve` reads them.
      CORS_ORIGINS: "http://127.0.0.1:5173",
      BODY_LIMIT: "65536",
    },
    port: 0,
    oauthPort: 0,
  });
});

afterAll(async () => {
  await dev?.close();
  await Promise.all([echo?.close(), agents?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

/** createGatewayTransport() with no option: everything from the environment a developer sets. */
function envOnlyTransport() {
  vi.stubEnv("GATEWAY_URL", dev.gateway.url);
  vi.stubEnv("APPCENTER_URL", dev.issuer.url);
  vi.stubEnv("GATEWAY_CLIENT_ID", dev.client.clientId);
  vi.stubEnv("GATEWAY_CLIENT_SECRET", dev.client.clientSecret);
  try {
    return createGatewayTransport();
  } finally {
    vi.unstubAllEnvs();
  }
}


describe("connect-gateway dev", () => {
  it("takes the secrets from the environment, so backends keep theirs across restarts", () => {
    expect(dev.hmacSecret).toBe(HMAC_SECRET);
    expect(dev.signing.secret).toBe(JWT_SECRET);
    expect(dev.client.clientId).toBe("dev-client");
    // The client may ask for every scope the routes file names.
    expect(dev.client.scopes).toEqual(["read", "write:agents"]);
  });

  it("a service with only the client's defaults and env: the token comes from the issuer's /oauth/token", async () => {
    const transport = envOnlyTransport();
    const answer = await createClient(EchoService, transport).echo({ text: "hi" });
    expect(answer.text).toBe("hi");
    expect(answer.caller?.clientId).toBe("dev-client");
    expect(answer.caller?.userId).toBe("");
    expect(dev.issuer.tokenRequests).toBe(1);
  });

  it("a wrong client secret gets invalid_client; a scope the client may not have gets invalid_scope", async () => {
    const post = (auth: string, body: string) =>
      fetch(dev.issuer.tokenUrl, {
        method: "POST",
        headers: { authorization: `Basic ${Buffer.from(auth).toString("base64")}`, "content-type": "application/x-www-form-urlencoded" },
        body,
      });
    const wrong = await post(`${dev.client.clientId}:nope`, "grant_type=client_credentials");
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toEqual({ error: "invalid_client" });
    const scope = await post(`${dev.client.clientId}:${dev.client.clientSecret}`, "grant_type=client_credentials&scope=admin");
    expect(scope.status).toBe(400);
    expect(((await scope.json()) as { error: string }).error).toBe("invalid_scope");
  });

  it("connect-gateway token: a user token the running stack accepts, with the scopes asked for", async () => {
    const minted = await runCli(["token", "--user", "alice", "--email", "alice@example.com", "--scopes", "read"], { JWT_SECRET });
    expect(minted.stderr).toBe("");
    expect(minted.code).toBe(0);
    const token = minted.stdout.trim();
    const list = await fetch(`${dev.gateway.url}/api/v1/agents`, { headers: { authorization: `Bearer ${token}` } });
    expect(list.status).toBe(200);
    expect(((await list.json()) as { seen_as: string }).seen_as).toBe("alice");
    // write:agents was not asked for: the gateway refuses the POST.
    const create = await fetch(`${dev.gateway.url}/api/v1/agents`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: '{"name":"Grace"}',
    });
    expect(create.status).toBe(403);
  });

  it("POST /dev/user-token: a local frontend on another origin gets a user token", async () => {
    const answer = await fetch(dev.issuer.userTokenUrl, {
      method: "POST",
      headers: { origin: "http://localhost:5173", "content-type": "application/json" },
      body: JSON.stringify({ sub: "bob", scope: "read write:agents", given_name: "Bob" }),
    });
    expect(answer.status).toBe(200);
    expect(answer.headers.get("access-control-allow-origin")).toBe("http://localhost:5173");
    const { access_token } = (await answer.json()) as { access_token: string };
    const created = await fetch(`${dev.gateway.url}/api/v1/agents`, {
      method: "POST",
      headers: { authorization: `Bearer ${access_token}`, "content-type": "application/json" },
      body: '{"name":"Grace"}',
    });
    expect(created.status).toBe(201);
    expect(((await created.json()) as { created_by: string }).created_by).toBe("bob");
    const bad = await fetch(dev.issuer.userTokenUrl, { method: "POST", body: JSON.stringify({ sub: "a|b" }) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error_description: string }).error_description).toContain("subject must be");
  });

  it("answers pages and names of this machine only: no token for another site, nothing through DNS rebinding", async () => {
    const mint = (origin: string) =>
      fetch(dev.issuer.userTokenUrl, { method: "POST", headers: { origin, "content-type": "application/json" }, body: JSON.stringify({ sub: "mallory", scope: "admin" }) });
    const remote = await mint("https://evil.example");
    expect([remote.status, remote.headers.get("access-control-allow-origin")]).toEqual([403, null]);
    for (const origin of ["http://127.0.0.1:3000", "http://app.localhost:8000", "https://localhost"]) {
      const local = await mint(origin);
      expect([origin, local.status, local.headers.get("access-control-allow-origin")]).toEqual([origin, 200, origin]);
    }
    // A name of the attacker's that resolves to 127.0.0.1: the Host gives it away.
    const withHost = (url: string, host: string) =>
      new Promise<number>((resolve, reject) => {
        const req = httpRequest(url, { method: "GET", headers: { host } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
        req.end();
      });
    const port = (url: string) => new URL(url).port;
    expect(await withHost(`${dev.gateway.url}/health`, `rebind.evil.example:${port(dev.gateway.url)}`)).toBe(403);
    expect(await withHost(`${dev.gateway.url}/health`, `localhost:${port(dev.gateway.url)}`)).toBe(200);
    expect(await withHost(`${dev.issuer.url}/oauth/token`, `rebind.evil.example:${port(dev.issuer.url)}`)).toBe(403);
  });

  it("reads CORS_* and BODY_LIMIT from the environment, as serve does", async () => {
    const preflight = await fetch(`${dev.gateway.url}/api/v1/agents`, {
      method: "OPTIONS",
      headers: { origin: "http://127.0.0.1:5173", "access-control-request-method": "GET", "access-control-request-headers": "authorization" },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe("http://127.0.0.1:5173");
    const token = await dev.issuer.issueUserToken({ subject: "body-limit-user", scopes: ["write:agents"] });
    const tooBig = await fetch(`${dev.gateway.url}/api/v1/agents`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "x".repeat(70_000) }),
    });
    expect(tooBig.status).toBe(413);
  });

  it("a token without the scope a backend needs: PermissionDenied through Connect", async () => {
    const token = await dev.issuer.issueUserToken({ subject: "carol", scopes: [] });
    const transport = envOnlyTransport();
    const e = await rejectionOf(withUserToken(token, () => createClient(EchoService, transport).echo({ text: "x" })));
    expect(e.code).toBe(Code.PermissionDenied);
  });

  it("bad flags name the flag; no JWT_SECRET says where to get it", async () => {
    const badUser = await runCli(["token", "--user", "a|b"], { JWT_SECRET });
    expect(badUser.code).toBe(2);
    expect(badUser.stderr).toContain("--user must be 1-256 visible characters");
    const badScope = await runCli(["token", "--user", "alice", "--scopes", 'read "admin"'], { JWT_SECRET });
    expect(badScope.stderr).toContain('--scopes has "\\"admin\\"", which is not an OAuth2 scope');
    // A comma is legal in a scope, so "read,write" is minted as one: with a note saying how to ask for two.
    const comma = await runCli(["token", "--user", "alice", "--scopes", "read,write:agents"], { JWT_SECRET });
    expect(comma.code).toBe(0);
    expect(comma.stderr).toContain('--scopes takes scopes separated by spaces; "read,write:agents" is one scope (for several: --scopes "read write:agents")');
    const badTtl = await runCli(["token", "--user", "alice", "--ttl", "forever"], { JWT_SECRET });
    expect(badTtl.stderr).toContain('--ttl must be a duration such as 15m or 1h, got "forever"');
    const noSecret = await runCli(["token", "--user", "alice"], {});
    expect(noSecret.stderr).toContain("token signs with JWT_SECRET, which is not set");
    // Called right, missing its configuration: 1, like serve without its secret.
    expect(noSecret.code).toBe(1);
    const noRoutes = await runCli(["dev"], {});
    expect(noRoutes.code).toBe(2);
    expect(noRoutes.stderr).toContain("dev needs --routes <file>");
  });

  it("the dev command prints where everything is and keeps the environment's secrets", async () => {
    const result = await runCli(
      ["dev", "--routes", routesFile, "--port", "0", "--oauth-port", "0"],
      { GATEWAY_HMAC_SECRET: HMAC_SECRET, JWT_SECRET, MY_ECHO_URL: echo.url, MY_AGENTS_URL: agents.url, LOG_LEVEL: "warn" },
      { until: /Ctrl-C stops it\./ },
    );
    expect(result.stdout).toMatch(/export GATEWAY_URL=http:\/\/127\.0\.0\.1:\d+\n/);
    expect(result.stdout).toMatch(/export APPCENTER_URL=http:\/\/127\.0\.0\.1:\d+\n/);
    expect(result.stdout).toContain(`export GATEWAY_HMAC_SECRET=${HMAC_SECRET} `);
    expect(result.stdout).toContain("export GATEWAY_CLIENT_ID=dev-client\n");
    expect(result.stdout).toContain("# for backends behind this gateway: createGatewayAuth");
    // Pasted into a shell, the lines set every variable for the commands that follow.
    const pasted = result.stdout.split("\n").filter((line) => line.startsWith("  export ")).join("\n");
    const env = execFileSync("sh", ["-c", `${pasted}\nenv`], { encoding: "utf8", env: {} });
    expect(env).toContain(`GATEWAY_HMAC_SECRET=${HMAC_SECRET}\n`);
    expect(env).toContain(`JWT_SECRET=${JWT_SECRET}\n`);
    expect(env).toMatch(/^GATEWAY_URL=http:\/\/127\.0\.0\.1:\d+$/m);
    expect(env).toMatch(/^GATEWAY_CLIENT_SECRET=\S+$/m);
  });

  it("a client whose GATEWAY_URL names the token issuer is told so, not an empty Unimplemented", async () => {
    const misdirected = createClient(
      EchoService,
      createGatewayTransport({ gatewayUrl: dev.issuer.url, appcenterUrl: dev.issuer.url, clientId: dev.client.clientId, clientSecret: dev.client.clientSecret }),
    );
    const error = await rejectionOf(misdirected.echo({ text: "hi" }));
    expect(error.code).toBe(Code.Unimplemented);
    expect(error.rawMessage).toContain("connect-gateway dev's token issuer, not the gateway");
  });

  it("names the secret each entry with its own hmac_secret signs with, and whom the shared one is for", async () => {
    const ownSecretFile = join(dir, "own-secret.yaml");
    writeFileSync(
      ownSecretFile,
      routesFileText({
        routes: [agentsRoute("GET", "read")],
        backends: { echo: { upstream: "$MY_ECHO_URL", http2: true, hmac_secret: "$ECHO_HMAC_SECRET" } },
      }),
    );
    const result = await runCli(
      ["dev", "--routes", ownSecretFile, "--port", "0", "--oauth-port", "0"],
      { JWT_SECRET, MY_ECHO_URL: echo.url, MY_AGENTS_URL: agents.url, ECHO_HMAC_SECRET: "echo-service-own-secret-0123456789", LOG_LEVEL: "warn" },
      { until: /Ctrl-C stops it\./ },
    );
    expect(result.stdout).toContain("# for the entries without their own hmac_secret: createGatewayAuth");
    expect(result.stdout).toContain("/backend/echo signs with $ECHO_HMAC_SECRET");
    // The variable's name only, never its value.
    expect(result.stdout).not.toContain("echo-service-own-secret-0123456789");
  });
});
