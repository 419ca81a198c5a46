/**
 * True when something already read the request's body to its end (for
 * example `express.json()` mounted before the gateway): its bytes are gone
 * and can no longer be hashed. The same test body parsers use to skip a
 * request (`on-finished`'s `isFinished`).
 */
export function bodyWasConsumed(req: {
  readonly readableEnded: boolean;
  readonly complete: boolean;
  readonly readable: boolean;
}): boolean {
  return req.readableEnded || (req.complete && !req.readable);
}
