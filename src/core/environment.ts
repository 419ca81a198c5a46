/**
 * Environment variables, as `process.env` holds them: what the client
 * (`GATEWAY_URL`, `GATEWAY_CLIENT_ID`, …) and the gateway CLI
 * (`GATEWAY_HMAC_SECRET`, `JWT_SECRET`, …) read their defaults from. Pass
 * your own object to read them from elsewhere (a test, a secret store).
 */
export type GatewayEnv = Readonly<Record<string, string | undefined>>;
