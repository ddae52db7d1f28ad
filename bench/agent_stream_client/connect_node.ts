// The Health client built with connect-node's gRPC transport, as the agent
// would build its Fleet client: createGrpcTransport + createClient over one
// Http2SessionManager (the transport's own default, made explicit so that
// close() can end the connection).

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { Health } from "../../gen/ts/grpc/health/v1/health_pb.ts";
import { upperSnake, type HealthStreamClient, type Keepalive } from "./client.ts";

export function connectNodeHealthClient(baseUrl: string, keepalive?: Keepalive): HealthStreamClient {
  const sessionManager = new Http2SessionManager(
    baseUrl,
    keepalive ? { pingIntervalMs: keepalive.intervalMs, pingTimeoutMs: keepalive.timeoutMs } : {},
  );
  const client = createClient(Health, createGrpcTransport({ baseUrl, sessionManager }));
  return {
    async check(timeoutMs) {
      return (await client.check({ service: "" }, { timeoutMs })).status;
    },
    async watch(onStatus, signal) {
      try {
        for await (const res of client.watch({ service: "" }, { signal })) onStatus(res.status);
        return { code: "OK", message: "" };
      } catch (err) {
        const e = ConnectError.from(err);
        return { code: upperSnake(Code[e.code]), message: e.rawMessage };
      }
    },
    close() {
      sessionManager.abort();
    },
  };
}
