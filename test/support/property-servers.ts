import { connectNodeAdapter } from "@connectrpc/connect-node";
import fc from "fast-check";
import { afterAll, beforeAll, expect } from "vitest";
import type { GatewayAuth, VerifiedNodeRequest } from "../../src/server/index.js";
import { echoRoutes } from "./echo-routes.js";
import { startServer, type RunningServer } from "./loopback-server.js";
import { rawRequest, type RawResponse } from "./raw-request.js";

/** The servers a property test sends its random requests to. */
export interface PropertyServers {
  /** Plain Node behind `auth.verifyNodeRequest`, answering `answer(verified)` as JSON. */
  plain: RunningServer;
  /** connect-node behind `auth.connectOptions`, serving the example EchoService. */
  connect: RunningServer;
}

/**
 * Starts both servers around the enclosing test file and fails it if any
 * request caused an uncaught exception or unhandled rejection: random input
 * must never break the process.
 */
export function propertyServers(auth: GatewayAuth, answer: (verified: VerifiedNodeRequest) => unknown): PropertyServers {
  const servers = {} as PropertyServers;
  let uncaught = 0;
  const onUncaught = () => void uncaught++;
  beforeAll(async () => {
    process.on("uncaughtException", onUncaught);
    process.on("unhandledRejection", onUncaught);
    servers.plain = await startServer(async (req, res) => {
      const verified = await auth.verifyNodeRequest(req, res);
      if (verified) res.end(JSON.stringify(answer(verified)));
    });
    servers.connect = await startServer(connectNodeAdapter(auth.connectOptions({ routes: echoRoutes({ calls: 0, messages: 0 }) })));
  });
  afterAll(async () => {
    process.off("uncaughtException", onUncaught);
    process.off("unhandledRejection", onUncaught);
    await servers.plain.close();
    await servers.connect.close();
    expect(uncaught).toBe(0);
  });
  return servers;
}

/** Any one of the characters of `s`. */
export const chars = (s: string) => fc.constantFrom(...s.split(""));
/** A character of a request path, reserved and percent characters included. */
export const pathChar = chars("abcxyzAZ019-._~%/=&?+!$'()*,;:@");

/** What a property test signs and sends (the rest of it is in the headers). */
export interface PropertyRequest {
  readonly method: string;
  readonly path: string;
  readonly body: Uint8Array;
}

/** Sends `r` to `server` with exactly `headers`. */
export function send(server: RunningServer, r: PropertyRequest, headers: [string, string][]) {
  return rawRequest(server.port, { method: r.method, path: r.path, headers, body: Buffer.from(r.body) });
}

/** Changes to the body and the path (every signature covers both), to apply after signing. */
export const bodyMutationArbs = [
  fc.record({ kind: fc.constant("body-byte" as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant("body-append" as const), byte: fc.integer({ min: 0, max: 255 }) }),
] as const;
export const pathMutationArb = fc.record({ kind: fc.constant("path-char" as const), at: fc.nat(), char: pathChar });

type BodyMutation = (typeof bodyMutationArbs)[number] extends fc.Arbitrary<infer M> ? M : never;
type PathMutation = typeof pathMutationArb extends fc.Arbitrary<infer M> ? M : never;

/**
 * `r` with its body or path changed by `m`; undefined when that changes
 * nothing signed: no byte to change, or a path `sameSigned` as the old one.
 */
export function mutateBodyOrPath<R extends PropertyRequest>(
  r: R,
  m: BodyMutation | PathMutation,
  sameSigned: (a: string, b: string) => boolean = (a, b) => a === b,
): R | undefined {
  if (m.kind === "path-char") {
    const i = 1 + (m.at % r.path.length);
    const path = r.path.slice(0, i) + m.char + r.path.slice(i + 1);
    return sameSigned(path, r.path) ? undefined : { ...r, path };
  }
  if (m.kind === "body-append") return { ...r, body: Uint8Array.from([...r.body, m.byte]) };
  if (r.body.length === 0) return undefined;
  const body = Uint8Array.from(r.body);
  const i = m.at % body.length;
  body[i] = (body[i] as number) ^ m.xor;
  return { ...r, body };
}

/**
 * The property that the plain server accepts (200) every request signed
 * honestly (`headersOf`); `check` then looks at the answer (and may send the
 * request again).
 */
export function honestRequestsAccepted<R extends PropertyRequest>(
  servers: PropertyServers,
  requestArb: fc.Arbitrary<R>,
  headersOf: (r: R) => [string, string][],
  check: (r: R, res: RawResponse, headers: [string, string][]) => Promise<void> | void,
) {
  return fc.asyncProperty(requestArb, async (r) => {
    const headers = headersOf(r);
    const res = await send(servers.plain, r, headers);
    expect(res.status).toBe(200);
    await check(r, res, headers);
  });
}

/**
 * The property that no request changed after signing is ever served, by the
 * plain server (always 403) or the Connect one (which may refuse the path,
 * method or content type itself, 404/405/415, before verification).
 */
export function forgeriesRefused<R extends PropertyRequest, M>(
  servers: PropertyServers,
  requestArb: fc.Arbitrary<R>,
  mutationArb: fc.Arbitrary<M>,
  mutate: (r: R, m: M) => { req: R; headers: [string, string][] } | undefined,
) {
  return fc.asyncProperty(requestArb, mutationArb, fc.boolean(), async (r, m, toConnect) => {
    const forged = mutate(r, m);
    fc.pre(forged !== undefined);
    const { req, headers } = forged as NonNullable<typeof forged>;
    const res = await send(toConnect ? servers.connect : servers.plain, req, headers);
    expect(res.status).not.toBe(200);
    if (!toConnect) expect(res.status).toBe(403);
  });
}
