// The gateway from a real browser: headless Chromium (Debian's `chromium`,
// driven by playwright-core) loads a page from an origin of its own, whose
// script — bundled for the browser — calls the gateway with
// @connectrpc/connect-web and connect-gateway/web's interceptors (routing by
// the proto option), and with fetch for REST. Everything on loopback. Needs
// Chromium: without it this fails, saying how to install it (.ci/run does).
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startEchoBackend, type ExampleBackend } from "../../examples/dev/example-backends.js";
import type { Gateway } from "../../packages/gateway/src/index.js";
import { ECHO_BACKENDS, HMAC_SECRET, type RecordingBackend, seedToken, startRecordingBackend, startSeedGateway } from "../support/gateway.js";
import { launchChromium } from "./chromium.js";
import { bundlePageScript, startPageServer, type PageServer } from "./page-server.js";
import type { CallArgs, GatewayPage, Outcome, RestOutcome, Wire } from "./page/app.js";

let browser: Browser | undefined;
let page: Page;
let otherPage: Page;
let allowed: PageServer;
let disallowed: PageServer;
let echoBackend: ExampleBackend;
let rest: RecordingBackend;
let gateway: Gateway;
let readToken: string;
const browserRequests: string[] = [];
const consoleLines: string[] = [];

async function openPage(server: PageServer): Promise<Page> {
  const p = await browser!.newPage();
  p.on("console", (m) => consoleLines.push(`[${server.origin}] ${m.type()}: ${m.text()}`));
  p.on("pageerror", (e) => consoleLines.push(`[${server.origin}] pageerror: ${e.message}`));
  p.on("request", (r) => browserRequests.push(`${r.method()} ${r.url()}`));
  await p.goto(`${server.origin}/`);
  await p.waitForFunction(() => "gatewayPage" in globalThis, undefined, { timeout: 10_000 });
  return p;
}

beforeAll(async () => {
  // Chromium first: without it, fail at once with the install hint.
  const launching = launchChromium();
  const script = await bundlePageScript();
  [allowed, disallowed, echoBackend, rest] = await Promise.all([
    startPageServer(script),
    startPageServer(script),
    startEchoBackend(HMAC_SECRET),
    startRecordingBackend(),
  ]);
  const item = (method: string, path: string, extra = "") =>
    `  - path: ${path}\n    method: ${method}\n    proxy_upstream: $REST_URL\n${extra}`;
  gateway = await startSeedGateway(
    `version: "1.0"
routes:
${item("GET", "/api/v1/items")}${item("POST", "/api/v1/items")}${item("PUT", "/api/v1/items/{id}")}${item("DELETE", "/api/v1/items/{id}")}${item("GET", "/api/v1/admin", "    scopes: [admin]\n")}
backends:
${ECHO_BACKENDS}`,
    { ECHO_URL: echoBackend.url, REST_URL: rest.url },
    { corsOrigins: [allowed.origin] },
  );
  readToken = await seedToken({ user_id: "browser-user", scopes: ["read"] });
  browser = await launching;
  [page, otherPage] = await Promise.all([openPage(allowed), openPage(disallowed)]);
}, 30_000);

afterAll(async () => {
  await browser?.close();
  await Promise.all([gateway?.close(), echoBackend?.close(), rest?.close(), allowed?.close(), disallowed?.close()]);
});

beforeEach((context) => {
  browserRequests.length = 0;
  context.onTestFailed(async () => {
    if (browser === undefined) return;
    const dir = mkdtempSync(join(tmpdir(), "connect-gateway-browser-"));
    const file = join(dir, `${context.task.name.replace(/[^A-Za-z0-9]+/g, "-").slice(0, 80)}.png`);
    await page?.screenshot({ path: file, fullPage: true }).catch(() => undefined);
    console.error(`browser test failed: screenshot ${file}\nbrowser console:\n${consoleLines.join("\n")}`);
  });
});

const echo = (on: Page, args: Omit<CallArgs, "gatewayUrl"> & { text: string }): Promise<Outcome> =>
  on.evaluate((a) => (globalThis as unknown as { gatewayPage: GatewayPage }).gatewayPage.echo(a), {
    gatewayUrl: gateway.url,
    ...args,
  });
const echoStream = (args: Omit<CallArgs, "gatewayUrl"> & { text: string; repeat: number }): Promise<Outcome> =>
  page.evaluate((a) => (globalThis as unknown as { gatewayPage: GatewayPage }).gatewayPage.echoStream(a), {
    gatewayUrl: gateway.url,
    ...args,
  });
