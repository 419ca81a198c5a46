// nginx as a reference proxy: one worker, proxy_pass to the backend with
// upstream keepalive, its own configuration and temp folders in a temp
// directory, started in the foreground (daemon off) and stopped by the bench.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { childPids, freePort, onCleanup, pinned, spawnTracked, trackPids, waitExit, waitForPort, which, type Pinning } from "./proc.js";

/** The nginx binary: on PATH or /usr/sbin/nginx; undefined when not installed. */
export function findNginx(): string | undefined {
  return which("nginx", ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"]);
}

export interface Nginx {
  readonly url: string;
  /** The master and its worker: their CPU and memory are summed. */
  pids(): number[];
  stop(): Promise<void>;
}

export async function startNginx(binary: string, pinning: Pinning, backendPort: number): Promise<Nginx> {
  const dir = mkdtempSync(join(tmpdir(), "bench-nginx-"));
  const port = await freePort();
  const conf = join(dir, "nginx.conf");
  // As root, the worker would switch to `nobody`, which may not write the
  // temp folders (8 MiB bodies are buffered to client_body_temp_path).
  const user = process.getuid?.() === 0 ? "user root;\n" : "";
  writeFileSync(
    conf,
    `${user}worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log error;
events { worker_connections 4096; }
http {
  access_log off;
  # As in Debian's packaged nginx.conf. Without it, a body buffered to a temp
  # file (over client_body_buffer_size, 16k) reaches the upstream after a
  # 40 ms delayed-ACK stall: 64 KiB POSTs at c=8 run at ~190 req/s instead of
  # thousands, which measures a misconfiguration rather than nginx.
  sendfile on;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  # Like the node servers: a client connection serves any number of requests.
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  # The body-size rows; proxy_request_buffering stays at its default (on).
  client_max_body_size 16m;
  upstream backend {
    server 127.0.0.1:${backendPort};
    keepalive 64;
    keepalive_requests 10000000;
  }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location /backend/echo/ {
      proxy_pass http://backend/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`,
  );
  // daemon off is in the file; -e: the start-up error log too stays in dir.
  const [command, args] = pinned(pinning, "proxy", binary, ["-p", dir, "-c", conf, "-e", join(dir, "error.log")]);
  const master = spawnTracked(command, args, { stdio: ["ignore", "inherit", "inherit"] });
  const masterPid = master.pid as number;
  let workers: number[] = [];
  let untrack = () => {};
  const stop = async () => {
    forget();
    // SIGQUIT: graceful shutdown of master and worker; then make sure.
    if (master.exitCode === null && master.signalCode === null) {
      master.kill("SIGQUIT");
      if (!(await waitExit(master, 3000))) master.kill("SIGKILL");
      await waitExit(master, 1000);
    }
    for (const pid of workers) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    untrack();
    rmSync(dir, { recursive: true, force: true });
  };
  const forget = onCleanup(stop);
  try {
    await Promise.race([
      waitForPort(port, 10_000),
      new Promise((_, reject) => master.once("exit", (code) => reject(new Error(`nginx exited (${code}); see above`)))),
    ]);
    for (let i = 0; i < 50 && workers.length === 0; i++) {
      workers = childPids(masterPid);
      if (workers.length === 0) await new Promise((r) => setTimeout(r, 20));
    }
    if (workers.length === 0) throw new Error("nginx: no worker process found");
    untrack = trackPids(workers);
  } catch (e) {
    await stop();
    throw e;
  }
  return { url: `http://127.0.0.1:${port}`, pids: () => [masterPid, ...workers], stop };
}
