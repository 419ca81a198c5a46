import type { UniversalClientFn } from "@connectrpc/connect/protocol";
import { gatewaySignatureHeaders, type IdentityHeaderValues } from "../signing/index.js";

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
 * Wraps a Connect HTTP client so that every request leaves signed exactly as
 * the gateway signs it (the same `gatewaySignatureHeaders`): over the final
 * request-target (path and query, so Connect GET is covered) and the exact
 * body bytes. A signature covers the whole body, so a streaming request is
 * sent once the client has finished writing it.
 */
export function createGatewaySigningHttpClient(
  inner: UniversalClientFn,
  options: GatewaySigningOptions,
): UniversalClientFn {
  const now = options.now ?? Date.now;
  return async (request) => {
    const chunks: Uint8Array[] = [];
    for await (const chunk of request.body ?? []) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    const url = new URL(request.url);
    const header = new Headers(request.header);
    const signed = gatewaySignatureHeaders(
      options.hmacSecret,
      { method: request.method, requestTarget: url.pathname + url.search, body },
      options.identity,
      now() / 1000,
    );
    for (const [name, value] of Object.entries(signed)) header.set(name, value);
    return inner({
      ...request,
      header,
      body: request.body === undefined ? undefined : oneChunk(body),
    });
  };
}

async function* oneChunk(body: Uint8Array): AsyncGenerator<Uint8Array> {
  yield body;
}
