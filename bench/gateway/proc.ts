// Process plumbing of the gateway benchmark: CPU pinning, child processes
// with a small request/answer protocol over IPC, /proc readers (CPU time,
// resident memory) and the cleanup that stops every child on any exit.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from "node:child_process";
import { accessSync, constants, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, Socket } from "node:net";
import { availableParallelism } from "node:os";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root. */
export const REPO = fileURLToPath(new URL("../../", import.meta.url));
/** This folder. */
export const HERE = fileURLToPath(new URL(".", import.meta.url));

/** An executable on PATH (or one of `extra`), or undefined. */
export function which(name: string, extra: readonly string[] = []): string | undefined {
  const dirs = (process.env.PATH ?? "").split(delimiter).filter(Boolean);
  for (const candidate of [...dirs.map((d) => join(d, name)), ...extra]) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

// ---- pinning -----------------------------------------------------------------

/**
 * Where processes run. With taskset and at least 2 CPUs: the proxy under
 * test alone on CPU 1, everything else (this process, the load generator,
 * the backend, the JWKS / introspection endpoints) on CPU 0.
 */
export interface Pinning {
  readonly taskset: string | undefined;
  readonly note: string;
}

export function detectPinning(): Pinning {
  const cpus = availableParallelism();
  const taskset = which("taskset");
  if (taskset === undefined) return { taskset: undefined, note: "taskset: not found (util-linux) — running unpinned; figures are noisier" };
  if (cpus < 2) return { taskset: undefined, note: `only ${cpus} CPU — running unpinned` };
  return { taskset, note: `pinned with taskset: proxy under test alone on CPU 1; load generator, backend and this process on CPU 0 (${cpus} CPUs)` };
}

/** Pins this process (every thread) to `cpu`. */
export function pinSelf(pinning: Pinning, cpu: number): void {
  if (pinning.taskset === undefined) return;
  spawnSync(pinning.taskset, ["-a", "-c", "-p", String(cpu), String(process.pid)], { stdio: "ignore" });
}

/** `command args` prefixed with `taskset -c cpu` when pinning. */
export function pinned(pinning: Pinning, cpu: "proxy" | "load", command: string, args: readonly string[]): [string, string[]] {
  if (pinning.taskset === undefined) return [command, [...args]];
  return [pinning.taskset, ["-c", cpu === "proxy" ? "1" : "0", command, ...args]];
}

// ---- children and cleanup --------------------------------------------------------

const children = new Set<ChildProcess>();
const cleanups = new Set<() => Promise<void> | void>();
/** Processes that are not our children but must not outlive us (nginx's worker). */
const strays = new Set<number>();

/** Registers processes the last-resort exit hook SIGKILLs too; returns the unregistration. */
export function trackPids(pids: readonly number[]): () => void {
  for (const pid of pids) strays.add(pid);
  return () => {
    for (const pid of pids) strays.delete(pid);
  };
}

/** Spawns a process that is stopped on exit (registered for cleanup). */
export function spawnTracked(command: string, args: readonly string[], options: SpawnOptions): ChildProcess {
  const child = spawn(command, args, options);
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

/** A cleanup step run by {@link stopAll} (e.g. stopping nginx and its workers). */
export function onCleanup(step: () => Promise<void> | void): () => void {
  cleanups.add(step);
  return () => cleanups.delete(step);
}

/** Waits for a child's exit, at most `ms`; true when it exited. */
export function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** Stops a child: SIGTERM, then SIGKILL after `ms`. */
export async function stopChild(child: ChildProcess, ms = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  if (!(await waitExit(child, ms))) {
    child.kill("SIGKILL");
    await waitExit(child, 1000);
  }
}

let stopping: Promise<void> | undefined;

/** Runs every cleanup step and stops every tracked child. */
export function stopAll(): Promise<void> {
  stopping ??= (async () => {
    for (const step of [...cleanups]) {
      try {
        await step();
      } catch (e) {
        console.error(`cleanup: ${(e as Error).message}`);
      }
    }
    await Promise.all([...children].map((c) => stopChild(c)));
  })();
  return stopping;
}

/** On SIGINT / SIGTERM / an uncaught error: stop everything, then exit. */
export function installCleanupHandlers(): void {
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      console.error(`\n${signal}: stopping every child process`);
      void stopAll().finally(() => process.exit(130));
    });
  }
  const crash = (e: unknown) => {
    console.error(e);
    void stopAll().finally(() => process.exit(1));
  };
  process.once("uncaughtException", crash);
  process.once("unhandledRejection", crash);
  // Last resort when the event loop is gone: SIGKILL whatever is left.
  process.once("exit", () => {
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
    for (const pid of strays) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
  });
}

