import { createContextValues } from "@connectrpc/connect";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerResponse } from "node:http2";
import { Transform, type Readable } from "node:stream";
import { unwatchDeadline, watchDeadline, type DeadlineWatch } from "../body-deadlines.js";
import { endUnreadStream, hasUnreadBody } from "../end-unread-stream.js";
import { createHash, type Hash } from "node:crypto";
import { setVerifiedIdentity } from "../current-user.js";
import type { GatewayAuthConfig } from "../gateway-auth-options.js";
import { rejectionOf, type Rejection } from "../rejections.js";
import {
  checkRequestHead,
  readAndVerifyBody,
  refusalBeforeBody,
  refusalOfBody,
  verifyHashedBody,
  type AdmittedHead,
} from "../request-check.js";
import { startVerificationSpan, type VerificationSpan } from "../verification-tracing.js";
import type { VerifiedBody } from "../verified-body.js";
import type { VerifiedRequests } from "../verified-requests.js";
import { refuse as refuseNode, type VerifiedNodeRequest } from "./node.js";

/** The parts of a Fastify request the plugin uses (typed here, so Fastify stays optional). */
export interface FastifyLikeRequest {
  /** The Node request underneath: its raw headers and request-target are what is verified. */
  readonly raw: IncomingMessage;
  /** The body as Fastify's parser left it. */
  body?: unknown;
  /** Set by the plugin once the signature verified: the identity and context values. */
  gateway?: Omit<VerifiedNodeRequest, "body">;
}

/** The parts of a Fastify reply the plugin uses. */
export interface FastifyLikeReply {
  /** Sets the status of a refusal (403, 413, 503…). */
  code(status: number): FastifyLikeReply;
  /** Sends the refusal's JSON body, `{ message }`. */
  send(payload: unknown): FastifyLikeReply;
  /** Sets a header of the refusal (`Connection: close`). */
  header(name: string, value: string): FastifyLikeReply;
  /** Takes the answer out of Fastify's hands: a body that timed out is answered while Fastify's parser waits. */
  hijack(): FastifyLikeReply;
  /** The Node response underneath. */
  readonly raw: ServerResponse | Http2ServerResponse;
}

/** The parts of a Fastify instance the plugin uses. */
export interface FastifyLikeInstance {
  /** Declares `request.gateway`. */
  decorateRequest(name: string, value: unknown): unknown;
  /** `onRequest`: checks the gateway headers before the body is read. */
  addHook(name: "onRequest", hook: (req: FastifyLikeRequest, reply: FastifyLikeReply) => Promise<unknown>): unknown;
  /** `preParsing`: hands the body parser a stream that hashes the bytes as it reads them. */
  addHook(
    name: "preParsing",
    hook: (req: FastifyLikeRequest, reply: FastifyLikeReply, payload: Readable) => Promise<Readable>,
  ): unknown;
  /** `preValidation`: verifies the signature before validation or any handler. */
  addHook(name: "preValidation", hook: (req: FastifyLikeRequest, reply: FastifyLikeReply) => Promise<unknown>): unknown;
}

/** A Fastify plugin, usable with `app.register()`. */
export interface FastifyLikePlugin {
  (instance: FastifyLikeInstance, options: unknown, done: (err?: Error) => void): void;
}

interface Pending {
  readonly check: AdmittedHead;
  /** Fed by the stream preParsing hands the body parser. */
  readonly hash: Hash;
  /** The verification's span, when OpenTelemetry records one. */
  readonly span: VerificationSpan | undefined;
  /** That stream, when Fastify called preParsing. */
  stream?: Readable;
  /** While Fastify's parser reads the body: its bound (see body-deadlines.ts). */
  deadline?: ParsedBodyDeadline;
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
      const span = startVerificationSpan(req.raw);
      const check = checkRequestHead(config, req.raw);
      if (!check.ok) {
        span?.end(check.reason);
        return refuse(req, reply, rejectionOf(config, check.reason, check), config.bodyTimeoutMs);
      }
      // Fastify's parser has not run yet: the body is still unread.
      const early = refusalBeforeBody(config, { consumed: false, contentLength: check.contentLength });
      if (early !== undefined) {
        span?.end(early);
        return refuse(req, reply, rejectionOf(config, early, check), config.bodyTimeoutMs);
      }
      pending.set(req, { check, hash: createHash("sha256"), span });
      return undefined;
    });
    instance.addHook("preParsing", async (req, reply, payload) => {
      const state = pending.get(req);
      if (state === undefined) return payload;
      let deadline: ParsedBodyDeadline | undefined;
      // Past maxBodyBytes (a chunked body: a declared length was checked in onRequest), answered here.
      const through = hashing(state.hash, config.maxBodyBytes, () => deadline?.answerInstead("body_too_large"));
      state.stream = through;
      state.deadline = deadline = new ParsedBodyDeadline(config, state, payload, through, reply, () => pending.delete(req), req.raw);
      watchDeadline(state.deadline, config.bodyTimeoutMs);
      return through;
    });
    instance.addHook("preValidation", async (req, reply) => {
      const state = pending.get(req);
      if (state === undefined) return undefined;
      pending.delete(req);
      if (state.deadline !== undefined) unwatchDeadline(state.deadline);
      let body: Awaited<ReturnType<typeof restOfBody>>;
      try {
        body = await restOfBody(config, state, req.raw);
      } catch (e) {
        state.span?.end("error");
        throw e;
      }
      if (body.kind !== "verified") {
        const kind = refusalOfBody(body);
        state.span?.end(kind);
        return refuse(req, reply, rejectionOf(config, kind, state.check), kind === "body_timeout" ? 0 : config.bodyTimeoutMs);
      }
      state.span?.end("verified", state.check.identity);
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

// The body, unchanged, hashed as Fastify's parser reads it (fed by ParsedBodyDeadline),
// up to `maxBytes`: past it, `tooLarge()` and nothing more is passed on.
// Its readers listen for its errors while they read; one listener stays for
// its whole life, so that a caller hanging up after a refusal (when nobody
// reads it any more) is never an unhandled 'error'.
function hashing(hash: Hash, maxBytes: number, tooLarge: () => void): Transform {
  let read = 0;
  const through = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      read += chunk.byteLength;
      if (read > maxBytes) {
        callback();
        if (read - chunk.byteLength <= maxBytes) tooLarge();
        return;
      }
      hash.update(chunk);
      callback(null, chunk);
    },
  });
  return through.on("error", ignoreLateError);
}

