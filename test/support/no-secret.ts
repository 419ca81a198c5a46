import { expect } from "vitest";

/**
 * Asserts that none of `secrets` appears in the error's message, string
 * form, stack or JSON form, nor in any error of its `cause` chain.
 */
export function expectNoSecret(error: unknown, secrets: readonly string[]): void {
  expect(error).toBeInstanceOf(Error);
  const seen = new Set<unknown>();
  for (let e = error; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    for (const text of [e.message, String(e), e.stack ?? "", JSON.stringify(e)]) {
      for (const secret of secrets) expect(text).not.toContain(secret);
    }
  }
}
