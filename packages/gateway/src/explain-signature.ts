// `connect-gateway explain`: why does a service refuse a signed request?
//
// The usual answer is that something between the gateway and the verifier
// changed what the signature covers: a proxy that adds a path prefix or
// re-encodes the path, a body parser that re-serialises JSON, a Content-Type
// rewritten on the way, a clock out of the window, a different secret. This
// module takes one captured request (as the service received it) and the
// secret, recomputes what the service computes, and — when the signature does
// not match — tries the single-field changes that commonly happen on the way
// until one makes it match: that one is what the gateway signed.
import { createHmac, timingSafeEqual } from "node:crypto";
import {
  bodySha256,
  canonicalRequestV2,
  fullpathOf,
  gatewayHeader,
  gatewayKeyId,
  identityHeaderNames,
  SIGNATURE_V2_LABEL,
  stringToSign,
  textFromOctets,
  utf8TextOf,
  type GatewayRejectionReason,
  type IdentityHeaderName,
  type SigningParts,
  type SigningPartsV2,
} from "connect-gateway/signing";

/** One HTTP request as the service received it. */
export interface CapturedRequest {
  readonly method: string;
  /** The request-target as received: path and query, nothing decoded. */
  readonly target: string;
  /** Header names and values in the order received; names in any case. */
  readonly headers: readonly (readonly [string, string])[];
  readonly body: Uint8Array;
}

/** A capture that cannot be read: `part` names what is malformed. */
export class CaptureFormatError extends Error {
  override name = "CaptureFormatError";
  constructor(
    readonly part: string,
    problem: string,
  ) {
    super(`capture: ${part}: ${problem}`);
  }
}

/**
 * Reads a captured request: either the raw HTTP/1.1 message (request line,
 * headers, an empty line, the body — chunked bodies are de-chunked), as a
 * proxy dump or `nc -l` shows it, or JSON `{ "method", "target", "headers":
 * { name: value } | [[name, value], …], "body" | "bodyBase64" }`.
 */
export function parseCapture(bytes: Uint8Array): CapturedRequest {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const start = buffer.toString("latin1", 0, Math.min(buffer.length, 64)).trimStart();
  return start.startsWith("{") ? parseJsonCapture(buffer.toString("utf8")) : parseHttpCapture(buffer);
}

function parseHttpCapture(buffer: Buffer): CapturedRequest {
  let end = buffer.indexOf("\r\n\r\n");
  let separator = 4;
  const lf = buffer.indexOf("\n\n");
  if (end === -1 || (lf !== -1 && lf < end)) {
    end = lf;
    separator = 2;
  }
  if (end === -1) throw new CaptureFormatError("headers", "no empty line ends them (a raw capture is the request line, headers, an empty line, then the body)");
  const lines = buffer.toString("latin1", 0, end).split(/\r?\n/);
  const requestLine = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP\/\d(?:\.\d)?$/.exec(lines[0] ?? "");
  if (requestLine === null) throw new CaptureFormatError("request line", `expected "METHOD request-target HTTP/1.1", got ${JSON.stringify(lines[0])}`);
  const headers: [string, string][] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    if (colon <= 0 || /[\s]/.test(line.slice(0, colon))) {
      throw new CaptureFormatError(`header line ${i + 1}`, `expected "Name: value", got ${JSON.stringify(line)}`);
    }
    headers.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
  }
  let body: Uint8Array = buffer.subarray(end + separator);
  if (headerValue(headers, "transfer-encoding")?.toLowerCase() === "chunked") body = dechunk(body);
  return { method: requestLine[1]!, target: requestLine[2]!, headers, body };
}

function dechunk(body: Uint8Array): Uint8Array {
  const data = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = data.indexOf("\r\n", at);
    if (lineEnd === -1) throw new CaptureFormatError("chunked body", "a chunk size line has no CRLF");
    const size = Number.parseInt(data.toString("latin1", at, lineEnd).split(";")[0]!, 16);
    if (!Number.isSafeInteger(size) || size < 0) throw new CaptureFormatError("chunked body", "a chunk size is not hexadecimal");
    if (size === 0) return Buffer.concat(parts);
    if (lineEnd + 2 + size > data.length) throw new CaptureFormatError("chunked body", "a chunk is shorter than its size");
    parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
}

