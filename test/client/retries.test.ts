// Automatic retries of calls to idempotent methods (createGatewayTransport's
// `retry` option), against a real gateway stand-in on loopback that drops the
// connection, or answers 503 (with or without Retry-After), as many times as a
// test says before it lets the call through to a real Connect backend.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { create } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import {
  ConfigurationError,
  ConnectionError,
  createGatewayTransport,
  gatewayCall,
  type GatewayTransportOptions,
} from "../../src/client/index.js";
import { EchoService, EchoStreamRequestSchema, ValuationService } from "../../examples/gen/example/v1/example_pb.js";
import { echoRoutes } from "../support/echo-routes.js";
import { startServer, type RunningServer } from "../support/loopback-server.js";
import { startTokenEndpoint, type TestTokenEndpoint } from "../support/token-endpoint.js";

/** What the stand-in does with one request: drop the connection, answer an error (Connect format), or let it through. */
type Answer = "drop" | "pass" | { readonly status: 503 | 403; readonly retryAfter?: string };

interface Attempt {
  readonly path: string;
  readonly at: number;
  readonly authorization: string | undefined;
  readonly timeoutMs: number | undefined;
}

let tokens: TestTokenEndpoint;
let gateway: RunningServer;
let h2Gateway: RunningServer;
let answer: (n: number, path: string) => Answer;
let attempts: Attempt[];

function routes(router: ConnectRouter) {
  echoRoutes({ calls: 0, messages: 0 })(router);
  router.service(ValuationService, { get: (req) => ({ id: req.id, amount: "100.00" }) });
}

type Handler = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void;

/** The gateway stand-in: records each request, then does what `answer` says with it. */
function standIn(): Handler {
  const adapters = new Map<string, Handler>();
  return (req, res) => {
    const path = req.url ?? "";
    const timeout = req.headers["connect-timeout-ms"] ?? req.headers["grpc-timeout"];
    attempts.push({
      path,
      at: performance.now(),
      authorization: req.headers.authorization,
      timeoutMs: timeout === undefined ? undefined : Number.parseInt(String(timeout), 10),
    });
    const what = answer(attempts.filter((a) => a.path === path).length, path);
    if (what === "drop") {
      req.socket.destroy(); // the request never reaches a handler
      return;
    }
    if (what !== "pass") {
      res.writeHead(what.status, {
        "content-type": "application/json",
        ...(what.retryAfter !== undefined && { "retry-after": what.retryAfter }),
      });
      const code = what.status === 503 ? "unavailable" : "permission_denied";
      res.end(JSON.stringify({ code, message: what.status === 503 ? "the backend is down" : "no" }));
      return;
    }
    const prefix = /^(.*?)\/example\.v1\.\w+\/\w+$/.exec(path)?.[1] ?? "";
    let adapter = adapters.get(prefix);
    if (!adapter) adapters.set(prefix, (adapter = connectNodeAdapter({ routes, requestPathPrefix: prefix }) as Handler));
    adapter(req, res);
  };
}

beforeAll(async () => {
  tokens = await startTokenEndpoint(() => ({ json: { access_token: "tok", token_type: "bearer", expires_in: 3600 } }));
  [gateway, h2Gateway] = await Promise.all([startServer(standIn(), "1.1"), startServer(standIn(), "2")]);
});
afterAll(() => Promise.all([tokens.close(), gateway.close(), h2Gateway.close()]));

beforeEach(() => {
  attempts = [];
  answer = () => "pass";
});
afterEach(() => {
  vi.restoreAllMocks();
});

function transport(extra: Partial<GatewayTransportOptions> = {}) {
  return createGatewayTransport({
    clientId: "retries",
    clientSecret: "retries-secret",
    appcenterUrl: tokens.url,
    gatewayUrl: gateway.baseUrl,
    ...extra,
  } as GatewayTransportOptions);
}

const failFirst =
  (n: number, how: Answer = "drop") =>
  (count: number): Answer =>
    count <= n ? how : "pass";

const ECHO = "/backend/echo/example.v1.EchoService/Echo";

