// The dependency rule of the repository, enforced: which layer may import
// which (README, "Architecture"). It reads every import of every source file
// with the TypeScript parser, so a new import that breaks the layering fails
// here, whatever it imports.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "..");
const gatewayPackage = JSON.parse(readFileSync(join(root, "packages/gateway/package.json"), "utf8")) as {
  dependencies: Record<string, string>;
};
const libraryPackage = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  dependencies?: Record<string, string>;
  peerDependencies: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
};

interface Import {
  readonly file: string; // relative to the repository root
  readonly specifier: string;
  /** For a relative specifier: the imported file, relative to the root. */
  readonly target?: string;
  readonly typeOnly: boolean;
  readonly dynamic: boolean;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith(".ts") && !e.name.endsWith(".d.ts"))
    .map((e) => relative(root, join(e.parentPath, e.name)));
}

function importsOf(file: string): Import[] {
  const text = readFileSync(join(root, file), "utf8");
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: Import[] = [];
  const add = (specifier: string, typeOnly: boolean, dynamic: boolean) => {
    const target = specifier.startsWith(".")
      ? relative(root, resolve(dirname(join(root, file)), specifier)).replace(/\.js$/, ".ts")
      : undefined;
    found.push({ file, specifier, ...(target !== undefined && { target }), typeOnly, dynamic });
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const typeOnly =
        clause !== undefined &&
        (clause.isTypeOnly ||
          (clause.name === undefined &&
            clause.namedBindings !== undefined &&
            ts.isNamedImports(clause.namedBindings) &&
            clause.namedBindings.elements.length > 0 &&
            clause.namedBindings.elements.every((e) => e.isTypeOnly)));
      add(node.moduleSpecifier.text, typeOnly, false);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      add(node.moduleSpecifier.text, node.isTypeOnly, false);
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] !== undefined &&
      ts.isStringLiteral(node.arguments[0])
    ) {
      add(node.arguments[0].text, false, true);
    } else if (
      // `createRequire(import.meta.url)("<package>")`, written out in one
      // expression: a lazy, synchronous load, counted like a dynamic import.
      ts.isCallExpression(node) &&
      ts.isCallExpression(node.expression) &&
      ts.isIdentifier(node.expression.expression) &&
      node.expression.expression.text === "createRequire" &&
      node.arguments.length === 1 &&
      ts.isStringLiteral(node.arguments[0]!)
    ) {
      add(node.arguments[0].text, false, true);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      add(node.argument.literal.text, true, false);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** The layer a repository path belongs to: `src/<folder>`, `gen`, `gateway`, `examples`, `test`, … */
function layerOf(path: string): string {
  const parts = path.split("/");
  if (parts[0] === "src") return `src/${parts[1]}`;
  if (parts[0] === "gen") return `gen/${parts[1]}`;
  if (parts[0] === "packages" && parts[1] === "gateway") return "gateway";
  return parts[0]!;
}

const isNodeBuiltin = (s: string) => s.startsWith("node:");
const packageName = (s: string) => (s.startsWith("@") ? s.split("/").slice(0, 2).join("/") : s.split("/")[0]!);
const connectPeers = ["@connectrpc/connect", "@connectrpc/connect-node", "@bufbuild/protobuf"];

/** Which layers each library layer may import (besides itself and Node's built-ins). */
const libraryRule: Record<string, { layers: readonly string[]; packages: readonly string[] }> = {
  "src/core": { layers: [], packages: [] },
  "src/signing": { layers: ["src/core"], packages: [] },
  "src/client": { layers: ["src/core", "src/signing", "gen/connect_gateway"], packages: connectPeers },
  "src/server": { layers: ["src/core", "src/signing"], packages: connectPeers },
  "src/testing": { layers: ["src/core", "src/signing"], packages: connectPeers },
  "src/errors": { layers: ["src/core"], packages: [] },
  "src/protocol": { layers: ["src/core"], packages: [] },
  // connect-gateway/web: browser-safe, so only the browser-safe client files (checked below) and no connect-node.
  "src/web": { layers: ["src/core", "src/client"], packages: ["@connectrpc/connect", "@bufbuild/protobuf"] },
};

const librarySources = sourceFiles("src");
const libraryImports = librarySources.flatMap(importsOf);
const gatewayImports = sourceFiles("packages/gateway/src").flatMap(importsOf);
const exampleImports = sourceFiles("examples")
  .filter((f) => !f.startsWith("examples/service/") && !f.startsWith("examples/gen/"))
  .flatMap(importsOf);

describe("the dependency rule", () => {
  it("knows every folder of src/ (a new folder needs a rule)", () => {
    const folders = new Set(librarySources.map(layerOf));
    expect([...folders].sort()).toEqual(Object.keys(libraryRule).sort());
  });

  it("library layers import only the layers below them, never a sibling role", () => {
    const broken = libraryImports
      .filter((i) => i.target !== undefined)
      .filter((i) => {
        const from = layerOf(i.file);
        const to = layerOf(i.target!);
        return from !== to && !libraryRule[from]!.layers.includes(to);
      })
      .map((i) => `${i.file} -> ${i.specifier}`);
    expect(broken).toEqual([]);
  });

  it("the library has no runtime dependency: only Node, the Connect peers, and optional peers loaded lazily", () => {
    expect(libraryPackage.dependencies ?? {}).toEqual({});
    const optional = Object.keys(libraryPackage.peerDependenciesMeta ?? {}).filter(
      (p) => libraryPackage.peerDependenciesMeta![p]!.optional,
    );
    const broken = libraryImports
      .filter((i) => i.target === undefined && !isNodeBuiltin(i.specifier))
      .filter((i) => {
        const name = packageName(i.specifier);
        if (libraryRule[layerOf(i.file)]!.packages.includes(name)) return false;
        // An optional peer: a type, or a dynamic import (or `createRequire(…)("<peer>")`)
        // behind a clear error, or a silent fallback, when it is missing.
        return !(optional.includes(name) && (i.typeOnly || i.dynamic));
      })
      .map((i) => `${i.file} -> ${i.specifier}`);
    expect(broken).toEqual([]);
  });

  it("connect-gateway/web is browser-safe: nothing in its import graph imports a Node built-in or connect-node", () => {
    // Every import counts, type-only ones too: a type from node:* in a shipped
    // .d.ts breaks a browser project's type-check.
    const seen = new Set<string>();
    const broken: string[] = [];
    const walk = (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      for (const i of importsOf(file)) {
        if (i.target !== undefined) walk(i.target);
        else if (isNodeBuiltin(i.specifier) || packageName(i.specifier) === "@connectrpc/connect-node") {
          broken.push(`${i.file} -> ${i.specifier}`);
        }
      }
    };
    walk("src/web/index.ts");
    expect(seen.size).toBeGreaterThan(1);
    expect(broken).toEqual([]);
  });

  it("the gateway imports the library through its public entries only, and only its declared dependencies", () => {
    const entries = Object.keys(
      (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { exports: Record<string, unknown> }).exports,
    ).map((e) => `connect-gateway${e.slice(1)}`);
    const broken = gatewayImports
      .filter((i) => {
        if (i.target !== undefined) return layerOf(i.target) !== "gateway";
        if (isNodeBuiltin(i.specifier)) return false;
        if (packageName(i.specifier) === "connect-gateway") return !entries.includes(i.specifier);
        return !(packageName(i.specifier) in gatewayPackage.dependencies) && !i.typeOnly;
      })
      .map((i) => `${i.file} -> ${i.specifier}`);
    expect(broken).toEqual([]);
    expect(gatewayPackage.dependencies["connect-gateway"]).toBe(
      (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string }).version,
    );
  });

  it("the demo (examples/) uses the public entries like a user would; nothing shipped imports it or the tests", () => {
    const demoBroken = exampleImports
      .filter((i) => i.target !== undefined && !["examples"].includes(layerOf(i.target)))
      .map((i) => `${i.file} -> ${i.specifier}`);
    expect(demoBroken).toEqual([]);
    const shippedBroken = [...libraryImports, ...gatewayImports]
      .filter((i) => i.target !== undefined && ["examples", "test", "bench", "scripts"].includes(layerOf(i.target)))
      .map((i) => `${i.file} -> ${i.specifier}`);
    expect(shippedBroken).toEqual([]);
  });
});
