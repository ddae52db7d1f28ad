// Configuration is read from environment variables once, at start-up, into a
// typed object. A bad value stops the process with a message that names the
// variable; nothing else in Drover reads process.env.

/** ConfigError names the variable that holds a bad value. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    problem: string,
  ) {
    super(`${variable}: ${problem}`);
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | undefined>;

/** Reads one variable at a time, collecting every problem before failing. */
export class EnvReader {
  private readonly problems: ConfigError[] = [];

  constructor(private readonly env: Env) {}

  string(name: string, fallback: string): string;
  string(name: string, fallback?: undefined): string | undefined;
  string(name: string, fallback?: string): string | undefined {
    const raw = this.env[name];
    return raw === undefined || raw === "" ? fallback : raw;
  }

  /** A variable that must be present. */
  required(name: string, why: string): string {
    const value = this.string(name);
    if (value === undefined) {
      this.problems.push(new ConfigError(name, `is required ${why}`));
      return "";
    }
    return value;
  }

  integer(name: string, fallback: number, min: number, max: number): number {
    const raw = this.string(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
      this.problems.push(new ConfigError(name, `must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`));
      return fallback;
    }
    return value;
  }

  port(name: string, fallback: number): number {
    return this.integer(name, fallback, 0, 65535);
  }

  oneOf<T extends string>(name: string, fallback: T, allowed: readonly T[]): T {
    const raw = this.string(name);
    if (raw === undefined) return fallback;
    if (!(allowed as readonly string[]).includes(raw)) {
      this.problems.push(new ConfigError(name, `must be one of ${allowed.join(", ")}, got ${JSON.stringify(raw)}`));
      return fallback;
    }
    return raw as T;
  }

  /** A URL whose scheme is one of `schemes`. */
  url(name: string, schemes: readonly string[], fallback?: string): string | undefined {
    const raw = this.string(name) ?? fallback;
    if (raw === undefined) return undefined;
    let parsed: URL;
    try {
      parsed = new URL(raw);
    } catch {
      this.problems.push(new ConfigError(name, `must be a URL, got ${JSON.stringify(raw)}`));
      return undefined;
    }
    if (!schemes.includes(parsed.protocol.replace(/:$/, ""))) {
      this.problems.push(new ConfigError(name, `must use ${schemes.join(" or ")}, got ${parsed.protocol}`));
      return undefined;
    }
    return raw;
  }

  /** Records a problem found by a check the reader does not know. */
  problem(name: string, problem: string): void {
    this.problems.push(new ConfigError(name, problem));
  }

  /** Throws the first problem (its message lists them all), or returns. */
  done(): void {
    const [first] = this.problems;
    if (first === undefined) return;
    first.message = this.problems.map((p) => p.message).join("; ");
    throw first;
  }
}

/** The names of Drover's five services, as used in schemas, URLs and logs. */
export const SERVICE_NAMES = ["fleet", "scheduler", "bid", "deploy", "log"] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Where a server listens. */
export interface ListenConfig {
  /** Interface to bind (DROVER_HOST). Default 127.0.0.1; containers use 0.0.0.0. */
  host: string;
  /** Port for HTTP/2 cleartext: gRPC, and Connect/gRPC-Web over h2c (DROVER_GRPC_PORT). 0 picks a free port. */
  grpcPort: number;
  /** Port for HTTP/1.1: Connect JSON for curl and browsers, gRPC-Web (DROVER_HTTP_PORT). 0 picks a free port. */
  httpPort: number;
}

/** Settings every service process shares, in both wirings. */
export interface CommonConfig {
  /** pino level (DROVER_LOG_LEVEL), default info. */
  logLevel: LogLevel;
  /** How long SIGTERM waits for in-flight unary calls before closing streams (DROVER_SHUTDOWN_GRACE_MS), default 5000. */
  shutdownGraceMs: number;
  /** HTTP/2 keepalive PING interval and timeout towards clients (DROVER_KEEPALIVE_MS), default 30000; 0 disables. */
  keepaliveMs: number;
  listen: ListenConfig;
  /** Heartbeats, liveness and snapshots of agents (DROVER_HEARTBEAT_INTERVAL_MS, ...); used by Fleet. */
  fleet: FleetSettings;
  /** Leases, claims and auctions (DROVER_LEASE_MS, ...); used by the Scheduler and Bid. */
  scheduling: SchedulingSettings;
  /** Size caps and retention of stored output (DROVER_LOG_MAX_BYTES_PER_ATTEMPT, ...); used by Log. */
  log: LogSettings;
  /** How often rollouts are driven, claims (DROVER_DEPLOY_TICK_MS, ...); used by Deploy. */
  deploy: DeploySettings;
}

