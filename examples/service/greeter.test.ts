// The greeter under test, as the gateway would call it: its routes on a
// server of its own (HTTP/2, port 0), behind the same createGatewayAuth, and
// called through createTestGatewayTransport, which signs every request as
// the gateway does, so the real verification runs.
//
//   npx tsx --test greeter.test.ts   (npm test, with the scripts of examples/service/package.json)
import assert from "node:assert/strict";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createGatewayAuth } from "connect-gateway/server";
import { createTestGatewayTransport } from "connect-gateway/testing";
import { GreeterService } from "./gen/greeter/v1/greeter_pb.js";
import { routes } from "./routes.js";

const hmacSecret = "greeter-test-secret";
const server = http2.createServer(connectNodeAdapter(createGatewayAuth({ hmacSecret, requireSignatureV2: true }).connectOptions({ routes })));
let baseUrl = "";

before(async () => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((resolve) => server.close(() => resolve())));

// A client signed as the gateway signs, for the caller `identity` (its secret: the server's, unless given).
function greeter(identity: { clientId: string; userId?: string; scopes?: string[] }, secret = hmacSecret) {
  return createClient(GreeterService, createTestGatewayTransport({ baseUrl, httpVersion: "2", hmacSecret: secret, identity }));
}

test("greets the verified user, and says who called", async () => {
  const answer = await greeter({ clientId: "web-app", userId: "sub-42", scopes: ["read"] }).greet({ name: "Ada" });
  assert.equal(answer.greeting, "Hello, Ada!");
  assert.deepEqual([answer.clientId, answer.userId, answer.scopes], ["web-app", "sub-42", ["read"]]);
});

test("a service call (no user) is greeted too", async () => {
  const answer = await greeter({ clientId: "billing" }).greet({ name: "" });
  assert.deepEqual([answer.greeting, answer.clientId, answer.userId], ["Hello, world!", "billing", ""]);
});

test("a request signed with another secret never reaches the handler", async () => {
  await assert.rejects(greeter({ clientId: "web-app" }, "not-the-secret").greet({ name: "Mallory" }), (error: unknown) => {
    return error instanceof ConnectError && error.code === Code.PermissionDenied;
  });
});
