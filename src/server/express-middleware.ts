import type { IncomingMessage, ServerResponse } from "node:http";
import type { GatewayAuthConfig } from "./gateway-auth-options.js";
import { verifyNodeRequest, type VerifiedNodeRequest } from "./node-request-verifier.js";

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
  originalUrl?: string;
  body?: unknown;
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
 * a JSON content type, otherwise the raw `Buffer` (`undefined` when empty).
 * Body parsers mounted after it then skip the request, as they skip any
 * request whose body was read. When a body parser ran before it, the bytes
 * are gone and it answers 500 with a message saying to mount it first.
 */
export function expressMiddleware(config: GatewayAuthConfig): ExpressLikeMiddleware {
  return (req, res, next) => {
    verifyNodeRequest(config, req, res, req.originalUrl ?? req.url).then((verified) => {
      if (verified === undefined) return;
      let body: unknown;
      try {
        body = parsedBody(req, verified.body);
      } catch {
        res.writeHead(400, { "content-type": "application/json" }).end('{"message":"invalid JSON body"}');
        return;
      }
      req.gateway = verified;
      req.body = body;
      next();
    }, next);
  };
}

function parsedBody(req: IncomingMessage, body: Buffer): unknown {
  if (body.byteLength === 0) return undefined;
  const type = (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  const isJson = type === "application/json" || type.endsWith("+json");
  return isJson ? (JSON.parse(body.toString("utf8")) as unknown) : body;
}
