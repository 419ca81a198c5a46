// Signature v2 through real servers on loopback: plain Node, Connect, Express
// and Fastify, each behind createGatewayAuth. Every identity header is
// signed, a request id runs once, v1-only identity fields are not trusted
// by default, and a replay store that fails never hangs a caller.
import { Code, ConnectError, createClient, type ConnectRouter } from "@connectrpc/connect";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import {
  createGatewayAuth,
  createMemoryReplayStore,
  currentUser,
  gatewayIdentity,
  requireScopes,
  type GatewayAuthOptions,
  type GatewayRejectionEvent,
  type MissingUserDetails,
  type ReplayStore,
} from "../../src/server/index.js";
import { gatewayKeyId, type IdentityHeaderValues } from "../../src/signing/index.js";
import { createTestGatewayTransport } from "../../src/testing/index.js";
import { rawRequest, type RawResponse } from "../support/raw-request.js";
import { ADA, signedHeaders, signedHeadersV2 } from "../support/signed-headers.js";
import { startAdapterServers, type Adapter } from "../support/adapter-servers.js";

const SECRET = "signature-v2-secret-\u00e9-41";
const ECHO = "/example.v1.EchoService/Echo";
const REST = "/api/whoami";
const body = Buffer.from(JSON.stringify({ text: "hello" }));
const JSON_TYPE = "application/json";
const ada: IdentityHeaderValues = {
  ...ADA,
  scopes: ["read"],
  orgId: "org-7",
  role: "member",
};

const running: { close(): Promise<void> }[] = [];
afterAll(async () => {
  for (const s of running) await s.close();
});

// Connect: Echo answers with what requireScopes allowed; the REST servers
// answer with the identity and the user onMissingUser provisioned.
function routes(router: ConnectRouter, handled: { count: number }) {
  router.service(EchoService, {
    echo(req, ctx) {
      handled.count++;
      const needed = req.text.startsWith("scope:") ? req.text.slice(6) : undefined;
      if (needed !== undefined) requireScopes(ctx, needed);
      return { text: JSON.stringify(ctx.values.get(gatewayIdentity)) };
    },
    async *echoStream() {},
    async collect() {
      return {};
    },
  });
}

type Kind = Adapter;

interface Stack {
  readonly ports: Record<Kind, number>;
  readonly rejections: GatewayRejectionEvent[];
  readonly provisioned: MissingUserDetails[];
  readonly handled: { count: number };
}

/** The four ways a service wires createGatewayAuth, all sharing one instance (one replay store). */
async function stack(options: GatewayAuthOptions = {}): Promise<Stack> {
  const rejections: GatewayRejectionEvent[] = [];
  const provisioned: MissingUserDetails[] = [];
  const handled = { count: 0 };
  const auth = createGatewayAuth({
    hmacSecret: SECRET,
    exposeRejectionReason: true,
    onRejection: (e) => void rejections.push(e),
    onMissingUser: (details) => {
      provisioned.push(details);
      return { provisioned: details.subject };
    },
    ...options,
  });
  const servers = await startAdapterServers(auth, {
    routes: (router: ConnectRouter) => routes(router, handled),
    path: REST,
    answer: async (verified) => {
      handled.count++;
      return JSON.stringify({ identity: verified.identity, user: await currentUser(verified) });
    },
  });
  running.push(servers);
  return { ports: servers.ports, rejections, provisioned, handled };
}

const kinds: Kind[] = ["node", "connect", "express", "fastify"];
const pathOf = (kind: Kind) => (kind === "connect" ? ECHO : REST);

/** A request signed as our gateway signs it (v1 and v2), possibly changed afterwards by `mutate`. */
function v2Request(
  kind: Kind,
  identity: IdentityHeaderValues = ada,
  mutate: (headers: [string, string][]) => [string, string][] = (h) => h,
  payload: Buffer = body,
) {
  const path = pathOf(kind);
  return { path, headers: mutate(signedHeadersV2(SECRET, { method: "POST", path, body: payload, contentType: JSON_TYPE }, identity)), payload };
}

function send(s: Stack, kind: Kind, request: { path: string; headers: [string, string][]; payload: Buffer }): Promise<RawResponse> {
  return rawRequest(s.ports[kind], { method: "POST", path: request.path, headers: request.headers, body: request.payload });
}

