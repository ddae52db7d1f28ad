import os from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { ConfigError, EnvReader, LOG_LEVELS, type LogLevel } from "../lib/config.ts";
import { DEFAULT_MAX_SERVICES } from "./bidding.ts";

/** How the agent is configured: flags first, then environment variables. */
export interface AgentConfig {
  /** Fleet's HTTP/2 base URL (--server, DROVER_SERVER). Required. */
  server: string;
  /**
   * Registration token (--token, DROVER_TOKEN), presented once to obtain the
   * agent's own credential. Required until the agent has registered (its
   * state directory holds a credential); main checks that. Empty when unset.
   */
  token: string;
  /** Labels this agent reports, k=v,k=v (--labels, DROVER_LABELS). */
  labels: Record<string, string>;
  /** Where the agent keeps its credential and execution bundles (--state-dir, DROVER_STATE_DIR), default ./.drover-agent. */
  stateDir: string;
  /** pino level (DROVER_LOG_LEVEL), default info. */
  logLevel: LogLevel;
  /** Longest wait between reconnection attempts (DROVER_RECONNECT_MAX_MS), default 30000. */
  reconnectMaxMs: number;
  /** HTTP/2 PING interval on the stream's connection (DROVER_PING_INTERVAL_MS), default 15000: how soon a dead link is suspected. */
  pingIntervalMs: number;
  /** How long a PING may go unanswered before the connection is dropped (DROVER_PING_TIMEOUT_MS), default 10000. */
  pingTimeoutMs: number;
  /** Longest wait from dialling to Welcome, the dial included (DROVER_WELCOME_TIMEOUT_MS), default 15000. */
  welcomeTimeoutMs: number;
  /** The most attempts run at once (DROVER_MAX_ATTEMPTS), default the number of cores (at least 1); offers beyond it are declined. Service replicas do not count. */
  maxAttempts: number;
  /** The most service replicas run at once (DROVER_MAX_SERVICES), default 128; offers of replicas beyond it are declined. */
  maxServices: number;
  /**
   * Whether jobs may run their commands through /bin/sh -c (DROVER_ALLOW_SHELL,
   * true or false), default false: a job's allow_shell is honoured only when
   * this machine's owner agrees too.
   */
  allowShell: boolean;
  /**
   * Absolute directories a command's absolute cwd may be under
   * (DROVER_ALLOWED_ROOTS, separated by ':'), default none: commands run in
   * their attempt's work directory or below it.
   */
  allowedRoots: string[];
  /** The Docker Engine's unix socket (DROVER_DOCKER_SOCKET), default from DOCKER_HOST or /var/run/docker.sock. */
  dockerSocket?: string;
  /** Execution bundles ended longer ago than this many days are removed (DROVER_BUNDLE_RETENTION_DAYS), default 7. */
  bundleRetentionDays: number;
  /** When all bundles together are larger than this, the oldest ended ones are removed (DROVER_BUNDLE_MAX_BYTES), default 10 GiB. */
  bundleMaxBytes: number;
}

/** What the defaults depend on about the machine; tests pass their own. */
export interface MachineDefaults {
  /** Cores this process may use. */
  cores: number;
}

export function readAgentConfig(
  argv: string[],
  env: Record<string, string | undefined>,
  machine: MachineDefaults = { cores: os.availableParallelism() },
): AgentConfig {
  let values: { server?: string; token?: string; labels?: string; "state-dir"?: string };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        server: { type: "string" },
        token: { type: "string" },
        labels: { type: "string" },
        "state-dir": { type: "string" },
      },
      strict: true,
    }));
  } catch (err) {
    throw new ConfigError("arguments", `${(err as Error).message} (usage: drover-agent --server URL [--token TOKEN] [--labels k=v,...] [--state-dir DIR])`);
  }
  const r = new EnvReader({
    ...env,
    ...(values.server ? { DROVER_SERVER: values.server } : {}),
    ...(values.token ? { DROVER_TOKEN: values.token } : {}),
    ...(values.labels ? { DROVER_LABELS: values.labels } : {}),
    ...(values["state-dir"] ? { DROVER_STATE_DIR: values["state-dir"] } : {}),
  });
  const server = r.url("DROVER_SERVER", ["http", "https"]) ?? (r.required("DROVER_SERVER", "(--server): Fleet's address"), "");
  const token = r.string("DROVER_TOKEN", "");
  const labels: Record<string, string> = {};
  for (const pair of (r.string("DROVER_LABELS") ?? "").split(",").filter(Boolean)) {
    const [key, value, ...rest] = pair.split("=");
    if (!key || value === undefined || rest.length) r.problem("DROVER_LABELS", `expected k=v pairs separated by commas, got ${JSON.stringify(pair)}`);
    else labels[key.trim()] = value.trim();
  }
  const config: AgentConfig = {
    server,
    token,
    labels,
    // Absolute: commands run in their own work directories, and paths handed to them
    // (a shim's status file, say) must not depend on the cwd.
    stateDir: resolve(r.string("DROVER_STATE_DIR", ".drover-agent")),
    logLevel: r.oneOf("DROVER_LOG_LEVEL", "info", LOG_LEVELS),
    reconnectMaxMs: r.integer("DROVER_RECONNECT_MAX_MS", 30_000, 100, 3_600_000),
    pingIntervalMs: r.integer("DROVER_PING_INTERVAL_MS", 15_000, 100, 3_600_000),
    pingTimeoutMs: r.integer("DROVER_PING_TIMEOUT_MS", 10_000, 100, 600_000),
    welcomeTimeoutMs: r.integer("DROVER_WELCOME_TIMEOUT_MS", 15_000, 100, 600_000),
    maxAttempts: r.integer("DROVER_MAX_ATTEMPTS", Math.max(1, machine.cores), 1, 4_096),
    maxServices: r.integer("DROVER_MAX_SERVICES", DEFAULT_MAX_SERVICES, 1, 4_096),
    allowShell: r.oneOf("DROVER_ALLOW_SHELL", "false", ["true", "false"]) === "true",
    allowedRoots: (r.string("DROVER_ALLOWED_ROOTS") ?? "").split(":").filter(Boolean),
    ...(r.string("DROVER_DOCKER_SOCKET") ? { dockerSocket: r.string("DROVER_DOCKER_SOCKET") } : {}),
    bundleRetentionDays: r.integer("DROVER_BUNDLE_RETENTION_DAYS", 7, 1, 3_650),
    bundleMaxBytes: r.integer("DROVER_BUNDLE_MAX_BYTES", 10 * 1024 ** 3, 1024 ** 2, Number.MAX_SAFE_INTEGER),
  };
  for (const root of config.allowedRoots) if (!root.startsWith("/")) r.problem("DROVER_ALLOWED_ROOTS", `must list absolute directories separated by ':', got ${JSON.stringify(root)}`);
  r.done();
  return config;
}
