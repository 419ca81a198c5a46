// GatewaySigningError lives with every other error of the library
// (core/errors), so that connect-gateway/errors and connect-gateway/signing
// export the same class.
export { GatewaySigningError } from "../core/errors.js";