function readCommon(r: EnvReader, defaults: { grpcPort: number; httpPort: number }): CommonConfig {
  return {
    logLevel: r.oneOf("DROVER_LOG_LEVEL", "info", LOG_LEVELS),
    shutdownGraceMs: r.integer("DROVER_SHUTDOWN_GRACE_MS", 5000, 0, 600_000),
    keepaliveMs: r.integer("DROVER_KEEPALIVE_MS", 30_000, 0, 3_600_000),
    listen: {
      host: r.string("DROVER_HOST", "127.0.0.1"),
      grpcPort: r.port("DROVER_GRPC_PORT", defaults.grpcPort),
      httpPort: r.port("DROVER_HTTP_PORT", defaults.httpPort),
    },
    fleet: readFleetSettings(r),
    scheduling: readSchedulingSettings(r),
    log: readLogSettings(r),
    deploy: readDeploySettings(r),
  };
}

/**
 * How jobs are placed and held: the Scheduler's leases and claims, the Bid
 * service's auctions. The defaults suit a real fleet; tests shorten them.
 */
export interface SchedulingSettings {
  /** How long a running attempt's lease lasts; renewed while its agent stays online (DROVER_LEASE_MS), default 30000. */
  leaseMs: number;
  /** How long an assigned attempt has to be reported running before it is lost (DROVER_CONFIRM_MS), default 30000. */
  confirmMs: number;
  /** How long a Bid replica's claim on a job lasts before the job is placeable again (DROVER_CLAIM_MS), default 10000. */
  claimMs: number;
  /** How often the Scheduler sweeps lapsed claims and leases (DROVER_SCHEDULER_SWEEP_MS), default 1000. */
  sweepIntervalMs: number;
  /** Longest a job with no eligible agent waits before it is auctioned again, if no capacity appeared meanwhile (DROVER_WAIT_RETRY_MS), default 10000. */
  waitRetryMs: number;
  /** How long an auction collects bids (DROVER_BID_WINDOW_MS), default 50. */
  bidWindowMs: number;
  /** How many eligible agents get each offer: the k of power-of-k choices (DROVER_OFFERS_PER_JOB), default 4 (bench/README.md, scheduling: "Four offers per auctioned job"). */
  offersPerJob: number;
  /** How many auction rounds (claim, offers, placements) a Bid replica keeps in flight (DROVER_AUCTION_ROUNDS), default 4. */
  auctionRounds: number;
  /** Whether jobs may ask to run their commands through a shell (DROVER_ALLOW_SHELL=true|false), default false. Agents have their own say too. */
  allowShell: boolean;
}

function readSchedulingSettings(r: EnvReader): SchedulingSettings {
  const DAY = 86_400_000;
  return {
    leaseMs: r.integer("DROVER_LEASE_MS", 30_000, 100, DAY),
    confirmMs: r.integer("DROVER_CONFIRM_MS", 30_000, 100, DAY),
    claimMs: r.integer("DROVER_CLAIM_MS", 10_000, 100, 3_600_000),
    sweepIntervalMs: r.integer("DROVER_SCHEDULER_SWEEP_MS", 1000, 10, 60_000),
    waitRetryMs: r.integer("DROVER_WAIT_RETRY_MS", 10_000, 10, DAY),
    bidWindowMs: r.integer("DROVER_BID_WINDOW_MS", 50, 1, 10_000),
    offersPerJob: r.integer("DROVER_OFFERS_PER_JOB", 4, 1, 64),
    auctionRounds: r.integer("DROVER_AUCTION_ROUNDS", 4, 1, 32),
    allowShell: r.oneOf("DROVER_ALLOW_SHELL", "false", ["true", "false"] as const) === "true",
  };
}

/** Scheduling settings with every default: what an empty environment gives. */
export function defaultSchedulingSettings(): SchedulingSettings {
  return readSchedulingSettings(new EnvReader({}));
}

/**
 * How Fleet keeps track of agents: heartbeats, liveness and what it writes
 * where. Every process reads them (they share the reader); Fleet uses them.
 * The defaults suit a real fleet; tests shorten them.
 */
