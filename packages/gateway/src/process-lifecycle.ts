// What a process running the gateway needs around it: a port argument, a
// graceful close on SIGTERM/SIGINT/SIGHUP, and start-up errors a reader can act on.
// Shared by the `connect-gateway` command and the local demo stack.
import { ConfigurationError } from "connect-gateway/errors";

/** Parses a port argument (0-65535); `option` names it in the error. */
export function parsePort(value: string, option: string): number {
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || n > 65535) throw new Error(`${option} must be a port number (0-65535)`);
  return n;
}

/**
 * SIGTERM / SIGINT / SIGHUP: a graceful close (no new connections, idle ones
 * closed, open calls get `drainTimeoutMs`, then are cut), then exit 0. A
 * close that still hangs well after the drain timeout, or a second signal,
 * exits at once. SIGHUP (the terminal that started it closed, or an
 * operator expecting a reload: the gateway has no configuration to reload)
 * would otherwise kill the process mid-call, its last log lines unwritten.
 */
export function closeOnSignal(close: () => Promise<void>, drainTimeoutMs: number): void {
  let closing = false;
  const onSignal = () => {
    if (closing) process.exit(0);
    closing = true;
    setTimeout(() => {
      console.error("connect-gateway: shutdown did not finish after the drain timeout; exiting");
      process.exit(0);
    }, drainTimeoutMs + CLOSE_GRACE_MS).unref();
    close().then(
      () => process.exit(0),
      (e: unknown) => {
        console.error(`connect-gateway: error while shutting down: ${startupErrorMessage(e)}`);
        process.exit(0);
      },
    );
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, onSignal);
}

/** What a close may take beyond the drain timeout (closing upstream pools, Redis) before the process exits anyway. */
const CLOSE_GRACE_MS = 5_000;

/**
 * The one-line message for an error that stopped the process from starting:
 * no stack for configuration and routes-file errors (they are meant for the
 * reader), and for a port already in use, the flags (`portFlags`) that choose another.
 */
export function startupErrorMessage(e: unknown, portFlags = "--port", env: NodeJS.ProcessEnv = process.env): string {
  if (!(e instanceof Error)) return String(e);
  // A ConfigurationError's message already starts with "connect-gateway: ".
  if (e instanceof ConfigurationError) return forTheCommandLine(e.message, env);
  const hint = (e as NodeJS.ErrnoException).code === "EADDRINUSE" ? ` (another process holds it: choose another port with ${portFlags})` : "";
  return `connect-gateway: ${e.message}${hint}`;
}

/**
 * A configuration error as a command-line user needs it: led by the
 * variable they set (`GATEWAY_HMAC_SECRET is not set; it must be …`) rather
 * than the library option it feeds, which the message names after. Messages
 * without a `(set VAR)` hint are left as they are.
 */
function forTheCommandLine(message: string, env: NodeJS.ProcessEnv): string {
  const hinted = /^connect-gateway: `([^`]+)` (.*) \(set ([A-Z][A-Z0-9_]*(?:(?:, | or )[A-Z][A-Z0-9_]*)*)\)\.?$/s.exec(message);
  if (hinted === null) return message;
  const [, option, problem, variables] = hinted as unknown as [string, string, string, string];
  const names = variables.split(/, | or /);
  if (names.length > 1) return `connect-gateway: set ${variables}: \`${option}\` ${problem}`;
  const name = names[0] as string;
  if (env[name] !== undefined) return `connect-gateway: ${name} ${problem} (the \`${option}\` option)`;
  // Unset: for a value with no default (a secret), that is the problem; otherwise its default is what failed the check.
  return /^must be a (non-empty )?string/.test(problem)
    ? `connect-gateway: ${name} is not set; it ${problem} (the \`${option}\` option)`
    : `connect-gateway: ${name} (not set, so its default applies) ${problem} (the \`${option}\` option)`;
}
