// One createGatewayAuth instance behind each of the four ways a service wires
// it: plain Node (verifyNodeRequest), Connect (connectOptions), Express (its
// middleware) and Fastify (its plugin), each on its own loopback port.
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import express from "express";
import Fastify from "fastify";
import type { AddressInfo } from "node:net";
import type { GatewayAuth, VerifiedNodeRequest } from "../../src/server/index.js";
import { startServer } from "./loopback-server.js";

/** The four ways a service wires createGatewayAuth. */
export type Adapter = "node" | "connect" | "express" | "fastify";

/** The four servers' ports, and how to stop them all. */
export interface AdapterServers {
  readonly ports: Record<Adapter, number>;
  close(): Promise<void>;
}

/** What a verified request is answered with, as far as these servers look at it. */
export type VerifiedRequest = Pick<VerifiedNodeRequest, "identity" | "values">;

/**
 * Starts `auth` behind the four adapters: Connect serves `routes`; plain
 * Node (any path) and Express and Fastify (`POST path`) answer a verified
 * request with the JSON text `answer(verified)`.
 */
export async function startAdapterServers(
  auth: GatewayAuth,
  options: { routes: (router: ConnectRouter) => void; path: string; answer: (verified: VerifiedRequest) => string | Promise<string> },
): Promise<AdapterServers> {
  const { routes, path, answer } = options;
  const node = await startServer(async (req, res) => {
    const verified = await auth.verifyNodeRequest(req, res);
    if (verified) res.end(await answer(verified));
  });
  const connect = await startServer(connectNodeAdapter(auth.connectOptions({ routes })));
  const app = express();
  app.use(auth.express());
  app.post(path, async (req, res) => void res.type("json").send(await answer(req.gateway as VerifiedRequest)));
  const expressServer = await startServer(app);
  const fastify = Fastify();
  await fastify.register(auth.fastify);
  fastify.post(path, async (req, reply) => reply.type("application/json").send(await answer((req as unknown as { gateway: VerifiedRequest }).gateway)));
  await fastify.listen({ port: 0, host: "127.0.0.1" });
  return {
    ports: {
      node: node.port,
      connect: connect.port,
      express: expressServer.port,
      fastify: (fastify.server.address() as AddressInfo).port,
    },
    close: async () => {
      for (const close of [node.close, connect.close, expressServer.close, () => fastify.close()]) await close();
    },
  };
}
