/**
 * connect-gateway/errors: every error class the library and the gateway throw
 * that is not a Connect error — the configuration errors, one family under
 * ConfigurationError, and the few runtime ones — from one module
 * (src/core/errors.ts, which lists every `code`). `instanceof` holds
 * whichever entry threw it, and `code` is stable for a program to switch on.
 *
 * @module connect-gateway/errors
 */
export * from "../core/errors.js";
