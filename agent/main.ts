// drover-agent: runs on every machine and dials out to Fleet.
//
// Today it checks that the control plane is reachable, with jittered
// backoff, and reports whether it is; the agent stream (Hello, heartbeats,
// offers) arrives with the Fleet issue. It exits only on SIGTERM or SIGINT.

import { mkdirSync } from "node:fs";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/ts/grpc/health/v1/health_pb.ts";
import { ConfigError } from "../lib/config.ts";
import { createLogger } from "../lib/logger.ts";
import { readAgentConfig } from "./config.ts";

let config;
try {
  config = readAgentConfig(process.argv.slice(2), process.env);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(`drover-agent: bad configuration: ${err.message}`);
  process.exit(2);
}

const logger = createLogger(config.logLevel, { component: "agent" });
mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
const health = createClient(Health, createGrpcTransport({ baseUrl: config.server }));
const stop = new AbortController();
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    logger.info({ signal }, "stopping");
    stop.abort();
  });
}

const HEALTHY_INTERVAL_MS = 5000;
let failures = 0;
let reachable: boolean | undefined;
logger.info({ server: config.server, labels: config.labels, stateDir: config.stateDir }, "drover-agent started");
while (!stop.signal.aborted) {
  let ok = false;
  try {
    ok = (await health.check({}, { timeoutMs: 5000, signal: stop.signal })).status === ServingStatus.SERVING;
  } catch (err) {
    if (!stop.signal.aborted) logger.debug({ err }, "health check failed");
  }
  if (ok !== reachable) logger.info({ server: config.server }, ok ? "control plane reachable" : "control plane unreachable");
  reachable = ok;
  failures = ok ? 0 : failures + 1;
  // Full jitter, so a fleet that lost its control plane does not return in step.
  const wait = ok ? HEALTHY_INTERVAL_MS : Math.random() * Math.min(config.reconnectMaxMs, 500 * 2 ** Math.min(failures, 16));
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, wait);
    stop.signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
  });
}
logger.info("stopped");