// ---- node children with an IPC request/answer protocol ----------------------------

interface Reply {
  readonly id: number;
  readonly value?: unknown;
  readonly error?: string;
}

/** A node child process answering requests over IPC. */
export interface NodeChild<Hello> {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  /** Its first message (what it listens on, its start-up time, …). */
  readonly hello: Hello;
  call<T>(request: Record<string, unknown>): Promise<T>;
  stop(): Promise<void>;
}

/**
 * Starts `script` (TypeScript, run through tsx with the source condition) in
 * its own node process, pinned to `cpu`, and waits for its first message.
 */
export async function startNodeChild<Hello>(
  name: string,
  pinning: Pinning,
  cpu: "proxy" | "load",
  script: string,
  args: readonly string[] = [],
  env: NodeJS.ProcessEnv = {},
): Promise<NodeChild<Hello>> {
  const [command, argv] = pinned(pinning, cpu, process.execPath, [
    "--conditions=connect-gateway-source",
    "--import",
    "tsx",
    join(HERE, script),
    ...args,
  ]);
  // A proxy's stdout is /dev/null: the gateway with logging writes its lines
  // there as it would to any stdout (its default destination).
  const stdout = cpu === "proxy" ? "ignore" : "inherit";
  const proc = spawnTracked(command, argv, { cwd: REPO, stdio: ["ignore", stdout, "inherit", "ipc"], env: { ...process.env, ...env } });
  const hello = await new Promise<Hello>((resolve, reject) => {
    const onExit = (code: number | null, signal: string | null) => reject(new Error(`${name}: exited (${signal ?? code}) before it was ready`));
    proc.once("exit", onExit);
    proc.once("message", (m) => {
      proc.off("exit", onExit);
      resolve(m as Hello);
    });
  });
  let nextId = 0;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  proc.on("message", (m) => {
    const reply = m as Reply;
    const waiter = pending.get(reply.id);
    if (waiter === undefined) return;
    pending.delete(reply.id);
    if (reply.error !== undefined) waiter.reject(new Error(`${name}: ${reply.error}`));
    else waiter.resolve(reply.value);
  });
  proc.once("exit", (code, signal) => {
    for (const waiter of pending.values()) waiter.reject(new Error(`${name}: exited (${signal ?? code})`));
    pending.clear();
  });
  return {
    name,
    proc,
    pid: proc.pid as number,
    hello,
    call<T>(request: Record<string, unknown>) {
      const id = ++nextId;
      return new Promise<T>((resolve, reject) => {
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
        proc.send({ ...request, id });
      });
    },
    stop: () => stopChild(proc),
  };
}

/** In a child: sends the hello, answers requests with `handle`, exits when the parent goes. */
export function serveParent(hello: unknown, handle: (request: Record<string, unknown>) => Promise<unknown> | unknown = () => undefined): void {
  process.on("message", (m) => {
    const request = m as Record<string, unknown> & { id: number };
    Promise.resolve()
      .then(() => handle(request))
      .then(
        (value) => process.send?.({ id: request.id, value }),
        (e: unknown) => process.send?.({ id: request.id, error: e instanceof Error ? e.message : String(e) }),
      );
  });
  // The parent went away (even killed): do not outlive it.
  process.on("disconnect", () => process.exit(0));
  process.send?.(hello);
}

// ---- /proc -------------------------------------------------------------------------

const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;

/** utime + stime of a process (all its threads) in microseconds, from /proc/<pid>/stat. */
export function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after "(comm)": state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1e6) / CLK_TCK;
}

/** The clock tick of /proc/<pid>/stat, microseconds: the resolution of {@link cpuMicros}. */
export const CPU_TICK_MICROS = 1e6 / CLK_TCK;

/** VmRSS and VmHWM (peak) of a process, KiB. */
export function memoryKiB(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { rss: field("VmRSS"), hwm: field("VmHWM") };
}

/** Resets the peak RSS (VmHWM) of a process to its current RSS. */
export function resetPeakRss(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, "5");
}

/** The processes whose parent is `pid`. */
export function childPids(pid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

// ---- ports ---------------------------------------------------------------------------

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once 127.0.0.1:`port` accepts a connection (polling), rejects after `ms`. */
export async function waitForPort(port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = new Socket();
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
      socket.connect(port, "127.0.0.1");
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
