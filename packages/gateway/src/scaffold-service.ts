// `connect-gateway init`: a new service behind the gateway, ready to run.
//
// It writes a small project — the proto with the backend option, buf
// configuration, the service wired with createGatewayAuth (with
// resolveUser / onMissingUser stubs to fill in), a client that calls it
// through the gateway, and a test that calls it as the gateway would
// (createTestGatewayTransport) — which type-checks and whose test passes
// right after `npm install`. It never overwrites a file.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";

/** The parts `init` can leave out. */
export type ScaffoldPart = "client" | "test";

/** Options of {@link scaffoldService}. */
export interface ScaffoldOptions {
  /** The folder to write into (created if needed; may hold other files). */
  readonly dir: string;
  /** The service's backend name: lower-case letters, digits and `-`, e.g. `order-history`. */
  readonly name: string;
  /** Parts to leave out. */
  readonly skip?: readonly ScaffoldPart[];
  /** The connect-gateway version range the project depends on. */
  readonly connectGatewayVersion: string;
  /**
   * The tarballs to depend on instead of that range (what the project that
   * runs `init` installed, read from its package-lock.json): absolute paths,
   * written as `file:` paths relative to `dir`.
   */
  readonly tarballs?: InstalledTarballs | undefined;
}

/** The two packages' tarballs, as a project installed them. */
export interface InstalledTarballs {
  readonly library: string;
  readonly gateway: string;
}

/**
 * The tarballs the project in `projectDir` (or the nearest folder above it
 * with a `package-lock.json`) installed `connect-gateway` and
 * `@connect-gateway/gateway` from, as absolute paths; `undefined` when it
 * did not install both from `.tgz` files (from the registry, or a checkout).
 * A new service then depends on those same files: its `npm install` never
 * asks the registry for a name this project has not published there (a
 * stranger may have), and installs exactly what its creator runs.
 */
export function installedTarballs(projectDir: string): InstalledTarballs | undefined {
  for (let dir = resolve(projectDir); ; dir = dirname(dir)) {
    const lockfile = join(dir, "package-lock.json");
    if (existsSync(lockfile)) {
      let packages: Record<string, { resolved?: unknown } | undefined>;
      try {
        packages = (JSON.parse(readFileSync(lockfile, "utf8")) as { packages?: typeof packages }).packages ?? {};
      } catch {
        return undefined;
      }
      const tarball = (name: string) => {
        const resolved = packages[`node_modules/${name}`]?.resolved;
        if (typeof resolved !== "string" || !/^file:.+\.tgz$/.test(resolved)) return undefined;
        // Still there: a tarball installed from a folder deleted since would make a package.json npm cannot install.
        const path = resolve(dir, resolved.slice("file:".length));
        return existsSync(path) ? path : undefined;
      };
      const library = tarball("connect-gateway");
      const gateway = tarball("@connect-gateway/gateway");
      return library !== undefined && gateway !== undefined ? { library, gateway } : undefined;
    }
    if (dirname(dir) === dir) return undefined;
  }
}

/** Why `init` wrote nothing: `flag` names the option at fault, if one is. */
export class ScaffoldError extends Error {
  override name = "ScaffoldError";
  constructor(
    message: string,
    readonly flag?: string,
  ) {
    super(message);
  }
}

const NAME = /^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$/;

/**
 * Writes the project into `options.dir` and returns the files written
 * (relative paths). Throws {@link ScaffoldError} — having written nothing —
 * for a bad name or when any of the files already exists.
 */
