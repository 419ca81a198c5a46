// The backend of the gateway benchmark, in its own process (on CPU 0 with
// the load generator when pinned): a plain node:http HTTP/1.1 server.
//
// - GET (any path): 200 with a small fixed JSON body;
// - POST (any path): the body is drained (read and dropped), then the same
//   small answer — so the body sizes measure the proxy, not the backend;
// - GET /.well-known/jwks.json: the key set of the RS256 token mode
//   (BENCH_JWKS, a JSON key set the parent made with jose);
// - POST /introspect: an RFC 7662 endpoint answering every token active,
//   with scope, client_id, sub, exp, iat, iss, token_type.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { serveParent } from "./proc.js";
import { BENCH_AUDIENCE, BENCH_ISSUER } from "./shared.js";

const BACKEND_BODY = '{"ok":true,"from":"bench-backend"}';

const jwks = process.env.BENCH_JWKS ?? '{"keys":[]}';
const small = Buffer.from(BACKEND_BODY);

/** Introspection requests answered so far (the parent checks that `cacheMs: 0` means one per call). */
let introspections = 0;

const server = createServer((req, res) => {
  const path = req.url ?? "/";
  if (req.method === "POST" && path === "/introspect") {
    introspections++;
    req.resume();
    req.on("end", () => {
      const now = Math.floor(Date.now() / 1000);
      const answer = JSON.stringify({
        active: true,
        scope: "read",
        client_id: "bench-client",
        sub: "bench-user",
        token_type: "access_token",
        iss: BENCH_ISSUER,
        aud: BENCH_AUDIENCE,
        iat: now,
        exp: now + 3600,
      });
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(answer) });
      res.end(answer);
    });
    return;
  }
  if (path === "/.well-known/jwks.json") {
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(jwks) });
    res.end(jwks);
    return;
  }
  const answer = () => {
    res.writeHead(200, { "content-type": "application/json", "content-length": small.length });
    res.end(small);
  };
  if (req.method === "GET" || req.method === "HEAD") return answer();
  req.resume();
  req.on("end", answer);
});
// Proxies keep their upstream connections: never close them between rounds.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 130_000;
server.requestTimeout = 0;
server.maxRequestsPerSocket = 0;
server.listen(0, "127.0.0.1", () => {
  serveParent({ port: (server.address() as AddressInfo).port }, () => introspections);
});
