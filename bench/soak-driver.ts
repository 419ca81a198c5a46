// The load behind test/gateway/soak.test.ts and bench/gateway-soak.ts: a
// gateway in this very process in front of an HTTP/1.1 and an h2c upstream
// that answer slowly, driven by a fixed number of calls in flight (HTTP/1.1
// and HTTP/2 callers), a share of them abandoned by their caller mid-flight.
// (Not a *-overhead.ts file: bench/run.ts does not run it.)
import { createServer, request as httpRequest, Agent, type IncomingMessage, type ServerResponse } from "node:http";
import {
  connect,
  constants as http2Constants,
  createServer as createHttp2Server,
  type ClientHttp2Session,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
} from "node:http2";
import type { AddressInfo, Server } from "node:net";
import { Writable } from "node:stream";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { SignJWT } from "jose";
import { createGateway, parseRoutesFile, type Gateway } from "../packages/gateway/src/index.js";

const JWT_SECRET = "soak-jwt-secret-0123456789abcdef0123";
const HMAC_SECRET = "soak-hmac-secret-0123456789";
/** What each upstream answers: CHUNKS chunks of CHUNK_BYTES, CHUNK_EVERY_MS apart. */
const CHUNKS = 4;
const CHUNK_BYTES = 512;
const CHUNK_EVERY_MS = 10;
const ANSWER_BYTES = CHUNKS * CHUNK_BYTES;

/** The gateway, its two upstreams, and what the gateway logged. */
export interface SoakStack {
  readonly gateway: Gateway;
  readonly token: string;
  /** Log lines at warn or above (JSON), kept; the rest only counted. */
  readonly problems: string[];
  logLines(): number;
  close(): Promise<void>;
}

/** The load's outcome. */
export interface SoakStats {
  /** Calls answered 200 with the whole body. */
  completed: number;
  /** Calls the caller abandoned on purpose. */
  abandoned: number;
  /** Calls not abandoned that failed or got a wrong answer, with why. */
  failed: string[];
}

function answerSlowly(res: ServerResponse | Http2ServerResponse): void {
  res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(ANSWER_BYTES) });
  let sent = 0;
  const timer = setInterval(() => {
    if (res.destroyed || res.writableEnded) return clearInterval(timer);
    sent++;
    if (sent >= CHUNKS) {
      clearInterval(timer);
      res.end(Buffer.alloc(CHUNK_BYTES, 1));
    } else {
      (res as ServerResponse).write(Buffer.alloc(CHUNK_BYTES, 1));
    }
  }, CHUNK_EVERY_MS);
  res.on("close", () => clearInterval(timer));
}

function upstreamHandler(req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse): void {
  req.resume();
  req.on("end", () => answerSlowly(res));
}

function listen(server: Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
  });
}

/** Starts the upstreams and the gateway (logging at `info` into memory). */
export async function startSoakStack(): Promise<SoakStack> {
  const h1 = createServer(upstreamHandler);
  h1.keepAliveTimeout = 60_000;
  const h2 = createHttp2Server(upstreamHandler as unknown as Parameters<typeof createHttp2Server>[0]);
  const h2Sessions = new Set<Http2Session>();
  h2.on("session", (session: Http2Session) => {
    h2Sessions.add(session);
    session.on("close", () => h2Sessions.delete(session));
    session.on("error", () => {});
  });
  const [h1Url, h2Url] = await Promise.all([listen(h1), listen(h2)]);
  const problems: string[] = [];
  let lines = 0;
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines++;
      const line = chunk.toString("utf8");
      if ((JSON.parse(line) as { level: number }).level >= 40) problems.push(line);
      callback();
    },
  });
  const gateway = createGateway({
    routes: parseRoutesFile(
      `version: "1.0"\nbackends:\n  h1:\n    upstream: ${h1Url}\n  h2:\n    upstream: ${h2Url}\n    http2: true\n`,
      { source: "soak" },
    ),
    hmacSecret: HMAC_SECRET,
    tokens: { hs256: { secret: JWT_SECRET, issuer: "soak", audience: "soak" } },
    rateLimit: false,
    logger: { level: "info", stream },
    drainTimeoutMs: 1_000,
  });
  await gateway.listen();
  const token = await new SignJWT({ client_id: "soak", scopes: ["read", "write"] })
    .setProtectedHeader({ alg: "HS256" })
    .setIssuedAt()
    .setIssuer("soak")
    .setAudience("soak")
    .setExpirationTime("1h")
    .sign(new TextEncoder().encode(JWT_SECRET));
  return {
    gateway,
    token,
    problems,
    logLines: () => lines,
    async close() {
      await gateway.close();
      for (const session of h2Sessions) session.destroy();
      h1.closeAllConnections();
      await Promise.all([new Promise((r) => h1.close(r)), new Promise((r) => h2.close(r))]);
    },
  };
}

