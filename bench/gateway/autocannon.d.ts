// The part of autocannon's programmatic API the gateway benchmark uses
// (autocannon ships no type declarations).
declare module "autocannon" {
  import type { EventEmitter } from "node:events";

  interface AutocannonClient {
    setHeaders(headers: Record<string, string>): void;
  }

  interface AutocannonOptions {
    url: string;
    connections?: number;
    duration?: number;
    amount?: number;
    method?: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    sampleInt?: number;
    timeout?: number;
    setupClient?: (client: AutocannonClient) => void;
  }

  interface AutocannonResult {
    /** Seconds, measured. */
    duration: number;
    requests: { total: number; sent: number; average: number };
    errors: number;
    timeouts: number;
    non2xx: number;
    statusCodeStats: Record<string, { count: number }>;
  }

  interface AutocannonInstance extends EventEmitter {
    stop(): void;
  }

  function autocannon(options: AutocannonOptions, done: (error: Error | null, result: AutocannonResult) => void): AutocannonInstance;
  export default autocannon;
}
