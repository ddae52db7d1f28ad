import assert from "node:assert/strict";
import type { DescService } from "@bufbuild/protobuf";
import { ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { pino } from "pino";
import { startServer, type RunningServer } from "../host/server.ts";

/** Awaits a call that must fail and returns its ConnectError, so a test can check code and message. */
export async function failure(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
    return err;
  }
  assert.fail("the call succeeded");
}

/** A server on free ports serving `routes` to anyone (no authentication), quiet; the caller closes it. */
export function startOpenServer(services: DescService[], routes: (router: ConnectRouter) => void): Promise<RunningServer> {
  return startServer({
    services,
    routes,
    listen: { host: "127.0.0.1", grpcPort: 0, httpPort: 0 },
    logger: pino({ level: "silent" }),
    authenticator: { authenticate: async () => null },
    policy: () => "open",
    shutdownGraceMs: 100,
  });
}
