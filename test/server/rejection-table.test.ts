// The rejection table is the one definition of how a refusal is answered:
// every adapter (plain Node, Connect, Express, Fastify) must answer each kind
// of refusal with its row — the HTTP status and message for Node, Express
// and Fastify, the Connect code and message for Connect. A wrong mapping in
// one adapter fails here.
import { codeToHttpStatus, codeToString } from "@connectrpc/connect/protocol-connect";
import { request as httpRequest } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGatewayAuth, type GatewayAuthOptions, type GatewayRejectionEvent } from "../../src/server/index.js";
import { HIDDEN_REJECTION_MESSAGE, rejections, type RejectionKind } from "../../src/server/rejections.js";
import { gatewayRejectionReasons, newRequestId } from "../../src/signing/index.js";
import { echoRoutes, type Observed } from "../support/echo-routes.js";
import { rawRequest, type RawResponse } from "../support/raw-request.js";
import { signedHeaders, signedHeadersV2 } from "../support/signed-headers.js";
import { startAdapterServers, type Adapter } from "../support/adapter-servers.js";

const SECRET = "rejection-table-secret-7c1";
const ECHO = "/example.v1.EchoService/Echo";
const MAX_BODY_BYTES = 1024;
const BODY_TIMEOUT_MS = 300;
const body = Buffer.from(JSON.stringify({ text: "hello" }));
const json: [string, string] = ["content-type", "application/json"];

const adapters: readonly Adapter[] = ["node", "connect", "express", "fastify"];

interface Stack {
  readonly ports: Record<Adapter, number>;
  readonly events: GatewayRejectionEvent[];
}

const closers: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const close of closers) await close();
});

const observed: Observed = { calls: 0, messages: 0 };
let handled = 0;

/** One createGatewayAuth instance behind each of the four adapters. */
async function stack(options: GatewayAuthOptions): Promise<Stack> {
  const events: GatewayRejectionEvent[] = [];
  const auth = createGatewayAuth({
    hmacSecret: SECRET,
    exposeRejectionReason: true,
    maxBodyBytes: MAX_BODY_BYTES,
    onRejection: (e) => void events.push(e),
    ...options,
  });
  const servers = await startAdapterServers(auth, {
    routes: echoRoutes(observed),
    path: ECHO,
    answer: () => {
      handled++;
      return "{}";
    },
  });
  closers.push(servers.close);
  return { ports: servers.ports, events };
}

const v1 = (nowSeconds?: number) => [json, ...signedHeaders(SECRET, { method: "POST", path: ECHO, body }, undefined, nowSeconds)];
const v2 = (requestId = newRequestId()) =>
  signedHeadersV2(SECRET, { method: "POST", path: ECHO, body, contentType: "application/json", requestId });
const post = (port: number, headers: [string, string][], payload: Buffer = body) =>
  rawRequest(port, { method: "POST", path: ECHO, headers, body: payload });

/** Checks an answer against the table's row for `kind`. */
function expectRow(adapter: Adapter, res: RawResponse, kind: RejectionKind, message?: string) {
  const row = rejections[kind];
  const expected = message ?? (typeof row.message === "string" ? row.message : row.message({ maxBodyBytes: MAX_BODY_BYTES, bodyTimeoutMs: BODY_TIMEOUT_MS }));
  if (adapter === "connect") {
    expect(res.status).toBe(codeToHttpStatus(row.code));
    expect(JSON.parse(res.body)).toEqual({ code: row.codeName, message: expected });
  } else {
    expect(res.status).toBe(row.status);
    expect(JSON.parse(res.body)).toEqual({ message: expected });
  }
}

let normal: Stack;
let v2Only: Stack;
let storeDown: Stack;
let production: Stack;
let impatient: Stack;

beforeAll(async () => {
  normal = await stack({});
  v2Only = await stack({ requireSignatureV2: true });
  const failing = { claim: () => Promise.reject(new Error("store down")) };
  storeDown = await stack({ replayStore: failing, replayStoreTimeoutMs: 50 });
  production = await stack({ exposeRejectionReason: false });
  impatient = await stack({ bodyTimeoutMs: BODY_TIMEOUT_MS });
});

/**
 * Sends a signed request's headers and half its body, then stalls (as a
 * caller trickling a body would), and returns the answer; fails after 5 s.
 */
