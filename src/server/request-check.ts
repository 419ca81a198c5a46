/**
 * The verification of a request, shared by every framework adapter
 * (`adapters/`): the checks on its head, before the body is read; what is
 * refused before reading; then the body read, hashed once and verified.
 * The adapters only map the outcome to their framework, through the
 * rejection table (`rejections.ts`).
 */
import type { Readable } from "node:stream";
import { checkRequestHeaders } from "../signing/check-gateway-headers.js";
import { verifyCheckedSignatureV2 } from "../signing/verify-gateway-signature-v2.js";
import {
  canonicalRequestV2,
  fullpathOf,
  gatewayHeader,
  identityFromHeaders,
  readGatewayHeaders,
  stringToSign,
  utf8TextOf,
  verifyGatewaySignature,
  type CheckedGatewayHeaders,
  type GatewayRejectionReason,
  type SignatureV2Headers,
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
  /**
   * The request-target as received, where a framework rewrote `url`: Express
   * under a mount point (`app.use("/rpc", …)` strips `/rpc`), Fastify's
   * `rewriteUrl`. Both keep it here; it is what the gateway signed, so it
   * is what is checked when present.
   */
  readonly originalUrl?: string | undefined;
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
      /** The declared `Content-Length` (its first value), read with the other headers. */
      readonly contentLength: string | undefined;
      /**
       * Checks the signature over a body with this SHA-256 and, for v2, claims
       * the request id against replays: `undefined` admits the request.
       * Synchronous unless the replay store is asynchronous (Redis). A method
       * of the check (call it on the check).
       */
      verifyBody(bodySha256: string): BodyVerdict | Promise<BodyVerdict>;
      /** Filled in by a failed `verifyBody`, see {@link SignatureDiagnostics}. */
      readonly diagnostics?: SignatureDiagnostics | undefined;
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
  /** v2: the request's key id is none of this service's (see `GatewayRejectionEvent.keyMismatch`). */
  keyMismatch?: string;
}

/** A request whose head passed: its body is still to be verified. */
export type AdmittedHead = Extract<RequestCheck, { ok: true }>;

/**
 * Checks everything that can be checked before the body is read: required
 * headers, repeats, formats, unsigned identity headers (v2), the window and
 * whether v1 is accepted. On success, returns the identity (only what the
 * signature covers, unless the service trusts v1's unsigned headers) and the
 * method that finishes the check once the body's hash is known.
 *
 * The admitted checks are small classes rather than closures: this runs on
 * every request, and one object is all it allocates beyond the headers read.
 */
export function checkRequestHead(config: GatewayAuthConfig, head: RequestHead): RequestCheck {
  const method = head.method ?? "";
  const url = head.originalUrl ?? head.url ?? "";
  const fullpath = fullpathOf(url);
  if (config.skipVerification) return new TrustedHead(method, fullpath, head.rawHeaders);
  const check = checkRequestHeaders(head.rawHeaders, {
    nowSeconds: config.nowSeconds(),
    maxSkewSeconds: config.maxSkewSeconds,
  });
  if (!check.ok) return { ok: false, method, fullpath, reason: check.reason };
  const { headers, contentLength } = check;
  if (headers.v2 === undefined) {
    if (config.requireSignatureV2) return { ok: false, method, fullpath, reason: "signature_v2_required" };
    return new V1Head(config, method, fullpath, headers, contentLength, "v1");
  }
  return new V2Head(config, method, url, fullpath, headers, headers.v2, contentLength);
}

// skipVerification: the identity headers are taken at their word (first
// occurrence of each): the test mode of services behind the gateway.
class TrustedHead implements AdmittedHead {
  readonly ok = true;
  readonly identity: GatewayIdentity | undefined;
  readonly contentLength: string | undefined;
  readonly diagnostics = undefined;

  constructor(
    readonly method: string,
    readonly fullpath: string,
    rawHeaders: readonly string[],
  ) {
    this.identity = trustedIdentity(rawHeaders);
    this.contentLength = firstValue(rawHeaders, "content-length");
  }

  verifyBody(): BodyVerdict {
    return undefined;
  }
}

/** What a signed request's head holds, whichever signature it carries. */
abstract class SignedHead implements AdmittedHead {
  readonly ok = true;
  readonly identity: GatewayIdentity;
  diagnostics: SignatureDiagnostics | undefined = undefined;

  constructor(
    protected readonly config: GatewayAuthConfig,
    readonly method: string,
    readonly fullpath: string,
    protected readonly headers: CheckedGatewayHeaders,
    readonly contentLength: string | undefined,
    version: "v1" | "v2",
  ) {
    this.identity = identityOf(headers.identity, version, config.trustUnsignedIdentity);
  }

