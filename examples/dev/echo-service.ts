import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { CallerSchema, EchoService } from "../gen/example/v1/example_pb.js";

/** Who a handler says called it: what every EchoService answer carries. */
export type EchoCaller = MessageInitShape<typeof CallerSchema>;

/**
 * Registers the example `EchoService` (examples/proto/example/v1/example.proto), used by
 * `connect-gateway dev`, the end-to-end tests and the benchmark. Every answer
 * carries `callerOf(ctx)`, the identity the backend saw, so a caller can check
 * what the gateway said about it. An empty text is refused (`InvalidArgument`)
 * to show a backend's own error reaching the client through the gateway.
 */
export function echoServiceRoutes(callerOf: (ctx: HandlerContext) => EchoCaller | undefined) {
  return (router: ConnectRouter): void => {
    router.service(EchoService, {
      echo(req, ctx) {
        if (req.text === "") throw new ConnectError("text is required", Code.InvalidArgument);
        return { text: req.text, caller: callerOf(ctx) };
      },
      async *echoStream(req, ctx) {
        for (let i = 0; i < req.repeat; i++) {
          yield { text: `${req.text} ${i + 1}`, caller: callerOf(ctx) };
        }
      },
      async collect(requests, ctx) {
        const texts: string[] = [];
        for await (const req of requests) texts.push(req.text);
        return { text: texts.join(""), caller: callerOf(ctx) };
      },
      async *chat(requests, ctx) {
        const texts: string[] = [];
        for await (const req of requests) texts.push(req.text);
        for (const text of texts) yield { text, caller: callerOf(ctx) };
      },
    });
  };
}
