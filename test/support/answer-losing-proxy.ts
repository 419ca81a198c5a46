// A TCP proxy in front of a server (Redis, here) that can swallow the
// server's answers while keeping the connection open: the fault of a broken
// middlebox, which a client cannot see — it pairs later answers with the
// commands whose answers were lost.
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Socket } from "node:net";

/** A running proxy: `swallow` drops answers while true; `close` ends it and every connection. */
export interface AnswerLosingProxy {
  readonly url: string;
  swallow: boolean;
  close(): void;
}

/** Starts a proxy on 127.0.0.1 to `targetPort` on 127.0.0.1, passing everything until told to swallow. */
export async function startAnswerLosingProxy(targetPort: number, scheme = "redis"): Promise<AnswerLosingProxy> {
  const sockets = new Set<Socket>();
  const proxy: { swallow: boolean } = { swallow: false };
  const server = createNetServer((client) => {
    const upstream = netConnect(targetPort, "127.0.0.1");
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on("data", (chunk: Buffer) => upstream.write(chunk));
    upstream.on("data", (chunk: Buffer) => {
      if (!proxy.swallow) client.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `${scheme}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return Object.assign(proxy, {
    url,
    close() {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  });
}