/** The reason in a refusal, as each server words it. */
function reasonOf(_kind: Kind, res: RawResponse): string {
  return (JSON.parse(res.body) as { message: string }).message;
}

const replaceHeader = (name: string, value: string) => (h: [string, string][]) =>
  h.map(([n, v]): [string, string] => (n === name ? [n, value] : [n, v]));
const addHeader = (name: string, value: string) => (h: [string, string][]) => [...h, [name, value]] as [string, string][];

describe("signature v2: accepted, and every identity header is covered", async () => {
  const s = await stack();

  it.each(kinds)("%s: a v2-signed request passes with every identity field, marked as signed by v2", async (kind) => {
    const res = await send(s, kind, v2Request(kind));
    expect(res.status).toBe(200);
    const identity = kind === "connect" ? JSON.parse((JSON.parse(res.body) as { text: string }).text) : (JSON.parse(res.body) as { identity: unknown }).identity;
    expect(identity).toMatchObject({ ...ada, signature: "v2", untrustedFields: [] });
  });

  it.each(kinds)(
    "%s: changing any identity header, or a content header, fails v2 even though v1 still verifies",
    async (kind) => {
      const mutations: [string, (h: [string, string][]) => [string, string][]][] = [
        ["scopes widened", replaceHeader("x-user-scopes", "read admin")],
        ["email changed", replaceHeader("x-user-email", "mallory@example.com")],
        ["first name changed", replaceHeader("x-user-first-name", "Mallory")],
        ["last name changed", replaceHeader("x-user-last-name", "X")],
        ["org changed", replaceHeader("x-org-id", "org-1")],
        ["role changed", replaceHeader("x-user-role", "admin")],
        ["email removed", (h) => h.filter(([n]) => n !== "x-user-email")],
        ["email emptied", replaceHeader("x-user-email", "")],
        ["content-type changed", replaceHeader("content-type", "application/json; charset=utf-8")],
        ["content-encoding added", addHeader("content-encoding", "identity")],
        ["request id changed", replaceHeader("x-gateway-request-id", "AAAAAAAAAAAAAAAAAAAAAA")],
      ];
      for (const [what, mutate] of mutations) {
        const before = s.handled.count;
        const res = await send(s, kind, v2Request(kind, ada, mutate));
        expect({ what, status: res.status, reason: reasonOf(kind, res) }).toEqual({ what, status: 403, reason: "invalid_signature" });
        expect(s.handled.count).toBe(before);
      }
    },
  );

  it.each(kinds)("%s: a header no signature covers that a Rack server would read as identity is refused", async (kind) => {
    for (const [name, value] of [
      ["x-user-admin", "true"],
      ["X_User_Scopes", "read admin"],
      ["x-org_id", "org-1"],
    ] as const) {
      const res = await send(s, kind, v2Request(kind, ada, addHeader(name, value)));
      expect({ name, status: res.status, reason: reasonOf(kind, res) }).toEqual({ name, status: 403, reason: "unsigned_identity" });
    }
  });

  it.each(kinds)("%s: a request runs once; the same request again is refused as a replay", async (kind) => {
    const request = v2Request(kind);
    const before = s.handled.count;
    expect((await send(s, kind, request)).status).toBe(200);
    const again = await send(s, kind, request);
    expect({ status: again.status, reason: reasonOf(kind, again) }).toEqual({ status: 403, reason: "replayed_request" });
    expect(s.handled.count - before).toBe(1);
  });

  it("a replay is refused on every server sharing the auth instance, and reported to onRejection", async () => {
    const request = v2Request("node");
    expect((await send(s, "node", request)).status).toBe(200);
    s.rejections.length = 0;
    for (const kind of ["node", "express", "fastify"] as const) {
      expect((await send(s, kind, { ...request, path: REST })).status).toBe(403);
    }
    expect(s.rejections.map((e) => e.reason)).toEqual(["replayed_request", "replayed_request", "replayed_request"]);
  });

  it("a forged request cannot burn a request id: only a verified signature adds it to the replay store", async () => {
    const request = v2Request("node");
    const forged = { ...request, headers: replaceHeader("x-user-scopes", "admin")(request.headers) };
    expect((await send(s, "node", forged)).status).toBe(403);
    expect((await send(s, "node", request)).status).toBe(200);
  });

  it("refusals name no secret, signature or request id", async () => {
    const request = v2Request("connect", ada, replaceHeader("x-user-role", "admin"));
    const res = await send(s, "connect", request);
    const signature = request.headers.find(([n]) => n === "x-gateway-signature-v2")?.[1] ?? "";
    const requestId = request.headers.find(([n]) => n === "x-gateway-request-id")?.[1] ?? "";
    for (const secretish of [SECRET, signature, signature.split(":")[1] ?? "", requestId]) {
      expect(res.body).not.toContain(secretish);
      expect(JSON.stringify(s.rejections)).not.toContain(secretish);
    }
  });

  it("a key id the service does not hold is an invalid signature, even with a valid MAC", async () => {
    const res = await send(s, "node", v2Request("node", ada, (h) => h.map(([n, v]): [string, string] => (n === "x-gateway-signature-v2" ? [n, `unknownkey:${v.split(":")[1]}`] : [n, v]))));
    expect(reasonOf("node", res)).toBe("invalid_signature");
  });
});

