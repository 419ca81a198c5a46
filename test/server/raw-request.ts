import * as http from "node:http";

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
