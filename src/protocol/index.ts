/**
 * connect-gateway/protocol: what other libraries built on connect-gateway
 * need — the gateway package first — and end users do not: OAuth2 client
 * authentication, the option assertions every configuration is checked with,
 * the environment type, whether a host name is this machine, and whether OpenTelemetry is in use.
 * Applications use the role entries (client,
 * server, signing, testing) and connect-gateway/errors.
 *
 * @module connect-gateway/protocol
 */
export { basicAuthorization } from "../core/client-secret-basic.js";
export { isLoopbackHostname } from "../core/loopback.js";
export {
  assertBoolean,
  assertDurationMs,
  assertFunction,
  assertHttpUrl,
  assertNonEmptyString,
  assertNumber,
  assertOneOf,
  assertPositiveInteger,
  assertScopeToken,
  httpUrlProblem,
  isScopeToken,
  MAX_TIMER_MS,
  SCOPE_TOKEN,
  type AssertionOptions,
  type DurationRange,
  type HttpUrlProblem,
  type HttpUrlRules,
  type IntegerRange,
  type NumberRange,
  type OptionErrorFactory,
  type StringRules,
} from "../core/assertions.js";
export type { GatewayEnv } from "../core/environment.js";
export { openTelemetryRegistered } from "../core/open-telemetry.js";
