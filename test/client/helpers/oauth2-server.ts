import { startOAuth2Server, type OAuth2Server, type StartOAuth2ServerOptions } from "../../../src/testing/oauth2-server.js";

// oidc-provider warns, on import and for every provider, that Node 20 is not
// its preferred runtime and that its in-memory adapter is for development:
// both expected here. Only those two lines are dropped; anything else it
// prints still reaches the console.
const expected = [/^oidc-provider WARNING: Unsupported runtime/, /^oidc-provider WARNING: a quick start development-only/];
let starting = 0;
let warn = console.warn;
function filteredWarn(...args: unknown[]): void {
  if (!expected.some((re) => re.test(String(args[0])))) warn(...args);
}

/** Starts the test OAuth2 server (oidc-provider) without its two expected start-up warnings. */
export async function startQuietOAuth2Server(options: StartOAuth2ServerOptions): Promise<OAuth2Server> {
  // Counted, so that servers started concurrently restore the console once, last.
  if (starting++ === 0) {
    warn = console.warn;
    console.warn = filteredWarn;
  }
  try {
    return await startOAuth2Server(options);
  } finally {
    if (--starting === 0) console.warn = warn;
  }
}