function parseJsonCapture(text: string): CapturedRequest {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new CaptureFormatError("JSON", (e as Error).message);
  }
  const v = value as Record<string, unknown>;
  if (typeof v.method !== "string" || v.method === "") throw new CaptureFormatError("method", "must be a non-empty string");
  if (typeof v.target !== "string" || !v.target.startsWith("/")) throw new CaptureFormatError("target", 'must be the request-target, a string starting with "/"');
  const headers: [string, string][] = [];
  if (Array.isArray(v.headers)) {
    for (const [i, pair] of v.headers.entries()) {
      if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string" || typeof pair[1] !== "string") {
        throw new CaptureFormatError(`headers[${i}]`, "must be a [name, value] pair of strings");
      }
      headers.push([pair[0], pair[1]]);
    }
  } else if (typeof v.headers === "object" && v.headers !== null) {
    for (const [name, val] of Object.entries(v.headers)) {
      if (typeof val !== "string") throw new CaptureFormatError(`headers.${name}`, "must be a string");
      headers.push([name, val]);
    }
  } else {
    throw new CaptureFormatError("headers", "must be an object or a list of [name, value] pairs");
  }
  let body: Uint8Array = new Uint8Array();
  if (typeof v.bodyBase64 === "string") body = Buffer.from(v.bodyBase64, "base64");
  else if (typeof v.body === "string") body = Buffer.from(v.body, "utf8");
  else if (v.body !== undefined || v.bodyBase64 !== undefined) throw new CaptureFormatError("body", "must be a string (or bodyBase64, base64)");
  return { method: v.method, target: v.target, headers, body };
}

function headerValue(headers: CapturedRequest["headers"], lowerName: string): string | undefined {
  for (const [name, value] of headers) if (name.toLowerCase() === lowerName) return value;
  return undefined;
}

/** One field of a canonical string, as the service computed it and as the gateway signed it. */
export interface ExplainedField {
  readonly name: string;
  readonly server: string;
  /** Equal to `server` unless this field is the one that changed on the way. */
  readonly gateway: string;
}

/** What `explain` found for one signature version. */
export interface SignatureExplanation {
  readonly version: "v1" | "v2";
  /** The signature matches what the service computes from the capture. */
  readonly matches: boolean;
  /**
   * When it does not: the single change on the way that explains it (the
   * gateway's canonical string differs from the service's in this field), if
   * one was found.
   */
  readonly change?: { readonly field: string; readonly what: string };
  /** v2: the key id the request names is not the one of the given secret. */
  readonly otherKey?: { readonly requestKeyId: string; readonly secretKeyId: string };
  /** The fields side by side (the gateway's side equals the service's unless `change`). */
  readonly fields: readonly ExplainedField[];
  /** The canonical string the service computes (v2: with `\n` between fields). */
  readonly serverCanonical: string;
  /** Problems that make the request unverifiable before any HMAC (a missing header, a bad format). */
  readonly problems: readonly string[];
}

/** The whole explanation of one captured request. */
export interface Explanation {
  /** Seconds between the request's timestamp and now (positive: in the past); undefined without a timestamp. */
  readonly ageSeconds: number | undefined;
  readonly outsideWindow: boolean;
  readonly signatures: readonly SignatureExplanation[];
}

/** Options of {@link explainSignature}. */
export interface ExplainOptions {
  /** Unix seconds; default now. */
  readonly nowSeconds?: number;
  /** The window the service allows either way; default 30. */
  readonly maxSkewSeconds?: number;
}

/**
 * Explains why a captured request's gateway signature does, or does not,
 * verify with `secret`. Never includes the secret or a signature in what it
 * returns.
 */
export function explainSignature(request: CapturedRequest, secret: string, options: ExplainOptions = {}): Explanation {
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  const maxSkew = options.maxSkewSeconds ?? 30;
  const timestamp = headerValue(request.headers, gatewayHeader.timestamp);
  const ageSeconds = timestamp !== undefined && /^[0-9]+$/.test(timestamp) ? now - Number(timestamp) : undefined;
  const signatures: SignatureExplanation[] = [];
  if (headerValue(request.headers, gatewayHeader.signature) !== undefined) signatures.push(explainV1(request, secret));
  if (headerValue(request.headers, gatewayHeader.signatureV2) !== undefined) signatures.push(explainV2(request, secret));
  if (signatures.length === 0) {
    signatures.push({
      version: "v1",
      matches: false,
      fields: [],
      serverCanonical: "",
      problems: ["the request carries neither X-Gateway-Signature nor X-Gateway-Signature-V2: it did not come through the gateway"],
    });
  }
  return { ageSeconds, outsideWindow: ageSeconds === undefined || Math.abs(ageSeconds) > maxSkew, signatures };
}

