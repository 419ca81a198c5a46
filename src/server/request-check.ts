/**
 * The verification of a request, shared by every framework adapter
 * (`adapters/`): the checks on its head, before the body is read; what is
 * refused before reading; then the body read, hashed once and verified.
 * The adapters only map the outcome to their framework, through the
 * rejection table (`rejections.ts`).
 */
import type { Readable } from "node:stream";
import {
  canonicalRequestV2,
  checkGatewayHeaders,
  fullpathOf,
  gatewayHeader,
  identityFromHeaders,
  readGatewayHeaders,
  stringToSign,
  verifyGatewaySignature,
  verifyGatewaySignatureV2,
  type CheckedGatewayHeaders,
  type GatewayRejectionReason,
} from "../signing/index.js";
import type { GatewayAuthConfig } from "./gateway-auth-options.js";
import { identityOf, type GatewayIdentity } from "./gateway-identity.js";
import { claimRequestId, type BodyVerdict } from "./replay-check.js";
import type { BodyRejection, RejectionKind } from "./rejections.js";
import { declaresTooLarge, outcome, readVerifiedBody, type VerifiedBody } from "./verified-body.js";

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
      /** Filled in by a failed `verifyBody`, see {@link SignatureDiagnostics}. */
      readonly diagnostics?: SignatureDiagnostics;
    }
);

/**
 * What a service may tell its own logs about a signature that did not
 * match: the canonical request it computed (what it expected the gateway to
 * have signed), to compare with the gateway's side — `connect-gateway
 * explain` prints both. Never the secret or the signature. Only recorded when
 * `exposeRejectionReason` is on (by default, outside production): the
 * canonical request carries the caller's identity headers.
 */
export interface SignatureDiagnostics {
  canonicalRequest?: string;
}

/** A request whose head passed: its body is still to be verified. */
export type AdmittedHead = Extract<RequestCheck, { ok: true }>;

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
  const diagnostics: SignatureDiagnostics | undefined = config.exposeRejectionReason ? {} : undefined;
  const verifyBody =
    headers.v2 === undefined
      ? v1BodyCheck(config, method, fullpath, headers, diagnostics)
      : v2BodyCheck(config, method, head.url ?? "", headers, diagnostics);
  return { ok: true, method, fullpath, identity, verifyBody, ...(diagnostics && { diagnostics }) };
}

function v1BodyCheck(
  config: GatewayAuthConfig,
  method: string,
  fullpath: string,
  headers: CheckedGatewayHeaders,
  diagnostics: SignatureDiagnostics | undefined,
): (bodySha256: string) => BodyVerdict {
  const { timestamp, signature = "", identity } = headers;
  return (bodySha256) => {
    const parts = { method, timestamp, clientId: identity.clientId, userId: identity.userId, fullpath, bodySha256 };
    if (verifyGatewaySignature(config.secrets, parts, signature)) return undefined;
    if (diagnostics) diagnostics.canonicalRequest = canonicalOrUndefined(() => stringToSign(parts));
    return "invalid_signature";
  };
}

function canonicalOrUndefined(build: () => string): string | undefined {
  try {
    return build();
  } catch {
    return undefined; // a value that cannot be signed at all: nothing to compare
  }
}

function v2BodyCheck(
  config: GatewayAuthConfig,
  method: string,
  requestTarget: string,
  headers: CheckedGatewayHeaders,
  diagnostics: SignatureDiagnostics | undefined,
): (bodySha256: string) => BodyVerdict | Promise<BodyVerdict> {
  const v2 = headers.v2 as NonNullable<CheckedGatewayHeaders["v2"]>;
  return (bodySha256) => {
    const parts = {
      keyId: v2.keyId,
      method,
      requestTarget,
      timestamp: headers.timestamp,
      requestId: v2.requestId,
      bodySha256,
      contentType: headers.contentType,
      contentEncoding: headers.contentEncoding,
      identity: headers.identityHeaders,
    };
    // Only a request the gateway signed may add its id to the replay store.
    if (verifyGatewaySignatureV2(config.keyring, parts, v2.signature)) return claimRequestId(config, v2.requestId, headers.timestamp);
    // The request id stays out of logs, like everywhere else: its field shows its length only.
    if (diagnostics) {
      diagnostics.canonicalRequest = canonicalOrUndefined(() =>
        canonicalRequestV2(parts).replace(`\n${v2.requestId.length}:${v2.requestId}\n`, `\n${v2.requestId.length}:<request id>\n`),
      );
    }
    return "invalid_signature";
  };
}

/** What an adapter knows of the body before reading it. */
export interface BodyAhead {
  /** Something (a body parser mounted first) already read the body: it can no longer be hashed. */
  readonly consumed: boolean;
  /** The declared `Content-Length`, when the body is to be verified; `undefined` otherwise. */
  readonly contentLength: string | undefined;
}

/**
 * The refusal due, once the headers passed, before the body is read: a body
 * already consumed, then a declared length over `maxBodyBytes`. `undefined`
 * when the body is to be read.
 */
export function refusalBeforeBody(config: GatewayAuthConfig, body: BodyAhead): BodyRejection | undefined {
  if (body.consumed) return "body_already_read";
  if (declaresTooLarge(body.contentLength, config.maxBodyBytes)) return "body_too_large";
  return undefined;
}

/**
 * Reads the body of a request whose head passed (at most `maxBodyBytes`),
 * hashing each chunk once as it arrives, then verifies the signature (and,
 * for v2, claims the request id). Rejects when the client goes away mid-body.
 */
export function readAndVerifyBody(config: GatewayAuthConfig, check: AdmittedHead, stream: Readable): Promise<VerifiedBody> {
  return readVerifiedBody(stream, check.verifyBody, config.maxBodyBytes);
}

/**
 * Verifies a body that was hashed while someone else read it (Fastify's
 * body parser, through a hashing stream): only the verdict is needed.
 */
export function verifyHashedBody(check: AdmittedHead, bodySha256: string): Promise<VerifiedBody> {
  return Promise.resolve(check.verifyBody(bodySha256)).then((verdict) => outcome(verdict, [], 0));
}

/** The refusal a body that did not verify leads to. */
export function refusalOfBody(body: Exclude<VerifiedBody, { kind: "verified" }>): RejectionKind {
  return body.kind === "too_large" ? "body_too_large" : body.reason;
}

// skipVerification: the identity headers are taken at their word (first
// occurrence of each): the test mode of services behind the gateway.
function trustedIdentity(rawHeaders: readonly string[]): GatewayIdentity | undefined {
  const { values } = readGatewayHeaders(rawHeaders);
  const clientId = values.get(gatewayHeader.clientId);
  if (!clientId) return undefined;
  return identityOf(identityFromHeaders(clientId, (name) => values.get(name)), "none", true);
}
