// Runs code in a child Node process in which some packages cannot be found,
// as in a project that never installed them: the module hooks registered
// there fail their resolution exactly like a missing package does
// (ERR_MODULE_NOT_FOUND, "Cannot find package '<name>'"). Workspace imports
// resolve to the sources (tsx, condition connect-gateway-source).
import { execFile } from "node:child_process";
import { resolve } from "node:path";

const root = resolve(import.meta.dirname, "../..");

/** Node's resolve hook, failing `blocked` packages and, from `guarded` folders, every package not in `allowed`. */
function hooksSource(options: { blocked: readonly string[]; guarded: readonly string[]; allowed: readonly string[] }): string {
  return `
const options = ${JSON.stringify(options)};
const packageName = (s) => (s.startsWith("@") ? s.split("/").slice(0, 2).join("/") : s.split("/")[0]);
const isBare = (s) => !/^(\\.|\\/|[a-z][a-z0-9+.-]*:)/i.test(s);
export async function resolve(specifier, context, next) {
  if (isBare(specifier)) {
    const name = packageName(specifier);
    const guarded = options.guarded.some((url) => (context.parentURL ?? "").startsWith(url));
    if (options.blocked.includes(name) || (guarded && !options.allowed.includes(name))) {
      const error = new Error("Cannot find package '" + name + "' imported from " + context.parentURL);
      error.code = "ERR_MODULE_NOT_FOUND";
      throw error;
    }
  }
  return next(specifier, context);
}`;
}

/** The async resolve hook above, as a synchronous one (module.registerHooks). */
function syncHooksSource(asyncSource: string): string {
  return asyncSource.replace("export async function resolve", "export function resolve");
}

const dataUrl = (source: string) => `data:text/javascript,${encodeURIComponent(source)}`;

/**
 * Runs the ES module `script` (evaluated from the repository root) in a child
 * process where the packages `blocked` cannot be found, nor, for the files
 * under the `guarded` folders (relative to the root), any package but `allowed`
 * and Node's built-ins. Resolves to what the script printed on stdout.
 */
export function runWithoutPackages(
  script: string,
  options: { blocked: readonly string[]; guarded?: readonly string[]; allowed?: readonly string[] },
): Promise<string> {
  const hooks = hooksSource({
    blocked: options.blocked,
    guarded: (options.guarded ?? []).map((dir) => new URL(`${dir.replace(/\/?$/, "/")}`, `file://${root}/`).href),
    allowed: options.allowed ?? [],
  });
  // The same rule, synchronously, for require() too (`createRequire`), where Node has registerHooks (22.15+).
  const register =
    `import * as module from "node:module"; module.register(${JSON.stringify(dataUrl(hooks))});` +
    `if (module.registerHooks) { const { resolve } = await import(${JSON.stringify(dataUrl(syncHooksSource(hooks)))});` +
    ` module.registerHooks({ resolve }); }`;
  // Hooks registered later run first: these see every specifier before tsx does.
  const args = ["--conditions=connect-gateway-source", "--import", "tsx", "--import", dataUrl(register), "--input-type=module", "--eval", script];
  return new Promise((resolvePromise, reject) => {
    execFile(process.execPath, args, { cwd: root, timeout: 30_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`the child process failed: ${error.message}\n${stderr}`));
      else resolvePromise(stdout);
    });
  });
}
