import type { ConnectRouter, HandlerContext, Interceptor } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { CallerSchema, EchoService, type Caller } from "../../examples/gen/example/v1/example_pb.js";
import { gatewayIdentity } from "../../src/server/index.js";

/** What the handlers (and the interceptor) observed, so tests can prove they never ran. */
export interface Observed {
  /** Request messages handed to any handler. */
  messages: number;
  /** Handler invocations. */
  calls: number;
  /** The HTTP method of the last unary call. */
  lastMethod?: string;
  /** Calls and request messages seen by {@link observingInterceptor}. */
  intercepted?: { calls: number; messages: number };
}

function callerOf(ctx: HandlerContext): Caller {
  const id = ctx.values.get(gatewayIdentity);
  return create(CallerSchema, {
    clientId: id?.clientId ?? "",
    userId: id?.userId ?? "",
    email: id?.email ?? "",
    scopes: [...(id?.scopes ?? [])],
    isServiceRequest: id?.isServiceRequest ?? false,
  });
}

/** The example EchoService; every answer carries the identity the handler saw. */
export function echoRoutes(observed: Observed) {
  return (router: ConnectRouter) =>
    router.service(EchoService, {
      echo(req, ctx) {
        observed.calls++;
        observed.lastMethod = ctx.requestMethod;
        observed.messages++;
        return { text: req.text, caller: callerOf(ctx) };
      },
      async *echoStream(req, ctx) {
        observed.calls++;
        observed.messages++;
        for (let i = 0; i < req.repeat; i++) yield { text: req.text, caller: callerOf(ctx) };
      },
      async collect(reqs, ctx) {
        observed.calls++;
        let text = "";
        for await (const r of reqs) {
          observed.messages++;
          text += r.text;
        }
        return { text, caller: callerOf(ctx) };
      },
      async *chat(reqs, ctx) {
        observed.calls++;
        for await (const r of reqs) {
          observed.messages++;
          yield { text: r.text, caller: callerOf(ctx) };
        }
      },
    });
}

/** Counts, in `observed.intercepted`, every call and request message an interceptor gets. */
export function observingInterceptor(observed: Observed): Interceptor {
  const seen = (observed.intercepted ??= { calls: 0, messages: 0 });
  return (next) => async (req) => {
    seen.calls++;
    if (!req.stream) {
      seen.messages++;
      return next(req);
    }
    const messages = req.message;
    async function* counted() {
      for await (const m of messages) {
        seen.messages++;
        yield m;
      }
    }
    return next({ ...req, message: counted() });
  };
}

/** Request messages for a client-streaming or bidi call, one per text. */
export async function* messages(...texts: string[]): AsyncGenerator<{ text: string }> {
  for (const text of texts) yield { text };
}
