import { connect as connectHttp2 } from "node:http2";
import { ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { EchoService, type Caller } from "../gen/example/v1/example_pb.js";
import { createGatewayTransport, gatewayCall } from "connect-gateway/client";
import type { DevStack } from "./dev-stack.js";

/** One step of the example client's tour, as printed. */
export interface TourStep {
  readonly title: string;
  readonly ok: boolean;
  readonly detail: string;
}

/**
 * Runs the example client through the local stack and prints each
 * step: a service call with the client's own OAuth2 token, a call carrying a
 * forwarded end-user token, a server stream, and a forged request sent
 * straight to the backend, which must be refused. Returns the steps.
 */
export async function runExampleClientTour(stack: DevStack, print: (line: string) => void): Promise<TourStep[]> {
  const echo = createClient(EchoService, exampleClientTransport(stack));
  const steps: TourStep[] = [];
  const step = async (title: string, run: () => Promise<Omit<TourStep, "title">>) => {
    const result = await run().catch((e: unknown) => ({ ok: false, detail: `failed: ${ConnectError.from(e).message}` }));
    steps.push({ title, ...result });
    print(`  ${result.ok ? "✔" : "✘"} ${title}\n      ${result.detail}`);
  };

  print("\nExample client (createGatewayTransport → gateway → createGatewayAuth):");
  await step("service call: EchoService.Echo with the client's own client_credentials token", async () => {
    const res = await echo.echo({ text: "hello from a service" });
    return { ok: res.caller?.isServiceRequest === true && res.caller.clientId === stack.client.clientId, detail: seenAs(res.caller) };
  });
  const userToken = await stack.oauth.issueUserToken({
    sub: "user-42",
    email: "ada@example.com",
    givenName: "Ada",
    familyName: "Lovelace",
    scopes: ["read"],
  });
  await step("user call: the example client forwarding an end user's token (issued to the web app)", async () => {
    const res = await echo.echo({ text: "hello on behalf of Ada" }, gatewayCall({ userToken }));
    return { ok: res.caller?.userId === "user-42", detail: seenAs(res.caller) };
  });
  await step("server stream: EchoService.EchoStream, three messages through the gateway", async () => {
    const texts: string[] = [];
    for await (const message of echo.echoStream({ text: "tick", repeat: 3 })) texts.push(message.text);
    return { ok: texts.length === 3, detail: `received ${texts.map((t) => JSON.stringify(t)).join(", ")}` };
  });
  await step("forged call: straight to the backend with made-up identity headers", async () => {
    const { status, body } = await forgedCall(stack.echo.url);
    const code = (JSON.parse(body) as { code?: string }).code;
    return {
      ok: status === 403 && code === "permission_denied",
      detail: `the backend refused it: HTTP ${status} ${code ?? body} (only the gateway holds the HMAC secret)`,
    };
  });
  return steps;
}

/**
 * The example client's transport: the stack's OAuth2 client, asking for the
 * `read` scope, calling through `gatewayUrl` (default: the stack's gateway).
 */
export function exampleClientTransport(stack: DevStack, gatewayUrl = stack.gateway.url): Transport {
  return createGatewayTransport({
    clientId: stack.client.clientId,
    clientSecret: stack.client.clientSecret,
    gatewayUrl,
    appcenterUrl: stack.oauth.issuer,
    tokenPath: "/token", // oidc-provider's token endpoint
    scope: ["read"],
  });
}

function seenAs(caller: Caller | undefined): string {
  if (caller === undefined) return "the backend saw no identity";
  const who = caller.isServiceRequest ? "no user (service call)" : `user "${caller.userId}" <${caller.email}>`;
  return `the backend saw client "${caller.clientId}", ${who}, scopes [${caller.scopes.join(" ")}]`;
}

/** A Connect call over HTTP/2 that claims to be an admin, with a signature nobody computed. */
async function forgedCall(backendUrl: string): Promise<{ status: number; body: string }> {
  const session = connectHttp2(backendUrl);
  try {
    return await new Promise((resolve, reject) => {
      const request = session.request({
        ":method": "POST",
        ":path": "/example.v1.EchoService/Echo",
        "content-type": "application/json",
        "connect-protocol-version": "1",
        "x-client-id": "example-client",
        "x-user-id": "admin",
        "x-gateway-timestamp": String(Math.floor(Date.now() / 1000)),
        "x-gateway-signature": "0".repeat(64),
      });
      let status = 0;
      let body = "";
      request.on("response", (headers) => (status = Number(headers[":status"])));
      request.setEncoding("utf8");
      request.on("data", (chunk: string) => (body += chunk));
      request.on("end", () => resolve({ status, body }));
      request.on("error", reject);
      request.end(JSON.stringify({ text: "let me in" }));
    });
  } finally {
    session.close();
  }
}
