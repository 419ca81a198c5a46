import { createServer as createHttp1Server, type Server, type ServerResponse } from "node:http";
import { createServer as createHttp2Server, type Http2Server, type Http2Session } from "node:http2";
import type { AddressInfo } from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createGatewayAuth, gatewayIdentity } from "connect-gateway/server";
import { echoServiceRoutes } from "./echo-service.js";

/** A started example backend. */
export interface ExampleBackend {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  /**
   * Graceful close: stops accepting connections, closes idle ones at once
   * (GOAWAY on HTTP/2), lets open calls finish for up to `drainTimeoutMs`,
   * then destroys what is left.
   */
  close(): Promise<void>;
}

/** Options of the example backends. */
export interface BackendOptions {
  /** How long close() lets open calls finish before cutting them (ms). Default 10 000. */
  readonly drainTimeoutMs?: number;
}

const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;

/**
 * The example Connect backend of the local stack: `EchoService` over
 * cleartext HTTP/2 (Connect, gRPC and gRPC-web), every request verified by
 * `createGatewayAuth`, every answer carrying the identity the gateway signed.
 */
export async function startEchoBackend(hmacSecret: string, port = 0, options: BackendOptions = {}): Promise<ExampleBackend> {
  const auth = createGatewayAuth({ hmacSecret, requireSignatureV2: true });
  const routes = echoServiceRoutes((ctx) => {
    const identity = ctx.values.get(gatewayIdentity);
    return identity && {
      clientId: identity.clientId,
      userId: identity.userId ?? "",
      email: identity.email ?? "",
      scopes: [...identity.scopes],
      isServiceRequest: identity.isServiceRequest,
    };
  });
  const server = createHttp2Server(connectNodeAdapter(auth.connectOptions({ routes })));
  return started(server, port, options);
}

/**
 * The example REST "agents" service of the local stack (`/api/v1/agents`),
 * verified with `createGatewayAuth` like a Rails backend would be with the Ruby gem.
 */
export async function startAgentsBackend(hmacSecret: string, port = 0, options: BackendOptions = {}): Promise<ExampleBackend> {
  const auth = createGatewayAuth({ hmacSecret, requireSignatureV2: true });
  const agents: { id: number; name: string; created_by: string }[] = [{ id: 1, name: "Ada", created_by: "seed" }];
  const server = createHttp1Server(async (req, res) => {
    const verified = await auth.verifyNodeRequest(req, res);
    if (verified === undefined) return; // already answered 403 / 413
    const caller = verified.identity?.userId ?? verified.identity?.clientId ?? "unknown";
    const answer = (status: number, body: unknown) =>
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    if (req.method !== "POST") return answer(200, { data: agents, seen_as: caller });
    const name = agentName(verified.body);
    if (name === undefined) return answer(400, { error: 'expected a JSON body like {"name": "Ada"}' });
    agents.push({ id: agents.length + 1, name, created_by: caller });
    answer(201, agents.at(-1));
  });
  return started(server, port, options);
}

/** The `name` of a JSON body `{ "name": "…" }`; `undefined` for anything else. */
function agentName(body: Buffer): string | undefined {
  try {
    const { name } = JSON.parse(body.toString("utf8")) as { name?: unknown };
    return typeof name === "string" && name !== "" ? name : undefined;
  } catch {
    return undefined;
  }
}

async function started(server: Server | Http2Server, port: number, options: BackendOptions): Promise<ExampleBackend> {
  const drainTimeoutMs = options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
  // HTTP/2 sessions would keep close() waiting: clients hold them open while idle.
  const sessions = new Set<Http2Session>();
  let closing: Promise<void> | undefined;
  server.on("session", (session: Http2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    if (closing) session.close();
  });
  const http1 = "closeIdleConnections" in server ? server : undefined;
  if (http1) {
    // While closing, a finished response leaves its connection idle: close it.
    http1.on("request", (_req, res: ServerResponse) => {
      if (closing) res.shouldKeepAlive = false;
      res.once("close", () => closing && setImmediate(() => http1.closeIdleConnections()));
    });
  }
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          http1?.closeAllConnections();
          for (const session of sessions) session.destroy();
        }, drainTimeoutMs);
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        http1?.closeIdleConnections();
        for (const session of sessions) session.close();
      })),
  };
}
