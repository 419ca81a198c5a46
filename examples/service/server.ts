// A Connect service behind the gateway: every request's HMAC signature is
// verified by createGatewayAuth before any handler runs.
//
//   GATEWAY_HMAC_SECRET=… PORT=8081 npx tsx server.ts
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createGatewayAuth } from "connect-gateway/server";
import { routes } from "./routes.js";

// The secret comes from GATEWAY_HMAC_SECRET. requireSignatureV2: this
// project's gateway signs every request with v2, and a service that still
// took v1-only requests could be sent a captured request with its v2
// headers stripped, again and again within the window. onRejection: why a
// request was refused, in this service's log (never a secret; outside
// production it says, for one, that the gateway signs with another secret).
let auth: ReturnType<typeof createGatewayAuth>;
try {
  auth = createGatewayAuth({
    requireSignatureV2: true,
    onRejection: (event) => console.warn(`refused ${event.method} ${event.fullpath.split("?")[0]}: ${event.keyMismatch ?? event.reason}`),
  });
} catch (error) {
  // A missing or bad option (GATEWAY_HMAC_SECRET unset, say): its message says which and how to fix it.
  console.error(error instanceof Error ? error.message : String(error));
  process.exit(1);
}
const server = http2.createServer(connectNodeAdapter(auth.connectOptions({ routes })));

// A port in use, an address that is not this machine's: one line, not a stack.
server.on("error", (error: NodeJS.ErrnoException) => {
  console.error(`greeter: cannot listen: ${error.code === "EADDRINUSE" ? `port ${process.env.PORT ?? 8081} is in use (set PORT)` : error.message}`);
  process.exit(1);
});
server.listen(Number(process.env.PORT ?? 8081), process.env.HOST ?? "127.0.0.1", () => {
  const { address, port } = server.address() as AddressInfo;
  console.log(`greeter listening on http://${address}:${port}`);
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => server.close(() => process.exit(0)));
}
