// Used by scripts/consumer-test.sh: a loopback OAuth2 server from the packed
// package's connect-gateway/testing, with one client from the environment.
// Prints one JSON line ({ issuer, tokenUrl, jwksUrl, audience }), then serves
// until SIGTERM / SIGINT.
import { startOAuth2Server } from "connect-gateway/testing";

const clientId = process.env.GATEWAY_CLIENT_ID;
const clientSecret = process.env.GATEWAY_CLIENT_SECRET;
if (!clientId || !clientSecret) throw new Error("GATEWAY_CLIENT_ID and GATEWAY_CLIENT_SECRET are required");

const oauth = await startOAuth2Server({ clients: [{ clientId, clientSecret, scopes: ["read"] }], port: 0 });
console.log(JSON.stringify({ issuer: oauth.issuer, tokenUrl: oauth.tokenUrl, jwksUrl: oauth.jwksUrl, audience: oauth.audience }));

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => void oauth.close().finally(() => process.exit(0)));
}
