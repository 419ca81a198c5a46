import { inspect } from "node:util";
import { expect } from "vitest";

/**
 * Asserts that none of `secrets` appears in the error's message, string
 * form, stack, JSON form or `util.inspect` form (its headers and details
 * included), nor in any error of its `cause` chain.
 */
export function expectNoSecret(error: unknown, secrets: readonly string[]): void {
  expect(error).toBeInstanceOf(Error);
  const seen = new Set<unknown>();
  for (let e = error; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    // util.inspect is what console.error and most loggers print: every own field, headers included.
    for (const text of [e.message, String(e), e.stack ?? "", JSON.stringify(e), inspect(e, { depth: 10 })]) {
      for (const secret of secrets) expect(text).not.toContain(secret);
    }
  }
}
