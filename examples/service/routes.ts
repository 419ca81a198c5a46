// The service's handlers, apart from its server: the server (server.ts) and
// its test (greeter.test.ts) register the same routes.
import type { ConnectRouter } from "@connectrpc/connect";
import { requireIdentity } from "connect-gateway/server";
import { GreeterService } from "./gen/greeter/v1/greeter_pb.js";

export const routes = (router: ConnectRouter) =>
  router.service(GreeterService, {
    greet(req, ctx) {
      const caller = requireIdentity(ctx); // the verified caller; Unauthenticated if none
      return {
        greeting: `Hello, ${req.name || "world"}!`,
        clientId: caller.clientId,
        userId: caller.userId ?? "",
        scopes: [...caller.scopes],
      };
    },
  });
