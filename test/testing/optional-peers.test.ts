// The library has no runtime dependency: every public entry imports with only
// the Connect peers installed, and what needs an optional peer loads it when
// called, failing with an error that names the package to install.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { runWithoutPackages } from "../support/without-packages.js";

const root = resolve(import.meta.dirname, "../..");
const libraryPackage = JSON.parse(readFileSync(resolve(root, "package.json"), "utf8")) as {
  exports: Record<string, unknown>;
  peerDependencies: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
};
const entries = Object.keys(libraryPackage.exports).map((e) => `connect-gateway${e.slice(1)}`);
const optionalPeers = Object.keys(libraryPackage.peerDependenciesMeta ?? {}).filter(
  (name) => libraryPackage.peerDependenciesMeta![name]!.optional,
);
const requiredPeers = Object.keys(libraryPackage.peerDependencies).filter((name) => !optionalPeers.includes(name));

// Imports every entry, checks that the blocked packages really are missing,
// then starts an OAuth2 server; prints the outcome as one JSON line.
const script = `
const result = { imported: [], missing: [], startOAuth2Server: undefined };
for (const entry of ${JSON.stringify(entries)}) {
  await import(entry);
  result.imported.push(entry);
}
for (const name of ${JSON.stringify(optionalPeers)}) {
  await import(name).then(() => {}, (e) => result.missing.push(name));
}
const { startOAuth2Server } = await import("connect-gateway/testing");
result.startOAuth2Server = await startOAuth2Server({ clients: [] }).then(
  async (server) => { await server.close(); return "started"; },
  (e) => e.message,
);
console.log(JSON.stringify(result));
`;

async function run(blocked: readonly string[]) {
  const stdout = await runWithoutPackages(script, {
    blocked,
    // The library's own files may import only Node and the peers (the
    // optional ones only when not blocked): a static import of anything else fails.
    guarded: ["src"],
    allowed: [...requiredPeers, ...optionalPeers],
  });
  return JSON.parse(stdout.trim().split("\n").at(-1)!) as { imported: string[]; missing: string[]; startOAuth2Server: string };
}

describe("optional peers", () => {
  it("are @opentelemetry/api, jose and oidc-provider; the required peers are the three Connect packages", () => {
    expect(optionalPeers.sort()).toEqual(["@opentelemetry/api", "jose", "oidc-provider"]);
    expect(requiredPeers.sort()).toEqual(["@bufbuild/protobuf", "@connectrpc/connect", "@connectrpc/connect-node"]);
  });

  it("every public entry imports without them; startOAuth2Server names both", async () => {
    const result = await run(optionalPeers);
    expect(result.imported).toEqual(entries);
    expect(result.missing.sort()).toEqual(optionalPeers.sort());
    expect(result.startOAuth2Server).toBe(
      'connect-gateway/testing: startOAuth2Server needs the optional peers "oidc-provider" and "jose" — npm install --save-dev oidc-provider jose',
    );
  });

  it.each([
    ["oidc-provider", 'startOAuth2Server needs the optional peer "oidc-provider" — npm install --save-dev oidc-provider'],
    ["jose", 'startOAuth2Server needs the optional peer "jose" — npm install --save-dev jose'],
  ])("without %s alone, startOAuth2Server names it", async (name, message) => {
    const result = await run([name]);
    expect(result.imported).toEqual(entries);
    expect(result.startOAuth2Server).toBe(`connect-gateway/testing: ${message}`);
  });
});