  abstract verifyBody(bodySha256: string): BodyVerdict | Promise<BodyVerdict>;
}

class V1Head extends SignedHead {
  verifyBody(bodySha256: string): BodyVerdict {
    const { timestamp, signature = "", identity } = this.headers;
    // The ids as text (identityOf read them from their UTF-8 octets), the
    // path likewise: v1 signs the UTF-8 of each, as the Ruby gateway does.
    // A target whose octets are not UTF-8 (raw over HTTP/2) has no such
    // text; read as Latin-1 it would share its signature with the UTF-8 of
    // that text (`/é` as E9 and as C3 A9), though a handler sees two paths.
    const fullpath = utf8TextOf(this.fullpath);
    if (fullpath === undefined) return "invalid_signature";
    // v1 signs the method upper-cased (as the Ruby gem does), so `post` and
    // `POST` share a signature; methods are case-sensitive (RFC 9110 §9.1)
    // and a handler may tell them apart: only the signed spelling passes.
    if (this.method !== this.method.toUpperCase()) return "invalid_signature";
    const parts = { method: this.method, timestamp, clientId: identity.clientId, userId: identity.userId, fullpath, bodySha256 };
    if (verifyGatewaySignature(this.config.secrets, parts, signature)) return undefined;
    if (this.config.exposeRejectionReason) this.diagnostics = { canonicalRequest: canonicalOrUndefined(() => stringToSign(parts)) };
    return "invalid_signature";
  }
}

class V2Head extends SignedHead {
  constructor(
    config: GatewayAuthConfig,
    method: string,
    private readonly requestTarget: string,
    fullpath: string,
    headers: CheckedGatewayHeaders,
    private readonly v2: SignatureV2Headers,
    contentLength: string | undefined,
  ) {
    super(config, method, fullpath, headers, contentLength, "v2");
  }

  verifyBody(bodySha256: string): BodyVerdict | Promise<BodyVerdict> {
    const { headers, v2, config } = this;
    const parts = {
      keyId: v2.keyId,
      method: this.method,
      requestTarget: this.requestTarget,
      timestamp: headers.timestamp,
      requestId: v2.requestId,
      bodySha256,
      contentType: headers.contentType,
      contentEncoding: headers.contentEncoding,
      identity: headers.identityHeaders,
    };
    // Only a request the gateway signed may add its id to the replay store.
    if (verifyCheckedSignatureV2(config.keyring, parts, v2.signature)) return claimRequestId(config, v2.requestId, headers.timestamp);
    // The request id stays out of logs, like everywhere else: its field shows its length only.
    if (config.exposeRejectionReason) {
      this.diagnostics = {
        canonicalRequest: canonicalOrUndefined(() =>
          canonicalRequestV2(parts).replace(`\n${v2.requestId.length}:${v2.requestId}\n`, `\n${v2.requestId.length}:<request id>\n`),
        ),
        ...(!config.keyring.has(v2.keyId) && {
          keyMismatch:
            `signed with key id ${v2.keyId}, which none of this service's secrets has (its key ids: ${[...config.keyring.keys()].join(", ")}): ` +
            "the gateway and this service hold different secrets",
        }),
      };
    }
    return "invalid_signature";
  }
}

function canonicalOrUndefined(build: () => string): string | undefined {
  try {
    return build();
  } catch {
    return undefined; // a value that cannot be signed at all: nothing to compare
  }
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
 * Reads the body of a request whose head passed (at most `maxBodyBytes`, for
 * at most `bodyTimeoutMs`),
 * hashing each chunk once as it arrives, then verifies the signature (and,
 * for v2, claims the request id). Rejects when the client goes away mid-body.
 */
export function readAndVerifyBody(config: GatewayAuthConfig, check: AdmittedHead, stream: Readable): Promise<VerifiedBody> {
  return readVerifiedBody(stream, check, config.maxBodyBytes, config.bodyTimeoutMs);
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
  return body.kind === "too_large" ? "body_too_large" : body.kind === "timed_out" ? "body_timeout" : body.reason;
}

function trustedIdentity(rawHeaders: readonly string[]): GatewayIdentity | undefined {
  const { values } = readGatewayHeaders(rawHeaders);
  const clientId = values.get(gatewayHeader.clientId);
  if (!clientId) return undefined;
  return identityOf(identityFromHeaders(clientId, (name) => values.get(name)), "none", true);
}

// The first value of a header, by lower-case name, as `req.headers` keeps it.
function firstValue(rawHeaders: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if ((rawHeaders[i] as string).toLowerCase() === name) return rawHeaders[i + 1];
  }
  return undefined;
}
