import {
  checkGatewayHeaders,
  fullpathOf,
  gatewayHeader,
  verifyGatewaySignature,
  verifyGatewaySignatureV2,
  type CheckedGatewayHeaders,
  type GatewayRejectionReason,
} from "../signing/index.js";
import type { GatewayAuthConfig } from "./gateway-auth-options.js";
import { identityOf, type GatewayIdentity } from "./gateway-identity.js";
import { claimRequestId, type BodyVerdict } from "./replay-check.js";

/** The part of a Node request that is known before its body: method, target, headers. */
export interface RequestHead {
  readonly method?: string | undefined;
  /** The raw request-target, never a parsed URL. */
  readonly url?: string | undefined;
  readonly rawHeaders: readonly string[];
}

/** What the headers alone say about a request, before its body. */
export type RequestCheck = {
  readonly method: string;
  readonly fullpath: string;
} & (
  | { readonly ok: false; readonly reason: GatewayRejectionReason }
  | {
      readonly ok: true;
      /** Undefined only in `skipVerification` mode without `X-Client-Id`. */
      readonly identity: GatewayIdentity | undefined;
      /**
       * Checks the signature over a body with this SHA-256 and, for v2, claims
       * the request id against replays: `undefined` admits the request.
       * Synchronous unless the replay store is asynchronous (Redis).
       */
      readonly verifyBody: (bodySha256: string) => BodyVerdict | Promise<BodyVerdict>;
    }
);

const ADMIT = () => undefined;

/**
 * Checks everything that can be checked before the body is read: required
 * headers, repeats, formats, unsigned identity headers (v2), the window and
 * whether v1 is accepted. On success, returns the identity (only what the
 * signature covers, unless the service trusts v1's unsigned headers) and the
 * function that finishes the check once the body's hash is known.
 */
export function checkRequestHead(config: GatewayAuthConfig, head: RequestHead): RequestCheck {
  const method = head.method ?? "";
  const fullpath = fullpathOf(head.url ?? "");
  if (config.skipVerification) {
    return { ok: true, method, fullpath, identity: trustedIdentity(head.rawHeaders), verifyBody: ADMIT };
  }
  const check = checkGatewayHeaders(head.rawHeaders, {
    nowSeconds: config.nowSeconds(),
    maxSkewSeconds: config.maxSkewSeconds,
  });
  if (!check.ok) return { ok: false, method, fullpath, reason: check.reason };
  const headers = check.headers;
  if (headers.v2 === undefined && config.requireSignatureV2) {
    return { ok: false, method, fullpath, reason: "signature_v2_required" };
  }
  const identity = identityOf(headers.identity, headers.v2 === undefined ? "v1" : "v2", config.trustUnsignedIdentity);
  const verifyBody =
    headers.v2 === undefined
      ? v1BodyCheck(config, method, fullpath, headers)
      : v2BodyCheck(config, method, head.url ?? "", headers);
  return { ok: true, method, fullpath, identity, verifyBody };
}

function v1BodyCheck(
  config: GatewayAuthConfig,
  method: string,
  fullpath: string,
  headers: CheckedGatewayHeaders,
): (bodySha256: string) => BodyVerdict {
  const { timestamp, signature = "", identity } = headers;
  return (bodySha256) =>
    verifyGatewaySignature(
      config.secrets,
      { method, timestamp, clientId: identity.clientId, userId: identity.userId, fullpath, bodySha256 },
      signature,
    )
      ? undefined
      : "invalid_signature";
}

function v2BodyCheck(
  config: GatewayAuthConfig,
  method: string,
  requestTarget: string,
  headers: CheckedGatewayHeaders,
): (bodySha256: string) => BodyVerdict | Promise<BodyVerdict> {
  const v2 = headers.v2 as NonNullable<CheckedGatewayHeaders["v2"]>;
  return (bodySha256) => {
    const valid = verifyGatewaySignatureV2(
      config.keyring,
      {
        keyId: v2.keyId,
        method,
        requestTarget,
        timestamp: headers.timestamp,
        requestId: v2.requestId,
        bodySha256,
        contentType: headers.contentType,
        contentEncoding: headers.contentEncoding,
        identity: headers.identityHeaders,
      },
      v2.signature,
    );
    // Only a request the gateway signed may add its id to the replay store.
    return valid ? claimRequestId(config, v2.requestId, headers.timestamp) : "invalid_signature";
  };
}

// skipVerification: the identity headers are taken at their word (first
// occurrence of each): the test mode of Ruby services behind the gateway.
function trustedIdentity(rawHeaders: readonly string[]): GatewayIdentity | undefined {
  const first = new Map<string, string>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase();
    if (!first.has(name)) first.set(name, rawHeaders[i + 1] as string);
  }
  const clientId = first.get(gatewayHeader.clientId);
  if (!clientId) return undefined;
  return identityOf(
    {
      clientId,
      userId: first.get(gatewayHeader.userId),
      email: first.get(gatewayHeader.email),
      firstName: first.get(gatewayHeader.firstName),
      lastName: first.get(gatewayHeader.lastName),
      scopes: first.get(gatewayHeader.scopes)?.split(" ").filter((s) => s !== ""),
      orgId: first.get(gatewayHeader.orgId),
      role: first.get(gatewayHeader.role),
    },
    "none",
    true,
  );
}