export interface FleetSettings {
  /** How often agents send a Heartbeat; told to them in Welcome (DROVER_HEARTBEAT_INTERVAL_MS), default 5000. */
  heartbeatIntervalMs: number;
  /** Silence after which an agent is stale (DROVER_STALE_AFTER_MS), default 3 heartbeat intervals. */
  staleAfterMs: number;
  /** Silence after which an agent is offline and its work reclaimed (DROVER_OFFLINE_AFTER_MS), default 90000 (or twice staleAfterMs if that is more); above staleAfterMs. */
  offlineAfterMs: number;
  /** Most time between two Postgres snapshots of an agent's heartbeat data (DROVER_SNAPSHOT_INTERVAL_MS), default 30000. */
  snapshotIntervalMs: number;
  /** How often a replica refreshes the bus presence key of each agent it holds (DROVER_PRESENCE_REFRESH_MS), default staleAfterMs / 2; the key lives twice as long. */
  presenceRefreshMs: number;
  /** How often a replica checks the liveness of the agents it holds (DROVER_MONITOR_INTERVAL_MS), default 1000. */
  monitorIntervalMs: number;
  /** How often the sweeper (one replica at a time) checks agents that no replica holds (DROVER_SWEEP_INTERVAL_MS), default the heartbeat interval. */
  sweepIntervalMs: number;
  /** How long a new agent stream may take to send Hello before it is closed (DROVER_HELLO_TIMEOUT_MS), default 10000. */
  helloTimeoutMs: number;
}

function readFleetSettings(r: EnvReader): FleetSettings {
  const DAY = 86_400_000;
  const heartbeatIntervalMs = r.integer("DROVER_HEARTBEAT_INTERVAL_MS", 5000, 50, 3_600_000);
  const staleAfterMs = r.integer("DROVER_STALE_AFTER_MS", 3 * heartbeatIntervalMs, 100, DAY);
  const offlineAfterMs = r.integer("DROVER_OFFLINE_AFTER_MS", Math.max(90_000, 2 * staleAfterMs), 100, DAY);
  if (staleAfterMs <= heartbeatIntervalMs) {
    r.problem("DROVER_STALE_AFTER_MS", `must be more than the heartbeat interval (${heartbeatIntervalMs} ms), got ${staleAfterMs}`);
  }
  if (offlineAfterMs <= staleAfterMs) {
    r.problem("DROVER_OFFLINE_AFTER_MS", `must be more than the stale threshold (${staleAfterMs} ms), got ${offlineAfterMs}`);
  }
  return {
    heartbeatIntervalMs,
    staleAfterMs,
    offlineAfterMs,
    snapshotIntervalMs: r.integer("DROVER_SNAPSHOT_INTERVAL_MS", 30_000, 10, DAY),
    presenceRefreshMs: r.integer("DROVER_PRESENCE_REFRESH_MS", Math.max(10, Math.floor(staleAfterMs / 2)), 10, DAY),
    monitorIntervalMs: r.integer("DROVER_MONITOR_INTERVAL_MS", 1000, 10, 60_000),
    sweepIntervalMs: r.integer("DROVER_SWEEP_INTERVAL_MS", heartbeatIntervalMs, 10, 3_600_000),
    helloTimeoutMs: r.integer("DROVER_HELLO_TIMEOUT_MS", 10_000, 10, 600_000),
  };
}

/** Fleet's settings with every default: what an empty environment gives. */
export function defaultFleetSettings(): FleetSettings {
  return readFleetSettings(new EnvReader({}));
}

/** Dev mode: every service in one process on an embedded database. */
export interface DevConfig extends CommonConfig {
  /** Where the embedded database and the admin token live (DROVER_DATA_DIR), default ./.drover. */
  dataDir: string;
  /**
   * How often the embedded database is vacuumed, at least (it has no
   * autovacuum; lib/db/embedded_vacuum.ts), ms (DROVER_VACUUM_INTERVAL_MS),
   * default 5000; 0: never.
   */
  vacuumIntervalMs: number;
  /**
   * Whether the embedded database flushes each commit to the disk (fsync),
   * as PostgreSQL does (DROVER_DB_FSYNC, on or off), default on. Off, a
   * crash of the machine (power loss, kernel panic; not of the process) may
   * lose acknowledged writes or corrupt the database.
   */
  dbFsync: boolean;
}

export function readDevConfig(env: Env = process.env, overrides: Partial<Pick<DevConfig, "dataDir">> = {}): DevConfig {
  const r = new EnvReader(env);
  const config: DevConfig = {
    ...readCommon(r, { grpcPort: 7070, httpPort: 7080 }),
    dataDir: overrides.dataDir ?? r.string("DROVER_DATA_DIR", ".drover"),
    vacuumIntervalMs: r.integer("DROVER_VACUUM_INTERVAL_MS", 5_000, 0, 86_400_000),
    dbFsync: r.oneOf("DROVER_DB_FSYNC", "on", ["on", "off"]) === "on",
  };
  r.done();
  return config;
}