export function scaffoldService(options: ScaffoldOptions): string[] {
  if (!NAME.test(options.name) || options.name.length > 40) {
    throw new ScaffoldError(
      `--name must start with a lower-case letter, then lower-case letters and digits, words joined by "-", at most 40 characters ` +
        `(e.g. order-history), got ${JSON.stringify(options.name)}`,
      "--name",
    );
  }
  const skip = new Set(options.skip ?? []);
  const fileSpec = (tarball: string) => `file:${relative(resolve(options.dir), tarball).split(sep).join("/")}`;
  const specs = options.tarballs === undefined
    ? { library: options.connectGatewayVersion, gateway: options.connectGatewayVersion }
    : { library: fileSpec(options.tarballs.library), gateway: fileSpec(options.tarballs.gateway) };
  const files = projectFiles(options.name, specs, skip);
  const existing = Object.keys(files).filter((path) => existsSync(join(options.dir, path)));
  if (existing.length > 0) {
    throw new ScaffoldError(`init never overwrites a file; these already exist in ${options.dir}: ${existing.join(", ")}`);
  }
  for (const [path, text] of Object.entries(files)) {
    const target = join(options.dir, path);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, text, { flag: "wx" });
  }
  return Object.keys(files);
}

function projectFiles(name: string, specs: { readonly library: string; readonly gateway: string }, skip: ReadonlySet<ScaffoldPart>): Record<string, string> {
  const words = name.split("-");
  const pkg = `${words.join("_")}.v1`;
  const Service = `${words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join("")}Service`;
  const stub = `./gen/${words.join("_")}/v1/${words.join("_")}_pb.js`;
  const protoPath = `proto/${words.join("_")}/v1/${words.join("_")}.proto`;
  const envName = `${words.join("_").toUpperCase()}_URL`;
  const files: Record<string, string> = {
    "package.json": `${JSON.stringify(
      {
        name,
        private: true,
        type: "module",
        scripts: {
          generate: "buf generate",
          pretypecheck: "buf generate",
          typecheck: "tsc",
          ...(!skip.has("test") && { pretest: "buf generate", test: "node --import tsx --test test/*.test.ts" }),
          // gen/ is not checked in: whatever runs the code generates it first.
          preserver: "buf generate",
          server: "tsx src/server.ts",
          ...(!skip.has("client") && { preclient: "buf generate", client: "tsx src/client.ts" }),
        },
        dependencies: {
          "@bufbuild/protobuf": "^2.2.0",
          "@connectrpc/connect": "^2.2.0",
          "@connectrpc/connect-node": "^2.2.0",
          "connect-gateway": specs.library,
        },
        devDependencies: {
          // The gateway, for `npx connect-gateway dev` (README.md); released with the library, same version.
          "@connect-gateway/gateway": specs.gateway,
          "@bufbuild/buf": "^1.74.0",
          "@bufbuild/protoc-gen-es": "^2.2.0",
          "@types/node": "^22.0.0",
          tsx: "^4.19.0",
          typescript: "^5.9.0",
        },
      },
      null,
      2,
    )}\n`,
    "tsconfig.json": `${JSON.stringify(
      {
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          noUncheckedIndexedAccess: true,
          verbatimModuleSyntax: true,
          skipLibCheck: true,
          noEmit: true,
          types: ["node"],
        },
        include: ["src", "test", "gen"],
      },
      null,
      2,
    )}\n`,
    ".gitignore": "node_modules/\ngen/\n",
    "buf.yaml": `# Your protos, plus connect-gateway's (for connect_gateway/v1/options.proto).
version: v2
modules:
  - path: proto
  - path: node_modules/connect-gateway/proto
`,
    "buf.gen.yaml": `# \`npm run generate\`: TypeScript stubs in gen/ for the protos in proto/.
version: v2
inputs:
  - directory: proto
plugins:
  - local: protoc-gen-es
    out: gen
    # Also generates gen/connect_gateway/v1/options_pb.ts, which your stubs import.
    include_imports: true
    opt:
      - target=ts
      - import_extension=js
clean: true
`,
    [protoPath]: `syntax = "proto3";

package ${pkg};

import "connect_gateway/v1/options.proto";

// ${Service}: reached through the gateway at /backend/${name}/${pkg}.${Service}/…
service ${Service} {
  // The backend that hosts it: createGatewayTransport() routes calls there.
  option (connect_gateway.v1.backend) = "${name}";

  // Says hello, and who the gateway said was calling.
  rpc Hello(HelloRequest) returns (HelloResponse) {}
}

// HelloRequest names who to greet.
message HelloRequest {
  string name = 1;
}

// HelloResponse is the greeting and the caller the service verified.
message HelloResponse {
  string greeting = 1;
  string client_id = 2;
  // Empty on a service call (no end user).
  string user_id = 3;
}
`,
    "src/service.ts": `// The ${Service} implementation. Every request reaching it was verified by
// createGatewayAuth (src/server.ts), so the caller's identity can be trusted.
import type { ConnectRouter } from "@connectrpc/connect";
import { requireIdentity } from "connect-gateway/server";
import { ${Service} } from ".${stub}";

export function routes(router: ConnectRouter): void {
  router.service(${Service}, {
    hello(req, ctx) {
      const caller = requireIdentity(ctx); // Unauthenticated if the gateway named no one
      return {
        greeting: \`Hello, \${req.name || "world"}!\`,
        clientId: caller.clientId,
        userId: caller.userId ?? "",
      };
    },
  });
}
`,
    "src/server.ts": `// ${Service} behind the gateway: createGatewayAuth verifies the gateway's
// signature on every request before any handler runs.
//
//   GATEWAY_HMAC_SECRET=… PORT=8081 npm run server
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createGatewayAuth } from "connect-gateway/server";
import { routes } from "./service.js";

/** Your user record: what currentUser(ctx) / requireUser(ctx) return in handlers. */
interface User {
  readonly id: string;
  readonly email?: string | undefined;
}

const auth = createGatewayAuth<User>({
  // The secret comes from GATEWAY_HMAC_SECRET.
  // The gateway signs every request with v2: refuse v1-only ones, which
  // could be a captured request with its v2 headers stripped, replayed.
  requireSignatureV2: true,
  // Why a request was refused, in this service's log (never a secret; outside
  // production it says, for one, that the gateway signs with another secret).
  onRejection: (event) => console.warn(\`refused \${event.method} \${event.fullpath.split("?")[0]}: \${event.keyMismatch ?? event.reason}\`),
  // Find the user the gateway names (called by currentUser(ctx), once per request).
  resolveUser: async (identity) => {
    // TODO: look the user up in your database, e.g. by identity.userId.
    return identity.userId === undefined ? null : { id: identity.userId, email: identity.email };
  },
  // Create the user the first time they call (called when resolveUser finds nobody).
  onMissingUser: async (details) => {
    // TODO: insert the user; details has subject, email, firstName, lastName, scopes, clientId.
    return { id: details.subject, email: details.email };
  },
});

const server = http2.createServer(connectNodeAdapter(auth.connectOptions({ routes })));
server.listen(Number(process.env.PORT ?? 8081), process.env.HOST ?? "127.0.0.1", () => {
  const { address, port } = server.address() as AddressInfo;
  console.log(\`${name} listening on http://\${address}:\${port}\`);
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => server.close(() => process.exit(0)));
}
`,
    "README.md": `# ${name}

A Connect service behind the connect-gateway API gateway, generated by \`connect-gateway init\`.

\`\`\`sh
npm install
${skip.has("test") ? "npm run typecheck                          # generates gen/ and type-checks" : "npm test                                   # calls the service as the gateway would"}
GATEWAY_HMAC_SECRET=… npm run server       # the service, verifying every request
\`\`\`

- \`proto/\`: the service, with \`option (connect_gateway.v1.backend) = "${name}"\`; \`npm run generate\` writes \`gen/\`.
- \`src/service.ts\`: the handlers; \`src/server.ts\`: the server, with \`resolveUser\` / \`onMissingUser\` to fill in.
${skip.has("client") ? "" : "- `src/client.ts`: a client calling it through the gateway (`GATEWAY_URL`, `APPCENTER_URL`, `GATEWAY_CLIENT_ID`, `GATEWAY_CLIENT_SECRET`).\n"}${skip.has("test") ? "" : "- `test/`: the service under test with `createTestGatewayTransport`.\n"}
Behind a gateway on your machine, with \`routes.yaml\` (add its \`backends\` entry to your own gateway's routes file):

\`\`\`sh
${envName}=http://127.0.0.1:8081 npx connect-gateway dev --routes routes.yaml   # prints the GATEWAY_HMAC_SECRET to use
GATEWAY_HMAC_SECRET=… npm run server
\`\`\`
`,
    "routes.yaml": `# The gateway's routes file for this service (connect-gateway dev / serve --routes routes.yaml).
# Its upstream comes from ${envName}, e.g. http://127.0.0.1:8081.
version: "1.0"
backends:
  ${name}:
    upstream: $${envName}
    http2: true
    auth_required: true
    # scopes: [read]   # the scopes every caller's token must carry
`,
  };
  if (!skip.has("client")) {
    files["src/client.ts"] = `// Calls ${Service} through the gateway: the transport fetches an OAuth2
// service token and routes the call to /backend/${name}/….
//
//   GATEWAY_URL=… APPCENTER_URL=… GATEWAY_CLIENT_ID=… GATEWAY_CLIENT_SECRET=… npm run client -- Ada
import { createClient } from "@connectrpc/connect";
import { createGatewayTransport } from "connect-gateway/client";
import { ${Service} } from ".${stub}";

const client = createClient(${Service}, createGatewayTransport());
const answer = await client.hello({ name: process.argv[2] ?? "world" });
console.log(\`\${answer.greeting} (verified caller: client \${answer.clientId}, user \${answer.userId || "-"})\`);
`;
  }
  if (!skip.has("test")) {
    files["test/service.test.ts"] = `// ${Service} under test, called exactly as the gateway calls it: every
// request signed with the secret the service verifies with.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createGatewayAuth } from "connect-gateway/server";
import { createTestGatewayTransport } from "connect-gateway/testing";
import { ${Service} } from "../gen/${words.join("_")}/v1/${words.join("_")}_pb.js";
import { routes } from "../src/service.js";

const hmacSecret = randomBytes(32).toString("hex");
let server: http.Server;
let baseUrl: string;

before(async () => {
  const auth = createGatewayAuth({ hmacSecret, requireSignatureV2: true });
  server = http.createServer(connectNodeAdapter(auth.connectOptions({ routes })));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = \`http://127.0.0.1:\${(server.address() as AddressInfo).port}\`;
});

after(() => new Promise<void>((resolve) => server.close(() => resolve())));

test("a service call: the handler sees the calling client and no user", async () => {
  const client = createClient(${Service}, createTestGatewayTransport({ baseUrl, hmacSecret, identity: { clientId: "billing" } }));
  const answer = await client.hello({ name: "Ada" });
  assert.equal(answer.greeting, "Hello, Ada!");
  assert.equal(answer.clientId, "billing");
  assert.equal(answer.userId, "");
});

test("a call on behalf of a user: the handler sees the user", async () => {
  const identity = { clientId: "web-app", userId: "user-42", email: "ada@example.com" };
  const client = createClient(${Service}, createTestGatewayTransport({ baseUrl, hmacSecret, identity }));
  assert.equal((await client.hello({})).userId, "user-42");
});

test("a request signed with another secret is refused", async () => {
  const client = createClient(
    ${Service},
    createTestGatewayTransport({ baseUrl, hmacSecret: randomBytes(32).toString("hex"), identity: { clientId: "billing" } }),
  );
  await assert.rejects(client.hello({}), (e: unknown) => ConnectError.from(e).code === Code.PermissionDenied);
});
`;
  }
  return files;
}
