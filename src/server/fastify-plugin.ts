import { createContextValues } from "@connectrpc/connect";
import type { IncomingMessage } from "node:http";
import { pipeline, Transform, type Readable } from "node:stream";
import { createHash, type Hash } from "node:crypto";
import { setVerifiedIdentity } from "./current-user.js";
import type { GatewayAuthConfig } from "./gateway-auth-options.js";
import { bodyTooLargeMessage, rejectionMessage, rejectionStatus } from "./gateway-rejection.js";
import type { VerifiedNodeRequest } from "./node-request-verifier.js";
import { checkRequestHead, type RequestCheck } from "./request-check.js";
import { declaresTooLarge, outcome, readVerifiedBody, type VerifiedBody } from "./verified-body.js";
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
  /** Fed by the stream preParsing hands the body parser. */
  readonly hash: Hash;
  /** That stream, when Fastify called preParsing. */
  stream?: Readable;
}

/**
 * A Fastify plugin verifying every route of the instance it is registered on
 * (not encapsulated, like `fastify-plugin`): `onRequest` checks the headers
 * (and a declared length) before the body is read; `preParsing` hands
 * Fastify's body parser a stream that hashes the bytes as the parser reads
 * them; `preValidation` verifies the signature (reading and hashing a body
 * the parser left unread, e.g. a GET's, at most `maxBodyBytes`) before
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
      if (!check.ok) {
        return reply.code(rejectionStatus(check.reason)).send({ message: rejectionMessage(config, check.reason, check) });
      }
      if (declaresTooLarge(req.raw.headers["content-length"], config.maxBodyBytes)) {
        return reply.code(413).send({ message: bodyTooLargeMessage(config) });
      }
      pending.set(req, { check, hash: createHash("sha256") });
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
      const body = await restOfBody(state, req.raw, config.maxBodyBytes);
      if (body.kind === "too_large") return reply.code(413).send({ message: bodyTooLargeMessage(config) });
      if (body.kind === "rejected") {
        return reply.code(rejectionStatus(body.reason)).send({ message: rejectionMessage(config, body.reason, state.check) });
      }
      const values = createContextValues();
      setVerifiedIdentity(values, config, state.check.identity);
      req.gateway = { identity: state.check.identity, values };
      verifiedRequests.set(req.raw, { identity: state.check.identity, chunks: body.chunks });
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

// Either the body parser read the whole body through the hashing stream, or
// it left it unread (a GET, a Connect route): then read, hash and keep it
// here for whoever reads the request next (a Connect route).
function restOfBody(state: Pending, raw: Readable, maxBodyBytes: number): Promise<VerifiedBody> {
  const stream = state.stream ?? raw;
  if (!stream.readableEnded) return readVerifiedBody(stream, state.check.verifyBody, maxBodyBytes);
  return Promise.resolve(state.check.verifyBody(state.hash.digest("hex"))).then((verdict) => outcome(verdict, [], 0));
}