function attemptsAt(path: string): Attempt[] {
  return attempts.filter((a) => a.path === path);
}

function expectUnavailable(error: unknown): void {
  expect(error).toBeInstanceOf(ConnectionError);
  expect((error as ConnectError).code).toBe(Code.Unavailable);
}

/** An Echo call with 800 ms left fails at once (under 500 ms) with the original Unavailable, after one attempt. */
async function expectGivesUpAtOnce(through: ReturnType<typeof transport>): Promise<void> {
  const echo = createClient(EchoService, through);
  const started = performance.now();
  const error = await echo.echo({}, { timeoutMs: 800 }).catch((e: unknown) => e);
  expectUnavailable(error);
  expect(performance.now() - started).toBeLessThan(500);
  expect(attemptsAt(ECHO)).toHaveLength(1);
}

describe("a call to an idempotent method (Echo: NO_SIDE_EFFECTS) is retried", () => {
  it("after the gateway drops the connection twice: succeeds on the third attempt, each with the token", async () => {
    answer = failFirst(2);
    const echo = createClient(EchoService, transport());
    const res = await echo.echo({ text: "again" });
    expect(res.text).toBe("again");
    expect(attemptsAt(ECHO)).toHaveLength(3);
    for (const a of attemptsAt(ECHO)) expect(a.authorization).toBe("Bearer tok"); // routed and authenticated each time
  });

  it("after the gateway answers 503 (backend down)", async () => {
    answer = failFirst(1, { status: 503 });
    const echo = createClient(EchoService, transport());
    expect((await echo.echo({ text: "up" })).text).toBe("up");
    expect(attemptsAt(ECHO)).toHaveLength(2);
  });

  it("at most maxAttempts times (default 3), then the last error as a ConnectionError", async () => {
    answer = () => "drop";
    const echo = createClient(EchoService, transport());
    const error = await echo.echo({}).catch((e: unknown) => e);
    expectUnavailable(error);
    expect(attemptsAt(ECHO)).toHaveLength(3);
  });

  it("maxAttempts is the transport's to set", async () => {
    answer = () => "drop";
    const echo = createClient(EchoService, transport({ retry: { maxAttempts: 5, initialBackoffMs: 1, maxBackoffMs: 2 } }));
    expectUnavailable(await echo.echo({}).catch((e: unknown) => e));
    expect(attemptsAt(ECHO)).toHaveLength(5);
  });

  it("over gRPC (HTTP/2) too, the retry carrying what is left of the deadline in grpc-timeout", async () => {
    answer = failFirst(1, { status: 503 });
    vi.spyOn(Math, "random").mockReturnValue(0.999); // a 200 ms pause
    const echo = createClient(
      EchoService,
      transport({ gatewayUrl: h2Gateway.baseUrl, protocol: "grpc", retry: { initialBackoffMs: 200 } }),
    );
    expect((await echo.echo({ text: "h2" }, { timeoutMs: 5000 })).text).toBe("h2");
    const [first, second] = attemptsAt(ECHO);
    expect(first?.timeoutMs).toBe(5000);
    expect(second?.timeoutMs).toBeLessThanOrEqual(5000 - 190);
  });

  it("a retry tells the server what is left of the deadline, not all of it", async () => {
    answer = failFirst(1);
    vi.spyOn(Math, "random").mockReturnValue(0.999); // a 200 ms pause
    const echo = createClient(EchoService, transport({ retry: { initialBackoffMs: 200 } }));
    await echo.echo({}, { timeoutMs: 5000 });
    const [first, second] = attemptsAt(ECHO);
    expect(first?.timeoutMs).toBe(5000);
    expect(second?.timeoutMs).toBeLessThanOrEqual(5000 - 190);
  });
});

