/**
 * How long a `Retry-After` field asks to wait, in ms: delta-seconds (`120`)
 * or an HTTP date; `undefined` when there is none or it is neither. A date
 * in the past is 0.
 *
 * @example
 * ```ts
 * retryAfterMs("30"); // 30000
 * retryAfterMs("Wed, 02 Dec 2026 10:00:00 GMT", Date.parse("Wed, 02 Dec 2026 09:59:00 GMT")); // 60000
 * ```
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc9110#section-10.2.3 | RFC 9110 §10.2.3} (Retry-After)
 */
export function retryAfterMs(value: string | undefined, now: number = Date.now()): number | undefined {
  const text = value?.trim();
  if (text === undefined || text === "") return undefined;
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