const ignoreLateError = (): void => {};

/**
 * Feeds the hashing stream from the request while Fastify's parser reads
 * it; errors (an aborted upload) travel through. Should the body not have
 * arrived `bodyTimeoutMs` later, the request is answered `body_timeout` here
 * (the reply taken from Fastify, since its parser is still waiting) and the
 * parser is left without input: it never resumes, so no handler runs and
 * nothing answers twice. Over HTTP/1.1 the answer closes the connection, so
 * the rest of the body is never read; over HTTP/2 the stream is reset with
 * NO_ERROR once the answer is out.
 */
class ParsedBodyDeadline implements DeadlineWatch {
  deadlineAt = 0;
  previousWatch: DeadlineWatch | undefined = undefined;
  nextWatch: DeadlineWatch | undefined = undefined;
  watched = false;
  private answered = false;
  private readonly forwardError = (error: Error) => this.through.destroy(error);

  constructor(
    private readonly config: GatewayAuthConfig,
    private readonly state: Pending,
    private readonly source: Readable,
    private readonly through: Transform,
    private readonly reply: FastifyLikeReply,
    private readonly forget: () => void,
    /** The Node request itself (`source` is what Fastify's parser reads of it). */
    private readonly request: IncomingMessage,
  ) {
    source.on("error", this.forwardError);
    source.pipe(through);
    // Answered by Fastify before preValidation (its parser failed: the caller
    // reset mid-body, a 413 or 415 of its own), or the caller gone: nothing is
    // left to bound, and nothing must be held until the deadline. The request's
    // pending state stays: should preValidation still run, it verifies (and
    // refuses) as ever — a missing state would read as "not ours".
    reply.raw.once("close", this.release);
  }

  private readonly release = (): void => {
    if (this.answered) return;
    this.answered = true;
    if (this.watched) unwatchDeadline(this);
  };

  expire(): void {
    // The body arrived in time; what comes after it (other hooks) is not bounded here.
    if (this.source.readableEnded) return;
    this.answerInstead("body_timeout");
  }

  /**
   * Answers `kind` in the parser's stead (it is left waiting, so no handler
   * runs): the body timed out, or grew past `maxBodyBytes`.
   */
  answerInstead(kind: "body_timeout" | "body_too_large"): void {
    if (this.answered) return;
    this.answered = true;
    if (this.watched) unwatchDeadline(this);
    this.source.unpipe(this.through);
    this.source.off("error", this.forwardError);
    this.source.on("error", ignoreLateError);
    this.source.pause();
    this.forget();
    const rejection = rejectionOf(this.config, kind, this.state.check);
    this.state.span?.end(rejection.kind);
    const raw = this.reply.hijack().raw;
    endUnreadStream(this.request, kind === "body_timeout" ? 0 : this.config.bodyTimeoutMs);
    // The plain Node answer: the same status and body, Connection: close over HTTP/1.1.
    refuseNode(raw, rejection, this.request);
  }
}

// Either the body parser read the whole body through the hashing stream, or
// it left it unread (a GET, a Connect route): then read, hash and keep it
// here for whoever reads the request next (a Connect route).
function restOfBody(config: GatewayAuthConfig, state: Pending, raw: Readable): Promise<VerifiedBody> {
  const stream = state.stream ?? raw;
  if (!stream.readableEnded) return readAndVerifyBody(config, state.check, stream);
  return verifyHashedBody(state.check, state.hash.digest("hex"));
}

/**
 * Answers a refusal with its status from the rejection table and `{ message }`.
 * A request whose body is not all in (refused on its headers, or its body
 * too slow): over HTTP/1.1 the answer closes the connection — else a caller
 * that stalled, or trickles a byte now and then, holds it for as long as it
 * likes — and over HTTP/2 its stream is ended (see endUnreadStream).
 */
function refuse(req: FastifyLikeRequest, reply: FastifyLikeReply, rejection: Rejection, drainFor: number): FastifyLikeReply {
  if (!("stream" in req.raw) && hasUnreadBody(req.raw)) reply.header("connection", "close");
  endUnreadStream(req.raw, drainFor);
  return reply.code(rejection.status).send({ message: rejection.message });
}
