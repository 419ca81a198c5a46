// The load generator of the gateway benchmark, in its own process (on CPU 0
// with the backend when pinned). One autocannon run per request from the
// parent; answers completed requests, errors and latency percentiles.
//
// Why autocannon (and not an undici loop): it is a closed-loop HTTP/1.1
// generator built for exactly this — every connection keeps one request in
// flight on a pre-serialised request buffer, so its own cost per request is
// a fraction of a node proxy's and one process saturates a node proxy at
// c ≥ 16 while sharing its core with the backend; it is what fastify's own
// benchmarks use, so figures compare with theirs. An undici-based loop would
// allocate a request object, headers and a body stream per call and need
// several processes to keep up. Latencies come from its per-response
// `response` event (hrtime, sub-millisecond), not from its 1 ms histogram.
import autocannon from "autocannon";
import { serveParent } from "./proc.js";
import type { LoadRequest, LoadResult } from "./shared.js";

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

function run(request: LoadRequest): Promise<LoadResult> {
  const body = request.bodyBytes ? Buffer.alloc(request.bodyBytes, "x") : undefined;
  const headers: Record<string, string> = body ? { "content-type": "application/octet-stream" } : {};
  let next = 0;
  const latencies: number[] = [];
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: request.url,
        connections: request.connections,
        ...(request.amount !== undefined ? { amount: request.amount } : { duration: request.seconds ?? 1 }),
        method: request.method,
        headers,
        ...(body && { body }),
        // The run ends at the first sample tick after the last answer or `duration`: tick often.
        sampleInt: 100,
        timeout: 30,
        setupClient(client) {
          const token = request.tokens[next++ % request.tokens.length] as string;
          client.setHeaders({ ...headers, authorization: `Bearer ${token}` });
        },
      },
      (error, result) => {
        if (error) return reject(error);
        const sorted = Float64Array.from(latencies).sort();
        const statuses = Object.entries(result.statusCodeStats)
          .map(([code, { count }]) => `${code}×${count}`)
          .join(" ");
        resolve({
          completed: result.requests.total,
          seconds: result.duration,
          failures: result.non2xx + result.errors + result.timeouts,
          statuses: `${statuses}${result.errors ? ` errors×${result.errors}` : ""}${result.timeouts ? ` timeouts×${result.timeouts}` : ""}`,
          p50: percentile(sorted, 50),
          p99: percentile(sorted, 99),
        });
      },
    );
    instance.on("response", (_client: unknown, status: number, _bytes: number, ms: number) => {
      if (status >= 200 && status < 300) latencies.push(ms);
    });
  });
}

serveParent({ ready: true }, (request) => run(request as unknown as LoadRequest));
