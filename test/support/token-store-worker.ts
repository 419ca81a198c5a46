// One process of a fleet sharing its service token through Redis: the
// token-store test runs several of these at once. It builds a transport with
// the Redis token store, prints `ready`, waits for `go` on stdin, makes one
// call, then prints one JSON line (the call's outcome, the token events) and exits.
// Env: REDIS_URL, APPCENTER_URL, GATEWAY_URL, CLIENT_ID, CLIENT_SECRET.
import { createClient } from "@connectrpc/connect";
import { Redis } from "ioredis";
import { createGatewayTransport, createRedisTokenStore, type TokenEvent } from "../../src/client/index.js";
import { EchoService } from "../../examples/gen/example/v1/example_pb.js";

const redis = new Redis(process.env.REDIS_URL ?? "", { connectTimeout: 500, maxRetriesPerRequest: 1 });
redis.on("error", () => {}); // the store falls back to its own token request

const events: TokenEvent[] = [];
const echo = createClient(
  EchoService,
  createGatewayTransport({
    clientId: process.env.CLIENT_ID,
    clientSecret: process.env.CLIENT_SECRET,
    appcenterUrl: process.env.APPCENTER_URL,
    gatewayUrl: process.env.GATEWAY_URL,
    // Generous Redis bounds: on a loaded machine (eight of these start at once,
    // beside the rest of the suite) a command can take longer than the 100 ms
    // default, and then a process would rightly fetch a token of its own; the
    // bounds themselves are tested on their own.
    tokenStore: createRedisTokenStore(redis, { pollIntervalMs: 20, commandTimeoutMs: 2000 }),
    onTokenEvent: (event) => events.push(event),
  }),
);

await redis.ping();
process.stdout.write("ready\n");
process.stdin.once("data", async () => {
  let outcome: { ok: true } | { ok: false; error: string };
  try {
    await echo.echo({ text: "hi" });
    outcome = { ok: true };
  } catch (error) {
    outcome = { ok: false, error: String(error) };
  }
  process.stdout.write(`${JSON.stringify({ ...outcome, events })}\n`);
  redis.disconnect();
  process.exit(0);
});
