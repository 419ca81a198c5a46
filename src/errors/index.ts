// connect-gateway/errors: every error class the library and the gateway throw
// for a bad option or configuration, in one family. `instanceof` holds
// whichever entry threw it, and `code` is stable for a program to switch on.
export * from "../core/errors.js";