/** A single-field change that commonly happens between the gateway and a verifier. */
interface Variant<T> {
  readonly field: string;
  readonly what: string;
  readonly parts: T;
}

function explainV1(request: CapturedRequest, secret: string): SignatureExplanation {
  const problems: string[] = [];
  const timestamp = headerValue(request.headers, gatewayHeader.timestamp);
  const clientId = headerValue(request.headers, gatewayHeader.clientId);
  const signature = headerValue(request.headers, gatewayHeader.signature)!;
  if (timestamp === undefined) problems.push("X-Gateway-Timestamp is missing");
  if (clientId === undefined) problems.push("X-Client-Id is missing");
  if (!/^[0-9a-f]{64}$/.test(signature)) problems.push("X-Gateway-Signature is not 64 lower-case hex characters");
  // As the service reads them: each value's UTF-8 octets as text (see textFromOctets).
  const userIdOctets = headerValue(request.headers, gatewayHeader.userId);
  // The target too, strictly: octets that are not UTF-8 have no text v1 could have signed.
  const fullpath = utf8TextOf(fullpathOf(request.target));
  if (fullpath === undefined) problems.push("the request-target's octets are not UTF-8: v1 signs its text, and the service refuses it");
  const server: SigningParts = {
    method: request.method,
    timestamp: timestamp ?? "",
    clientId: textFromOctets(clientId ?? ""),
    userId: userIdOctets === undefined ? undefined : textFromOctets(userIdOctets),
    fullpath: fullpath ?? textFromOctets(fullpathOf(request.target)),
    bodySha256: bodySha256(request.body),
  };
  const fieldsOf = (p: SigningParts): [string, string][] => [
    ["method", p.method.toUpperCase()],
    ["timestamp", p.timestamp],
    ["client id", p.clientId],
    ["user id", p.userId ?? ""],
    ["fullpath", p.fullpath],
    ["body sha256", p.bodySha256],
  ];
  const canonical = (p: SigningParts) => {
    try {
      return stringToSign(p);
    } catch (e) {
      return undefined;
    }
  };
  const serverCanonical = canonical(server) ?? fieldsOf(server).map(([, v]) => v).join("|");
  if (problems.length > 0 || canonical(server) === undefined) {
    if (canonical(server) === undefined && problems.length === 0) problems.push("a signed value cannot be signed unambiguously (see the fields)");
    return { version: "v1", matches: false, fields: side(fieldsOf(server), fieldsOf(server)), serverCanonical, problems };
  }
  const hmacMatches = (p: SigningParts) => {
    const c = canonical(p);
    return c !== undefined && equalHex(createHmac("sha256", secret).update(c, "utf8").digest("hex"), signature);
  };
  if (hmacMatches(server)) return { version: "v1", matches: true, fields: side(fieldsOf(server), fieldsOf(server)), serverCanonical, problems };
  const variants: Variant<SigningParts>[] = [
    ...targetVariants(request.target).map((v) => ({ field: "fullpath", what: v.what, parts: { ...server, fullpath: fullpathOf(v.target) } })),
    ...bodyVariants(request.body).map((v) => ({ field: "body sha256", what: v.what, parts: { ...server, bodySha256: bodySha256(v.body) } })),
    ...methodVariants(request.method).map((v) => ({ field: "method", what: v.what, parts: { ...server, method: v.method } })),
    ...idVariants(server.clientId).map((v) => ({ field: "client id", what: v.what, parts: { ...server, clientId: v.value } })),
    ...idVariants(server.userId ?? "").map((v) => ({ field: "user id", what: v.what, parts: { ...server, userId: v.value } })),
  ];
  const found = variants.find((v) => hmacMatches(v.parts));
  return {
    version: "v1",
    matches: false,
    ...(found !== undefined && { change: { field: found.field, what: found.what } }),
    fields: side(fieldsOf(server), fieldsOf(found?.parts ?? server)),
    serverCanonical,
    problems,
  };
}

