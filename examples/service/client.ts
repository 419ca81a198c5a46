// Calls GreeterService through the gateway. The transport fetches an OAuth2
// client_credentials token and routes the call to /backend/greeter/… (the
// service's proto option).
//
//   GATEWAY_URL=… APPCENTER_URL=… GATEWAY_CLIENT_ID=… GATEWAY_CLIENT_SECRET=… npx tsx client.ts Ada
import { createClient } from "@connectrpc/connect";
import { createGatewayTransport } from "connect-gateway/client";
import { GreeterService } from "./gen/greeter/v1/greeter_pb.js";

try {
  const transport = createGatewayTransport({
    // GATEWAY_URL, APPCENTER_URL, GATEWAY_CLIENT_ID and GATEWAY_CLIENT_SECRET come from the environment.
    tokenPath: process.env.GATEWAY_TOKEN_PATH ?? "/oauth/token",
    scope: ["read"], // the scope the greeter backend requires (routes.yaml)
  });
  const greeter = createClient(GreeterService, transport);
  const answer = await greeter.greet({ name: process.argv[2] ?? "world" });
  console.log(`${answer.greeting} (verified caller: client ${answer.clientId}, user ${answer.userId || "-"}, scopes ${answer.scopes.join(" ") || "-"})`);
} catch (error) {
  // The library's errors say what went wrong and what to do (never a secret or token): print that, not a stack.
  console.error(error instanceof Error ? error.message : String(error));
  process.exitCode = 1;
}
