import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Code } from "@connectrpc/connect";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigurationError,
  gatewayCall,
  ConnectionError,
  createGatewayClient,
  GatewayResponseError,
  withService,
  withUserToken,
  type GatewayOptions,
} from "../../src/client/index.js";
import { closedPortUrl } from "../support/token-endpoint.js";
import { startOAuth2Server, type OAuth2Server } from "../../src/testing/oauth2-server.js";
import { createMemoryTokenStore } from "../../src/client/token-store.js";

const client = { clientId: "rest", clientSecret: "rest-secret", scopes: ["read"] };

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
  contentType: string | undefined;
  custom: string | undefined;
  body: string;
}

let oauth: OAuth2Server;
let server: Server;
let base: string;
let rejectToken: (authorization: string | undefined) => boolean = () => false;
const seen: Seen[] = [];

// A Rails-like JSON backend on node:http: the path decides the answer.
beforeAll(async () => {
  oauth = await startOAuth2Server({ clients: [client] });
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString();
      seen.push({
        method: req.method ?? "",
        url: req.url ?? "",
        authorization: req.headers.authorization,
        contentType: req.headers["content-type"],
        custom: req.headers["x-custom"] as string | undefined,
        body,
      });
      const path = (req.url ?? "").split("?")[0] ?? "";
      const json = (status: number, value: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(value));
      };
      if (rejectToken(req.headers.authorization)) return json(401, { error: "unauthorized" });
      if (path.endsWith("/slow")) return void setTimeout(() => json(200, {}), 2000).unref();
      if (path.endsWith("/array")) return json(200, [{ id: 1 }, { id: 2 }]);
      if (path.endsWith("/empty")) return void res.writeHead(204).end();
      if (path.endsWith("/missing")) return json(404, { error: { code: "NOT_FOUND", message: "no such valuation" } });
      if (path.endsWith("/down")) return json(503, { error: { code: "SERVICE_UNAVAILABLE", message: "Upstream service is unavailable" } });
      if (path.endsWith("/html")) return void res.writeHead(200, { "content-type": "text/html" }).end("<html>");
      // An answer that begins, then breaks off: the connection reset, or the rest never sent.
      if (path.endsWith("/cut")) {
        res.writeHead(200, { "content-type": "application/json", "content-length": "100" }).write('{"partial":');
        return void setTimeout(() => res.socket?.resetAndDestroy(), 50);
      }
      if (path.endsWith("/stall")) return void res.writeHead(200, { "content-type": "application/json", "content-length": "100" }).write("{");
      return json(200, { method: req.method, echo: body === "" ? null : JSON.parse(body) });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterEach(() => {
  rejectToken = () => false;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await oauth.close();
});

const rest = (extra: Partial<GatewayOptions> = {}) =>
  // A token cache of each client's own: these tests count its token requests.
  createGatewayClient({ ...client, gatewayUrl: base, appcenterUrl: oauth.issuer, tokenPath: "/token", tokenStore: createMemoryTokenStore(), ...extra });
const last = () => seen.at(-1)!;

describe("createGatewayClient", () => {
  it("has every verb, returning parsed JSON objects and arrays", async () => {
    const api = rest();
    for (const verb of ["get", "post", "put", "patch", "delete"] as const) {
      expect(await api[verb]("/api/v1/thing", { service: "base-valeur" })).toEqual({
        method: verb.toUpperCase(),
        echo: null,
      });
      expect(last()).toMatchObject({ method: verb.toUpperCase(), url: "/backend/base-valeur/api/v1/thing" });
      expect(last().authorization).toMatch(/^Bearer \S+$/);
    }
    expect(await api.get<{ id: number }[]>("/api/v1/array", { service: "x" })).toEqual([{ id: 1 }, { id: 2 }]);
    expect(await api.delete("/api/v1/empty", { service: "x" })).toBeUndefined();
  });

  it("sends query, JSON body and headers", async () => {
    const api = rest();
    const answer = await api.post("/api/v1/valuations?fixed=1", {
      service: "base-valeur",
      query: { asset_id: 42, tag: ["a b", "c&d"], skip: undefined, flag: true },
      body: { asset_id: 42, name: "x" },
      headers: { "x-custom": "yes", authorization: "Bearer not-this-one" },
    });
    expect(answer).toEqual({ method: "POST", echo: { asset_id: 42, name: "x" } });
    expect(last()).toMatchObject({
      url: "/backend/base-valeur/api/v1/valuations?fixed=1&asset_id=42&tag=a+b&tag=c%26d&flag=true",
      contentType: "application/json",
      custom: "yes",
    });
    expect(last().authorization).not.toBe("Bearer not-this-one");
  });

  it("routes like the transport: per-call > withService > defaultService > unchanged, keeping a path prefix", async () => {
    const api = rest({ defaultService: "default", gatewayUrl: `${base}/gw` });
    await api.get("/a", { service: "per-call" });
    expect(last().url).toBe("/gw/backend/per-call/a");
    await withService("scoped", () => api.get("/a", { service: "per-call" }));
    expect(last().url).toBe("/gw/backend/per-call/a");
    await withService("scoped", () => api.get("/a"));
    expect(last().url).toBe("/gw/backend/scoped/a");
    await api.get("/a");
    expect(last().url).toBe("/gw/backend/default/a");
    await rest().get("/plain/path");
    expect(last().url).toBe("/plain/path");
  });

  it("shares the token cache across calls, and forwards user tokens without touching it", async () => {
    const api = rest();
    const before = oauth.tokenRequests;
    await api.get("/a");
    await api.get("/a");
    expect(oauth.tokenRequests).toBe(before + 1);
    await api.get("/a", { userToken: "user-1" });
    expect(last().authorization).toBe("Bearer user-1");
    await withUserToken("scoped-user", () => api.get("/a"));
    expect(last().authorization).toBe("Bearer scoped-user");
    await withUserToken("scoped-user", () => api.get("/a", { userToken: "per-call" }));
    expect(last().authorization).toBe("Bearer per-call");
    expect(oauth.tokenRequests).toBe(before + 1);
  });

  it("a 401 on the service token: one refresh and one retry; a backend that always 401s gets two calls", async () => {
    const api = rest();
    await api.get("/a");
    const stale = last().authorization;
    rejectToken = (a) => a === stale;
    let start = seen.length;
    await api.post("/a", { body: { n: 1 } });
    expect(seen.slice(start).map((s) => [s.authorization === stale, s.body])).toEqual([
      [true, '{"n":1}'],
      [false, '{"n":1}'],
    ]);
    rejectToken = () => true;
    // A client that has not just forced a refresh (see the backoff tests in tokens.test.ts).
    const fresh = rest();
    start = seen.length;
    const error = await fresh.get("/a").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GatewayResponseError);
    expect(error).toMatchObject({ status: 401, code: Code.Unauthenticated });
    expect(seen.length - start).toBe(2);
    // `api` forced a refresh a moment ago: its token is kept and the 401 is the answer, no retry.
    start = seen.length;
    await expect(api.get("/a")).rejects.toMatchObject({ status: 401 });
    expect(seen.length - start).toBe(1);
    start = seen.length;
    await expect(api.get("/a", { userToken: "u" })).rejects.toMatchObject({ status: 401 });
    expect(seen.length - start).toBe(1); // a user token is never retried
  });

  it("turns HTTP errors into GatewayResponseError with status, code and parsed body", async () => {
    const error = await rest().get("/v/missing", { service: "x" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GatewayResponseError);
    expect(error).toMatchObject({
      status: 404,
      code: Code.Unimplemented,
      body: { error: { code: "NOT_FOUND", message: "no such valuation" } },
    });
    expect((error as Error).message).toMatch(/GET \/backend\/x\/v\/missing answered HTTP 404/);
    await expect(rest().get("/html")).rejects.toMatchObject({ status: 200, code: Code.Internal });
  });

  it("unreachable gateway or its 503 → ConnectionError Unavailable; too slow → ConnectionError DeadlineExceeded", async () => {
    const down = createGatewayClient({ ...client, gatewayUrl: await closedPortUrl(), appcenterUrl: oauth.issuer, tokenPath: "/token" });
    await expect(down.get("/a")).rejects.toSatisfy((e) => e instanceof ConnectionError && e.code === Code.Unavailable);
    await expect(rest().get("/down")).rejects.toSatisfy((e) => e instanceof ConnectionError && e.code === Code.Unavailable);
    await expect(rest().get("/slow", { timeoutMs: 200 })).rejects.toSatisfy(
      (e) => e instanceof ConnectionError && e.code === Code.DeadlineExceeded,
    );
  });

  it("an answer that began and broke off says the call may have run — never 'safe to retry'", async () => {
    const before = seen.length;
    const cut = await rest().post("/api/cut", { body: { pay: 1 } }).catch((e: unknown) => e);
    expect(cut).toBeInstanceOf(ConnectionError);
    expect((cut as ConnectionError).code).toBe(Code.Unavailable);
    expect((cut as ConnectionError).message).toMatch(/answered \(HTTP 200\) but the connection failed \(ECONNRESET\) before the answer ended — the call may have run/);
    expect((cut as ConnectionError).message).not.toMatch(/safe to retry/);
    const stalled = await rest().post("/api/stall", { body: { pay: 1 }, timeoutMs: 300 }).catch((e: unknown) => e);
    expect(stalled).toBeInstanceOf(ConnectionError);
    expect((stalled as ConnectionError).code).toBe(Code.DeadlineExceeded);
    expect((stalled as ConnectionError).message).toMatch(/\(HTTP 200\) did not end before the deadline — the call may have run/);
    expect(seen.length - before).toBe(2); // each POST ran once
  });

  it("refuses a bad path, service, user token, body, header or timeout before any I/O, naming it", async () => {
    const api = rest();
    const start = seen.length;
    const tokenRequests = oauth.tokenRequests;
    const refused = async (call: Promise<unknown>, option: string) => {
      const error = await call.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConfigurationError);
      expect(error).toMatchObject({ option });
      return error as ConfigurationError;
    };
    for (const path of ["relative", "//evil.example/x", "/with space", "/frag#x"]) await refused(api.get(path), "path");
    // Segments that leave /backend/<service>/ once something resolves them, in every spelling; raw non-ASCII.
    for (const path of ["/a/../admin", "/a/%2e%2E/admin", "/./a", "/a/.%2e", "/a\\..\\admin", "/caf\u00e9"]) await refused(api.get(path), "path");
    // Framing headers are the client's own: a wrong length desynchronises a pooled connection.
    for (const name of ["Content-Length", "transfer-encoding", "Host", "connection", "TE"]) {
      const framing = await refused(api.post("/a", { body: { a: 1 }, headers: { [name]: "7" } }), "headers");
      expect(framing.message).toContain(JSON.stringify(name));
    }
    await refused(api.get("/a", { service: "../admin" }), "service");
    // A name must travel as it is: no non-ASCII (sent raw as Latin-1 before), no invisible character.
    for (const service of ["\u00e9", "x\u200by", "\u65e5\u672c", "a<b", "a|b"]) await refused(api.get("/a", { service }), "service");
    const badToken = await refused(api.get("/a", { userToken: "Bearer sk-user-token" }), "userToken");
    // A forwarded token that was not there: never the service's identity, unnoticed.
    const absent = await refused(api.get("/a", { userToken: undefined }), "userToken");
    expect(absent.message).toMatch(/is undefined: pass the end user's access token, or leave the option out/);
    expect(() => gatewayCall({ userToken: undefined })).toThrow(ConfigurationError);
    expect(String(badToken)).not.toContain("sk-user-token");
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    await refused(api.post("/a", { body: circular }), "body");
    await refused(api.post("/a", { body: { n: 1n } }), "body");
    const leaked = await refused(api.get("/a", { headers: { "x-api-key": "sk-live-123\r\nX-Evil: 1" } }), "headers");
    expect(leaked.message).toContain('"x-api-key"');
    expect(leaked.message).not.toContain("sk-live-123");
    await refused(api.get("/a", { headers: { "bad name": "v" } }), "headers");
    await refused(api.get("/a", { timeoutMs: -1 }), "timeoutMs");
    expect(seen.length).toBe(start);
    expect(oauth.tokenRequests).toBe(tokenRequests);
  });

  it("a caller's abort rejects with code Canceled, while waiting for the token or for the answer", async () => {
    const cold = rest();
    const early = new AbortController();
    early.abort();
    await expect(cold.get("/a", { signal: early.signal })).rejects.toMatchObject({ code: Code.Canceled });
    const late = new AbortController();
    const call = rest().get("/slow", { signal: late.signal });
    await expect.poll(() => last().url).toBe("/slow");
    late.abort();
    await expect(call).rejects.toMatchObject({ code: Code.Canceled });
  });
});
