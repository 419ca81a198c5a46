import { Code, ConnectError, createClient, createContextKey, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { identityOf } from "../../src/server/gateway-identity.js";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { afterAll, describe, expect, it } from "vitest";
import {
  createGatewayAuth,
  currentUser,
  gatewayIdentity,
  isServiceRequest,
  requireIdentity,
  requireScopes,
  requireUser,
  type GatewayAuthOptions,
  type GatewayIdentity,
  type MissingUserDetails,
} from "../../src/server/index.js";
import { createTestGatewayTransport } from "../../src/testing/index.js";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";
import type { IdentityHeaderValues } from "../../src/signing/index.js";
import { startServer, type RunningServer } from "../support/loopback-server.js";
import { ADA } from "../support/signed-headers.js";

interface User {
  readonly id: number;
  readonly subject: string;
}

const hmacSecret = "identity-secret";
const servers: RunningServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close();
});

/**
 * A server whose Echo handler runs `body(ctx)` and answers with its JSON
 * result in `text` (or the error's code and message).
 */
async function serve(options: Omit<GatewayAuthOptions<User>, "hmacSecret">, body: (ctx: HandlerContext) => Promise<unknown>) {
  const auth = createGatewayAuth<User>({ hmacSecret, exposeRejectionReason: true, ...options });
  const server = await startServer(
    connectNodeAdapter(
      auth.connectOptions({
        routes: (router) =>
          router.service(EchoService, {
            async echo(_req, ctx) {
              return { text: JSON.stringify((await body(ctx)) ?? null) };
            },
            // Streams run `body(ctx)` when they start, before any message moves.
            async *echoStream(req, ctx) {
              const seen = JSON.stringify((await body(ctx)) ?? null);
              for (let i = 0; i < req.repeat; i++) yield { text: seen };
            },
            async collect(reqs, ctx) {
              const seen = JSON.stringify((await body(ctx)) ?? null);
              for await (const _ of reqs) {
                // drain
              }
              return { text: seen };
            },
          }),
      }),
    ),
  );
  servers.push(server);
  return (identity: IdentityHeaderValues) =>
    createClient(EchoService, createTestGatewayTransport({ baseUrl: server.baseUrl, hmacSecret, identity }));
}

const ada: IdentityHeaderValues = { ...ADA, scopes: ["read", "write"] };
const billing: IdentityHeaderValues = { clientId: "billing-service" };
// What every identity signed with v2 (the testing helpers sign as the gateway does) says about itself.
const signedByV2 = {
  signature: "v2",
  signedFields: ["clientId", "userId", "email", "firstName", "lastName", "scopes", "orgId", "role"],
  untrustedFields: [],
};

describe("gatewayIdentity", () => {
  it("holds every identity field of a user call", async () => {
    const client = await serve({}, async (ctx) => ctx.values.get(gatewayIdentity));
    const seen = JSON.parse((await client(ada).echo({})).text) as GatewayIdentity;
    expect(seen).toEqual({ ...ada, isServiceRequest: false, ...signedByV2 });
  });

  it("marks a service call: client id, no user id, no scopes", async () => {
    const client = await serve({}, async (ctx) => ({ id: ctx.values.get(gatewayIdentity), service: isServiceRequest(ctx) }));
    expect(JSON.parse((await client(billing).echo({})).text)).toEqual({
      id: { clientId: "billing-service", scopes: [], isServiceRequest: true, ...signedByV2 },
      service: true,
    });
  });

  it("is there, with the resolved user, when a server or client stream starts", async () => {
    const client = await serve({ resolveUser: (id) => ({ id: 1, subject: id.userId ?? "" }) }, async (ctx) => ({
      identity: ctx.values.get(gatewayIdentity),
      user: await currentUser(ctx),
    }));
    const expected = { identity: { ...ada, isServiceRequest: false, ...signedByV2 }, user: { id: 1, subject: "sub-42" } };
    const texts: string[] = [];
    for await (const r of client(ada).echoStream({ repeat: 2 })) texts.push(r.text);
    expect(texts.map((t) => JSON.parse(t) as unknown)).toEqual([expected, expected]);
    async function* two() {
      yield {};
      yield {};
    }
    expect(JSON.parse((await client(ada).collect(two())).text)).toEqual(expected);
  });

  it("is frozen: a handler cannot rewrite who called", async () => {
    const client = await serve({}, async (ctx) => Object.isFrozen(ctx.values.get(gatewayIdentity)));
    expect((await client(ada).echo({})).text).toBe("true");
  });
});

