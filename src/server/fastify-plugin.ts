import { createContextValues } from "@connectrpc/connect";
import type { IncomingMessage } from "node:http";
import { pipeline, Transform, type Readable } from "node:stream";
import { createHash, type Hash } from "node:crypto";
import { setVerifiedIdentity } from "./current-user.js";
import type { GatewayAuthConfig } from "./gateway-auth-options.js";
import { rejectionMessage } from "./gateway-rejection.js";
import type { VerifiedNodeRequest } from "./node-request-verifier.js";
import { checkRequestHead, type RequestCheck } from "./request-check.js";
import type { VerifiedRequests } from "./verified-requests.js";

/** The parts of a Fastify request the plugin uses (typed here, so Fastify stays optional). */
export interface FastifyLikeRequest {
  readonly raw: IncomingMessage;
  body?: unknown;
  gateway?: Omit<VerifiedNodeRequest, "body">;
}

/** The parts of a Fastify reply the plugin uses. */
export interface FastifyLikeReply {
  code(status: number): FastifyLikeReply;
  send(payload: unknown): FastifyLikeReply;
}

/** The parts of a Fastify instance the plugin uses. */
export interface FastifyLikeInstance {
  decorateRequest(name: string, value: unknown): unknown;
  addHook(name: "onRequest", hook: (req: FastifyLikeRequest, reply: FastifyLikeReply) => Promise<unknown>): unknown;
  addHook(
    name: "preParsing",
    hook: (req: FastifyLikeRequest, reply: FastifyLikeReply, payload: Readable) => Promise<Readable>,
  ): unknown;
  addHook(name: "preValidation", hook: (req: FastifyLikeRequest, reply: FastifyLikeReply) => Promise<unknown>): unknown;
}

/** A Fastify plugin, usable with `app.register()`. */
export interface FastifyLikePlugin {
  (instance: FastifyLikeInstance, options: unknown, done: (err?: Error) => void): void;
}

interface Pending {
  readonly check: Extract<RequestCheck, { ok: true }>;
  hash: Hash;
  /** The stream returned from preParsing, when Fastify called it. */
  stream?: Readable;
  /** What this plugin read itself (the body parser left it), kept for a Connect route. */
  readonly unparsed: Buffer[];
}

/**
 * A Fastify plugin verifying every route of the instance it is registered on
 * (not encapsulated, like `fastify-plugin`): `onRequest` checks the headers
 * before the body is read; `preParsing` hands Fastify's body parser a stream
 * that hashes the bytes as the parser reads them; `preValidation` verifies
 * the signature (hashing an unread body itself, e.g. for a GET) before
 * validation or any handler, and sets `request.gateway`.
 *
 * Connect routes served by `fastifyConnectPlugin` read the raw request
 * themselves: give it `auth.connectOptions()`. Behind this plugin it takes
 * the identity and the bytes verified here (Connect's content types are not
 * parsed by Fastify, so this plugin reads and keeps them).
 */
export function fastifyPlugin(config: GatewayAuthConfig, verifiedRequests: VerifiedRequests): FastifyLikePlugin {
  const pending = new WeakMap<FastifyLikeRequest, Pending>();
  const plugin: FastifyLikePlugin = (instance, _options, done) => {
    instance.decorateRequest("gateway", undefined);
    instance.addHook("onRequest", async (req, reply) => {
      const check = checkRequestHead(config, req.raw);
      if (!check.ok) return reply.code(403).send({ message: rejectionMessage(config, check.reason, check) });
      pending.set(req, { check, hash: createHash("sha256"), unparsed: [] });
      return undefined;
    });
    instance.addHook("preParsing", async (req, _reply, payload) => {
      const state = pending.get(req);
      if (state === undefined) return payload;
      state.stream = hashed(payload, state.hash);
      return state.stream;
    });
    instance.addHook("preValidation", async (req, reply) => {
      const state = pending.get(req);
      if (state === undefined) return undefined;
      pending.delete(req);
      await drain(state.stream ?? hashed(req.raw, state.hash), state.unparsed);
      if (!state.check.verifies(state.hash.digest("hex"))) {
        return reply.code(403).send({ message: rejectionMessage(config, "invalid_signature", state.check) });
      }
      const values = createContextValues();
      setVerifiedIdentity(values, config, state.check.identity);
      req.gateway = { identity: state.check.identity, values };
      verifiedRequests.set(req.raw, { identity: state.check.identity, chunks: state.unparsed });
      return undefined;
    });
    done();
  };
  return Object.assign(plugin, {
    [Symbol.for("skip-override")]: true,
    [Symbol.for("fastify.display-name")]: "connect-gateway",
  });
}

// The body, unchanged, hashed as it is read; errors (an aborted upload) travel through.
function hashed(source: Readable, hash: Hash): Readable {
  const through = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      callback(null, chunk);
    },
  });
  return pipeline(source, through, () => {});
}

// Reads what the body parser left unread (all of it for a GET or a Connect
// route), hashing it, and keeps it for whoever reads the request next.
async function drain(stream: Readable, into: Buffer[]): Promise<void> {
  if (stream.readableEnded) return;
  for await (const chunk of stream) into.push(chunk as Buffer);
}
