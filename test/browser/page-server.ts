// Serves the browser test's page from an origin of its own (a loopback port
// other than the gateway's): `/` is the HTML, `/app.js` the page script
// (./page/app.ts) bundled for the browser with esbuild.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

/** A running page server. */
export interface PageServer {
  /** `http://127.0.0.1:<port>`: the page's origin. */
  readonly origin: string;
  close(): Promise<void>;
}

/**
 * Bundles ./page/app.ts for the browser, as a web app's build would:
 * `connect-gateway/web` through the package's exports (its sources, by the
 * `connect-gateway-source` condition). `platform: "browser"` makes any Node
 * built-in in the import graph a build error.
 */
export async function bundlePageScript(): Promise<string> {
  const result = await build({
    entryPoints: [fileURLToPath(new URL("./page/app.ts", import.meta.url))],
    bundle: true,
    write: false,
    format: "esm",
    platform: "browser",
    target: "es2022",
    conditions: ["connect-gateway-source"],
    logLevel: "silent",
  });
  return result.outputFiles[0]!.text;
}

/** Serves the page with `script` on a free loopback port. */
export async function startPageServer(script: string): Promise<PageServer> {
  const html =
    '<!doctype html><html><head><meta charset="utf-8"><title>connect-gateway browser test</title></head>' +
    '<body><script type="module" src="/app.js"></script></body></html>';
  const server: Server = createServer((req, res) => {
    if (req.url === "/") res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(html);
    else if (req.url === "/app.js") res.writeHead(200, { "content-type": "text/javascript; charset=utf-8" }).end(script);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