describe("currentUser", () => {
  it("calls resolveUser once per request, even for concurrent calls, and memoises the user", async () => {
    const lookups: GatewayIdentity[] = [];
    const client = await serve(
      {
        resolveUser: async (identity) => {
          lookups.push(identity);
          await new Promise((r) => setTimeout(r, 5));
          return { id: 1, subject: identity.userId ?? "" };
        },
      },
      async (ctx) => {
        const [a, b] = await Promise.all([currentUser<User>(ctx), currentUser<User>(ctx)]);
        const c = await currentUser<User>(ctx);
        return { same: a === b && b === c, user: a };
      },
    );
    expect(JSON.parse((await client(ada).echo({})).text)).toEqual({ same: true, user: { id: 1, subject: "sub-42" } });
    expect(lookups).toHaveLength(1);
    expect(lookups[0]).toMatchObject({ userId: "sub-42", clientId: "web-app" });
    // A second request resolves again: the memo is per request.
    await client(ada).echo({});
    expect(lookups).toHaveLength(2);
  });

  it("falls back to onMissingUser with the exact details, and uses its result", async () => {
    const details: MissingUserDetails[] = [];
    const client = await serve(
      {
        resolveUser: () => null,
        onMissingUser: (d) => {
          details.push(d);
          return { id: 7, subject: d.subject };
        },
      },
      async (ctx) => requireUser<User>(ctx),
    );
    expect(JSON.parse((await client(ada).echo({})).text)).toEqual({ id: 7, subject: "sub-42" });
    expect(details).toEqual([
      { subject: "sub-42", email: "ada@example.com", firstName: "Ada", lastName: "Lovelace", scopes: ["read", "write"], clientId: "web-app" },
    ]);
  });

  it("lets onMissingUser's exception propagate to the handler", async () => {
    const client = await serve(
      {
        resolveUser: () => undefined,
        onMissingUser: () => {
          throw new ConnectError("provisioning failed", Code.FailedPrecondition);
        },
      },
      async (ctx) => currentUser(ctx),
    );
    await expect(client(ada).echo({})).rejects.toMatchObject({ code: Code.FailedPrecondition, rawMessage: "provisioning failed" });
  });

  it("lets resolveUser's exception propagate too, and never falls back to onMissingUser then", async () => {
    let provisioned = 0;
    const client = await serve(
      {
        resolveUser: () => Promise.reject(new ConnectError("user store down", Code.Unavailable)),
        onMissingUser: () => (provisioned++, { id: 2, subject: "y" }),
      },
      async (ctx) => currentUser(ctx),
    );
    await expect(client(ada).echo({})).rejects.toMatchObject({ code: Code.Unavailable, rawMessage: "user store down" });
    expect(provisioned).toBe(0);
  });

  it("never calls resolveUser or onMissingUser for a service call", async () => {
    let called = 0;
    const client = await serve(
      { resolveUser: () => (called++, { id: 1, subject: "x" }), onMissingUser: () => (called++, { id: 2, subject: "y" }) },
      async (ctx) => ({ user: (await currentUser(ctx)) ?? "none" }),
    );
    expect(JSON.parse((await client(billing).echo({})).text)).toEqual({ user: "none" });
    expect(called).toBe(0);
  });

  it("is undefined when neither hook finds anyone", async () => {
    const client = await serve({ resolveUser: () => null, onMissingUser: () => null }, async (ctx) => ({ user: (await currentUser(ctx)) ?? "none" }));
    expect(JSON.parse((await client(ada).echo({})).text)).toEqual({ user: "none" });
  });
});

