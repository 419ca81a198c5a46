const DURATION = /^([0-9]+)(ms|s|m|h)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/**
 * Parses a `routes.yaml` duration (`cache_ttl: 60s`, `timeout: 5m`) into
 * milliseconds: a positive whole number followed by `ms`, `s`, `m` or `h`.
 * Returns `undefined` for anything else (`60`, `1.5s`, `0s`, `5 m`), so the
 * caller can say where the bad value is.
 */
export function parseDuration(text: string): number | undefined {
  const match = DURATION.exec(text);
  if (!match) return undefined;
  const ms = Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
  return ms > 0 && Number.isSafeInteger(ms) ? ms : undefined;
}
