/** A console method, as oidc-provider calls it. */
type ConsoleWrite = (...args: unknown[]) => void;

// oidc-provider prints these straight to the console, in colour on a terminal.
const NOTICE = /^(\x1b\[[0-9;]*m)?oidc-provider (WARNING|NOTICE): /;

/**
 * Runs `start` (which starts an oidc-provider) with oidc-provider's start-up
 * notices held back. On the local stack they only repeat what is known and
 * chosen — its grants live in memory, it would rather run on a newer Node —
 * and they would bury the stack's own output and the test reports. Every
 * other console line passes through.
 */
export async function withoutOidcProviderNotices<T>(start: () => Promise<T>): Promise<T> {
  const { warn, info } = console;
  const keep =
    (write: ConsoleWrite): ConsoleWrite =>
    (...args) => {
      if (!(typeof args[0] === "string" && NOTICE.test(args[0]))) write.apply(console, args);
    };
  console.warn = keep(warn);
  console.info = keep(info);
  try {
    return await start();
  } finally {
    console.warn = warn;
    console.info = info;
  }
}
