// @drover/sdk: Drover's generated clients over one HTTP/2 connection, with the
// caller's token on every call and UNAVAILABLE retried where that is safe.
//
//   const drover = createDroverClient({ addr: "http://127.0.0.1:7070" });
//   const { job } = await drover.scheduler.submitJob({ spec, idempotencyKey });

import { Http2SessionManager } from "@connectrpc/connect-node";
import type { Transport } from "@connectrpc/connect";
import { bearer, createClients, type DroverClients } from "../../lib/clients.ts";
import { createDroverTransport } from "../../lib/grpc_transport.ts";
import { DEFAULT_BACKOFF, retryUnavailable, type Backoff } from "./retry.ts";

export { backoffMs, DEFAULT_BACKOFF, isSafeToRetry, retryUnavailable, type Backoff } from "./retry.ts";
export type { DroverClients } from "../../lib/clients.ts";

// The generated messages, enums and service descriptors, one namespace per
// proto package (as Go names them: schedulerv1 for drover.scheduler.v1).
// Each is also importable on its own, e.g. "@drover/sdk/scheduler/v1".
export * as bidv1 from "../../gen/ts/drover/bid/v1/bid_service_pb.ts";
export * as commonv1 from "./common_v1.ts";
export * as deployv1 from "../../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
export * as fleetv1 from "./fleet_v1.ts";
export * as logv1 from "../../gen/ts/drover/log/v1/log_service_pb.ts";
export * as schedulerv1 from "./scheduler_v1.ts";

/** Where to connect and as whom. */
export interface DroverClientOptions {
  /** Base URL of a Drover gRPC port (h2c or TLS), e.g. http://127.0.0.1:7070. Default: $DROVER_ADDR. */
  addr?: string;
  /** Bearer token sent with every call. Default: $DROVER_TOKEN. */
  token?: string;
  /** How many more times a call that is safe to repeat is tried after UNAVAILABLE (see retry.ts). Default 3; 0 turns retries off. */
  retries?: number;
  /** The waits between those tries. Default: 100 ms doubling to 2 s, fully jittered. */
  backoff?: Backoff;
}

/** Every Drover service's client, sharing one HTTP/2 connection. */
export interface DroverClient extends DroverClients {
  /** The transport under the clients, for generated clients of your own (createClient(Service, transport)). */
  transport: Transport;
  /** Closes the connection now, failing calls in flight. Not needed to exit: an idle connection does not keep Node alive. */
  close(): void;
}

/**
 * Clients for every Drover service over one gRPC (HTTP/2) connection. Throws
 * when no address or no token is given either way, naming where it looked.
 */
export function createDroverClient(options: DroverClientOptions = {}, env: NodeJS.ProcessEnv = process.env): DroverClient {
  const addr = options.addr || env.DROVER_ADDR;
  if (!addr || !/^https?:\/\//.test(addr)) {
    throw new Error(`drover sdk: addr (or DROVER_ADDR) must be a URL such as http://127.0.0.1:7070, got ${JSON.stringify(addr ?? "")}`);
  }
  const token = options.token || env.DROVER_TOKEN;
  if (!token) throw new Error("drover sdk: no token: pass options.token or set DROVER_TOKEN");
  const retries = options.retries ?? 3;
  if (!Number.isInteger(retries) || retries < 0) throw new Error(`drover sdk: retries must be a whole number >= 0, got ${retries}`);

  const sessionManager = new Http2SessionManager(addr);
  const transport = createDroverTransport({
    baseUrl: addr,
    sessionManager,
    // The retry interceptor wraps the bearer one, so every try carries the token.
    interceptors: [retryUnavailable(retries, options.backoff ?? DEFAULT_BACKOFF), bearer(token)],
  });
  return { ...createClients(() => transport), transport, close: () => sessionManager.abort() };
}
