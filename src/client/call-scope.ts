import { AsyncLocalStorage } from "node:async_hooks";
import { checkServiceName } from "./backend-service.js";
import { checkUserToken } from "./user-token.js";

/** What the innermost `withService` / `withUserToken` scopes set. */
export interface CallScope {
  readonly service?: string;
  readonly userToken?: string;
}

const storage = new AsyncLocalStorage<CallScope>();

/**
 * Runs `fn` with every gateway call made inside it — including async work it
 * starts, and nothing else — routed to `/backend/<service>/…`, unless the
 * call names its own service. Nested scopes: the innermost wins. The name is
 * checked before `fn` runs.
 */
export function withService<T>(service: string, fn: () => T): T {
  checkServiceName(service);
  return storage.run({ ...storage.getStore(), service }, fn);
}

/**
 * Runs `fn` with every gateway call made inside it authenticated as the end
 * user: `token` is sent as `Authorization: Bearer <token>` instead of the
 * service token (a per-call `userToken` still wins). The user token is never
 * cached, refreshed or retried: a 401 goes to the caller.
 */
export function withUserToken<T>(token: string, fn: () => T): T {
  checkUserToken(token);
  return storage.run({ ...storage.getStore(), userToken: token }, fn);
}

/** The innermost scope around the current async context (`undefined` outside any scope). */
export function currentCallScope(): CallScope | undefined {
  return storage.getStore();
}
