import { Code, createClient, createContextKey, createContextValues, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { inspect } from "node:util";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import {
  ConfigurationError,
  createGatewayAuth,
  gatewayIdentity,
  InvalidOnMissingUserError,
  InvalidOptionError,
  InvalidResolveUserError,
  MissingHmacSecretError,
  type GatewayAuthOptions,
} from "../../src/server/index.js";
import { createTestGatewayTransport } from "../../src/testing/index.js";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import { rawRequest } from "../support/raw-request.js";
import { signedHeaders } from "../support/signed-headers.js";
import { startServer, type RunningServer } from "../support/loopback-server.js";

const SECRET = "s3cr3t-value-that-must-never-leak";

function thrown(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a throw");
}

function expectNoSecret(err: Error) {
  for (const text of [err.message, String(err), err.stack ?? ""]) {
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain("s3cr3t");
  }
}

describe("configuration errors are thrown at construction", () => {
  const saved = process.env.GATEWAY_HMAC_SECRET;
  afterEach(() => {
    if (saved === undefined) delete process.env.GATEWAY_HMAC_SECRET;
    else process.env.GATEWAY_HMAC_SECRET = saved;
  });

  it("MissingHmacSecretError without option and env, or with an empty one", () => {
    delete process.env.GATEWAY_HMAC_SECRET;
    for (const hmacSecret of [undefined, "", [], ["ok", ""], [42]] as unknown[]) {
      const err = thrown(() => createGatewayAuth({ hmacSecret } as GatewayAuthOptions));
      expect(err).toBeInstanceOf(MissingHmacSecretError);
      expect(err).toBeInstanceOf(ConfigurationError);
      expect(err.message).toContain("GATEWAY_HMAC_SECRET");
    }
    process.env.GATEWAY_HMAC_SECRET = "";
    expect(thrown(() => createGatewayAuth())).toBeInstanceOf(MissingHmacSecretError);
  });

  it("needs no secret with skipVerification (nothing is verified), but refuses a malformed one there too", () => {
    delete process.env.GATEWAY_HMAC_SECRET;
    expect(() => createGatewayAuth({ skipVerification: true })).not.toThrow();
    for (const hmacSecret of ["", [], ["ok", ""]] as unknown[]) {
      expect(thrown(() => createGatewayAuth({ hmacSecret, skipVerification: true } as GatewayAuthOptions))).toBeInstanceOf(MissingHmacSecretError);
    }
    expect(thrown(() => createGatewayAuth({ skipVerification: false }))).toBeInstanceOf(MissingHmacSecretError);
  });

  it("reads GATEWAY_HMAC_SECRET as one value (a comma is part of the secret)", async () => {
    process.env.GATEWAY_HMAC_SECRET = "a,b";
    const auth = createGatewayAuth({ exposeRejectionReason: true });
    const server = await startServer(async (req, res) => {
      if (await auth.verifyNodeRequest(req, res)) res.end("ok");
    });
    try {
      const send = (secret: string) => rawRequest(server.port, { method: "GET", path: "/x", headers: signedHeaders(secret, { method: "GET", path: "/x" }) });
      expect((await send("a,b")).status).toBe(200);
      expect((await send("a")).status).toBe(403);
    } finally {
      await server.close();
    }
  });

  it("InvalidResolveUserError / InvalidOnMissingUserError for non-functions", () => {
    expect(thrown(() => createGatewayAuth({ hmacSecret: SECRET, resolveUser: "User" as never }))).toBeInstanceOf(InvalidResolveUserError);
    expect(thrown(() => createGatewayAuth({ hmacSecret: SECRET, onMissingUser: {} as never }))).toBeInstanceOf(InvalidOnMissingUserError);
    expect(thrown(() => createGatewayAuth({ hmacSecret: SECRET, onMissingUser: {} as never }))).toBeInstanceOf(ConfigurationError);
  });

  it.each([0, -1, Number.NaN, Number.POSITIVE_INFINITY, "30"])("InvalidOptionError for maxSkewSeconds %s", (value) => {
    const err = thrown(() => createGatewayAuth({ hmacSecret: SECRET, maxSkewSeconds: value as number }));
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect(err).toBeInstanceOf(ConfigurationError);
    expect((err as InvalidOptionError).option).toBe("maxSkewSeconds");
    expect(err.message).toContain("maxSkewSeconds");
    expectNoSecret(err);
  });

  it("InvalidOptionError for the other options", () => {
    for (const bad of [{ maxBodyBytes: 1.5 }, { bodyTimeoutMs: 0 }, { bodyTimeoutMs: 2.5 }, { bodyTimeoutMs: "30000" }, { exposeRejectionReason: "yes" }, { skipVerification: 1 }, { onRejection: "log" }, { now: 5 }]) {
      const err = thrown(() => createGatewayAuth({ hmacSecret: SECRET, ...bad } as GatewayAuthOptions));
      expect(err).toBeInstanceOf(InvalidOptionError);
      expectNoSecret(err);
    }
  });

  it("never puts the secret in a configuration error", () => {
    for (const options of [{ hmacSecret: [SECRET, ""] }, { hmacSecret: SECRET, resolveUser: SECRET }, { hmacSecret: SECRET, maxSkewSeconds: SECRET }]) {
      expectNoSecret(thrown(() => createGatewayAuth(options as unknown as GatewayAuthOptions)));
    }
  });
});

describe("the request path", () => {
  const servers: RunningServer[] = [];
  afterAll(async () => {
    for (const s of servers) await s.close();
  });

  it("never logs or answers the secret, whatever goes wrong", async () => {
    const lines: string[] = [];
    const spies = (["log", "error", "warn", "info", "debug"] as const).map((level) =>
      vi.spyOn(console, level).mockImplementation((...args: unknown[]) => void lines.push(args.map((a) => (a instanceof Error ? `${String(a)} ${a.stack ?? ""}` : String(a))).join(" "))),
    );
    const events: string[] = [];
    const auth = createGatewayAuth({ hmacSecret: SECRET, onRejection: (e) => void events.push(JSON.stringify(e)) });
    const server = await startServer(
      connectNodeAdapter(
        auth.connectOptions({
          routes: (r) =>
            r.service(EchoService, {
              echo() {
                throw new Error("handler failure");
              },
            }),
        }),
      ),
    );
    servers.push(server);
    try {
      const bodies: string[] = [];
      for (const secret of [SECRET, "wrong"]) {
        const client = createClient(EchoService, createTestGatewayTransport({ baseUrl: server.baseUrl, hmacSecret: secret, identity: { clientId: "c" } }));
        bodies.push(String(await client.echo({ text: SECRET.slice(0, 3) }).catch((e: unknown) => e)));
      }
      bodies.push((await rawRequest(server.port, { method: "POST", path: "/example.v1.EchoService/Echo", headers: [["content-type", "application/json"]], body: Buffer.from("{}") })).body);
      for (const text of [...bodies, ...lines, ...events]) expect(text).not.toContain(SECRET);
      expect(events.length).toBe(2);
      // Logging the auth object itself shows no secret either.
      expect(inspect(auth, { depth: 20, showHidden: true })).not.toContain(SECRET);
    } finally {
      for (const s of spies) s.mockRestore();
    }
  });

  it("keeps the user's own contextValues, requestGate and interceptors, in that order after verification", async () => {
    const tenant = createContextKey("none");
    const order: string[] = [];
    const interceptor: Interceptor = (next) => async (req) => {
      order.push(`interceptor:${req.contextValues.get(tenant)}:${req.contextValues.get(gatewayIdentity)?.clientId}`);
      return next(req);
    };
    const auth = createGatewayAuth({ hmacSecret: SECRET });
    const server = await startServer(
      connectNodeAdapter(
        auth.connectOptions({
          interceptors: [interceptor],
          contextValues: (req) => createContextValues().set(tenant, String(req.headers["x-tenant"] ?? "")),
          requestGate: (ctx) => {
            order.push(`gate:${ctx.values.get(gatewayIdentity)?.clientId}`);
          },
          routes: (r) => r.service(EchoService, { echo: (req, ctx) => ({ text: `${ctx.values.get(tenant)}/${req.text}` }) }),
        }),
      ),
    );
    servers.push(server);
    const client = createClient(EchoService, createTestGatewayTransport({ baseUrl: server.baseUrl, hmacSecret: SECRET, identity: { clientId: "c" } }));
    const res = await client.echo({ text: "x" }, { headers: { "x-tenant": "acme" } });
    expect(res.text).toBe("acme/x");
    expect(order).toEqual(["gate:c", "interceptor:acme:c"]);
    // The user's gate does not run for a rejected request.
    const bad = createClient(EchoService, createTestGatewayTransport({ baseUrl: server.baseUrl, hmacSecret: "wrong", identity: { clientId: "c" } }));
    await expect(bad.echo({ text: "x" })).rejects.toMatchObject({ code: Code.PermissionDenied });
    expect(order).toHaveLength(2);
  });
});

describe("one ConfigurationError for the package", () => {
  it("is the class the client throws too", async () => {
    const client = await import("../../src/client/index.js");
    const server = await import("../../src/server/index.js");
    expect(server.ConfigurationError).toBe(client.ConfigurationError);
    expect(() => server.createGatewayAuth({ hmacSecret: "" })).toThrow(client.ConfigurationError);
  });
});
