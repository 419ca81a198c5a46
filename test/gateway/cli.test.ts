import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer as createNetServer, type AddressInfo } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { demoCli, gatewayCli, runCli } from "../support/cli.js";
import { GatewayConfigError } from "../../packages/gateway/src/index.js";
import { gatewayConfigFromEnv } from "../../packages/gateway/src/gateway-env.js";
import { HMAC_SECRET, JWT_SECRET } from "../support/gateway.js";

const dir = mkdtempSync(join(tmpdir(), "connect-gateway-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));


describe("connect-gateway CLI", () => {
  it("serve: starts from a routes file and the environment", async () => {
    const routes = join(dir, "routes.yaml");
    writeFileSync(routes, `version: "1.0"\nbackends:\n  echo:\n    upstream: $ECHO_URL\n`);
    const result = await runCli(
      ["serve", "--routes", routes, "--port", "0", "--host", "127.0.0.1"],
      { GATEWAY_HMAC_SECRET: HMAC_SECRET, JWT_SECRET, ECHO_URL: "http://127.0.0.1:9", LOG_LEVEL: "warn" },
      { until: /listening on http:\/\/127\.0\.0\.1:\d+ \(0 routes, 1 backend\)/ },
    );
    expect(result.stdout).toMatch(/connect-gateway listening on http:\/\/127\.0\.0\.1:\d+/);
    expect(result.stdout + result.stderr).not.toContain(HMAC_SECRET);
  });

  it("serve: its request lines reach stdout within moments at low traffic, and all of them before it exits", async () => {
    const routes = join(dir, "logging.yaml");
    writeFileSync(routes, `version: "1.0"\nbackends:\n  echo:\n    upstream: http://127.0.0.1:9\n`);
    const child = spawn(process.execPath, ["--conditions=connect-gateway-source", "--import", "tsx", gatewayCli, "serve", "--routes", routes, "--port", "0"], {
      env: { PATH: process.env.PATH ?? "", GATEWAY_HMAC_SECRET: HMAC_SECRET, JWT_SECRET },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    let stdout = "";
    const waiters: Array<() => void> = [];
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      for (const wake of waiters.splice(0)) wake();
    });
    const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
    const seen = async (pattern: RegExp, withinMs: number): Promise<RegExpMatchArray> => {
      const deadline = Date.now() + withinMs;
      for (;;) {
        const match = stdout.match(pattern);
        if (match !== null) return match;
        if (Date.now() > deadline) throw new Error(`not on stdout within ${withinMs} ms: ${pattern}\n${stdout}`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 20);
        });
      }
    };
    const completed = (path: string) => stdout.split("\n").filter((line) => line.includes('"msg":"request completed"') && line.includes(`"path":"${path}"`));
    try {
      const url = (await seen(/listening on (http:\/\/127\.0\.0\.1:\d+)/, 10_000))[1] as string;
      // One request on an idle gateway: its line is written without waiting for more.
      expect((await fetch(`${url}/health`)).status).toBe(200);
      await seen(/"path":"\/health"[^\n]*"msg":"request completed"/, 2_000);
      // Lines still gathered when it is told to stop are written before it exits.
      for (let i = 0; i < 5; i++) expect((await fetch(`${url}/ready`)).status).toBe(200);
      child.kill("SIGTERM");
      await exited;
      expect(completed("/ready")).toHaveLength(5);
      expect(completed("/health")).toHaveLength(1);
    } finally {
      clearTimeout(killer);
      child.kill("SIGKILL");
    }
  });

  it("serve: a reader of its stdout that stopped reading can neither stall calls nor keep it from exiting on SIGTERM", async () => {
    const routes = join(dir, "stalled-stdout.yaml");
    writeFileSync(routes, `version: "1.0"\nbackends:\n  echo:\n    upstream: http://127.0.0.1:9\n`);
    const child = spawn(process.execPath, ["--conditions=connect-gateway-source", "--import", "tsx", gatewayCli, "serve", "--routes", routes, "--port", "0"], {
      env: { PATH: process.env.PATH ?? "", GATEWAY_HMAC_SECRET: HMAC_SECRET, JWT_SECRET, GATEWAY_DRAIN_TIMEOUT_MS: "1000" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const killer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    let stdout = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.resume();
    const ended = new Promise((resolve) => child.stdout.on("end", resolve));
    let exitedAt = 0;
    const exited = new Promise<number | null>((resolve) =>
      child.on("exit", (code) => {
        exitedAt = Date.now();
        resolve(code);
      }),
    );
    try {
      const deadline = Date.now() + 10_000;
      while (!/listening on http:\/\/127\.0\.0\.1:\d+/.test(stdout) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)?.[1] as string;
      // From here on nobody reads: ~3,000 access lines are several times what a pipe holds.
      child.stdout.pause();
      for (let round = 0; round < 100; round++) {
        const answers = await Promise.all(Array.from({ length: 30 }, () => fetch(`${url}/health`).then((r) => r.status)));
        expect(answers.every((status) => status === 200)).toBe(true);
      }
      const sentAt = Date.now();
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      // The drain (1 s here) and at most 1 s of trying to write to the full pipe.
      expect(exitedAt - sentAt).toBeLessThan(4_000);
      child.stdout.resume();
      await ended;
      // What did get out is whole lines, in order.
      const lines = stdout.split("\n").filter((line) => line.includes('"msg":"request completed"'));
      expect(lines.length).toBeGreaterThan(50);
      for (const line of lines) expect(() => JSON.parse(line) as unknown).not.toThrow();
    } finally {
      clearTimeout(killer);
      child.kill("SIGKILL");
    }
  });

  it("serve: refuses a bad routes file with file, line and problem, and no stack", async () => {
    const routes = join(dir, "bad.yaml");
    writeFileSync(routes, `version: "1.0"\nroutes:\n  - path: /a\n    method: GET\n    proxy_upstream: $MISSING_URL\n    cache_ttl: 1 minute\n`);
    const result = await runCli(["serve", "--routes", routes, "--port", "0"], { GATEWAY_HMAC_SECRET: HMAC_SECRET, JWT_SECRET });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${routes}:5: proxy_upstream: environment variable MISSING_URL is not set`);
    expect(result.stderr).toContain(`${routes}:6: cache_ttl "1 minute" is not a duration`);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it("serve: names a missing secret without printing any secret", async () => {
    const result = await runCli(["serve", "--routes", "examples/routes.yaml"], { JWT_SECRET });
    expect(result.code).toBe(1);
    // Led by the variable a command-line user sets, the library option after it.
    expect(result.stderr.trim()).toBe("connect-gateway: GATEWAY_HMAC_SECRET is not set; it must be a string of at least 16 characters (the `hmacSecret` option)");
    const short = await runCli(["serve", "--routes", "examples/routes.yaml"], { JWT_SECRET, GATEWAY_HMAC_SECRET: "short" });
    expect(short.stderr.trim()).toBe("connect-gateway: GATEWAY_HMAC_SECRET must be a string of at least 16 characters (the `hmacSecret` option)");
    expect(short.stderr).not.toContain("short\n");
    // A variable left unset whose default fails a check against another: its default is named as the culprit, not its absence.
    const timeouts = await runCli(["serve", "--routes", "examples/routes.yaml"], { JWT_SECRET, GATEWAY_HMAC_SECRET: "x".repeat(32), GATEWAY_HEADERS_TIMEOUT_MS: "600000" });
    expect(timeouts.stderr.trim()).toBe(
      "connect-gateway: GATEWAY_REQUEST_TIMEOUT_MS (not set, so its default applies) must be at least headersTimeoutMs (the `requestTimeoutMs` option)",
    );
    const noTokens = await runCli(["serve", "--routes", "examples/routes.yaml"], { GATEWAY_HMAC_SECRET: "x".repeat(32) });
    expect(noTokens.stderr.trim()).toBe(
      "connect-gateway: set JWT_SECRET, JWKS_URL or INTROSPECTION_URL: `tokens` must configure at least one of hs256, jwks or introspection",
    );
    expect(result.stderr).not.toContain(JWT_SECRET);
  });

  it("npm start (examples/dev/cli.ts): starts the stack, passes every step of the tour, prints what to point services at", async () => {
    // A secret set in the environment is kept (a developer's own backends hold it across restarts).
    const hmacSecret = "ab".repeat(32);
    // The token curl it prints gets a token with the client's scopes: a write through the gateway passes.
    let agentsPost = 0;
    const tryIt = async (printed: string) => {
      const tokenLine = /TOKEN=\$\((curl [^\n]+)\)\n/.exec(printed)?.[1] as string;
      const token = execFileSync("sh", ["-c", tokenLine], { encoding: "utf8" }).trim();
      const gatewayUrl = /GATEWAY_URL=(\S+)/.exec(printed)?.[1] as string;
      const res = await fetch(`${gatewayUrl}/api/v1/agents`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: '{"name":"try-it"}' });
      agentsPost = res.status;
    };
    const { stdout, stderr } = await runCli(["--port", "0", "--oauth-port", "0"], { GATEWAY_HMAC_SECRET: hmacSecret }, { until: /Ctrl-C stops everything/, script: demoCli, whileRunning: tryIt });
    expect(agentsPost).toBe(201);
    expect(stdout).toContain(`export GATEWAY_HMAC_SECRET=${hmacSecret} `);
    for (const part of ["OAuth2 server", "echo backend", "agents backend", "gateway"]) {
      expect(stdout).toMatch(new RegExp(`✔ ${part} +http://127\\.0\\.0\\.1:\\d+`));
    }
    for (const step of ["service call", "user call", "server stream", "forged call"]) expect(stdout).toContain(`✔ ${step}:`);
    expect(stdout).not.toContain("✘");
    expect(stdout).toContain('the backend saw client "example-client", no user (service call)');
    expect(stdout).toContain('the backend saw client "web-app", user "user-42" <ada@example.com>');
    expect(stdout).toContain("the backend refused it: HTTP 403 permission_denied");
    expect(stdout).toMatch(/export GATEWAY_URL=http:\/\/127\.0\.0\.1:\d+\n/);
    expect(stdout).toMatch(/export GATEWAY_CLIENT_ID=example-client\n/);
    expect(stdout).toMatch(/export GATEWAY_CLIENT_SECRET=[\w-]{32} +# scopes: /);
    expect(stdout).toMatch(/export GATEWAY_HMAC_SECRET=[0-9a-f]{64} /);
    // Pasted into a shell, the lines set every variable.
    const pasted = stdout.split("\n").filter((line) => line.startsWith("  export ")).join("\n");
    expect(execFileSync("sh", ["-c", `${pasted}\nenv`], { encoding: "utf8", env: {} })).toContain(`GATEWAY_HMAC_SECRET=${hmacSecret}\n`);
    expect(stderr).toBe(""); // no oidc-provider notices, no log lines
  });

  it("--version, --help on every command (exit 0); no command, an unknown command or flag: usage, exit 2", async () => {
    const { version } = JSON.parse(readFileSync(new URL("../../packages/gateway/package.json", import.meta.url), "utf8")) as { version: string };
    expect((await runCli(["--version"], {})).stdout.trim()).toBe(version);
    for (const args of [["--help"], ["-h"], ["serve", "--help"], ["explain", "-h"]]) {
      const result = await runCli(args, {});
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/^Usage: connect-gateway/);
    }
    const unknown = await runCli(["serve", "--routes", "r.yaml", "--hots", "0.0.0.0"], {});
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("Unknown option '--hots'");
    expect(unknown.stderr).toContain("Usage: connect-gateway serve");
    expect((await runCli(["srve"], {})).stderr).toContain('unknown command "srve"');
    const none = await runCli([], {});
    expect([none.code, none.stdout]).toEqual([2, ""]);
    expect(none.stderr).toContain("a command is needed");
    expect(none.stderr).toContain("Usage: connect-gateway");
  });

  it("a bad --port value is a usage mistake (exit 2, with the usage); a bad PORT names the variable (exit 1)", async () => {
    const routes = join(dir, "ports.yaml");
    writeFileSync(routes, `version: "1.0"\nbackends:\n  echo:\n    upstream: http://127.0.0.1:9\n`);
    const env = { GATEWAY_HMAC_SECRET: HMAC_SECRET, JWT_SECRET, LOG_LEVEL: "warn" };
    for (const args of [["serve", "--routes", routes, "--port", "80x"], ["dev", "--routes", routes, "--oauth-port", "70000"]]) {
      const result = await runCli(args, env);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/must be a port number \(0-65535\), got "(80x|70000)"/);
      expect(result.stderr).toContain(`Usage: connect-gateway ${args[0]}`);
    }
    // The command line is checked before the environment: a bad flag is told as such even without a secret.
    for (const args of [["serve", "--routes", routes, "--port", "abc"], ["dev", "--routes", routes, "--port", "abc"]]) {
      const noSecret = await runCli(args, { LOG_LEVEL: "warn" });
      expect([args[0], noSecret.code]).toEqual([args[0], 2]);
      expect(noSecret.stderr).toContain('--port must be a port number (0-65535), got "abc"');
    }
    const fromEnv = await runCli(["serve", "--routes", routes], { ...env, PORT: "eighty" });
    expect(fromEnv.code).toBe(1);
    expect(fromEnv.stderr).toContain('PORT must be a port number (0-65535), got "eighty"');
    // A port another process holds: the flag that chooses another is named.
    const holder = createNetServer();
    await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
    try {
      const taken = String((holder.address() as AddressInfo).port);
      const busy = await runCli(["serve", "--routes", routes, "--port", taken], env);
      expect(busy.code).toBe(1);
      expect(busy.stderr).toContain("EADDRINUSE");
      expect(busy.stderr).toContain("choose another port with --port");
      // dev: the one flag whose port is taken; the same port twice is a usage mistake.
      const devEnv = { ...env, LOG_LEVEL: "warn" };
      const oauthBusy = await runCli(["dev", "--routes", routes, "--port", "0", "--oauth-port", taken], devEnv);
      expect([oauthBusy.code, oauthBusy.stderr.trim()]).toEqual([1, `connect-gateway: port ${taken} on 127.0.0.1 is in use by another process: choose another with --oauth-port (the token issuer's)`]);
      const gatewayBusy = await runCli(["dev", "--routes", routes, "--port", taken, "--oauth-port", "0"], devEnv);
      expect([gatewayBusy.code, gatewayBusy.stderr.trim()]).toEqual([1, `connect-gateway: port ${taken} on 127.0.0.1 is in use by another process: choose another with --port (the gateway's)`]);
      const same = await runCli(["dev", "--routes", routes, "--port", "8096", "--oauth-port", "8096"], devEnv);
      expect(same.code).toBe(2);
      expect(same.stderr).toContain("--port and --oauth-port must differ (the gateway and its token issuer each need one): both are 8096");
    } finally {
      holder.close();
    }
  });

  it("serve listens on loopback unless --host or HOST says otherwise", async () => {
    const routes = join(dir, "loopback.yaml");
    writeFileSync(routes, `version: "1.0"\nbackends:\n  echo:\n    upstream: http://127.0.0.1:9\n`);
    const result = await runCli(
      ["serve", "--routes", routes, "--port", "0"],
      { GATEWAY_HMAC_SECRET: HMAC_SECRET, JWT_SECRET, LOG_LEVEL: "warn" },
      { until: /listening on/ },
    );
    expect(result.stdout).toMatch(/connect-gateway listening on http:\/\/127\.0\.0\.1:\d+/);
    // A host that is no address here: where it came from, and what would do.
    const env = { GATEWAY_HMAC_SECRET: HMAC_SECRET, JWT_SECRET, LOG_LEVEL: "warn" };
    const badHost = await runCli(["serve", "--routes", routes, "--port", "0"], { ...env, HOST: "999.1.1.1" });
    expect([badHost.code, badHost.stderr]).toEqual([1, expect.stringContaining('cannot listen on "999.1.1.1" (HOST): no such host; use 127.0.0.1, 0.0.0.0')]);
    const badFlag = await runCli(["serve", "--routes", routes, "--port", "0", "--host", "10.255.255.254"], env);
    expect([badFlag.code, badFlag.stderr]).toEqual([1, expect.stringContaining('cannot listen on "10.255.255.254" (--host): not an address of this machine')]);
    // A size with a unit: the unit the variable takes, with an example.
    const unit = await runCli(["serve", "--routes", routes, "--port", "0"], { ...env, BODY_LIMIT: "4MB" });
    expect([unit.code, unit.stderr]).toEqual([1, expect.stringContaining("BODY_LIMIT")]);
    expect(unit.stderr).toContain("must be a whole number of bytes, e.g. 4194304 for 4 MiB");
  });

  it("maps the environment to the gateway configuration", () => {
    const config = gatewayConfigFromEnv("routes.yaml", {
      GATEWAY_HMAC_SECRET: HMAC_SECRET,
      JWT_SECRET,
      JWKS_URL: "http://oauth/jwks",
      OAUTH2_ISSUER: "http://oauth",
      OAUTH2_AUDIENCE: "urn:api",
      REDIS_URL: "redis://127.0.0.1:6379",
      RATE_LIMIT_MAX: "50",
      RATE_LIMIT_WINDOW: "10s",
      CORS_ORIGINS: "https://a.example, https://b.example",
    });
    expect(config.tokens).toEqual({
      hs256: { secret: JWT_SECRET, issuer: "eloquent-gateway", audience: "eloquent-api" },
      jwks: { url: "http://oauth/jwks", issuer: "http://oauth", audience: "urn:api" },
    });
    expect(config.rateLimit).toEqual({ max: 50, timeWindowMs: 10_000, redisUrl: "redis://127.0.0.1:6379" });
    expect(config.corsOrigins).toEqual(["https://a.example", "https://b.example"]);
    expect(gatewayConfigFromEnv("r", { RATE_LIMIT_MAX: "0" }).rateLimit).toBe(false);
    expect(() => gatewayConfigFromEnv("r", { JWKS_URL: "http://oauth/jwks" })).toThrow(
      new GatewayConfigError("OAUTH2_ISSUER", "is required with JWKS_URL"),
    );
    expect(() => gatewayConfigFromEnv("r", { RATE_LIMIT_WINDOW: "soon" })).toThrow("`RATE_LIMIT_WINDOW` must be a duration");
  });
});
