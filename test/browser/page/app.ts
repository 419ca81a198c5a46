// The page's script, run in Chromium (bundled by ../page-server.ts with
// esbuild for the browser: a `node:` import anywhere in what it pulls in
// fails the build). It calls the gateway the way a web app would:
// @connectrpc/connect-web transports with connect-gateway/web's interceptors,
// and fetch for REST. The test drives it through `globalThis.gatewayPage`.
import { ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { createBearerTokenInterceptor, createGatewayRoutingInterceptor, gatewayCall } from "connect-gateway/web";
import { EchoService } from "../../../examples/gen/example/v1/example_pb.js";

/** How a call is sent. */
export type Wire = "connect-json" | "connect-binary" | "connect-get" | "grpc-web";

/** What a call gave: its answer, or its error's Connect code. */
export type Outcome =
  | { readonly ok: true; readonly texts: string[]; readonly userId: string | undefined }
  | { readonly ok: false; readonly code: number; readonly message: string };

/** A REST answer as the page can read it (only exposed headers are visible cross-origin). */
export interface RestOutcome {
  readonly status: number;
  readonly body: unknown;
  readonly headers: Record<string, string | null>;
}

/** What each call needs from the test. */
export interface CallArgs {
  readonly gatewayUrl: string;
  /** The bearer token; `undefined`: no token source at all. */
  readonly token?: string;
  readonly wire: Wire;
  /** A per-call backend service (else the proto option routes). */
  readonly service?: string;
}

function transport(args: CallArgs): Transport {
  const interceptors: Interceptor[] = [createGatewayRoutingInterceptor()];
  if (args.token !== undefined) {
    const token = args.token;
    interceptors.push(createBearerTokenInterceptor(async () => token));
  }
  const common = { baseUrl: args.gatewayUrl, interceptors };
  switch (args.wire) {
    case "connect-json":
      return createConnectTransport({ ...common, useBinaryFormat: false });
    case "connect-binary":
      return createConnectTransport({ ...common, useBinaryFormat: true });
    case "connect-get":
      return createConnectTransport({ ...common, useHttpGet: true });
    case "grpc-web":
      return createGrpcWebTransport({ ...common });
  }
}

async function outcomeOf(run: () => Promise<{ texts: string[]; userId: string | undefined }>): Promise<Outcome> {
  try {
    return { ok: true, ...(await run()) };
  } catch (e) {
    const error = ConnectError.from(e);
    return { ok: false, code: error.code, message: error.rawMessage };
  }
}

const page = {
  /** EchoService.Echo (unary). */
  echo(args: CallArgs & { readonly text: string }): Promise<Outcome> {
    const echo = createClient(EchoService, transport(args));
    const options = args.service === undefined ? {} : gatewayCall({ service: args.service });
    return outcomeOf(async () => {
      const res = await echo.echo({ text: args.text }, options);
      return { texts: [res.text], userId: res.caller?.userId };
    });
  },
  /** EchoService.EchoStream (server streaming). */
  echoStream(args: CallArgs & { readonly text: string; readonly repeat: number }): Promise<Outcome> {
    const echo = createClient(EchoService, transport(args));
    return outcomeOf(async () => {
      const texts: string[] = [];
      let userId: string | undefined;
      for await (const m of echo.echoStream({ text: args.text, repeat: args.repeat })) {
        texts.push(m.text);
        userId = m.caller?.userId;
      }
      return { texts, userId };
    });
  },
  /** A REST call with fetch; a network (CORS) failure comes back as status 0. */
  async rest(args: {
    readonly url: string;
    readonly method: string;
    readonly token?: string;
    readonly body?: unknown;
  }): Promise<RestOutcome> {
    const headers: Record<string, string> = {};
    if (args.token !== undefined) headers["authorization"] = `Bearer ${args.token}`;
    if (args.body !== undefined) headers["content-type"] = "application/json";
    try {
      const res = await fetch(args.url, {
        method: args.method,
        headers,
        ...(args.body !== undefined && { body: JSON.stringify(args.body) }),
      });
      const text = await res.text();
      const read = ["x-request-id", "x-ratelimit-remaining", "x-ratelimit-limit", "content-type"];
      return {
        status: res.status,
        body: text === "" ? null : (JSON.parse(text) as unknown),
        headers: Object.fromEntries(read.map((h) => [h, res.headers.get(h)])),
      };
    } catch (e) {
      return { status: 0, body: String(e), headers: {} };
    }
  },
};

export type GatewayPage = typeof page;
(globalThis as unknown as { gatewayPage: GatewayPage }).gatewayPage = page;
// Shown on the page, so that a failure screenshot says the script loaded.
(globalThis as unknown as { document: { body: { append(text: string): void } } }).document.body.append(
  "gateway page script loaded",
);