describe("requests signed with v1 only (a Ruby gateway)", async () => {
  const v1 = (kind: Kind, identity: IdentityHeaderValues = ada, text = "hello") => {
    const path = pathOf(kind);
    const payload = Buffer.from(JSON.stringify({ text }));
    return { path, headers: [["content-type", JSON_TYPE], ...signedHeaders(SECRET, { method: "POST", path, body: payload }, identity)] as [string, string][], payload };
  };

  describe("by default: only the client id and user id are trusted", async () => {
    const s = await stack();

    it("requireScopes refuses with unsigned_identity, whatever X-User-Scopes says", async () => {
      const client = createClient(EchoService, createTestGatewayTransport({ baseUrl: `http://127.0.0.1:${s.ports.connect}`, hmacSecret: SECRET, identity: ada }));
      // Through v2, the same check passes: the scope is signed.
      expect((await client.echo({ text: "scope:read" })).text).toContain('"signature":"v2"');
      const res = await send(s, "connect", v1("connect", { ...ada, scopes: ["read", "admin"] }, "scope:admin"));
      expect(res.status).toBe(403);
      expect((JSON.parse(res.body) as { message: string }).message).toMatch(/^unsigned_identity: .*X-User-Scopes/);
    });

    it.each(["node", "express", "fastify"] as const)(
      "%s: onMissingUser gets no unsigned e-mail or names; the identity leaves them out and says so",
      async (kind) => {
        s.provisioned.length = 0;
        const res = await send(s, kind, v1(kind));
        expect(res.status).toBe(200);
        const { identity } = JSON.parse(res.body) as { identity: Record<string, unknown> };
        expect(identity).toEqual({
          clientId: "web-app",
          userId: "sub-42",
          scopes: [],
          isServiceRequest: false,
          signature: "v1",
          signedFields: ["clientId", "userId"],
          untrustedFields: ["email", "firstName", "lastName", "scopes", "orgId", "role"],
        });
        expect(s.provisioned).toEqual([
          { subject: "sub-42", email: undefined, firstName: undefined, lastName: undefined, scopes: [], clientId: "web-app" },
        ]);
      },
    );
  });

  describe("trustUnsignedIdentity: true (a private network behind a v1-only gateway)", async () => {
    const s = await stack({ trustUnsignedIdentity: true });

    it("passes the v1 identity on in full, still saying what is signed", async () => {
      const res = await send(s, "node", v1("node"));
      const { identity } = JSON.parse(res.body) as { identity: Record<string, unknown> };
      expect(identity).toMatchObject({ email: "ada@example.com", scopes: ["read"], role: "member", signature: "v1", signedFields: ["clientId", "userId"], untrustedFields: [] });
      expect(s.provisioned[0]?.email).toBe("ada@example.com");
      const scoped = await send(s, "connect", v1("connect", ada, "scope:read"));
      expect(scoped.status).toBe(200);
    });
  });

  it("a request-target's octets are bound one-to-one: E9 is not the C3 A9 that was signed (raw over HTTP/2)", async () => {
    const auth = createGatewayAuth({ hmacSecret: SECRET, exposeRejectionReason: true });
    const seen: string[] = [];
    const server = http2.createServer((req, res) => {
      void auth.verifyNodeRequest(req, res).then((verified) => {
        if (verified === undefined) return;
        seen.push(Buffer.from(req.url, "latin1").toString("hex"));
        res.end("ok");
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    running.push({ close: () => new Promise<void>((resolve) => server.close(() => resolve())) });
    const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      // The gateway signed "/files/é" (v1 signs its UTF-8: C3 A9). Node's
      // HTTP/2 client sends a header's characters as octets, one each.
      const headers = signedHeaders(SECRET, { method: "GET", path: "/files/\u00e9" });
      const get = (path: string) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const stream = session.request({ ":method": "GET", ":path": path, ...Object.fromEntries(headers) });
          let status = 0;
          let text = "";
          stream.on("response", (h) => (status = Number(h[":status"])));
          stream.on("data", (chunk: Buffer) => (text += chunk.toString()));
          stream.on("end", () => resolve({ status, body: text }));
          stream.on("error", reject);
        });
      expect(await get("/files/\u00c3\u00a9")).toEqual({ status: 200, body: "ok" });
      const latin1 = await get("/files/\u00e9");
      expect(latin1.status).toBe(403);
      expect((JSON.parse(latin1.body) as { message: string }).message).toBe("invalid_signature");
      expect(seen).toEqual([Buffer.from("/files/\u00e9", "utf8").toString("hex")]);
    } finally {
      session.close();
    }
  });

  describe("requireSignatureV2: true", async () => {
    const s = await stack({ requireSignatureV2: true });

    it.each(kinds)("%s: refuses v1 with signature_v2_required before reading the body; v2 passes", async (kind) => {
      const before = s.handled.count;
      const res = await send(s, kind, v1(kind));
      expect({ status: res.status, reason: reasonOf(kind, res) }).toEqual({ status: 403, reason: "signature_v2_required" });
      expect(s.handled.count).toBe(before);
      expect((await send(s, kind, v2Request(kind))).status).toBe(200);
    });
  });
});

describe("the replay store", () => {
  /** A store whose claims never settle: a frozen Redis. */
  const frozen: ReplayStore = { claim: () => new Promise<boolean>(() => {}) };
  const failing: ReplayStore = {
    claim: () => {
      throw new Error("store down");
    },
  };

  it.each(kinds)("%s: a store that does not answer costs replayStoreTimeoutMs, then 503 replay_check_unavailable", async (kind) => {
    const s = await stack({ replayStore: frozen, replayStoreTimeoutMs: 150 });
    const started = performance.now();
    const res = await send(s, kind, v2Request(kind));
    const elapsed = performance.now() - started;
    expect({ status: res.status, reason: reasonOf(kind, res) }).toEqual({ status: 503, reason: "replay_check_unavailable" });
    expect(elapsed).toBeGreaterThanOrEqual(140);
    expect(elapsed).toBeLessThan(2000);
  });

  it("Connect answers a store failure as Unavailable", async () => {
    const s = await stack({ replayStore: failing });
    const client = createClient(EchoService, createTestGatewayTransport({ baseUrl: `http://127.0.0.1:${s.ports.connect}`, hmacSecret: SECRET, identity: ada }));
    const err = await client.echo({ text: "x" }).catch((e: unknown) => ConnectError.from(e));
    expect(err).toMatchObject({ code: Code.Unavailable, rawMessage: "replay_check_unavailable" });
  });

  it('onReplayStoreFailure: "accept" lets the request through when the store fails or is late', async () => {
    const late = await stack({ replayStore: frozen, replayStoreTimeoutMs: 50, onReplayStoreFailure: "accept" });
    expect((await send(late, "node", v2Request("node"))).status).toBe(200);
    const broken = await stack({ replayStore: failing, onReplayStoreFailure: "accept" });
    expect((await send(broken, "fastify", v2Request("fastify"))).status).toBe(200);
  });

  it("the memory store is bounded: full of unexpired ids, it refuses rather than forget one", async () => {
    const s = await stack({ replayStore: createMemoryReplayStore({ maxEntries: 2 }) });
    expect((await send(s, "node", v2Request("node"))).status).toBe(200);
    expect((await send(s, "node", v2Request("node"))).status).toBe(200);
    const third = await send(s, "node", v2Request("node"));
    expect({ status: third.status, reason: reasonOf("node", third) }).toEqual({ status: 503, reason: "replay_check_unavailable" });
  });

  it("the memory store forgets an id once its window has passed, and not before", () => {
    let now = 1_000_000;
    const store = createMemoryReplayStore({ now: () => now });
    expect(store.claim("a".repeat(22), 61)).toBe(true);
    now += 60_000;
    expect(store.claim("a".repeat(22), 61)).toBe(false);
    now += 1_001;
    expect(store.claim("b".repeat(22), 61)).toBe(true);
    expect(store.claim("a".repeat(22), 61)).toBe(true);
  });
});

describe("maxBodyBytes bounds the decompressed message, not only the bytes on the wire", async () => {
  const s = await stack({ maxBodyBytes: 64 * 1024 });

  it("a small gzip body that inflates past maxBodyBytes is refused before any handler runs", async () => {
    const bomb = gzipSync(JSON.stringify({ text: "a".repeat(819 * 1024) }), { level: 9 });
    expect(bomb.byteLength).toBeLessThan(2048);
    const before = s.handled.count;
    const headers = signedHeadersV2(SECRET, { method: "POST", path: ECHO, body: bomb, contentType: JSON_TYPE, contentEncoding: "gzip" }, ada);
    const res = await rawRequest(s.ports.connect, { method: "POST", path: ECHO, headers, body: bomb });
    expect(res.status).toBe(429);
    expect(JSON.parse(res.body)).toMatchObject({ code: "resource_exhausted" });
    expect(s.handled.count).toBe(before);
    // The same message, small enough, passes compressed.
    const small = gzipSync(JSON.stringify({ text: "a".repeat(1024) }));
    const ok = signedHeadersV2(SECRET, { method: "POST", path: ECHO, body: small, contentType: JSON_TYPE, contentEncoding: "gzip" }, ada);
    expect((await rawRequest(s.ports.connect, { method: "POST", path: ECHO, headers: ok, body: small })).status).toBe(200);
  });
});

describe("key rotation by key id", async () => {
  const OLD = "old-secret-0123456789";
  const s = await stack({ hmacSecret: [OLD, SECRET] });

  it("verifies with the secret the key id names; both secrets of a rotation work", async () => {
    expect(gatewayKeyId(OLD)).not.toBe(gatewayKeyId(SECRET));
    for (const secret of [OLD, SECRET]) {
      const headers = signedHeadersV2(secret, { method: "POST", path: REST, body, contentType: JSON_TYPE }, ada);
      expect((await rawRequest(s.ports.node, { method: "POST", path: REST, headers, body })).status).toBe(200);
    }
    const other = signedHeadersV2("a-third-secret", { method: "POST", path: REST, body, contentType: JSON_TYPE }, ada);
    expect((await rawRequest(s.ports.node, { method: "POST", path: REST, headers: other, body })).status).toBe(403);
  });

  it("a request signed with a secret the service does not hold: onRejection says the key ids differ, naming no secret", async () => {
    s.rejections.length = 0;
    const other = signedHeadersV2("a-third-secret", { method: "POST", path: REST, body, contentType: JSON_TYPE }, ada);
    await rawRequest(s.ports.node, { method: "POST", path: REST, headers: other, body });
    const [event] = s.rejections;
    expect(event?.reason).toBe("invalid_signature");
    expect(event?.keyMismatch).toContain(`signed with key id ${gatewayKeyId("a-third-secret")}`);
    for (const keyId of [gatewayKeyId(OLD), gatewayKeyId(SECRET)]) expect(event?.keyMismatch).toContain(keyId);
    for (const secret of ["a-third-secret", OLD, SECRET]) expect(JSON.stringify(event)).not.toContain(secret);
    // A request signed with a secret the service holds, then changed, is not a key mismatch.
    s.rejections.length = 0;
    const tampered = signedHeadersV2(SECRET, { method: "POST", path: REST, body, contentType: JSON_TYPE }, ada);
    await rawRequest(s.ports.node, { method: "POST", path: REST, headers: tampered, body: Buffer.from('{"text":"changed"}') });
    expect(s.rejections[0]?.reason).toBe("invalid_signature");
    expect(s.rejections[0]?.keyMismatch).toBeUndefined();
  });
});