describe("requireUser and requireScopes", () => {
  it("requireUser: Unauthenticated for a service call and for an unknown user", async () => {
    const client = await serve({ resolveUser: (id) => (id.userId === "sub-42" ? { id: 1, subject: "sub-42" } : null) }, async (ctx) => requireUser(ctx));
    await expect(client(billing).echo({})).rejects.toMatchObject({ code: Code.Unauthenticated });
    await expect(client({ ...ada, userId: "sub-99" }).echo({})).rejects.toMatchObject({ code: Code.Unauthenticated });
    expect(JSON.parse((await client(ada).echo({})).text)).toEqual({ id: 1, subject: "sub-42" });
  });

  it("requireScopes: PermissionDenied naming the missing scopes; the identity when all are granted", async () => {
    const client = await serve({}, async (ctx) => requireScopes(ctx, "read", "admin", "billing"));
    await expect(client(ada).echo({})).rejects.toMatchObject({ code: Code.PermissionDenied, rawMessage: "missing scopes: admin billing" });
    const ok = await serve({}, async (ctx) => requireScopes(ctx, "read", "write").userId);
    expect((await ok(ada).echo({})).text).toBe('"sub-42"');
  });

  it("currentUser outside a verified request is a clear Internal error", async () => {
    const err = await currentUser({ values: (await import("@connectrpc/connect")).createContextValues() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Internal);
    expect((err as ConnectError).rawMessage).toContain("createGatewayAuth");
  });
});

describe("requireIdentity", () => {
  it("returns the identity set by verification, typed without undefined", () => {
    const values = createContextValues();
    const identity = identityOf({ clientId: "web-app", userId: "sub-42", scopes: ["read"] }, "v2", false);
    values.set(gatewayIdentity, identity);
    const caller: GatewayIdentity = requireIdentity({ values });
    expect(caller).toBe(identity);
  });

  it("refuses with Unauthenticated when the request carries no identity", () => {
    const err = (() => {
      try {
        requireIdentity({ values: createContextValues() });
      } catch (e) {
        return ConnectError.from(e);
      }
      return undefined;
    })();
    expect(err?.code).toBe(Code.Unauthenticated);
  });
});

describe("contextValues of the service's own", () => {
  it("even one object shared by every request: each request keeps its own identity, and the service's values still read through", async () => {
    const appKey = createContextKey<string>("unset", { description: "the app's own value" });
    const shared = createContextValues().set(appKey, "pool-1"); // built once, handed to every request
    const auth = createGatewayAuth({ hmacSecret, exposeRejectionReason: true });
    const server = await startServer(
      connectNodeAdapter(
        auth.connectOptions({
          contextValues: () => shared,
          routes: (router) =>
            router.service(EchoService, {
              async echo(req, ctx) {
                // A slow first call: the second is verified while it waits.
                if (req.text === "slow") await new Promise((resolve) => setTimeout(resolve, 200));
                return { text: `${requireIdentity(ctx).userId} ${ctx.values.get(appKey)}` };
              },
            }),
        }),
      ),
    );
    servers.push(server);
    const as = (identity: IdentityHeaderValues) =>
      createClient(EchoService, createTestGatewayTransport({ baseUrl: server.baseUrl, hmacSecret, identity }));
    const slow = as({ clientId: "web", userId: "mallory", scopes: ["read"] }).echo({ text: "slow" });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const fast = await as({ clientId: "backoffice", userId: "admin-1", scopes: ["admin"] }).echo({ text: "fast" });
    expect(fast.text).toBe("admin-1 pool-1");
    expect((await slow).text).toBe("mallory pool-1");
  });
});
