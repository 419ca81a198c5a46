import {
  checkGatewayHeaders,
  fullpathOf,
  gatewayHeader,
  verifyGatewaySignature,
  type GatewayRejectionReason,
} from "../signing/index.js";
import type { GatewayAuthConfig } from "./gateway-auth-options.js";
import { identityOf, type GatewayIdentity } from "./gateway-identity.js";

/** The part of a Node request that is known before its body: method, target, headers. */
export interface RequestHead {
  readonly method?: string | undefined;
  /** The raw request-target, never a parsed URL. */
  readonly url?: string | undefined;
  readonly rawHeaders: readonly string[];
}

/** What the headers alone say about a request (SPEC §4), before its body. */
export type RequestCheck = {
  readonly method: string;
  readonly fullpath: string;
} & (
  | { readonly ok: false; readonly reason: GatewayRejectionReason }
  | {
      readonly ok: true;
      /** Undefined only in `skipVerification` mode without `X-Client-Id`. */
      readonly identity: GatewayIdentity | undefined;
      /** True when the signature covers a body with this SHA-256 (always, when skipping). */
      readonly verifies: (bodySha256: string) => boolean;
    }
);

/**
 * Checks everything that can be checked before the body is read: required
 * headers, repeats, timestamp format and window, ids. On success, returns
 * the identity and the function that checks the signature once the body's
 * hash is known.
 */
export function checkRequestHead(config: GatewayAuthConfig, head: RequestHead): RequestCheck {
  const method = head.method ?? "";
  const fullpath = fullpathOf(head.url ?? "");
  if (config.skipVerification) {
    return { ok: true, method, fullpath, identity: trustedIdentity(head.rawHeaders), verifies: () => true };
  }
  const check = checkGatewayHeaders(head.rawHeaders, {
    nowSeconds: config.nowSeconds(),
    maxSkewSeconds: config.maxSkewSeconds,
  });
  if (!check.ok) return { ok: false, method, fullpath, reason: check.reason };
  const { timestamp, signature, identity } = check.headers;
  const verifies = (bodySha256: string) =>
    verifyGatewaySignature(
      config.secrets,
      { method, timestamp, clientId: identity.clientId, userId: identity.userId, fullpath, bodySha256 },
      signature,
    );
  return { ok: true, method, fullpath, identity: identityOf(identity), verifies };
}

// skipVerification: the identity headers are taken at their word (first
// occurrence of each), as the gem's test mode does.
function trustedIdentity(rawHeaders: readonly string[]): GatewayIdentity | undefined {
  const first = new Map<string, string>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase();
    if (!first.has(name)) first.set(name, rawHeaders[i + 1] as string);
  }
  const clientId = first.get(gatewayHeader.clientId);
  if (!clientId) return undefined;
  return identityOf({
    clientId,
    userId: first.get(gatewayHeader.userId),
    email: first.get(gatewayHeader.email),
    firstName: first.get(gatewayHeader.firstName),
    lastName: first.get(gatewayHeader.lastName),
    scopes: first.get(gatewayHeader.scopes)?.split(" ").filter((s) => s !== ""),
  });
}