describe("never retried", () => {
  it("a method with no idempotency level (ValuationService.Get): one attempt", async () => {
    answer = failFirst(1);
    const valuations = createClient(ValuationService, transport());
    const error = await valuations.get({ id: 1n }, gatewayCall({ service: "valuation" })).catch((e: unknown) => e);
    expectUnavailable(error);
    expect(attemptsAt("/backend/valuation/example.v1.ValuationService/Get")).toHaveLength(1);
  });

  it("a streaming call", async () => {
    answer = failFirst(1);
    const echo = createClient(EchoService, transport());
    const error = await (async () => {
      for await (const _ of echo.echoStream({ text: "x", repeat: 2 }));
    })().catch((e: unknown) => e);
    expectUnavailable(error);
    expect(attemptsAt("/backend/echo/example.v1.EchoService/EchoStream")).toHaveLength(1);
  });

  it("a streaming call even to a method declared free of side effects", async () => {
    answer = failFirst(1);
    const method = { ...EchoService.method.echoStream, idempotency: MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS };
    async function* input() {
      yield create(EchoStreamRequestSchema, { text: "x", repeat: 1 });
    }
    const error = await (async () => {
      const res = await transport().stream(method, undefined, undefined, undefined, input(), undefined);
      for await (const _ of res.message);
    })().catch((e: unknown) => e);
    expectUnavailable(error);
    expect(attemptsAt("/backend/echo/example.v1.EchoService/EchoStream")).toHaveLength(1);
  });

  it("an idempotent call answered any other error (403): one attempt", async () => {
    answer = () => ({ status: 403 });
    const echo = createClient(EchoService, transport());
    const error = await echo.echo({}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectError);
    expect(error).not.toBeInstanceOf(ConnectionError);
    expect((error as ConnectError).code).toBe(Code.PermissionDenied);
    expect(attemptsAt(ECHO)).toHaveLength(1);
  });
});

describe("Retry-After, the deadline and the caller's abort", () => {
  it("a 503 with Retry-After: 1 → the second attempt comes a second later, not after the backoff", async () => {
    answer = failFirst(1, { status: 503, retryAfter: "1" });
    const echo = createClient(EchoService, transport({ retry: { initialBackoffMs: 1, maxBackoffMs: 1 } }));
    expect((await echo.echo({ text: "later" })).text).toBe("later");
    const [first, second] = attemptsAt(ECHO);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(950);
  });

  it("a Retry-After past the deadline → the original error at once, no second attempt", async () => {
    answer = () => ({ status: 503, retryAfter: "5" });
    await expectGivesUpAtOnce(transport());
  });

  it("a backoff longer than the deadline leaves → the original error at once, no second attempt", async () => {
    answer = () => "drop";
    vi.spyOn(Math, "random").mockReturnValue(0.999); // a pause of ~5 s
    await expectGivesUpAtOnce(transport({ retry: { initialBackoffMs: 5000 } }));
  });

  it("the caller's abort ends the pause: Canceled, no further attempt", async () => {
    answer = () => "drop";
    vi.spyOn(Math, "random").mockReturnValue(0.999);
    const echo = createClient(EchoService, transport({ retry: { initialBackoffMs: 5000 } }));
    const controller = new AbortController();
    const started = performance.now();
    const pending = echo.echo({}, { signal: controller.signal }).catch((e: unknown) => e);
    while (attemptsAt(ECHO).length === 0) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 50)); // in the pause now
    controller.abort();
    const error = await pending;
    expect(error).toBeInstanceOf(ConnectError);
    expect(error).not.toBeInstanceOf(ConnectionError);
    expect((error as ConnectError).code).toBe(Code.Canceled);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(attemptsAt(ECHO)).toHaveLength(1);
  });
});

describe("the retry budget of a transport", () => {
  it("many concurrent calls to a backend that stays down: attempts ≤ calls × (1 + ratio) + the reserve", async () => {
    answer = () => "drop";
    const calls = 50;
    // Reserve: 10 s × 1 retry/s = 10 retries; +20 % of the calls.
    const echo = createClient(
      EchoService,
      transport({ retry: { initialBackoffMs: 1, maxBackoffMs: 2, minRetriesPerSecond: 1, budgetRatio: 0.2 } }),
    );
    const started = performance.now();
    const errors = await Promise.all(Array.from({ length: calls }, () => echo.echo({}).catch((e: unknown) => e)));
    const seconds = Math.ceil((performance.now() - started) / 1000);
    for (const error of errors) expectUnavailable(error);
    const made = attemptsAt(ECHO).length;
    expect(made).toBeGreaterThan(calls); // some retries were made…
    expect(made).toBeLessThanOrEqual(calls * 1.2 + 10 + seconds); // …far fewer than calls × 3
  });
});

