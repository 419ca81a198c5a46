import { Code, ConnectError } from "@connectrpc/connect";
import { currentUser, type GatewayContext } from "./current-user.js";

/**
 * The current user, or a `ConnectError` with code `Unauthenticated` when
 * nobody is signed in (a service call, or a user `resolveUser` and
 * `onMissingUser` did not find).
 */
export async function requireUser<User = unknown>(ctx: GatewayContext): Promise<User> {
  const user = await currentUser<User>(ctx);
  if (user === undefined) {
    throw new ConnectError("a signed-in user is required", Code.Unauthenticated);
  }
  return user;
}
