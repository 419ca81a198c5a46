// connect-gateway/protocol: what other libraries built on connect-gateway
// need — the gateway package first — and end users do not: OAuth2 client
// authentication and, as they move into the shared core, the option
// assertions. Applications use the role entries (client, server, signing,
// testing) and connect-gateway/errors.
export { basicAuthorization } from "../core/client-secret-basic.js";