function explainV2(request: CapturedRequest, secret: string): SignatureExplanation {
  const problems: string[] = [];
  const header = headerValue(request.headers, gatewayHeader.signatureV2)!;
  const parsed = /^([A-Za-z0-9._-]{1,64}):([0-9a-f]{64})$/.exec(header);
  if (parsed === null) problems.push("X-Gateway-Signature-V2 is not <key-id>:<64 lower-case hex>");
  const requestId = headerValue(request.headers, gatewayHeader.requestId);
  if (requestId === undefined) problems.push("X-Gateway-Request-Id is missing");
  const timestamp = headerValue(request.headers, gatewayHeader.timestamp);
  if (timestamp === undefined) problems.push("X-Gateway-Timestamp is missing");
  const identity: Partial<Record<IdentityHeaderName, string>> = {};
  for (const name of identityHeaderNames) {
    const value = headerValue(request.headers, name);
    if (value !== undefined) identity[name] = value;
  }
  const secretKeyId = gatewayKeyId(secret);
  const server: SigningPartsV2 = {
    keyId: parsed?.[1] ?? secretKeyId,
    method: request.method,
    requestTarget: request.target,
    timestamp: timestamp ?? "",
    requestId: requestId ?? "",
    bodySha256: bodySha256(request.body),
    contentType: headerValue(request.headers, "content-type"),
    contentEncoding: headerValue(request.headers, "content-encoding"),
    identity,
  };
  const show = (v: string | undefined) => (v === undefined ? "(absent)" : v);
  const fieldsOf = (p: SigningPartsV2): [string, string][] => [
    ["key id", p.keyId],
    ["method", p.method],
    ["request-target", p.requestTarget],
    ["timestamp", p.timestamp],
    ["request id", p.requestId],
    ["body sha256", p.bodySha256],
    ["content-type", show(p.contentType)],
    ["content-encoding", show(p.contentEncoding)],
    ...identityHeaderNames.map((n): [string, string] => [n, show(p.identity[n])]),
  ];
  const canonical = (p: SigningPartsV2) => {
    try {
      return canonicalRequestV2(p);
    } catch {
      return undefined;
    }
  };
  const serverCanonical = canonical(server) ?? [SIGNATURE_V2_LABEL, ...fieldsOf(server).map(([, v]) => v)].join("\n");
  // The service's column shows the key id of the secret it holds: next to the
  // one the request names, a different one says the secrets differ.
  const serviceFields = fieldsOf({ ...server, keyId: secretKeyId });
  const otherKey = parsed !== null && parsed[1] !== secretKeyId ? { requestKeyId: parsed[1]!, secretKeyId } : undefined;
  if (problems.length > 0 || canonical(server) === undefined) {
    if (canonical(server) === undefined && problems.length === 0) problems.push("a signed value cannot be signed unambiguously (see the fields)");
    return { version: "v2", matches: false, ...(otherKey && { otherKey }), fields: side(serviceFields, fieldsOf(server)), serverCanonical, problems };
  }
  const signature = parsed![2]!;
  const hmacMatches = (p: SigningPartsV2) => {
    const c = canonical(p);
    return c !== undefined && equalHex(createHmac("sha256", secret).update(c, "latin1").digest("hex"), signature);
  };
  if (hmacMatches(server)) {
    return { version: "v2", matches: true, ...(otherKey && { otherKey }), fields: side(serviceFields, fieldsOf(server)), serverCanonical, problems };
  }
  const withoutIdentity = (name: IdentityHeaderName) => {
    const copy = { ...identity };
    delete copy[name];
    return copy;
  };
  const variants: Variant<SigningPartsV2>[] = [
    ...targetVariants(request.target).map((v) => ({ field: "request-target", what: v.what, parts: { ...server, requestTarget: v.target } })),
    ...bodyVariants(request.body).map((v) => ({ field: "body sha256", what: v.what, parts: { ...server, bodySha256: bodySha256(v.body) } })),
    ...methodVariants(request.method).map((v) => ({ field: "method", what: v.what, parts: { ...server, method: v.method } })),
    ...headerVariants(server.contentType).map((v) => ({ field: "content-type", what: v.what, parts: { ...server, contentType: v.value } })),
    ...headerVariants(server.contentEncoding).map((v) => ({ field: "content-encoding", what: v.what, parts: { ...server, contentEncoding: v.value } })),
    ...identityHeaderNames
      .filter((n) => identity[n] !== undefined)
      .map((n) => ({ field: n, what: `the gateway did not send ${n}: something on the way added it`, parts: { ...server, identity: withoutIdentity(n) } })),
  ];
  const found = otherKey === undefined ? variants.find((v) => hmacMatches(v.parts)) : undefined;
  return {
    version: "v2",
    matches: false,
    ...(otherKey && { otherKey }),
    ...(found !== undefined && { change: { field: found.field, what: found.what } }),
    fields: side(serviceFields, fieldsOf(found?.parts ?? server)),
    serverCanonical,
    problems,
  };
}

