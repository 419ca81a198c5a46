import { gatewayKeyring, type GatewayKeyring, type GatewayRejectionReason } from "../signing/index.js";
import {
  InvalidOnMissingUserError,
  InvalidOptionError,
  InvalidResolveUserError,
  MissingHmacSecretError,
} from "../core/errors.js";
import { assertBoolean, assertFunction, assertNumber, assertOneOf, assertPositiveInteger } from "../core/assertions.js";
import type { GatewayIdentity, MissingUserDetails } from "./gateway-identity.js";
import { createMemoryReplayStore, type ReplayStore } from "./replay-store.js";

// Derived from the one identity type, next to GatewayIdentity.
export type { MissingUserDetails };

/** Where and why a request was refused, for {@link GatewayAuthOptions.onRejection}. */
export interface GatewayRejectionEvent {
  /** Why the request was refused: a stable code, safe to log (never a secret or signature). */
  readonly reason: GatewayRejectionReason;
  /** The request's HTTP method. */
  readonly method: string;
  /** The raw request-target, as the gateway would have signed it. */
  readonly fullpath: string;
  /**
   * For `invalid_signature`, while `exposeRejectionReason` is on (by default
   * outside production): the canonical request this service computed — what
   * it expected the gateway to have signed (v1: one `|`-joined line; v2: the
   * length-prefixed fields) — to log at debug level and compare with the
   * gateway's side (`connect-gateway explain` shows both). It holds the
   * caller's identity headers, never the secret or the signature; v2's
   * request id is shown as `<request id>`.
   */
  readonly canonicalRequest?: string;
  /**
   * For `invalid_signature` on a v2 request, under the same condition: set
   * when the request names a key id that none of this service's secrets
   * has — the two sides hold different secrets, whatever else differs. It
   * names the key ids (hashes of the secrets, sent on the wire anyway),
   * never a secret.
   */
  readonly keyMismatch?: string;
}

/** Options of `createGatewayAuth`. */
export interface GatewayAuthOptions<User = unknown> {
  /**
   * The secret the gateway signs with, or several during a rotation (any of
   * them verifies). Default: `GATEWAY_HMAC_SECRET` (one value, taken as-is).
   */
  readonly hmacSecret?: string | readonly string[];
  /** The replay window in seconds, either direction. Default 30. */
  readonly maxSkewSeconds?: number;
  /**
   * Put the rejection reason in the response (`invalid_signature`, …) instead
   * of `Forbidden`. Default: `process.env.NODE_ENV !== "production"`.
   */
  readonly exposeRejectionReason?: boolean;
  /**
   * Trust the identity headers without any signature: for tests that send
   * `gatewayHeadersFor(user)`; `hmacSecret` is not needed then. Never enable
   * it in production.
   */
  readonly skipVerification?: boolean;
  /** Looks up the local user for a verified identity; `undefined`/`null` when there is none. */
  readonly resolveUser?: (identity: GatewayIdentity) => User | null | undefined | Promise<User | null | undefined>;
  /** Just-in-time provisioning when `resolveUser` finds nobody; its exceptions propagate. */
  readonly onMissingUser?: (details: MissingUserDetails) => User | null | undefined | Promise<User | null | undefined>;
  /**
   * The largest body accepted, in bytes (default 8 MiB). The body is held
   * until its signature verifies, so this bounds the memory a caller can pin.
   */
  readonly maxBodyBytes?: number;
  /**
   * How long the body of a request whose headers passed may take to arrive,
   * in milliseconds (default 30,000). The signature covers the body, so it is
   * read before anything can be verified, and headers that pass the first
   * checks take no secret: without this bound, a caller on the
   * gateway→service hop could hold requests open by trickling their bodies.
   * A gateway has the whole body before it signs, so a sound hop delivers it
   * at once. Past it: `body_timeout` (HTTP 408 / `DeadlineExceeded`), checked
   * every quarter second; a body Fastify itself parses has its request
   * destroyed instead (Fastify owns that read).
   */
  readonly bodyTimeoutMs?: number;
  /** Called on every rejection, e.g. to log it. Its exceptions are ignored. */
  readonly onRejection?: (event: GatewayRejectionEvent) => void;
  /**
   * Refuse requests signed with v1 only (`signature_v2_required`). Set it once
   * every gateway in front of the service sends signature v2 (this project's
   * does): v1 cannot prevent replays and covers no identity field beyond the
   * two ids — and while v1 is accepted, a request signed with both can be
   * replayed with its v2 headers stripped, as a v1 one. Default false, so
   * that a service behind a v1-only (Ruby) gateway works.
   */
  readonly requireSignatureV2?: boolean;
  /**
   * Trust the identity headers that a v1 signature does not cover (e-mail,
   * names, scopes, org, role) on requests signed with v1 only. Default false:
   * they are left out of the identity (see `GatewayIdentity.untrustedFields`)
   * and `requireScopes` refuses, since anyone on the gateway→service hop could
   * have set them. Only for a private network behind a v1-only gateway.
   */
  readonly trustUnsignedIdentity?: boolean;
  /**
   * Where accepted v2 request ids are remembered, to refuse replays. Default:
   * in this process (`createMemoryReplayStore()`); with several instances of
   * the service, share one with `createRedisReplayStore(client)`.
   */
  readonly replayStore?: ReplayStore;
  /** How long a replay-store call may take before it counts as failed, in ms. Default 100. */
  readonly replayStoreTimeoutMs?: number;
  /**
   * What happens when the replay store fails or times out: `"reject"`
   * (default: the request is refused with `replay_check_unavailable`, HTTP
   * 503 / `Unavailable`, and may be retried) or `"accept"` (the request goes
   * on without replay protection, and `onRejection` is not called).
   */
  readonly onReplayStoreFailure?: "reject" | "accept";
  /** The clock, in milliseconds since the epoch (default `Date.now`): for tests. */
  readonly now?: () => number;
}

