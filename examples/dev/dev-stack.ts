import { randomBytes } from "node:crypto";
import { startOAuth2Server, type OAuth2Server } from "connect-gateway/testing";
import { createGateway, loadRoutesFile, type Gateway, type GatewayConfig } from "@connect-gateway/gateway";
import { startAgentsBackend, startEchoBackend, type ExampleBackend } from "./example-backends.js";

/** Options of {@link startDevStack}. */
export interface DevStackOptions {
  /** The routes file; `$ECHO_URL` and `$AGENTS_SERVICE_URL` point at the example backends. */
  readonly routesFile: string;
  /** Gateway port. Default 8080; 0 for any free port. */
  readonly gatewayPort?: number;
  /** OAuth2 server port. Default 4000; 0 for any free port. */
  readonly oauthPort?: number;
  /**
   * On close: how long open calls may finish before they are cut (ms), for
   * the gateway and the example backends. Default 10 000.
   */
  readonly drainTimeoutMs?: number;
  /** The gateway's logging. Default `warn` and above to stdout (the tour prints what happens). */
  readonly logger?: GatewayConfig["logger"];
  /**
   * Where the secrets come from when set, so a developer's own backends keep
   * theirs across restarts: `GATEWAY_HMAC_SECRET`, `GATEWAY_CLIENT_ID`,
   * `GATEWAY_CLIENT_SECRET`. Default `process.env`; random (and printed) when unset.
   */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/** The running local stack of `connect-gateway dev` / `npm start`. */
export interface DevStack {
  readonly oauth: OAuth2Server;
  readonly gateway: Gateway;
  readonly echo: ExampleBackend;
  readonly agents: ExampleBackend;
  /** The OAuth2 client registered for the example client (and for a developer's own services). */
  readonly client: { readonly clientId: string; readonly clientSecret: string; readonly scopes: readonly string[] };
  /** The HMAC secret shared by the gateway and the backends. */
  readonly hmacSecret: string;
  /** Closes everything gracefully, the gateway first (see `drainTimeoutMs`). */
  close(): Promise<void>;
}

/**
 * Starts the whole system in this process, with no outside service:
 * a real OAuth2 server (oidc-provider, JWT access tokens), the example
 * backends behind `createGatewayAuth`, and the gateway with the routes file,
 * validating tokens through the OAuth2 server's JWKS. Secrets come from the
 * environment when set, else are random per run.
 */
export async function startDevStack(options: DevStackOptions): Promise<DevStack> {
  const env = options.env ?? process.env;
  const hmacSecret = env.GATEWAY_HMAC_SECRET || randomBytes(32).toString("hex");
  const client = {
    clientId: env.GATEWAY_CLIENT_ID || "example-client",
    clientSecret: env.GATEWAY_CLIENT_SECRET || randomBytes(24).toString("base64url"),
    scopes: ["read", "write:agents"],
  };
  // Whatever started is stopped again, last first, also when a later step fails.
  const stops: (() => Promise<void>)[] = [];
  const started = <T extends { close(): Promise<void> }>(service: T): T => (stops.unshift(() => service.close()), service);
  const close = async () => {
    for (const stop of stops) await stop();
  };
  try {
    const oauth = started(
      await startOAuth2Server({ clients: [client], port: options.oauthPort ?? 4000 }),
    );
    const drain = { drainTimeoutMs: options.drainTimeoutMs };
    const echo = started(await startEchoBackend(hmacSecret, 0, drain));
    const agents = started(await startAgentsBackend(hmacSecret, 0, drain));
    const routes = loadRoutesFile(options.routesFile, {
      env: { ...env, ECHO_URL: echo.url, AGENTS_SERVICE_URL: agents.url },
    });
    const gateway = started(
      createGateway({
        routes,
        hmacSecret,
        tokens: { jwks: { url: oauth.jwksUrl, issuer: oauth.issuer, audience: oauth.audience } },
        corsOrigins: true,
        ...(options.drainTimeoutMs !== undefined && { drainTimeoutMs: options.drainTimeoutMs }),
        logger: options.logger ?? { level: "warn" },
      }),
    );
    await gateway.listen({ port: options.gatewayPort ?? 8080 });
    return { oauth, gateway, echo, agents, client, hmacSecret, close };
  } catch (e) {
    await close();
    throw e;
  }
}
