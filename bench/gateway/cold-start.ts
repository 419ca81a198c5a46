// Cold start: from spawn to "listening" for `connect-gateway serve` (the
// compiled CLI, packages/gateway/dist/cli.js) and for a plain fastify +
// @fastify/http-proxy script — both plain JavaScript on node, no tsx.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { freePort, pinned, REPO, spawnTracked, stopChild, type Pinning } from "./proc.js";

/** Every .ts (not .d.ts) file under `dir`. */
function sources(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith(".ts") && !e.name.endsWith(".d.ts"))
    .map((e) => join(e.parentPath, e.name));
}

/** The first source whose compiled .js is missing or older, or undefined when the build is current. */
function staleSource(srcRoots: readonly string[], outOf: (source: string) => string): string | undefined {
  for (const root of srcRoots) {
    for (const source of sources(root)) {
      const out = outOf(source).replace(/\.ts$/, ".js");
      if (!existsSync(out) || statSync(out).mtimeMs < statSync(source).mtimeMs) return source;
    }
  }
  return undefined;
}

function build(label: string, args: readonly string[]): boolean {
  console.log(`  building: npm ${args.join(" ")} (${label})`);
  const started = performance.now();
  const run = spawnSync("npm", args, { cwd: REPO, stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (run.status !== 0) {
    // tsc still emits on type errors (another change in progress): say so, go on when the output is there.
    const lines = `${run.stdout}${run.stderr}`.trim().split("\n");
    const errors = lines.filter((l) => l.includes("error TS"));
    const shown = (errors.length > 0 ? errors.slice(0, 3) : lines.slice(-5)).join("\n    ");
    const more = errors.length > 3 ? `\n    … ${errors.length - 3} more type errors` : "";
    console.log(`  build exited ${run.status} after ${seconds}s (tsc still writes its output on type errors; going on):\n    ${shown}${more}`);
    return false;
  }
  console.log(`  built in ${seconds}s`);
  return true;
}

/** Builds the library and the gateway when their dist is missing or older than a source. */
export function ensureBuilt(): string | undefined {
  const root = staleSource([join(REPO, "src"), join(REPO, "gen")], (s) => join(REPO, "dist", relative(REPO, s)));
  if (root !== undefined) {
    console.log(`  dist/ is missing or older than ${relative(REPO, root)}`);
    build("the library, dist/", ["run", "build"]);
  }
  const gatewayDir = join(REPO, "packages/gateway");
  const gateway = staleSource([join(gatewayDir, "src")], (s) => join(gatewayDir, "dist", relative(join(gatewayDir, "src"), s)));
  if (gateway !== undefined || root !== undefined) {
    if (gateway !== undefined) console.log(`  packages/gateway/dist/ is missing or older than ${relative(REPO, gateway)}`);
    build("the gateway, packages/gateway/dist/", ["run", "build", "-w", "@connect-gateway/gateway"]);
  }
  if (root === undefined && gateway === undefined) console.log("  dist/ and packages/gateway/dist/ are current: no build");
  const cli = join(gatewayDir, "dist/cli.js");
  return existsSync(cli) ? cli : undefined;
}

/** The baseline: fastify + @fastify/http-proxy, as a plain .mjs with absolute imports. */
export function writeFastifyScript(dir: string): string {
  const file = join(dir, "fastify-proxy.mjs");
  const fastify = import.meta.resolve("fastify");
  const httpProxy = import.meta.resolve("@fastify/http-proxy");
  writeFileSync(
    file,
    `import Fastify from ${JSON.stringify(fastify)};
import httpProxy from ${JSON.stringify(httpProxy)};
const app = Fastify({ logger: false });
await app.register(httpProxy, { upstream: process.env.UPSTREAM, prefix: "/backend/echo", rewritePrefix: "" });
const url = await app.listen({ port: Number(process.env.PORT), host: "127.0.0.1" });
console.log("fastify-proxy listening on " + url);
`,
  );
  return file;
}

export interface ColdStartCommand {
  readonly label: string;
  readonly args: (port: number) => string[];
  readonly env: NodeJS.ProcessEnv;
}

/** Milliseconds from spawn to a stdout line containing "listening"; the process is then killed. */
export async function coldStart(pinning: Pinning, command: ColdStartCommand): Promise<number> {
  const port = await freePort();
  const { NODE_OPTIONS: _, ...env } = process.env;
  const [cmd, args] = pinned(pinning, "proxy", process.execPath, command.args(port));
  const started = performance.now();
  const child = spawnTracked(cmd, args, {
    cwd: REPO,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...env, ...command.env, PORT: String(port) },
  });
  try {
    return await new Promise<number>((resolve, reject) => {
      let out = "";
      let err = "";
      child.stdout?.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        if (/listening/i.test(out)) resolve(performance.now() - started);
      });
      child.stderr?.on("data", (chunk: Buffer) => (err += chunk.toString()));
      child.once("exit", (code) => reject(new Error(`${command.label} exited (${code}) before listening: ${(err || out).trim().slice(0, 500)}`)));
      setTimeout(() => reject(new Error(`${command.label}: not listening after 20 s`)), 20_000).unref();
    });
  } finally {
    child.kill("SIGKILL");
    await stopChild(child, 1000);
  }
}
