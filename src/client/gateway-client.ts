import { validateHeaderName, validateHeaderValue, type IncomingHttpHeaders } from "node:http";
import { Code, ConnectError } from "@connectrpc/connect";
import { checkServiceName } from "./backend-service.js";
import { currentCallScope } from "./call-scope.js";
import { sharedDeadline } from "./call-deadline.js";
import { BEARER, callWithToken, redactToken } from "./call-with-token.js";
import { ConfigurationError } from "../core/errors.js";
import { connectionErrorFrom } from "./connection-error.js";
import { GatewayResponseError } from "./gateway-response-error.js";
import { protocolMismatchFrom } from "./protocol-mismatch.js";
import {
  checkTimeoutMs,
  resolveGatewayOptions,
  type GatewayOptions,
  type ResolvedGatewayOptions,
} from "./gateway-options.js";
import { ResponseTooLargeError, sendHttpRequest, type HttpResponse } from "./http-request.js";
import { resolveBackendService } from "./resolve-backend-service.js";
import { createGatewayTokenManager, type TokenManager } from "./token-manager.js";
import { userTokenOption } from "./user-token.js";

/** A query-string value; arrays repeat the key (`?id=1&id=2`). */
export type QueryValue = string | number | boolean;

/** Options of one REST call. */
export interface GatewayRequestOptions {
  /** Backend service: the path goes to `/backend/<service><path>`. Wins over `withService`. */
  readonly service?: string;
  /** End-user token to send instead of the service token. Wins over `withUserToken`. */
  readonly userToken?: string;
  /** Query parameters, form-encoded; `undefined` values are left out. */
  readonly query?: Readonly<Record<string, QueryValue | readonly QueryValue[] | undefined>>;
  /** Request body, sent as JSON. */
  readonly body?: unknown;
  /** Extra request headers. `authorization` is always the client's own. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Deadline of this call; default the client's `timeoutMs`. */
  readonly timeoutMs?: number;
  /** Cancels the call. */
  readonly signal?: AbortSignal;
}

/** A REST JSON client for non-Connect (e.g. Rails) backends behind the gateway. */
export interface GatewayClient {
  /** `GET <path>`; resolves to the parsed JSON answer (object or array; `undefined` when empty). */
  get<T = unknown>(path: string, options?: GatewayRequestOptions): Promise<T>;
  /** `POST <path>` with `options.body` as JSON. */
  post<T = unknown>(path: string, options?: GatewayRequestOptions): Promise<T>;
  /** `PUT <path>` with `options.body` as JSON. */
  put<T = unknown>(path: string, options?: GatewayRequestOptions): Promise<T>;
  /** `PATCH <path>` with `options.body` as JSON. */
  patch<T = unknown>(path: string, options?: GatewayRequestOptions): Promise<T>;
  /** `DELETE <path>`. */
  delete<T = unknown>(path: string, options?: GatewayRequestOptions): Promise<T>;
}

/**
 * The REST counterpart of `createGatewayTransport`, for backends that do
 * not speak Connect: same options, token rules, routing (per-call
 * `service` > `withService` > `defaultService` > path unchanged), 401 retry
 * and errors. An HTTP error status rejects with a {@link GatewayResponseError}.
 *
 * @example
 * ```ts
 * import { createGatewayClient, GatewayResponseError } from "connect-gateway/client";
 *
 * const api = createGatewayClient({ defaultService: "base-valeur" }); // credentials from the environment
 *
 * // GET <gateway>/backend/base-valeur/api/v1/valuations?status=open
 * const open = await api.get<{ id: number }[]>("/api/v1/valuations", { query: { status: "open" } });
 * try {
 *   await api.post("/api/v1/valuations", { body: { propertyId: 42 }, userToken: accessToken });
 * } catch (err) {
 *   if (err instanceof GatewayResponseError) console.error(err.status, err.body);
 *   else throw err;
 * }
 * ```
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc6749#section-4.4 | RFC 6749 §4.4} (the client_credentials grant)
 * @see {@link https://www.rfc-editor.org/rfc/rfc6750 | RFC 6750} (the bearer token in `Authorization`)
 */
