import { connectNodeAdapter } from "@connectrpc/connect-node";
import { afterAll, beforeAll, expect } from "vitest";
import type { GatewayAuth, VerifiedNodeRequest } from "../../src/server/index.js";
import { echoRoutes } from "./echo-routes.js";
import { startServer, type RunningServer } from "./servers.js";

/** The servers a property test sends its random requests to. */
export interface PropertyServers {
  /** Plain Node behind `auth.verifyNodeRequest`, answering `answer(verified)` as JSON. */
  plain: RunningServer;
  /** connect-node behind `auth.connectOptions`, serving the example EchoService. */
  connect: RunningServer;
}

/**
 * Starts both servers around the enclosing test file and fails it if any
 * request caused an uncaught exception or unhandled rejection: random input
 * must never break the process.
 */
export function propertyServers(auth: GatewayAuth, answer: (verified: VerifiedNodeRequest) => unknown): PropertyServers {
  const servers = {} as PropertyServers;
  let uncaught = 0;
  const onUncaught = () => void uncaught++;
  beforeAll(async () => {
    process.on("uncaughtException", onUncaught);
    process.on("unhandledRejection", onUncaught);
    servers.plain = await startServer(async (req, res) => {
      const verified = await auth.verifyNodeRequest(req, res);
      if (verified) res.end(JSON.stringify(answer(verified)));
    });
    servers.connect = await startServer(connectNodeAdapter(auth.connectOptions({ routes: echoRoutes({ calls: 0, messages: 0 }) })));
  });
  afterAll(async () => {
    process.off("uncaughtException", onUncaught);
    process.off("unhandledRejection", onUncaught);
    await servers.plain.close();
    await servers.connect.close();
    expect(uncaught).toBe(0);
  });
  return servers;
}
