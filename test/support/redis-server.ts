// A real redis-server for the tests that need one: a child process on a free
// loopback port, without persistence, ready (answering PING) when this resolves.
import { spawn, type ChildProcess } from "node:child_process";
import { Redis } from "ioredis";
import { unusedPort } from "./loopback-server.js";

/** A running redis-server: its URL and its process (to kill, SIGSTOP or SIGCONT it). */
export interface RedisServer {
  readonly url: string;
  readonly port: number;
  readonly child: ChildProcess;
}

/** Starts a redis-server on `port` (default: a free one) and waits until it answers. */
export async function startRedisServer(port?: number): Promise<RedisServer> {
  const p = port ?? (await unusedPort());
  const child = spawn("redis-server", ["--port", String(p), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: "ignore",
  });
  let spawnError: Error | undefined;
  child.once("error", (e) => (spawnError = e));
  const url = `redis://127.0.0.1:${p}`;
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on("error", () => {}); // refused until redis-server is up: retried below
  for (let attempt = 0; ; attempt++) {
    try {
      await probe.connect();
      await probe.ping();
      probe.disconnect();
      return { url, port: p, child };
    } catch (e) {
      probe.disconnect();
      if (spawnError) {
        throw new Error(`cannot run redis-server (${spawnError.message}): npm test installs it (scripts/ensure-redis.sh)`);
      }
      if (attempt > 50) throw e;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