function postStalled(port: number, headers: [string, string][], payload: Buffer): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const flat = [["host", `127.0.0.1:${port}`], ...headers, ["content-length", String(payload.byteLength)]].flat();
    const req = httpRequest({ host: "127.0.0.1", port, method: "POST", path: ECHO, headers: flat, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        clearTimeout(timer);
        req.destroy();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") });
      });
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error("no answer to a stalled body within 5 s"));
    }, 5000);
    req.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.flushHeaders();
    req.write(payload.subarray(0, payload.byteLength >> 1));
  });
}

/** How to provoke each kind of refusal on an adapter of a stack: the last answer is the refused one. */
const cases: readonly {
  readonly kind: RejectionKind;
  readonly stack: () => Stack;
  readonly send: (port: number) => Promise<RawResponse>;
}[] = [
  {
    kind: "missing_gateway_headers",
    stack: () => normal,
    send: (port) => post(port, v1().filter(([n]) => n !== "x-client-id")),
  },
  {
    kind: "malformed_gateway_headers",
    stack: () => normal,
    send: (port) => post(port, [...v1(), ["x-user-id", "admin"]]),
  },
  {
    kind: "timestamp_out_of_window",
    stack: () => normal,
    send: (port) => post(port, v1(Date.now() / 1000 - 3600)),
  },
  {
    kind: "invalid_signature",
    stack: () => normal,
    send: (port) => post(port, v1(), Buffer.from(JSON.stringify({ text: "hellO" }))),
  },
  {
    kind: "unsigned_identity",
    stack: () => normal,
    send: (port) => post(port, [...v2(), ["x-user-admin", "true"]]),
  },
  {
    kind: "signature_v2_required",
    stack: () => v2Only,
    send: (port) => post(port, v1()),
  },
  {
    kind: "replayed_request",
    stack: () => normal,
    send: async (port) => {
      const headers = v2();
      expect((await post(port, headers)).status).toBe(200);
      return post(port, headers);
    },
  },
  {
    kind: "replay_check_unavailable",
    stack: () => storeDown,
    send: (port) => post(port, v2()),
  },
  {
    kind: "body_too_large",
    stack: () => normal,
    send: (port) => {
      const big = Buffer.from(JSON.stringify({ text: "x".repeat(2 * MAX_BODY_BYTES) }));
      return post(port, [json, ...signedHeaders(SECRET, { method: "POST", path: ECHO, body: big })], big);
    },
  },
  {
    kind: "body_timeout",
    stack: () => impatient,
    send: (port) => postStalled(port, v2(), body),
  },
];

describe("the rejection table", () => {
  it("has a verdict row for every rejection reason, its message the reason itself", () => {
    for (const reason of gatewayRejectionReasons) {
      expect(rejections[reason]).toMatchObject({ verdict: true, message: reason });
    }
    const verdicts = Object.entries(rejections).filter(([, row]) => row.verdict).map(([kind]) => kind);
    expect(verdicts.sort()).toEqual([...gatewayRejectionReasons].sort());
  });

  it("names each Connect code as Connect writes it", () => {
    for (const row of Object.values(rejections)) expect(row.codeName).toBe(codeToString(row.code));
  });

  it("keeps the answers the README documents", () => {
    for (const reason of gatewayRejectionReasons) {
      const { status, codeName } = rejections[reason];
      expect([status, codeName]).toEqual(
        reason === "replay_check_unavailable" ? [503, "unavailable"] : [403, "permission_denied"],
      );
    }
    expect(rejections.body_too_large).toMatchObject({ status: 413, codeName: "resource_exhausted" });
  });
});

describe("every adapter answers each refusal with its row of the table", () => {
  for (const { kind, stack: stackOf, send } of cases) {
    it.each(adapters)(`${kind}: %s`, async (adapter) => {
      const { ports, events } = stackOf();
      const before = { handled, calls: observed.calls };
      events.length = 0;
      const res = await send(ports[adapter]);
      expectRow(adapter, res, kind);
      // Refused: no handler ran (beyond the accepted first send of a replay).
      expect(handled + observed.calls).toBe(before.handled + before.calls + (kind === "replayed_request" ? 1 : 0));
      // A verdict is reported once to onRejection; a body problem is not.
      expect(events.map((e) => e.reason)).toEqual(rejections[kind].verdict ? [kind] : []);
    });
  }

  it.each(adapters)("in production a verdict says Forbidden, with the row's status or code: %s", async (adapter) => {
    const res = await post(production.ports[adapter], v1().filter(([n]) => n !== "x-client-id"));
    expectRow(adapter, res, "missing_gateway_headers", HIDDEN_REJECTION_MESSAGE);
  });
});
