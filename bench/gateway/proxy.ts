// One node proxy under test, in its own process (alone on CPU 1 when
// pinned): the gateway (createGateway) or fastify + @fastify/http-proxy.
// Its configuration comes as JSON in BENCH_PROXY; its hello says where it
// listens, how long createGateway + listen took and its RSS right after.
import httpProxy from "@fastify/http-proxy";
import Fastify from "fastify";
import { createGateway } from "../../packages/gateway/src/index.js";
import { serveParent } from "./proc.js";
import { HMAC_SECRET, type ProxyHello, type ProxySpec } from "./shared.js";

const spec = JSON.parse(process.env.BENCH_PROXY ?? "{}") as ProxySpec;
let url: string;
let startupMs = 0;
if (spec.kind === "gateway") {
  const started = performance.now();
  const gateway = createGateway({
    routes: spec.routes,
    hmacSecret: HMAC_SECRET,
    tokens: spec.tokens,
    rateLimit: false,
    // The per-IP budget of failed authentications stays on (its gate runs on
    // every call, as for users) but cannot run out: all the load comes from
    // one IP, with up to 256 distinct tokens whose first validations are in
    // flight at once — more than the default 20 per minute, so they would
    // get 429 (as documented in request-authenticator.ts), and with
    // `cacheMs: 0` every call is a first validation.
    authFailureLimit: { max: 1_000_000_000 },
    bodyLimit: spec.bodyLimit,
    // With logging: the default destination, stdout (/dev/null here, see startNodeChild).
    logger: spec.log ? { level: "info" } : false,
  });
  url = await gateway.listen({ port: 0, host: "127.0.0.1" });
  startupMs = performance.now() - started;
} else if (spec.kind === "http-proxy") {
  const app = Fastify({ logger: false, bodyLimit: spec.bodyLimit });
  await app.register(httpProxy, { upstream: spec.upstream, prefix: "/backend/echo", rewritePrefix: "" });
  url = await app.listen({ port: 0, host: "127.0.0.1" });
} else {
  throw new Error(`BENCH_PROXY: unknown proxy ${JSON.stringify(spec)}`);
}
serveParent({ url, startupMs, rssKiB: Math.round(process.memoryUsage().rss / 1024) } satisfies ProxyHello);