export function createGatewayClient(options: GatewayOptions = {}): GatewayClient {
  const resolved = resolveGatewayOptions(options);
  const tokens = createGatewayTokenManager(resolved);
  const send =
    (method: string) =>
    <T,>(path: string, call?: GatewayRequestOptions) =>
      request<T>(resolved, tokens, method, path, call ?? {});
  return { get: send("GET"), post: send("POST"), put: send("PUT"), patch: send("PATCH"), delete: send("DELETE") };
}

async function request<T>(
  resolved: ResolvedGatewayOptions,
  tokens: TokenManager,
  method: string,
  path: string,
  call: GatewayRequestOptions,
): Promise<T> {
  // Everything is checked before any I/O.
  const target = targetPath(resolved, path, call);
  const userToken = userTokenOption(call) ?? currentCallScope()?.userToken;
  const body = jsonBody(call.body);
  const json: Record<string, string> = body === undefined ? {} : { "content-type": "application/json" };
  const headers = { accept: "application/json", ...checkHeaders(call.headers), ...json };
  const timeoutMs = call.timeoutMs === undefined ? resolved.timeoutMs : checkTimeoutMs(call.timeoutMs);
  const describe = `${method} ${target.split("?")[0]}`;
  // A retry after a 401 gets what the first attempt left of the deadline.
  const send = sharedDeadline(timeoutMs, (left, authorization: string) =>
    sendHttpRequest({
      method,
      origin: resolved.gatewayOrigin,
      path: target,
      headers: { ...headers, authorization },
      ...(body !== undefined && { body }),
      agent: resolved.agent,
      timeoutMs: left as number,
      signal: call.signal,
      maxResponseBytes: resolved.readMaxBytes,
    }),
  );
  try {
    return await callWithToken(tokens, {
      userToken,
      replayable: true,
      signal: call.signal,
      timeoutMs,
      defaultTimeout: call.timeoutMs === undefined,
      attempt: async (authorization) =>
        parseAnswer<T>(
          describe,
          await send(authorization).catch((reason: unknown) => {
            throw reason instanceof ResponseTooLargeError ? tooLarge(describe, reason) : reason;
          }),
          authorization.slice(BEARER.length),
        ),
    });
  } catch (reason) {
    // A caller's abort arrives as its signal's reason: ConnectError.from presents it the Connect way (Canceled).
    const target = `the gateway ${resolved.gatewayUrl}`;
    throw connectionErrorFrom(reason, target) ?? protocolMismatchFrom(reason, target) ?? ConnectError.from(reason);
  }
}

function targetPath(resolved: ResolvedGatewayOptions, path: string, call: GatewayRequestOptions): string {
  if (typeof path !== "string" || !/^\/(?!\/)[\x21-\x7e]*$/.test(path) || path.includes("#")) {
    throw new ConfigurationError(
      "path",
      'must start with a single "/" and hold visible ASCII characters only (percent-encode the rest), no "#", e.g. "/api/v1/valuations".',
    );
  }
  // A `.` or `..` segment (or a backslash, which some servers read as `/`)
  // would leave /backend/<service>/ once something on the way resolves it.
  const pathPart = path.split("?")[0] as string;
  if (pathPart.includes("\\") || pathPart.split("/").some((segment) => DOT_SEGMENT.test(segment))) {
    throw new ConfigurationError("path", 'must not contain "." or ".." segments (in any spelling, %2e included) or "\\".');
  }
  const service = resolveBackendService(
    call.service === undefined ? undefined : checkServiceName(call.service),
    undefined,
    resolved.defaultService,
  );
  const prefix = `${resolved.gatewayUrl.slice(resolved.gatewayOrigin.origin.length)}${service === undefined ? "" : `/backend/${service}`}`;
  const query = queryString(call.query);
  return `${prefix}${path}${query === "" ? "" : `${path.includes("?") ? "&" : "?"}${query}`}`;
}