/** {@link GatewayAuthOptions} checked, with every default applied. */
export interface GatewayAuthConfig<User = unknown> {
  readonly secrets: readonly string[];
  /** The same secrets by v2 key id. */
  readonly keyring: GatewayKeyring;
  readonly requireSignatureV2: boolean;
  readonly trustUnsignedIdentity: boolean;
  readonly replayStore: ReplayStore;
  readonly replayStoreTimeoutMs: number;
  readonly acceptOnReplayStoreFailure: boolean;
  readonly maxSkewSeconds: number;
  readonly exposeRejectionReason: boolean;
  readonly skipVerification: boolean;
  readonly resolveUser: GatewayAuthOptions<User>["resolveUser"];
  readonly onMissingUser: GatewayAuthOptions<User>["onMissingUser"];
  readonly maxBodyBytes: number;
  readonly bodyTimeoutMs: number;
  /**
   * How long past its window a verified request id is still held by the
   * replay store: a copy of the request whose head arrives in the last
   * second of the window passes the window check, and may take
   * `bodyTimeoutMs` more to send its body before its id is claimed. Held
   * only for the window, the id would be forgotten by then, and the copy
   * admitted: `bodyTimeoutMs` in seconds, plus 2 for the deadline sweep
   * and whole-second timestamps.
   */
  readonly replayHoldSeconds: number;
  readonly onRejection: GatewayAuthOptions<User>["onRejection"];
  readonly nowSeconds: () => number;
}

const DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024;

/**
 * Checks the options and applies the defaults. Throws a
 * `ConfigurationError` naming the option: configuration problems
 * surface when the service starts, never on a request.
 */
export function resolveGatewayAuthConfig<User>(
  options: GatewayAuthOptions<User>,
): GatewayAuthConfig<User> {
  const { resolveUser, onMissingUser, onRejection, now } = options;
  if (resolveUser !== undefined && typeof resolveUser !== "function") {
    throw new InvalidResolveUserError();
  }
  if (onMissingUser !== undefined && typeof onMissingUser !== "function") {
    throw new InvalidOnMissingUserError();
  }
  if (onRejection !== undefined) assertFunction("onRejection", onRejection, { expected: "a function, or undefined" });
  if (now !== undefined) assertFunction("now", now, { expected: "a function, or undefined" });
  const clock = now ?? Date.now;
  const skipVerification = optionalBoolean("skipVerification", options.skipVerification, false);
  // Nothing is verified with skipVerification, so no secret is needed then;
  // one that is given must still be well-formed.
  const secrets =
    skipVerification && options.hmacSecret === undefined && !process.env.GATEWAY_HMAC_SECRET ? [] : secretsOf(options.hmacSecret);
  const { replayStore, onReplayStoreFailure } = options;
  if (replayStore !== undefined && typeof replayStore?.claim !== "function") {
    throw new InvalidOptionError("replayStore", "a ReplayStore (createMemoryReplayStore(), createRedisReplayStore(client))");
  }
  if (onReplayStoreFailure !== undefined) {
    assertOneOf("onReplayStoreFailure", onReplayStoreFailure, ["reject", "accept"], { expected: '"reject" or "accept"' });
  }
  const bodyTimeoutMs = positiveInteger("bodyTimeoutMs", options.bodyTimeoutMs, 30_000, "milliseconds");
  return {
    secrets,
    keyring: gatewayKeyring(secrets),
    requireSignatureV2: optionalBoolean("requireSignatureV2", options.requireSignatureV2, false),
    trustUnsignedIdentity: optionalBoolean("trustUnsignedIdentity", options.trustUnsignedIdentity, false),
    replayStore: replayStore ?? createMemoryReplayStore(),
    replayStoreTimeoutMs: positiveInteger("replayStoreTimeoutMs", options.replayStoreTimeoutMs, 100, "milliseconds"),
    acceptOnReplayStoreFailure: onReplayStoreFailure === "accept",
    maxSkewSeconds: positive("maxSkewSeconds", options.maxSkewSeconds, 30),
    exposeRejectionReason: optionalBoolean(
      "exposeRejectionReason",
      options.exposeRejectionReason,
      process.env.NODE_ENV !== "production",
    ),
    skipVerification,
    resolveUser,
    onMissingUser,
    maxBodyBytes: positiveInteger("maxBodyBytes", options.maxBodyBytes, DEFAULT_MAX_BODY_BYTES, "bytes"),
    bodyTimeoutMs,
    replayHoldSeconds: Math.ceil(bodyTimeoutMs / 1000) + 2,
    onRejection,
    nowSeconds: () => Math.floor(clock() / 1000),
  };
}

function secretsOf(option: string | readonly string[] | undefined): string[] {
  const value = option ?? process.env.GATEWAY_HMAC_SECRET;
  const list = typeof value === "string" ? [value] : Array.isArray(value) ? [...value] : [];
  // Never echo the value: it may be the secret, or part of it.
  if (list.length === 0 || !list.every((s) => typeof s === "string" && s !== "")) {
    throw new MissingHmacSecretError();
  }
  return list;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  return assertNumber(name, value, { min: 0, minExclusive: true, expected: "a positive finite number of seconds" });
}

function positiveInteger(name: string, value: number | undefined, fallback: number, unit: string): number {
  return value === undefined ? fallback : assertPositiveInteger(name, value, { expected: `a positive integer number of ${unit}` });
}

function optionalBoolean(name: string, value: boolean | undefined, fallback: boolean): boolean {
  return value === undefined ? fallback : assertBoolean(name, value);
}