type Outcome = "completed" | "abandoned" | string;

/** How a call is abandoned: before the answer's headers, or after its first body bytes. */
type Abandon = "no" | "before-headers" | "mid-body";

function http1Call(agent: Agent, url: string, token: string, abandon: Abandon): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = httpRequest(url, { method: "POST", agent, headers: { authorization: `Bearer ${token}`, "content-type": "application/json" } });
    let received = 0;
    let status = 0;
    if (abandon === "before-headers") setTimeout(() => req.destroy(), 2);
    req.on("response", (res) => {
      status = res.statusCode ?? 0;
      res.on("data", (c: Buffer) => {
        received += c.length;
        if (abandon === "mid-body") req.destroy();
      });
      res.on("end", () => resolve(abandon !== "no" ? "abandoned" : status === 200 && received === ANSWER_BYTES ? "completed" : `HTTP/1.1 ${status}, ${received} bytes`));
      res.on("error", () => {});
    });
    req.on("error", (e) => resolve(abandon !== "no" ? "abandoned" : `HTTP/1.1 ${e.message}`));
    req.on("close", () => resolve(abandon !== "no" ? "abandoned" : `HTTP/1.1 closed after ${status}, ${received} bytes`));
    req.end("{}");
  });
}

function http2Call(session: ClientHttp2Session, path: string, token: string, abandon: Abandon): Promise<Outcome> {
  return new Promise((resolve) => {
    const stream = session.request({ ":method": "POST", ":path": path, authorization: `Bearer ${token}`, "content-type": "application/json" });
    let received = 0;
    let status = 0;
    const cancel = () => stream.close(http2Constants.NGHTTP2_CANCEL);
    if (abandon === "before-headers") setTimeout(cancel, 2);
    stream.on("response", (headers) => (status = Number(headers[":status"])));
    stream.on("data", (c: Buffer) => {
      received += c.length;
      if (abandon === "mid-body") cancel();
    });
    stream.on("error", () => {});
    stream.on("close", () =>
      resolve(abandon !== "no" ? "abandoned" : status === 200 && received === ANSWER_BYTES ? "completed" : `HTTP/2 ${status}, ${received} bytes, RST ${stream.rstCode}`),
    );
    stream.end("{}");
  });
}

/**
 * Keeps `inFlight` calls going for `seconds` (half HTTP/1.1 callers, half
 * HTTP/2, each alternating between the two upstreams), one call in
 * `abandonEvery` abandoned by its caller; `onSecond` is awaited after each
 * whole second (the load keeps going meanwhile).
 */
export async function driveSoak(
  stack: SoakStack,
  options: { seconds: number; inFlight: number; abandonEvery: number; onSecond?: (second: number) => void | Promise<void> },
): Promise<SoakStats> {
  const stats: SoakStats = { completed: 0, abandoned: 0, failed: [] };
  const agent = new Agent({ keepAlive: true, maxSockets: options.inFlight });
  const sessions = Array.from({ length: 4 }, () => {
    const session = connect(stack.gateway.url);
    session.on("error", () => {});
    return session;
  });
  const deadline = Date.now() + options.seconds * 1000;
  let calls = 0;
  const worker = async (index: number) => {
    for (let n = 0; Date.now() < deadline; n++) {
      const call = ++calls;
      const abandon: Abandon = call % options.abandonEvery !== 0 ? "no" : call % (2 * options.abandonEvery) === 0 ? "mid-body" : "before-headers";
      const path = `/backend/${n % 2 === 0 ? "h1" : "h2"}/soak.v1.Soak/Call`;
      const outcome =
        index % 2 === 0
          ? await http1Call(agent, stack.gateway.url + path, stack.token, abandon)
          : await http2Call(sessions[index % sessions.length] as ClientHttp2Session, path, stack.token, abandon);
      if (outcome === "completed") stats.completed++;
      else if (outcome === "abandoned") stats.abandoned++;
      else if (stats.failed.length < 20) stats.failed.push(outcome);
    }
  };
  const ticker = (async () => {
    for (let second = 1; second <= options.seconds; second++) {
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, deadline - (options.seconds - second) * 1000 - Date.now())));
      await options.onSecond?.(second);
    }
  })();
  await Promise.all([...Array.from({ length: options.inFlight }, (_, i) => worker(i)), ticker]);
  agent.destroy();
  for (const session of sessions) session.close();
  return stats;
}

/** A full garbage collection: `global.gc` under --expose-gc, else exposed at run time. */
export function forcedGc(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === "function") return exposed;
  setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
}

/** heapUsed after two full collections, in bytes. */
export function settledHeap(gc: () => void): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}
