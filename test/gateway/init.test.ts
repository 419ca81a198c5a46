// `connect-gateway init`: the project it writes type-checks and its own test
// passes right after generation; it never overwrites a file. (CI also installs
// a generated project from the packed packages: scripts/consumer-test.sh.)
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { loadRoutesFile } from "../../packages/gateway/src/index.js";
import { runCli } from "../support/cli.js";

const run = promisify(execFile);
const root = resolve(import.meta.dirname, "../..");
const dir = mkdtempSync(join(tmpdir(), "connect-gateway-init-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));


describe("connect-gateway init", () => {
  it("writes a service that generates, type-checks and passes its own test", { timeout: 90_000 }, async () => {
    const project = join(dir, "order-history");
    const result = await runCli(["init", "--name", "order-history", "--dir", project]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    for (const file of ["package.json", "routes.yaml", "buf.yaml", "buf.gen.yaml", "proto/order_history/v1/order_history.proto", "src/service.ts", "src/server.ts", "src/client.ts", "test/service.test.ts", "README.md"]) {
      expect(result.stdout).toContain(`  ${file}\n`);
      expect(existsSync(join(project, file))).toBe(true);
    }
    expect(readFileSync(join(project, "proto/order_history/v1/order_history.proto"), "utf8")).toContain(
      'option (connect_gateway.v1.backend) = "order-history";',
    );
    const server = readFileSync(join(project, "src/server.ts"), "utf8");
    expect(server).toContain("resolveUser:");
    expect(server).toContain("onMissingUser:");
    expect(server).toContain("requireSignatureV2: true");
    // Its routes file loads as written, the upstream from the variable the README names.
    const routes = loadRoutesFile(join(project, "routes.yaml"), { env: { ORDER_HISTORY_URL: "http://127.0.0.1:8081" } });
    expect(routes.backends.map((b) => [b.name, b.upstream, b.http2, b.authRequired])).toEqual([["order-history", "http://127.0.0.1:8081", true, true]]);
    expect(readFileSync(join(project, "README.md"), "utf8")).toContain("ORDER_HISTORY_URL=http://127.0.0.1:8081 npx connect-gateway dev --routes routes.yaml");
    // …which runs because the gateway is a dev dependency; and the scripts that run code generate gen/ first.
    const pkg = JSON.parse(readFileSync(join(project, "package.json"), "utf8"));
    expect(pkg.devDependencies["@connect-gateway/gateway"]).toBe(pkg.dependencies["connect-gateway"]);
    expect([pkg.scripts.preserver, pkg.scripts.preclient, pkg.scripts.pretest]).toEqual(["buf generate", "buf generate", "buf generate"]);

    // This repository's installed packages stand in for `npm install` (the packed
    // ones are installed for real by scripts/consumer-test.sh); the library
    // resolves to its sources through the connect-gateway-source condition.
    symlinkSync(join(root, "node_modules"), join(project, "node_modules"), "dir");
    const bin = (name: string) => join(root, "node_modules/.bin", name);
    await run(bin("buf"), ["generate"], { cwd: project });
    expect(existsSync(join(project, "gen/order_history/v1/order_history_pb.ts"))).toBe(true);
    await run(bin("tsc"), ["-p", ".", "--customConditions", "connect-gateway-source"], { cwd: project });
    const test = await run(process.execPath, ["--conditions=connect-gateway-source", "--import", "tsx", "--test", "test/service.test.ts"], {
      cwd: project,
    });
    expect(test.stdout).toMatch(/[#ℹ] pass 3\b/);
    expect(test.stdout).toMatch(/[#ℹ] fail 0\b/);
  });

  it("--skip leaves parts out; the README and scripts follow", async () => {
    const project = join(dir, "billing");
    const result = await runCli(["init", "--name", "billing", "--dir", project, "--skip", "client,test"]);
    expect(result.code).toBe(0);
    expect(existsSync(join(project, "src/client.ts"))).toBe(false);
    expect(existsSync(join(project, "test"))).toBe(false);
    const scripts = JSON.parse(readFileSync(join(project, "package.json"), "utf8")).scripts;
    expect([scripts.client, scripts.preclient, scripts.test, scripts.pretest]).toEqual([undefined, undefined, undefined, undefined]);
    const readme = readFileSync(join(project, "README.md"), "utf8");
    expect(readme).not.toContain("src/client.ts");
    expect(readme).not.toContain("npm test");
    // Without tests, what is there to run next is the type-check.
    expect(result.stdout).toContain("npm install && npm run typecheck");
  });

  it("never overwrites: one existing file and nothing is written", async () => {
    const project = join(dir, "existing");
    mkdirSync(join(project, "src"), { recursive: true });
    writeFileSync(join(project, "src/server.ts"), "// mine\n");
    const result = await runCli(["init", "--name", "existing", "--dir", project]);
    // Called right; the directory is in the way: 1, not a usage mistake.
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("init never overwrites a file; these already exist");
    expect(result.stderr).toContain("src/server.ts");
    expect(readFileSync(join(project, "src/server.ts"), "utf8")).toBe("// mine\n");
    expect(existsSync(join(project, "package.json"))).toBe(false);
  });

  it("in a project that installed the packages from tarballs, the new service depends on those files, never on the registry's names", async () => {
    // A project as "Using it in a service" leaves it: both packages installed from .tgz files.
    const app = join(dir, "app");
    mkdirSync(join(app, "vendor"), { recursive: true });
    mkdirSync(join(dir, "checkout"), { recursive: true });
    writeFileSync(join(app, "vendor/connect-gateway-0.1.0.tgz"), "");
    writeFileSync(join(dir, "checkout/connect-gateway-gateway-0.1.0.tgz"), "");
    writeFileSync(
      join(app, "package-lock.json"),
      JSON.stringify({
        lockfileVersion: 3,
        packages: {
          "": { name: "app" },
          "node_modules/connect-gateway": { version: "0.1.0", resolved: "file:vendor/connect-gateway-0.1.0.tgz" },
          "node_modules/@connect-gateway/gateway": { version: "0.1.0", resolved: "file:../checkout/connect-gateway-gateway-0.1.0.tgz" },
        },
      }),
    );
    const result = await runCli(["init", "--name", "ledger", "--dir", "services/ledger"], {}, { cwd: app });
    expect(result.code).toBe(0);
    const pkg = JSON.parse(readFileSync(join(app, "services/ledger/package.json"), "utf8"));
    expect(pkg.dependencies["connect-gateway"]).toBe("file:../../vendor/connect-gateway-0.1.0.tgz");
    expect(pkg.devDependencies["@connect-gateway/gateway"]).toBe("file:../../../checkout/connect-gateway-gateway-0.1.0.tgz");
    expect(result.stdout).toContain("depends on the tarballs this project installed");
    // Installed from the registry (or no lockfile at all): the version range, and the tarball advice.
    const registry = join(dir, "from-registry");
    mkdirSync(registry, { recursive: true });
    writeFileSync(join(registry, "package-lock.json"), JSON.stringify({ packages: { "node_modules/connect-gateway": { resolved: "https://registry.npmjs.org/connect-gateway/-/connect-gateway-0.1.0.tgz" } } }));
    const plain = await runCli(["init", "--name", "ledger", "--dir", "svc"], {}, { cwd: registry });
    expect(JSON.parse(readFileSync(join(registry, "svc/package.json"), "utf8")).dependencies["connect-gateway"]).toMatch(/^\^\d/);
    expect(plain.stdout).toContain("install both tarballs in one command");
    // Tarballs installed from a folder deleted since: the version range, not a file npm cannot find.
    const gone = join(dir, "tarballs-gone");
    mkdirSync(gone, { recursive: true });
    writeFileSync(
      join(gone, "package-lock.json"),
      JSON.stringify({ packages: { "node_modules/connect-gateway": { resolved: "file:/tmp/deleted/connect-gateway-0.1.0.tgz" }, "node_modules/@connect-gateway/gateway": { resolved: "file:/tmp/deleted/connect-gateway-gateway-0.1.0.tgz" } } }),
    );
    await runCli(["init", "--name", "ledger", "--dir", "svc"], {}, { cwd: gone });
    expect(JSON.parse(readFileSync(join(gone, "svc/package.json"), "utf8")).dependencies["connect-gateway"]).toMatch(/^\^\d/);
  });

  it("a bad name or part is refused naming the flag", async () => {
    const bad = await runCli(["init", "--name", "Order_History", "--dir", join(dir, "x")]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--name must start with a lower-case letter, then lower-case letters and digits, words joined by "-"');
    const digitFirst = await runCli(["init", "--name", "9lives", "--dir", join(dir, "x")]);
    expect([digitFirst.code, digitFirst.stderr]).toEqual([2, expect.stringContaining('got "9lives"')]);
    const skip = await runCli(["init", "--name", "x", "--dir", join(dir, "y"), "--skip", "server"]);
    expect(skip.stderr).toContain("--skip takes client and/or test, got server");
    expect(existsSync(join(dir, "x"))).toBe(false);
  });
});
