import * as http from "node:http";

/** A keep-alive `http.Agent` and the port of every request started through it. */
export interface RecordingAgent {
  readonly agent: http.Agent;
  /** One entry per request, pushed synchronously inside `http.request()`. */
  readonly ports: number[];
}

/**
 * Creates a {@link RecordingAgent}. Requests are recorded when they start,
 * not when a server sees them, so a test can assert that a call started no
 * request without waiting for one that might still be on its way.
 */
export function recordingAgent(): RecordingAgent {
  const agent = new http.Agent({ keepAlive: true });
  const ports: number[] = [];
  // `addRequest` is Node's (untyped) entry point for every request an agent serves.
  const internal = agent as unknown as { addRequest(request: unknown, options: { port?: unknown }): void };
  const addRequest = internal.addRequest.bind(agent);
  internal.addRequest = (request, options) => {
    ports.push(Number(options.port));
    addRequest(request, options);
  };
  return { agent, ports };
}
