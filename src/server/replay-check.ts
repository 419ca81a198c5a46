import { setAnswerBudget } from "../core/answer-budget.js";
import type { GatewayRejectionReason } from "../signing/index.js";
import type { GatewayAuthConfig } from "./gateway-auth-options.js";

/** The verdict on a request whose body has been hashed: `undefined` to admit it, else why not. */
export type BodyVerdict = GatewayRejectionReason | undefined;

/**
 * Records a verified v2 request id in the replay store for as long as a
 * copy of the request could still be admitted, and says whether it was new. Synchronous with the
 * in-memory store (no promise, no timer on the hot path); with an async
 * store, bounded by `replayStoreTimeoutMs`. A store that throws, rejects or
 * is late gives `replay_check_unavailable`, or admits the request when the
 * service chose `onReplayStoreFailure: "accept"`.
 */
export function claimRequestId(
  config: GatewayAuthConfig,
  requestId: string,
  timestamp: string,
): BodyVerdict | Promise<BodyVerdict> {
  const ttlSeconds = Math.max(1, Number(timestamp) + config.maxSkewSeconds + config.replayHoldSeconds - config.nowSeconds());
  let outcome: boolean | Promise<boolean>;
  try {
    outcome = config.replayStore.claim(requestId, ttlSeconds);
  } catch {
    return storeFailed(config);
  }
  if (typeof outcome === "boolean") return outcome ? undefined : "replayed_request";
  return bounded(Promise.resolve(outcome), config.replayStoreTimeoutMs).then(
    (fresh) => (fresh === true ? undefined : fresh === false ? "replayed_request" : storeFailed(config)),
    () => storeFailed(config),
  );
}

function storeFailed(config: GatewayAuthConfig): BodyVerdict {
  return config.acceptOnReplayStoreFailure ? undefined : "replay_check_unavailable";
}

// The store's answer, or a rejection after `ms`; a late answer or failure is dropped quietly.
function bounded<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setAnswerBudget(() => reject(new Error(`replay store did not answer within ${ms} ms`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
