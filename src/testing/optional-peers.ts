// The packages `connect-gateway/testing` loads only when a helper that needs
// them is called: the library has no runtime dependencies of its own, so a
// service's tests that never start an OAuth2 server need neither installed.

/** A loader of one optional peer: `() => import("<name>")`, spelled out so that its types stay known. */
export type PeerLoader<T> = () => Promise<T>;

/**
 * Loads the optional peers `feature` needs, all of them even when one is
 * missing, so that the error names every package to install at once:
 * `connect-gateway/testing: startOAuth2Server needs the optional peer "jose" — npm install --save-dev jose`.
 * Any other failure (a peer that is installed but broken) is thrown as it is.
 */
export async function loadOptionalPeers<T extends Record<string, unknown>>(
  feature: string,
  loaders: { readonly [Name in keyof T & string]: PeerLoader<T[Name]> },
): Promise<T> {
  const names = Object.keys(loaders) as (keyof T & string)[];
  const settled = await Promise.allSettled(names.map((name) => loaders[name]()));
  // A missing peer first: the others may have failed only for want of it.
  const missing = names.filter((name, i) => {
    const result = settled[i]!;
    return result.status === "rejected" && isNotFound(result.reason, name);
  });
  if (missing.length > 0) {
    const which = missing.length === 1 ? "peer" : "peers";
    const quoted = missing.map((name) => `"${name}"`).join(" and ");
    const cause = (settled[names.indexOf(missing[0]!)] as PromiseRejectedResult).reason as unknown;
    throw new Error(
      `connect-gateway/testing: ${feature} needs the optional ${which} ${quoted} — npm install --save-dev ${missing.join(" ")}`,
      { cause },
    );
  }
  const loaded = {} as T;
  for (const [i, result] of settled.entries()) {
    if (result.status === "rejected") throw result.reason;
    loaded[names[i]!] = result.value;
  }
  return loaded;
}

/** True when `error` says that the package `name` itself cannot be found (not one of its own imports). */
function isNotFound(error: unknown, name: string): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  const notFound = code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND";
  return notFound && typeof message === "string" && new RegExp(`['"]${name}['"]`).test(message);
}
