// Launches the machine's Chromium (Debian's `chromium` package) through
// playwright-core, which downloads no browser of its own.
import { existsSync } from "node:fs";
import { chromium, type Browser } from "playwright-core";

const CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];

/**
 * The Chromium binary: `CHROMIUM_PATH` when set, else Debian's. Throws —
 * never skips — when there is none: the browser test is part of `npm test`.
 */
export function chromiumPath(): string {
  const fromEnv = process.env.CHROMIUM_PATH;
  const found = fromEnv !== undefined && fromEnv !== "" ? [fromEnv] : CANDIDATES.filter((p) => existsSync(p));
  if (found.length === 0 || !existsSync(found[0]!)) {
    throw new Error(
      `Chromium is not installed (looked for ${fromEnv ? `CHROMIUM_PATH=${fromEnv}` : CANDIDATES.join(", ")}). ` +
        "The browser test (test/browser) needs it: install Debian's package with " +
        "`apt-get install -y chromium` (.ci/run does), or set CHROMIUM_PATH to a Chromium binary.",
    );
  }
  return found[0]!;
}

/** A headless Chromium; `--no-sandbox` when running as root (CI containers), which Chromium's sandbox refuses. */
export function launchChromium(): Promise<Browser> {
  const asRoot = process.getuid?.() === 0;
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: asRoot ? ["--no-sandbox"] : [],
    timeout: 15_000,
  });
}
