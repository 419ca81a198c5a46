import type { UniversalClientFn } from "@connectrpc/connect/protocol";
import { assertFunction, assertNonEmptyString } from "../core/assertions.js";
import { ConfigurationError } from "../core/errors.js";
import { gatewaySignatureHeaders, isGatewayControlledHeader, type IdentityHeaderValues } from "../signing/index.js";

/** Options of {@link createGatewaySigningHttpClient}. */
export interface GatewaySigningOptions {
  /** The secret the server under test verifies with. */
  readonly hmacSecret: string;
  /** Who the gateway says is calling; a service call has no `userId`. */
  readonly identity: IdentityHeaderValues;
  /** The clock, in milliseconds since the epoch (default `Date.now`). */
  readonly now?: () => number;
}

/**
 * Wraps a Connect HTTP client so that every request leaves exactly as the
 * gateway forwards it: any gateway-controlled header the caller set is
 * dropped, then the identity headers and the signature are added (the same
 * `gatewaySignatureHeaders`, v1 and v2 with a fresh request id) over the
 * final request-target (path and query, so Connect GET is covered), the
 * content headers and the exact body bytes. A signature covers
 * the whole body, so a streaming request is sent once the client has
 * finished writing it.
 */
export function createGatewaySigningHttpClient(
  inner: UniversalClientFn,
  options: GatewaySigningOptions,
): UniversalClientFn {
  checkSigningOptions(options);
  const now = options.now ?? Date.now;
  return async (request) => {
    const chunks: Uint8Array[] = [];
    for await (const chunk of request.body ?? []) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    const url = new URL(request.url);
    const header = withoutGatewayHeaders(request.header);
    const signed = gatewaySignatureHeaders(
      options.hmacSecret,
      {
        method: request.method,
        requestTarget: url.pathname + url.search,
        body,
        contentType: header.get("content-type") ?? undefined,
        contentEncoding: header.get("content-encoding") ?? undefined,
      },
      options.identity,
      { nowSeconds: now() / 1000 },
    );
    for (const [name, value] of Object.entries(signed)) header.set(name, value);
    return inner({
      ...request,
      header,
      body: request.body === undefined ? undefined : oneChunk(body),
    });
  };
}

// As the gateway does, drop what a caller set among the headers only the
// gateway may set (`X-User-*`, `X-Gateway-*`, …): a test cannot smuggle
// an unsigned identity header past what production would strip.
function withoutGatewayHeaders(original: Headers): Headers {
  const header = new Headers(original);
  for (const name of [...header.keys()]) {
    if (isGatewayControlledHeader(name)) header.delete(name);
  }
  return header;
}

async function* oneChunk(body: Uint8Array): AsyncGenerator<Uint8Array> {
  yield body;
}

/**
 * Checks the options every signing helper takes, when it is made rather
 * than at its first request: a missing `identity` (easy from JavaScript,
 * or through `any`) would otherwise fail each call with a bare TypeError.
 * The secret never appears in a message.
 */
export function checkSigningOptions(options: GatewaySigningOptions): void {
  if (typeof options !== "object" || options === null) {
    throw new ConfigurationError("options", "must be an object: { hmacSecret, identity, … }.");
  }
  assertNonEmptyString("hmacSecret", options.hmacSecret);
  const identity = options.identity as unknown;
  if (typeof identity !== "object" || identity === null || typeof (identity as { clientId?: unknown }).clientId !== "string") {
    throw new ConfigurationError(
      "identity",
      'must be who the gateway says is calling, with at least a clientId, e.g. { clientId: "web-app", userId: "sub-42", scopes: ["read"] }.',
    );
  }
  if (options.now !== undefined) assertFunction("now", options.now);
}
