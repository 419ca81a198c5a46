import * as http from "node:http";
import { connect as tcpConnect } from "node:net";

/** A response read in full. */
export interface RawResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

/**
 * Sends one HTTP/1.1 request with `path` exactly as given (node:http writes
 * it verbatim: nothing decodes or normalises it) and `headers` as raw
 * name/value pairs, so a header can be repeated.
 */
export function rawRequest(
  port: number,
  options: { method: string; path: string; headers: [string, string][]; body?: Uint8Array },
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    // A raw header list gets no automatic Host, which HTTP/1.1 requires.
    const flat = [["host", `127.0.0.1:${port}`], ...options.headers].flat();
    if (options.body !== undefined) flat.push("content-length", String(options.body.byteLength));
    const req = http.request(
      { host: "127.0.0.1", port, method: options.method, path: options.path, headers: flat, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

/** Writes `text` on a raw TCP connection and returns what arrives until the answer's body is complete. */
export function rawSocket(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(port, "127.0.0.1", () => socket.write(text));
    let received = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer; received so far: ${JSON.stringify(received)}`));
    }, 5000);
    socket.on("data", (d: Buffer) => {
      received += d.toString("latin1");
      const head = received.indexOf("\r\n\r\n");
      const length = /content-length: (\d+)/i.exec(received)?.[1];
      if (head !== -1 && length !== undefined && received.length >= head + 4 + Number(length)) {
        clearTimeout(timer);
        socket.destroy();
        resolve(received);
      }
    });
    socket.on("end", () => {
      clearTimeout(timer);
      resolve(received);
    });
    socket.on("error", reject);
  });
}