const restCall = (on: Page, method: string, path: string, options: { token?: string; body?: unknown } = {}): Promise<RestOutcome> =>
  on.evaluate((a) => (globalThis as unknown as { gatewayPage: GatewayPage }).gatewayPage.rest(a), {
    url: `${gateway.url}${path}`,
    method,
    ...options,
  });

const echoPath = "/backend/echo/example.v1.EchoService/Echo";

describe("a page on another origin calls the gateway", () => {
  it.each<[Wire, string]>([
    ["connect-json", "POST"],
    ["connect-binary", "POST"],
    ["connect-get", "GET"],
    ["grpc-web", "POST"],
  ])("unary over %s, routed by the proto option", async (wire, method) => {
    const outcome = await echo(page, { wire, token: readToken, text: `hi ${wire}` });
    expect(outcome).toEqual({ ok: true, texts: [`hi ${wire}`], userId: "browser-user" });
    const sent = browserRequests.filter((r) => r.includes(echoPath));
    expect(sent).toHaveLength(1);
    expect(sent[0]!.startsWith(`${method} ${gateway.url}${echoPath}`)).toBe(true);
    if (wire === "connect-get") expect(sent[0]).toMatch(/[?&]connect=v1/);
  });

  it.each<Wire>(["connect-json", "grpc-web"])("server streaming over %s", async (wire) => {
    const outcome = await echoStream({ wire, token: readToken, text: "s", repeat: 3 });
    expect(outcome).toEqual({ ok: true, texts: ["s 1", "s 2", "s 3"], userId: "browser-user" });
  });

  it("REST GET, POST, PUT and DELETE (PUT and DELETE need a preflight allowing them); exposed headers readable", async () => {
    rest.requests.length = 0;
    const calls: [string, string, unknown][] = [
      ["GET", "/api/v1/items", undefined],
      ["POST", "/api/v1/items", { name: "Ada" }],
      ["PUT", "/api/v1/items/7", { name: "Grace" }],
      ["DELETE", "/api/v1/items/7", undefined],
    ];
    for (const [method, path, body] of calls) {
      const res = await restCall(page, method, path, { token: readToken, body });
      expect(res, `${method} ${path}`).toMatchObject({ status: 200, body: { ok: true, url: path, user: "browser-user" } });
      expect(res.headers["x-request-id"], "X-Request-ID is exposed").toMatch(/.+/);
      expect(res.headers["x-ratelimit-remaining"], "X-RateLimit-Remaining is exposed").toMatch(/^\d+$/);
    }
    expect(rest.requests.map((r) => `${r.method} ${r.url}`)).toEqual(calls.map(([m, p]) => `${m} ${p}`));
    expect(rest.requests[2]!.body.toString()).toBe('{"name":"Grace"}');
  });

  it.each<Wire>(["connect-json", "connect-get", "grpc-web"])("no token: Unauthenticated (%s)", async (wire) => {
    const outcome = await echo(page, { wire, text: "x" });
    expect(outcome).toMatchObject({ ok: false, code: Code.Unauthenticated });
  });

  it.each<Wire>(["connect-binary", "grpc-web"])("a message over the gateway's body limit (4 MiB): ResourceExhausted, not an opaque network error (%s)", async (wire) => {
    // gRPC-web sends its errors with HTTP 200: a browser drops such an early answer if its upload is reset.
    const outcome = await echo(page, { wire, token: readToken, text: "x".repeat(5 * 1024 * 1024) });
    expect(outcome).toMatchObject({ ok: false, code: Code.ResourceExhausted });
  });

  it.each<Wire>(["connect-binary", "grpc-web"])("missing scope: PermissionDenied (%s, per-call service)", async (wire) => {
    const outcome = await echo(page, { wire, token: readToken, service: "echo-admin", text: "x" });
    expect(outcome).toMatchObject({ ok: false, code: Code.PermissionDenied });
    expect(browserRequests.some((r) => r.includes("/backend/echo-admin/example.v1.EchoService/Echo"))).toBe(true);
    expect((await restCall(page, "GET", "/api/v1/admin", { token: readToken })).status).toBe(403);
  });

  it("a page on an origin not allowed is refused by the browser; nothing reaches the services", async () => {
    rest.requests.length = 0;
    const outcome = await echo(otherPage, { wire: "connect-json", token: readToken, text: "x" });
    expect(outcome.ok).toBe(false);
    expect((await restCall(otherPage, "PUT", "/api/v1/items/1", { token: readToken, body: {} })).status).toBe(0);
    expect((await restCall(otherPage, "GET", "/api/v1/items", { token: readToken })).status).toBe(0);
    expect(rest.requests.filter((r) => r.method !== "GET")).toEqual([]);
  });
});