describe("opting out", () => {
  it("per transport: retry: false", async () => {
    answer = failFirst(1);
    const echo = createClient(EchoService, transport({ retry: false }));
    expectUnavailable(await echo.echo({}).catch((e: unknown) => e));
    expect(attemptsAt(ECHO)).toHaveLength(1);
  });

  it("per call: gatewayCall({ retry: false }); the next call is retried again", async () => {
    answer = failFirst(1);
    const echo = createClient(EchoService, transport());
    expectUnavailable(await echo.echo({}, gatewayCall({ retry: false })).catch((e: unknown) => e));
    expect(attemptsAt(ECHO)).toHaveLength(1);
    answer = (n) => (n === 2 ? "drop" : "pass");
    await echo.echo({}, gatewayCall({ retry: true }));
    expect(attemptsAt(ECHO)).toHaveLength(3);
  });

  it("maxAttempts: 1 is no retry either", async () => {
    answer = failFirst(1);
    const echo = createClient(EchoService, transport({ retry: { maxAttempts: 1 } }));
    expectUnavailable(await echo.echo({}).catch((e: unknown) => e));
    expect(attemptsAt(ECHO)).toHaveLength(1);
  });
});

describe("a call that succeeds the first time", () => {
  it("sets no timer of its own", async () => {
    const count = async (options: Partial<GatewayTransportOptions>) => {
      const echo = createClient(EchoService, transport(options));
      await echo.echo({}); // token fetched, connection open
      const spy = vi.spyOn(globalThis, "setTimeout");
      await echo.echo({});
      const n = spy.mock.calls.length;
      spy.mockRestore();
      return n;
    };
    expect(await count({})).toBe(await count({ retry: false }));
  });
});

describe("the options are checked, naming the option", () => {
  const base = { clientId: "c", clientSecret: "s", gatewayUrl: "http://127.0.0.1:1", appcenterUrl: "http://127.0.0.1:2" };
  it.each([
    ["retry", "yes"],
    ["retry", null],
    ["retry.maxAttempts", { maxAttempts: 0 }],
    ["retry.maxAttempts", { maxAttempts: 11 }],
    ["retry.maxAttempts", { maxAttempts: 2.5 }],
    ["retry.initialBackoffMs", { initialBackoffMs: -1 }],
    ["retry.maxBackoffMs", { initialBackoffMs: 500, maxBackoffMs: 100 }],
    ["retry.budgetRatio", { budgetRatio: 2 }],
    ["retry.minRetriesPerSecond", { minRetriesPerSecond: "10" }],
    ["retry.maxAttempt", { maxAttempt: 5 }],
  ])("%s: %j", (option, retry) => {
    const error = (() => {
      try {
        createGatewayTransport({ ...base, retry } as unknown as GatewayTransportOptions);
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as ConfigurationError).option).toBe(option);
    expect((error as Error).message).toContain(`\`${option}\``);
  });

  it("accepts true, false and partial options", () => {
    for (const retry of [true, false, {}, { maxAttempts: 1 }, { initialBackoffMs: 5000 }, { budgetRatio: 0, minRetriesPerSecond: 0 }]) {
      expect(() => createGatewayTransport({ ...base, retry } as GatewayTransportOptions)).not.toThrow();
    }
  });

  it("gatewayCall({ retry }) must be a boolean", () => {
    expect(() => gatewayCall({ retry: "no" as unknown as boolean })).toThrow(ConfigurationError);
    expect(() => gatewayCall({ retry: "no" as unknown as boolean })).toThrow(/`retry`/);
    for (const options of [null, undefined, "echo"]) {
      expect(() => gatewayCall(options as never)).toThrow(ConfigurationError);
      expect(() => gatewayCall(options as never)).toThrow(/`options` must be an object/);
    }
  });
});
