// Runs a command of this repository (the gateway's CLI, the demo) in a child
// process as a user would, with its sources resolved through the
// connect-gateway-source condition; bounded, so a hung command fails the test.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

/** The `connect-gateway` command's source. */
export const gatewayCli = fileURLToPath(new URL("../../packages/gateway/src/cli.ts", import.meta.url));
/** `npm start`'s source. */
export const demoCli = fileURLToPath(new URL("../../examples/dev/cli.ts", import.meta.url));

/** tsx's loader, by its path: a command run in a folder of its own (`cwd`) finds it too. */
const TSX = new URL("../../node_modules/tsx/dist/loader.mjs", import.meta.url).href;

/** What a finished command printed. */
export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `script` with `args` and only `PATH` plus `env` in its environment,
 * until it exits — or, with `until`, until its output matches (then it gets
 * SIGTERM, as Ctrl-C would, once `whileRunning` is done with it). Killed
 * after 15 s.
 */
export function runCli(
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
  options: {
    readonly until?: RegExp;
    readonly script?: string;
    readonly cwd?: string;
    /** Runs against the live process once `until` matched (its output so far). */
    readonly whileRunning?: (stdout: string) => Promise<void>;
  } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--conditions=connect-gateway-source", "--import", TSX, options.script ?? gatewayCli, ...args], {
      env: { PATH: process.env.PATH ?? "", ...env },
      stdio: ["ignore", "pipe", "pipe"],
      ...(options.cwd !== undefined && { cwd: options.cwd }),
    });
    let stdout = "";
    let stderr = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    let matched = false;
    let failure: unknown;
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      if (matched || !options.until?.test(stdout)) return;
      matched = true;
      void (options.whileRunning?.(stdout) ?? Promise.resolve())
        .catch((e: unknown) => (failure = e))
        .finally(() => child.kill("SIGTERM"));
    });
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (failure !== undefined) reject(failure as Error);
      else resolve({ code, stdout, stderr });
    });
  });
}