function queryString(query: GatewayRequestOptions["query"]): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    for (const item of Array.isArray(value) ? value : value === undefined ? [] : [value]) params.append(key, String(item));
  }
  return params.toString();
}

/**
 * The answer's JSON, or its GatewayResponseError — whose body and message
 * never hold the call's `token`: a copy an error answer quotes (a backend
 * echoing the request it refused) is `[redacted]`.
 */
function parseAnswer<T>(describe: string, response: HttpResponse, token: string): T {
  const ok = response.status >= 200 && response.status <= 299;
  const received = response.body.toString("utf8");
  const text = ok ? received : redactToken(received, token);
  let json: unknown;
  let isJson = text.trim() !== "";
  if (isJson) {
    try {
      json = JSON.parse(text);
    } catch {
      isJson = false;
    }
  }
  if (ok && (isJson || text.trim() === "")) return json as T;
  const summary = ok ? "a body that is not JSON" : isJson ? JSON.stringify(json).slice(0, 200) : "";
  throw new GatewayResponseError(
    `${describe} answered HTTP ${response.status}${summary === "" ? "" : `: ${summary}`}`,
    response.status,
    isJson ? json : text,
    toHeaders(response.headers),
  );
}

// Same code as Connect's own readMaxBytes failure (ResourceExhausted), whatever the status.
function tooLarge(describe: string, error: ResponseTooLargeError): GatewayResponseError {
  return new GatewayResponseError(
    `${describe} answered HTTP ${error.status} with a body larger than readMaxBytes (${error.limit} bytes); ` +
      "the rest was not read — raise the client's readMaxBytes option if such answers are expected",
    error.status,
    undefined,
    toHeaders(error.headers),
    { code: Code.ResourceExhausted, cause: error },
  );
}

function toHeaders(incoming: IncomingHttpHeaders): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(incoming)) {
    for (const item of Array.isArray(value) ? value : value === undefined ? [] : [value]) headers.append(name, item);
  }
  return headers;
}

function jsonBody(body: unknown): string | undefined {
  if (body === undefined) return undefined;
  let json: string | undefined;
  try {
    json = JSON.stringify(body);
  } catch (error) {
    throw new ConfigurationError("body", `must be serialisable as JSON (${(error as Error).message}).`);
  }
  if (json === undefined) throw new ConfigurationError("body", "must be serialisable as JSON (not a function or a symbol).");
  return json;
}

// Names are shown, values never: a header may carry a credential.
function checkHeaders(headers: unknown): Readonly<Record<string, string>> | undefined {
  if (headers === undefined) return undefined;
  if (typeof headers !== "object" || headers === null) {
    throw new ConfigurationError("headers", "must be an object of header names to string values.");
  }
  for (const [name, value] of Object.entries(headers)) {
    if (FRAMING_HEADERS.has(name.toLowerCase())) {
      throw new ConfigurationError(
        "headers",
        `must not set ${JSON.stringify(name)}: the client frames the request itself (a wrong length or encoding would desynchronise a pooled connection).`,
      );
    }
    if (typeof value !== "string" || !isValidHeader(name, value)) {
      throw new ConfigurationError(
        "headers",
        `has an invalid header ${JSON.stringify(name).slice(0, 80)}: a token name and a string value ` +
          "without CR, LF or NUL are required.",
      );
    }
  }
  return headers as Readonly<Record<string, string>>;
}

/** A `.` or `..` path segment, in any spelling of the dot (`%2e`, `%2E`). */
const DOT_SEGMENT = /^(?:\.|%2e){1,2}$/i;

/** Headers that frame or route the request: the client's own to set, never a caller's. */
const FRAMING_HEADERS = new Set([
  "content-length",
  "transfer-encoding",
  "host",
  "connection",
  "keep-alive",
  "proxy-connection",
  "upgrade",
  "expect",
  "te",
  "trailer",
]);

function isValidHeader(name: string, value: string): boolean {
  try {
    validateHeaderName(name);
    validateHeaderValue(name, value);
    return true;
  } catch {
    return false;
  }
}
