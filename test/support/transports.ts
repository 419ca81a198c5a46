import type { Transport } from "@connectrpc/connect";
import { createNodeHttpClient, Http2SessionManager } from "@connectrpc/connect-node";
import type { UniversalClientFn } from "@connectrpc/connect/protocol";
import { createTestGatewayTransport } from "../../src/testing/index.js";
import type { IdentityHeaderValues } from "../../src/signing/index.js";

export type Protocol = "connect" | "grpc" | "grpc-web";

/** A node HTTP client for `baseUrl`; HTTP/2 sessions are returned so tests can close them. */
export function nodeClient(baseUrl: string, httpVersion: "1.1" | "2", sessions: Http2SessionManager[]): UniversalClientFn {
  if (httpVersion === "1.1") return createNodeHttpClient({ httpVersion: "1.1" });
  const manager = new Http2SessionManager(baseUrl);
  sessions.push(manager);
  return createNodeHttpClient({ httpVersion: "2", sessionProvider: () => manager });
}

/**
 * A transport that signs like the gateway and then, when `tamper` is given,
 * changes the body on the wire after signing (a man in the middle).
 */
export function tamperingTransport(options: {
  protocol: Protocol;
  baseUrl: string;
  inner: UniversalClientFn;
  hmacSecret: string;
  identity: IdentityHeaderValues;
  tamper?: (body: Buffer) => Buffer;
}): Transport {
  const { tamper, inner, ...rest } = options;
  const httpClient: UniversalClientFn = !tamper
    ? inner
    : async (req) => {
        const chunks: Uint8Array[] = [];
        for await (const c of req.body ?? []) chunks.push(c);
        const body = tamper(Buffer.concat(chunks));
        return inner({ ...req, body: (async function* () { yield body; })() });
      };
  return createTestGatewayTransport({ ...rest, httpClient });
}
