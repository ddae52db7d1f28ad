// The one interface both candidate libraries are measured through: what the
// agent needs from a gRPC client (a unary call, and a long-lived stream it
// re-opens when it ends), exercised on grpc.health.v1.Health until
// FleetService.Connect exists.

/** The client libraries under comparison. */
export const LIBRARIES = ["connect-node", "grpc-js"] as const;
export type Library = (typeof LIBRARIES)[number];

/** HTTP/2 PING keepalive: a PING every `intervalMs` while a stream is open; the connection dies if one is unanswered for `timeoutMs`. */
export interface Keepalive {
  intervalMs: number;
  timeoutMs: number;
}

/** How a stream ended: a gRPC status code name ("OK" if the server ended it without error) and its message. */
export interface StreamEnd {
  code: string;
  message: string;
}

/** SERVING in grpc.health.v1.HealthCheckResponse.ServingStatus. */
export const SERVING = 1;

/** A Health client over one HTTP/2 connection (one channel / one session manager). */
export interface HealthStreamClient {
  /** Calls Health/Check for the whole server; resolves with the serving status, rejects with the library's error. */
  check(timeoutMs: number): Promise<number>;
  /**
   * Opens Health/Watch and calls onStatus for each message. Resolves (never
   * rejects) with how the stream ended; aborting `signal` cancels it.
   */
  watch(onStatus: (status: number) => void, signal: AbortSignal): Promise<StreamEnd>;
  /** Closes the connection. */
  close(): void;
}

/** Builds a client with the given library, loading only that library. */
export async function createHealthClient(library: Library, baseUrl: string, keepalive?: Keepalive): Promise<HealthStreamClient> {
  if (library === "connect-node") return (await import("./connect_node.ts")).connectNodeHealthClient(baseUrl, keepalive);
  return (await import("./grpc_js.ts")).grpcJsHealthClient(baseUrl, keepalive);
}

/** "DeadlineExceeded" → "DEADLINE_EXCEEDED", so both libraries report codes alike. */
export function upperSnake(name: string): string {
  return name.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}