function side(server: [string, string][], gateway: [string, string][]): ExplainedField[] {
  return server.map(([name, value], i) => ({ name, server: value, gateway: gateway[i]![1] }));
}

function equalHex(a: string, b: string): boolean {
  return a.length === b.length && timingSafeEqual(Buffer.from(a, "latin1"), Buffer.from(b, "latin1"));
}

/** Request-targets the gateway may have signed for the one the service received. */
function targetVariants(target: string): { what: string; target: string }[] {
  const q = target.indexOf("?");
  const path = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? "" : target.slice(q);
  const out: { what: string; target: string }[] = [];
  const add = (what: string, t: string) => {
    if (t !== target && t.startsWith("/") && !out.some((o) => o.target === t)) out.push({ what, target: t });
  };
  const segments = path.split("/");
  for (let k = 1; k <= Math.min(3, segments.length - 2); k++) {
    const stripped = `/${segments.slice(k + 1).join("/")}`;
    add(`a proxy between the gateway and the service added the prefix ${segments.slice(0, k + 1).join("/")}`, stripped + query);
  }
  try {
    const decoded = decodeURIComponent(path);
    add("the path was percent-encoded on the way (the gateway signed it decoded)", decoded + query);
    add("the path was re-encoded on the way", encodeURI(decoded) + query);
  } catch {
    // Not valid percent-encoding: no decoded variant.
  }
  add("percent-escapes changed case on the way", path.replace(/%[0-9a-fA-F]{2}/g, (m) => (m === m.toUpperCase() ? m.toLowerCase() : m.toUpperCase())) + query);
  add("empty path segments were added on the way", path.replace(/\/{2,}/g, "/") + query);
  add(path.endsWith("/") ? "a trailing slash was added on the way" : "a trailing slash was removed on the way", (path.endsWith("/") ? path.slice(0, -1) : `${path}/`) + query);
  if (query !== "") add("the query was added on the way", path);
  if (query === "") add("an empty query (\"?\") was dropped on the way", `${path}?`);
  return out;
}

/** Bodies the gateway may have signed for the one the service hashed. */
function bodyVariants(body: Uint8Array): { what: string; body: Uint8Array }[] {
  const out: { what: string; body: Uint8Array }[] = [];
  if (body.length > 0) out.push({ what: "the gateway sent no body, or the body was replaced on the way", body: new Uint8Array() });
  const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8");
  try {
    const json: unknown = JSON.parse(text);
    // The gateway signed what its caller sent; a body parser on the service
    // re-wrote it as compact JSON, or the caller's spelling differs from it.
    const spellings = new Set([JSON.stringify(json), pythonJson(json), JSON.stringify(json, null, 2), JSON.stringify(json, null, 4)]);
    spellings.delete(text);
    for (const spelling of spellings) {
      out.push({ what: "the JSON body was re-serialised (a body parser re-wrote it before the verifier hashed it)", body: Buffer.from(spelling) });
    }
  } catch {
    // Not JSON.
  }
  if (text.endsWith("\n")) out.push({ what: "a trailing newline was added to the body on the way", body: Buffer.from(text.replace(/\r?\n$/, "")) });
  else out.push({ what: "a trailing newline was removed from the body on the way", body: Buffer.from(`${text}\n`) });
  if (text.includes("\r\n")) out.push({ what: "line endings were changed (LF → CRLF) on the way", body: Buffer.from(text.replace(/\r\n/g, "\n")) });
  return out;
}

/**
 * `value` as Python's `json.dumps` writes it by default (what curl scripts
 * and Python clients send): `", "` and `": "` between items, non-ASCII as
 * `\uXXXX`.
 */
function pythonJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(pythonJson).join(", ")}]`;
  if (value !== null && typeof value === "object") {
    return `{${Object.entries(value).map(([k, v]) => `${asciiJson(k)}: ${pythonJson(v)}`).join(", ")}}`;
  }
  return typeof value === "string" ? asciiJson(value) : JSON.stringify(value);
}

function asciiJson(text: string): string {
  return JSON.stringify(text).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

function methodVariants(method: string): { what: string; method: string }[] {
  if (method.toUpperCase() === "GET") return [{ what: "a HEAD request arrived as GET", method: "HEAD" }];
  if (method.toUpperCase() === "HEAD") return [{ what: "a GET request arrived as HEAD", method: "GET" }];
  return [];
}

function idVariants(value: string): { what: string; value: string }[] {
  return value.trim() !== value ? [{ what: "surrounding spaces were added on the way", value: value.trim() }] : [];
}

function headerVariants(value: string | undefined): { what: string; value: string | undefined }[] {
  if (value === undefined) return [];
  const out: { what: string; value: string | undefined }[] = [{ what: "the header was added on the way (the gateway did not send it)", value: undefined }];
  const bare = value.split(";")[0]!.trim();
  if (bare !== value) out.push({ what: `parameters were added on the way (the gateway sent "${bare}")`, value: bare });
  if (value.toLowerCase() !== value) out.push({ what: "the value's case changed on the way", value: value.toLowerCase() });
  return out;
}

/**
 * `text` with every control character (C0, DEL, C1) written as `\xNN`: a
 * capture may come from a hostile caller, and its bytes must not drive the
 * terminal (clear the screen, draw a fake "MATCHES" line).
 */
function printable(text: string): string {
  return text.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/** A rejection reason as the service names it (the type keeps the names true). */
function refusedAs(reason: GatewayRejectionReason): string {
  return reason;
}

/**
 * The explanation as text for a terminal: per signature, the verdict, the
 * field that changed on the way (if found), and both canonical strings' fields
 * side by side. Contains no secret and no signature.
 */
export function formatExplanation(explanation: Explanation, maxSkewSeconds = 30): string {
  const lines: string[] = [];
  if (explanation.ageSeconds === undefined) {
    lines.push(`timestamp: missing or not unix seconds — the service refuses it (${refusedAs("missing_gateway_headers")} or ${refusedAs("malformed_gateway_headers")})`);
  } else if (explanation.outsideWindow) {
    lines.push(`timestamp: ${explanation.ageSeconds} s ${explanation.ageSeconds >= 0 ? "old" : "in the future"} — outside the ±${maxSkewSeconds} s window: the service refuses it (${refusedAs("timestamp_out_of_window")}), whatever the signature`);
  } else lines.push(`timestamp: ${explanation.ageSeconds} s old, inside the ±${maxSkewSeconds} s window`);
  for (const s of explanation.signatures) {
    lines.push("", `signature ${s.version}: ${s.matches ? "MATCHES — the gateway and the service agree on every field" : "DOES NOT MATCH"}`);
    for (const p of s.problems) lines.push(`  problem: ${printable(p)}`);
    if (s.otherKey) {
      lines.push(`  the request names key ${s.otherKey.requestKeyId}; the secret given is key ${s.otherKey.secretKeyId}: the gateway signed with a different secret`);
    }
    if (!s.matches && s.problems.length === 0 && s.otherKey === undefined) {
      lines.push(
        s.change
          ? `  first field that differs: ${s.change.field} — ${printable(s.change.what)}`
          : "  no single change on the way explains it: the secret differs, or several fields changed",
      );
    }
    if (s.fields.length > 0 && !s.matches && s.change === undefined) {
      // What the gateway signed is unknown: show the service's side only.
      const width = Math.max(...s.fields.map((f) => f.name.length));
      lines.push(`  ${"field".padEnd(width)}  service computed`);
      for (const f of s.fields) lines.push(`  ${f.name.padEnd(width)}  ${printable(f.server)}`);
    } else if (s.fields.length > 0) {
      const width = Math.max(...s.fields.map((f) => f.name.length));
      const col = Math.max(14, ...s.fields.map((f) => printable(f.gateway).length));
      lines.push(`  ${"field".padEnd(width)}  ${"gateway signed".padEnd(col)}  service computed`);
      for (const f of s.fields) {
        const mark = f.gateway === f.server ? " " : "≠";
        lines.push(`${mark} ${f.name.padEnd(width)}  ${printable(f.gateway).padEnd(col)}  ${printable(f.server)}`);
      }
    }
  }
  return lines.join("\n");
}
