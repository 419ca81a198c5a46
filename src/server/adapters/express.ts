import type { IncomingMessage, ServerResponse } from "node:http";
import type { GatewayAuthConfig } from "../gateway-auth-options.js";
import { rejectionOf } from "../rejections.js";
import type { VerifiedRequests } from "../verified-requests.js";
import { refuse, verifyNodeRequest, type VerifiedNodeRequest } from "./node.js";

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Set by `auth.express()`: the verified identity, raw body and context values. */
      gateway?: VerifiedNodeRequest;
    }
  }
}

/** The parts of an Express request the middleware uses (typed here, so Express stays optional). */
export interface ExpressLikeRequest extends IncomingMessage {
  /** The request-target as received, before a mounted router trimmed `url`: what the gateway signed. */
  originalUrl?: string;
  /** Set by the middleware: parsed JSON for `application/json`, else the raw `Buffer`. */
  body?: unknown;
  /** Set by the middleware: the verified identity, raw body and context values. */
  gateway?: VerifiedNodeRequest;
}

/** An Express-style middleware. */
export type ExpressLikeMiddleware = (
  req: ExpressLikeRequest,
  res: ServerResponse,
  next: (err?: unknown) => void,
) => void;

/**
 * Express middleware verifying every request (mount it before any body
 * parser). On success it sets `req.gateway` (identity, raw body, context
 * values) and, because it consumed the body, `req.body`: the parsed JSON for
 * `application/json`, otherwise the raw `Buffer` (`undefined` when empty or
 * content-encoded: read `req.gateway.body` then).
 * Body parsers mounted after it then skip the request, as they skip any
 * request whose body was read. When a body parser ran before it, the bytes
 * are gone and it answers 500 with a message saying to mount it first.
 * Every refusal is answered as `auth.verifyNodeRequest` answers it: the
 * status and message of the rejection table, as JSON `{"message": …}`.
 *
 * Connect routes (`expressConnectMiddleware` with `auth.connectOptions()`)
 * behind it keep working: they take the identity and the bytes verified
 * here. For Connect and gRPC streaming content types `req.body` stays
 * undefined, so that Connect reads the verified bytes as a stream.
 */
export function expressMiddleware(config: GatewayAuthConfig, verifiedRequests: VerifiedRequests): ExpressLikeMiddleware {
  return (req, res, next) => {
    verifyNodeRequest(config, req, res, req.originalUrl ?? req.url).then((verified) => {
      if (verified === undefined) return;
      verifiedRequests.set(req, { identity: verified.identity, chunks: [verified.body] });
      let body: unknown;
      try {
        body = parsedBody(req, verified.body);
      } catch {
        refuse(res, rejectionOf(config, "invalid_json_body"));
        return;
      }
      req.gateway = verified;
      req.body = body;
      next();
    }, next);
  };
}

// Enveloped streams: Connect must read them from the request, not from req.body.
const STREAMING = /^application\/(connect\+|grpc)/;

// An encoded (e.g. gzip) body stays in req.gateway.body: JSON.parse cannot
// read it, and a Connect route behind must get the bytes to decompress them.
function parsedBody(req: IncomingMessage, body: Buffer): unknown {
  const type = (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  const encoding = req.headers["content-encoding"]?.trim().toLowerCase() ?? "identity";
  if (body.byteLength === 0 || STREAMING.test(type) || encoding !== "identity") return undefined;
  return type === "application/json" ? (JSON.parse(body.toString("utf8")) as unknown) : body;
}
