import { Code, ConnectError, createContextKey, type ContextValues } from "@connectrpc/connect";
import type { GatewayAuthConfig } from "./gateway-auth-options.js";
import { gatewayIdentity, type GatewayIdentity } from "./gateway-identity.js";

/**
 * Anything carrying a request's context values: a Connect `HandlerContext`,
 * or the result of `auth.verifyNodeRequest()` / `req.gateway` in Express and
 * Fastify.
 */
export interface GatewayContext {
  /** The request's Connect context values, where the verified identity is kept. */
  readonly values: ContextValues;
}

interface UserResolution {
  readonly resolveUser: GatewayAuthConfig["resolveUser"];
  readonly onMissingUser: GatewayAuthConfig["onMissingUser"];
  /** The memo: one lookup per request, shared by concurrent callers. */
  current?: Promise<unknown>;
}

// Private: only the gate writes it, only currentUser reads it.
const userResolution = createContextKey<UserResolution | undefined>(undefined, {
  description: "connect-gateway: user resolution of this request",
});

/**
 * Records a verified request's identity, and how to resolve its user, in its
 * context values. Called once per request, before any handler runs.
 */
export function setVerifiedIdentity(
  values: ContextValues,
  config: GatewayAuthConfig,
  identity: GatewayIdentity | undefined,
): void {
  values.set(gatewayIdentity, identity);
  values.set(userResolution, {
    resolveUser: config.resolveUser,
    onMissingUser: config.onMissingUser,
  });
}

/**
 * The local user behind the request: `resolveUser(identity)` once per request
 * (memoised; concurrent calls share one lookup), falling back to
 * `onMissingUser({ subject, email, firstName, lastName, scopes, clientId })`
 * when it finds nobody. `undefined` on service calls (neither hook is
 * called) and when nobody is found.
 *
 * A `ConnectError` a hook throws (`PermissionDenied` for a banned user, say)
 * reaches the caller as it is. Any other failure is wrapped in a
 * `ConnectError` with code `Internal`, a message of ours and the hook's error
 * as its `cause`: a database error's text (a connection string, a password)
 * must not become the answer of a framework that sends a 500's message
 * (Fastify's default error handler does). Read `cause` to log it.
 */
export function currentUser<User = unknown>(ctx: GatewayContext): Promise<User | undefined> {
  const resolution = ctx.values.get(userResolution);
  if (resolution === undefined) {
    return Promise.reject(
      new ConnectError(
        "currentUser: this request did not pass through createGatewayAuth (wire auth.connectOptions(), " +
          "auth.express(), auth.fastify or auth.verifyNodeRequest() in front of it)",
        Code.Internal,
      ),
    );
  }
  resolution.current ??= resolve(resolution, ctx.values.get(gatewayIdentity)).catch(hookFailure);
  return resolution.current as Promise<User | undefined>;
}

function hookFailure(error: unknown): never {
  if (error instanceof ConnectError) throw error;
  throw new ConnectError("connect-gateway: resolving the request's user failed (resolveUser or onMissingUser threw; see cause)", Code.Internal, undefined, undefined, error);
}

async function resolve(resolution: UserResolution, identity: GatewayIdentity | undefined): Promise<unknown> {
  // No user id: a service call (or no identity at all), which has no user.
  if (identity?.userId === undefined) return undefined;
  const found = await resolution.resolveUser?.(identity);
  if (found !== undefined && found !== null) return found;
  const provisioned = await resolution.onMissingUser?.({
    subject: identity.userId,
    email: identity.email,
    firstName: identity.firstName,
    lastName: identity.lastName,
    scopes: identity.scopes,
    clientId: identity.clientId,
  });
  return provisioned ?? undefined;
}
