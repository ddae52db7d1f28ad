// drover-agent: runs on every machine and keeps one stream to Fleet.
//
// Reads its configuration (flags, then DROVER_* variables), opens its state
// directory, and runs an AgentWorker until SIGTERM or SIGINT. Exit codes:
// 0 after a graceful stop, 2 for bad configuration (the message names the
// variable), 1 if the state directory cannot be used. A second signal while
// stopping is not caught, so it ends the process at once (the usual way to
// cancel a graceful stop).

import { readFileSync } from "node:fs";
import os from "node:os";

import { ConfigError } from "../lib/config.ts";
import { createLogger } from "../lib/logger.ts";
import { AgentWorker } from "./agent_worker.ts";
import { readAgentConfig, type AgentConfig } from "./config.ts";
import { CredentialStore, ensureStateDir } from "./credentials.ts";
import { JobEventOutbox } from "./job_events.ts";
import { BundleRetention } from "./bundle_retention.ts";
import { DockerRunner } from "./docker_runner.ts";
import { JobHandler } from "./job_handler.ts";
import { LogShipper } from "./log_shipper.ts";
import { ProcessRunner } from "./process_runner.ts";
import { RunnerRegistry } from "./runner.ts";
import { RememberingProbe, SystemMetrics } from "./metrics.ts";

/** The first reconnection waits up to this long; DROVER_RECONNECT_MAX_MS caps the growth. */
const RECONNECT_BASE_MS = 500;
/** On shutdown, running attempts get SIGTERM and this long before SIGKILL. */
const SHUTDOWN_GRACE_MS = 5_000;
/** Drivers this agent runs. */

function fail(code: number, message: string): never {
  console.error(`drover-agent: ${message}`);
  process.exit(code);
}

let config: AgentConfig;
try {
  config = readAgentConfig(process.argv.slice(2), process.env);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  fail(2, `bad configuration: ${err.message}`);
}

// The root logger carries no component; each part names itself (main logs as "agent").
const root = createLogger(config.logLevel);
const logger = root.child({ component: "agent" });
const version = (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version;

let credentials: CredentialStore;
try {
  await ensureStateDir(config.stateDir);
  credentials = await CredentialStore.open(config.stateDir);
} catch (err) {
  fail(1, `state directory ${config.stateDir}: ${(err as Error).message}`);
}
const identity = credentials.current();
if (!identity && config.token === "") {
  fail(2, `bad configuration: DROVER_TOKEN: is required (--token) until the agent has registered; ${credentials.path} does not exist yet`);
}
const mode = await credentials.mode();
if (mode !== undefined && (mode & 0o077) !== 0) {
  logger.warn({ path: credentials.path, mode: mode.toString(8) }, "the credential file is readable by others; it should be mode 0600");
}

// One reading of the machine serves Hello, heartbeats and bids alike.
const machine = new RememberingProbe(new SystemMetrics({ stateDir: config.stateDir }));
const events = new JobEventOutbox();
// A driver that is not available here (no Docker engine) is left out of
// Hello.drivers, so auctions never offer its jobs to this agent.
const runners = new RunnerRegistry([
  new ProcessRunner({ allowedRoots: config.allowedRoots }),
  new DockerRunner({ ...(config.dockerSocket ? { socketPath: config.dockerSocket } : {}), logger: root }),
]);
const drivers = await runners.probe(root);
// Ships every bundle's output to the Log service through Fleet; JobHandler
// tells it of bundles and passes it the LogAcks, the worker gives it the stream.
const logs = new LogShipper({ logger: root });
const work = new JobHandler({
  stateDir: config.stateDir,
  runners,
  allowedRoots: config.allowedRoots,
  hostname: os.hostname() || "unknown",
  agentId: () => credentials.current()?.agentId,
  maxAttempts: config.maxAttempts,
  maxServices: config.maxServices,
  allowShell: config.allowShell,
  lastSample: () => machine.latest,
  events,
  logs,
  logger: root,
});
// What a previous agent process left running or unreported is picked up
// before the first Hello, so that Hello.running tells Fleet the truth.
await work.recover();
const retention = new BundleRetention({
  stateDir: config.stateDir,
  maxAgeMs: config.bundleRetentionDays * 86_400_000,
  maxBytes: config.bundleMaxBytes,
  isActive: (attemptId) => work.isRunning(attemptId),
  logger: root,
});
retention.start();
const worker = new AgentWorker({
  server: config.server,
  registrationToken: config.token,
  credentials,
  hostname: os.hostname() || "unknown",
  version,
  labels: config.labels,
  drivers,
  machine,
  work,
  events,
  logs,
  logger: root,
  backoff: { baseMs: RECONNECT_BASE_MS, capMs: config.reconnectMaxMs },
  pingIntervalMs: config.pingIntervalMs,
  pingTimeoutMs: config.pingTimeoutMs,
  welcomeTimeoutMs: config.welcomeTimeoutMs,
});

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    logger.info({ signal, running: work.running().length }, "signal received; stopping");
    // Attempts still running are cancelled first, while the stream is up, so
    // that Fleet hears they ended; left behind, a restarted agent could not
    // find them again. Then the stream closes. A second signal cuts all this
    // short (the default handler ends the process).
    void work.shutdown(SHUTDOWN_GRACE_MS).finally(() => Promise.all([worker.stop(), retention.stop()]));
  });
}

logger.info(
  { server: config.server, agentId: identity?.agentId, labels: config.labels, stateDir: config.stateDir, version, maxAttempts: config.maxAttempts, allowShell: config.allowShell },
  identity ? "drover-agent starting" : "drover-agent starting; will register with the token",
);
// run() returns only after stop(), which only the signals above call.
await worker.run();
// The acknowledged log offsets not yet written go to the bundles, so the next start resends less.
await logs.stop();
process.exit(0);