/** Split mode: one service per process on PostgreSQL and Redis. */
export interface SplitConfig extends CommonConfig {
  /** Which service this process runs. */
  service: ServiceName;
  /** PostgreSQL connection URL (DATABASE_URL). Required. */
  databaseUrl: string;
  /** Redis connection URL (REDIS_URL). Required. */
  redisUrl: string;
  /** Prefix of every Redis key, so deployments can share a Redis (DROVER_REDIS_PREFIX), default "drover:". */
  redisPrefix: string;
  /**
   * Whether the hot statements go to PostgreSQL as named prepared statements,
   * parsed once per connection (DROVER_PG_PREPARE, on or off), default on.
   * Off behind a pooler in transaction mode that does not keep them.
   */
  pgPrepare: boolean;
  /**
   * An admin token secret (DROVER_ADMIN_TOKEN). Fleet makes sure it exists;
   * the other services present it when they call Fleet. Required.
   */
  adminToken: string;
  /** Base URLs (h2c) of the services this one calls (DROVER_<NAME>_URL). */
  serviceUrls: Partial<Record<ServiceName, string>>;
}

export function readSplitConfig(service: ServiceName, env: Env = process.env): SplitConfig {
  const r = new EnvReader(env);
  const serviceUrls: Partial<Record<ServiceName, string>> = {};
  for (const name of SERVICE_NAMES) {
    const url = r.url(`DROVER_${name.toUpperCase()}_URL`, ["http", "https"]);
    if (url !== undefined) serviceUrls[name] = url;
  }
  if (service !== "fleet" && serviceUrls.fleet === undefined) {
    r.required("DROVER_FLEET_URL", "for every service but fleet (it checks callers' tokens with Fleet)");
  }
  const adminToken = r.required("DROVER_ADMIN_TOKEN", "in split mode");
  if (adminToken !== "" && adminToken.length < 16) {
    r.problem("DROVER_ADMIN_TOKEN", "must be at least 16 characters");
  }
  const config: SplitConfig = {
    ...readCommon(r, { grpcPort: 7070, httpPort: 7080 }),
    service,
    databaseUrl: r.url("DATABASE_URL", ["postgres", "postgresql"]) ?? (r.required("DATABASE_URL", "in split mode"), ""),
    redisUrl: r.url("REDIS_URL", ["redis", "rediss"]) ?? (r.required("REDIS_URL", "in split mode"), ""),
    redisPrefix: r.string("DROVER_REDIS_PREFIX", "drover:"),
    pgPrepare: r.oneOf("DROVER_PG_PREPARE", "on", ["on", "off"]) === "on",
    adminToken,
    serviceUrls,
  };
  r.done();
  return config;
}

/** How the Log service keeps output. The defaults suit a real fleet; tests shorten them. */
export interface LogSettings {
  /** Most bytes stored per attempt, all streams together; past it output is dropped and marked truncated (DROVER_LOG_MAX_BYTES_PER_ATTEMPT), default 1 GiB. */
  maxBytesPerAttempt: number;
  /** Output of attempts idle longer than this is deleted (DROVER_LOG_RETENTION_DAYS), default 7. */
  retentionDays: number;
  /** How often one replica enforces retention (DROVER_LOG_RETENTION_INTERVAL_MS), default 600000. */
  retentionIntervalMs: number;
}

function readLogSettings(r: EnvReader): LogSettings {
  return {
    maxBytesPerAttempt: r.integer("DROVER_LOG_MAX_BYTES_PER_ATTEMPT", 1 << 30, 1024, Number.MAX_SAFE_INTEGER),
    retentionDays: r.integer("DROVER_LOG_RETENTION_DAYS", 7, 1, 36_500),
    retentionIntervalMs: r.integer("DROVER_LOG_RETENTION_INTERVAL_MS", 600_000, 10, 86_400_000),
  };
}

/** Log settings with every default: what an empty environment gives. */
export function defaultLogSettings(): LogSettings {
  return readLogSettings(new EnvReader({}));
}

/** How the Deploy service drives rollouts. */
export interface DeploySettings {
  /**
   * How often the controller looks at all its deployments and renews its
   * claims (DROVER_DEPLOY_TICK_MS), default 1000. Replica changes wake it
   * at once through the Scheduler's doorbell; the tick catches deadlines,
   * agents that start or stop matching a per_agent selector, and lost doorbells.
   */
  tickMs: number;
  /** How long a Deploy replica's claim on a deployment lasts unless renewed (DROVER_DEPLOY_CLAIM_MS), default 10000. */
  claimMs: number;
}

function readDeploySettings(r: EnvReader): DeploySettings {
  const tickMs = r.integer("DROVER_DEPLOY_TICK_MS", 1_000, 10, 60_000);
  const claimMs = r.integer("DROVER_DEPLOY_CLAIM_MS", 10_000, 500, 600_000);
  // A claim is renewed once half of it has run out, on a tick: two ticks must fit in that half.
  if (claimMs < 4 * tickMs) r.problem("DROVER_DEPLOY_CLAIM_MS", `must be at least 4 times DROVER_DEPLOY_TICK_MS (${tickMs} ms), got ${claimMs}`);
  return { tickMs, claimMs };
}
