import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { ConfigError, EnvReader, readDevConfig, readSplitConfig, type FleetSettings, type LogSettings, type SchedulingSettings } from "./config.ts";

// Fleet's settings when nothing is set.
const fleetDefaults: FleetSettings = {
  heartbeatIntervalMs: 5000,
  staleAfterMs: 15_000,
  offlineAfterMs: 90_000,
  snapshotIntervalMs: 30_000,
  presenceRefreshMs: 7500,
  monitorIntervalMs: 1000,
  sweepIntervalMs: 5000,
  helloTimeoutMs: 10_000,
};

// Scheduling settings when nothing is set.
const schedulingDefaults: SchedulingSettings = {
  leaseMs: 30_000,
  confirmMs: 30_000,
  claimMs: 10_000,
  sweepIntervalMs: 1000,
  waitRetryMs: 10_000,
  bidWindowMs: 50,
  offersPerJob: 4,
  auctionRounds: 4,
  allowShell: false,
};

// Log settings when nothing is set.
const logDefaults: LogSettings = {
  maxBytesPerAttempt: 1 << 30,
  retentionDays: 7,
  retentionIntervalMs: 600_000,
};

// The smallest environment split mode accepts for a service other than fleet.
const splitEnv = {
  DATABASE_URL: "postgres://drover@db:5432/drover",
  REDIS_URL: "redis://redis:6379",
  DROVER_ADMIN_TOKEN: "0123456789abcdef-admin",
  DROVER_FLEET_URL: "http://fleet:7070",
};

/** Runs read, expects a ConfigError naming `variable`, and returns it. */
function configError(read: () => unknown, variable: string): ConfigError {
  let caught: unknown;
  try {
    read();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  assert.match(caught.message, new RegExp(`\\b${variable}\\b`), `message ${JSON.stringify(caught.message)} should name ${variable}`);
  return caught;
}

describe("readDevConfig", () => {
  it("uses the documented defaults when nothing is set", () => {
    assert.deepEqual(readDevConfig({}), {
      logLevel: "info",
      shutdownGraceMs: 5000,
      keepaliveMs: 30_000,
      listen: { host: "127.0.0.1", grpcPort: 7070, httpPort: 7080 },
      fleet: fleetDefaults,
      scheduling: schedulingDefaults,
      log: logDefaults,
      deploy: { tickMs: 1_000, claimMs: 10_000 },
      dataDir: ".drover",
      vacuumIntervalMs: 5_000,
      dbFsync: true,
    });
  });

  it("reads every variable it knows", () => {
    const config = readDevConfig({
      DROVER_LOG_LEVEL: "debug",
      DROVER_SHUTDOWN_GRACE_MS: "250",
      DROVER_KEEPALIVE_MS: "0",
      DROVER_HOST: "0.0.0.0",
      DROVER_GRPC_PORT: "0",
      DROVER_HTTP_PORT: "9090",
      DROVER_DATA_DIR: "/var/lib/drover",
      DROVER_VACUUM_INTERVAL_MS: "0",
      DROVER_DB_FSYNC: "off",
    });
    assert.deepEqual(config, {
      logLevel: "debug",
      shutdownGraceMs: 250,
      keepaliveMs: 0,
      listen: { host: "0.0.0.0", grpcPort: 0, httpPort: 9090 },
      fleet: fleetDefaults,
      scheduling: schedulingDefaults,
      log: logDefaults,
      deploy: { tickMs: 1_000, claimMs: 10_000 },
      dataDir: "/var/lib/drover",
      vacuumIntervalMs: 0,
      dbFsync: false,
    });
  });

  it("rejects a negative DROVER_VACUUM_INTERVAL_MS naming the variable", () => {
    configError(() => readDevConfig({ DROVER_VACUUM_INTERVAL_MS: "-5" }), "DROVER_VACUUM_INTERVAL_MS");
  });

  it("rejects a DROVER_DB_FSYNC other than on or off naming the variable", () => {
    configError(() => readDevConfig({ DROVER_DB_FSYNC: "yes" }), "DROVER_DB_FSYNC");
  });

  it("treats an empty variable as unset", () => {
    assert.equal(readDevConfig({ DROVER_GRPC_PORT: "", DROVER_LOG_LEVEL: "" }).listen.grpcPort, 7070);
  });

  it("lets the dataDir override win over DROVER_DATA_DIR", () => {
    assert.equal(readDevConfig({ DROVER_DATA_DIR: "/from/env" }, { dataDir: "/from/flag" }).dataDir, "/from/flag");
  });

  it("rejects DROVER_GRPC_PORT=abc naming the variable", () => {
    const err = configError(() => readDevConfig({ DROVER_GRPC_PORT: "abc" }), "DROVER_GRPC_PORT");
    assert.equal(err.variable, "DROVER_GRPC_PORT");
    assert.match(err.message, /"abc"/);
  });

  it("rejects ports outside 0..65535 and non-integers", () => {
    for (const bad of ["65536", "-1", "80.5", "1e3", "0x50"]) {
      configError(() => readDevConfig({ DROVER_HTTP_PORT: bad }), "DROVER_HTTP_PORT");
    }
  });

  it("rejects DROVER_LOG_LEVEL=loud naming the variable and the allowed levels", () => {
    const err = configError(() => readDevConfig({ DROVER_LOG_LEVEL: "loud" }), "DROVER_LOG_LEVEL");
    assert.match(err.message, /info/);
  });

  it("rejects a DROVER_KEEPALIVE_MS that is negative", () => {
    configError(() => readDevConfig({ DROVER_KEEPALIVE_MS: "-1" }), "DROVER_KEEPALIVE_MS");
  });

  it("rejects a DROVER_SHUTDOWN_GRACE_MS that is not a number of milliseconds", () => {
    configError(() => readDevConfig({ DROVER_SHUTDOWN_GRACE_MS: "5s" }), "DROVER_SHUTDOWN_GRACE_MS");
  });

  it("reports several bad values in one message", () => {
    const err = configError(
      () => readDevConfig({ DROVER_GRPC_PORT: "abc", DROVER_LOG_LEVEL: "loud", DROVER_HTTP_PORT: "99999" }),
      "DROVER_GRPC_PORT",
    );
    assert.match(err.message, /DROVER_LOG_LEVEL/);
    assert.match(err.message, /DROVER_HTTP_PORT/);
  });
});

describe("readSplitConfig", () => {
  it("reads a complete environment, with defaults for the rest", () => {
    assert.deepEqual(readSplitConfig("scheduler", splitEnv), {
      logLevel: "info",
      shutdownGraceMs: 5000,
      keepaliveMs: 30_000,
      listen: { host: "127.0.0.1", grpcPort: 7070, httpPort: 7080 },
      fleet: fleetDefaults,
      scheduling: schedulingDefaults,
      log: logDefaults,
      deploy: { tickMs: 1_000, claimMs: 10_000 },
      service: "scheduler",
      databaseUrl: splitEnv.DATABASE_URL,
      redisUrl: splitEnv.REDIS_URL,
      redisPrefix: "drover:",
      pgPrepare: true,
      adminToken: splitEnv.DROVER_ADMIN_TOKEN,
      serviceUrls: { fleet: splitEnv.DROVER_FLEET_URL },
    });
  });

  it("collects the other services' URLs", () => {
    const config = readSplitConfig("deploy", { ...splitEnv, DROVER_SCHEDULER_URL: "https://scheduler:7070" });
    assert.deepEqual(config.serviceUrls, { fleet: "http://fleet:7070", scheduler: "https://scheduler:7070" });
  });

  it("does not need DROVER_FLEET_URL in fleet itself", () => {
    const { DROVER_FLEET_URL: _, ...env } = splitEnv;
    assert.deepEqual(readSplitConfig("fleet", env).serviceUrls, {});
  });

  it("rejects DATABASE_URL=mysql://... naming the variable", () => {
    const err = configError(
      () => readSplitConfig("scheduler", { ...splitEnv, DATABASE_URL: "mysql://root@db:3306/drover" }),
      "DATABASE_URL",
    );
    assert.match(err.message, /postgres/);
  });

  it("rejects a DATABASE_URL that is not a URL", () => {
    configError(() => readSplitConfig("scheduler", { ...splitEnv, DATABASE_URL: "db:5432" }), "DATABASE_URL");
  });

  it("requires DATABASE_URL and REDIS_URL", () => {
    const { DATABASE_URL: _d, REDIS_URL: _r, ...env } = splitEnv;
    const err = configError(() => readSplitConfig("scheduler", env), "DATABASE_URL");
    assert.match(err.message, /REDIS_URL/);
  });

  it("reads DROVER_PG_PREPARE as on or off, naming it otherwise", () => {
    assert.equal(readSplitConfig("scheduler", { ...splitEnv, DROVER_PG_PREPARE: "off" }).pgPrepare, false);
    assert.equal(readSplitConfig("scheduler", { ...splitEnv, DROVER_PG_PREPARE: "on" }).pgPrepare, true);
    configError(() => readSplitConfig("scheduler", { ...splitEnv, DROVER_PG_PREPARE: "yes" }), "DROVER_PG_PREPARE");
  });

  it("rejects a REDIS_URL with another scheme", () => {
    configError(() => readSplitConfig("scheduler", { ...splitEnv, REDIS_URL: "http://redis:6379" }), "REDIS_URL");
  });

  it("requires DROVER_ADMIN_TOKEN in split mode", () => {
    const { DROVER_ADMIN_TOKEN: _, ...env } = splitEnv;
    const err = configError(() => readSplitConfig("fleet", env), "DROVER_ADMIN_TOKEN");
    assert.match(err.message, /required/);
  });

  it("rejects a DROVER_ADMIN_TOKEN shorter than 16 characters", () => {
    const err = configError(() => readSplitConfig("fleet", { ...splitEnv, DROVER_ADMIN_TOKEN: "short" }), "DROVER_ADMIN_TOKEN");
    assert.match(err.message, /16/);
    // The message names the variable but never echoes the secret.
    assert.doesNotMatch(err.message, /short"/);
  });

  it("requires DROVER_FLEET_URL for every service but fleet", () => {
    const { DROVER_FLEET_URL: _, ...env } = splitEnv;
    for (const service of ["scheduler", "bid", "deploy", "log"] as const) {
      configError(() => readSplitConfig(service, env), "DROVER_FLEET_URL");
    }
  });

  it("rejects a service URL that is not http or https", () => {
    configError(() => readSplitConfig("bid", { ...splitEnv, DROVER_LOG_URL: "ftp://log:21" }), "DROVER_LOG_URL");
  });

  it("reports every bad value in one message, the first as its variable", () => {
    const err = configError(
      () =>
        readSplitConfig("scheduler", {
          DATABASE_URL: "mysql://db/drover",
          REDIS_URL: "redis://redis:6379",
          DROVER_ADMIN_TOKEN: "short",
          DROVER_LOG_LEVEL: "loud",
          DROVER_GRPC_PORT: "abc",
        }),
      "DROVER_FLEET_URL",
    );
    assert.equal(err.variable, "DROVER_FLEET_URL");
    for (const variable of ["DROVER_ADMIN_TOKEN", "DROVER_LOG_LEVEL", "DROVER_GRPC_PORT", "DATABASE_URL"]) {
      assert.match(err.message, new RegExp(variable));
    }
    assert.doesNotMatch(err.message, /REDIS_URL/);
  });
});

describe("fleet settings", () => {
  it("reads every fleet variable, in dev and in split mode", () => {
    const env = {
      DROVER_HEARTBEAT_INTERVAL_MS: "200",
      DROVER_STALE_AFTER_MS: "700",
      DROVER_OFFLINE_AFTER_MS: "1500",
      DROVER_SNAPSHOT_INTERVAL_MS: "1000",
      DROVER_PRESENCE_REFRESH_MS: "300",
      DROVER_MONITOR_INTERVAL_MS: "100",
      DROVER_SWEEP_INTERVAL_MS: "250",
      DROVER_HELLO_TIMEOUT_MS: "2000",
    };
    const expected: FleetSettings = {
      heartbeatIntervalMs: 200,
      staleAfterMs: 700,
      offlineAfterMs: 1500,
      snapshotIntervalMs: 1000,
      presenceRefreshMs: 300,
      monitorIntervalMs: 100,
      sweepIntervalMs: 250,
      helloTimeoutMs: 2000,
    };
    assert.deepEqual(readDevConfig(env).fleet, expected);
    assert.deepEqual(readSplitConfig("fleet", { ...splitEnv, ...env }).fleet, expected);
  });

  it("reads the scheduling settings, and refuses a bad one naming it", () => {
    const env = {
      DROVER_LEASE_MS: "2000",
      DROVER_CONFIRM_MS: "3000",
      DROVER_CLAIM_MS: "4000",
      DROVER_SCHEDULER_SWEEP_MS: "50",
      DROVER_WAIT_RETRY_MS: "500",
      DROVER_BID_WINDOW_MS: "20",
      DROVER_OFFERS_PER_JOB: "2",
      DROVER_AUCTION_ROUNDS: "2",
      DROVER_ALLOW_SHELL: "true",
    };
    assert.deepEqual(readDevConfig(env).scheduling, {
      leaseMs: 2000,
      confirmMs: 3000,
      claimMs: 4000,
      sweepIntervalMs: 50,
      waitRetryMs: 500,
      bidWindowMs: 20,
      offersPerJob: 2,
      auctionRounds: 2,
      allowShell: true,
    });
    assert.throws(() => readDevConfig({ DROVER_OFFERS_PER_JOB: "0" }), /DROVER_OFFERS_PER_JOB/);
    assert.throws(() => readDevConfig({ DROVER_ALLOW_SHELL: "yes" }), /DROVER_ALLOW_SHELL/);
    assert.throws(() => readDevConfig({ DROVER_AUCTION_ROUNDS: "0" }), /DROVER_AUCTION_ROUNDS/);
  });

  it("reads the log settings, and refuses a bad one naming it", () => {
    const env = { DROVER_LOG_MAX_BYTES_PER_ATTEMPT: "1048576", DROVER_LOG_RETENTION_DAYS: "30", DROVER_LOG_RETENTION_INTERVAL_MS: "60000" };
    const expected = { maxBytesPerAttempt: 1 << 20, retentionDays: 30, retentionIntervalMs: 60_000 };
    assert.deepEqual(readDevConfig(env).log, expected);
    assert.deepEqual(readSplitConfig("log", { ...splitEnv, ...env }).log, expected);
    configError(() => readDevConfig({ DROVER_LOG_RETENTION_DAYS: "0" }), "DROVER_LOG_RETENTION_DAYS");
    configError(() => readDevConfig({ DROVER_LOG_MAX_BYTES_PER_ATTEMPT: "1GiB" }), "DROVER_LOG_MAX_BYTES_PER_ATTEMPT");
  });

  it("derives the stale threshold, presence refresh and sweep interval from the heartbeat interval", () => {
    const fleet = readDevConfig({ DROVER_HEARTBEAT_INTERVAL_MS: "1000" }).fleet;
    assert.equal(fleet.staleAfterMs, 3000);
    assert.equal(fleet.presenceRefreshMs, 1500);
    assert.equal(fleet.sweepIntervalMs, 1000);
    assert.equal(fleet.offlineAfterMs, 90_000);
    // A slow heartbeat pushes the offline threshold out so it stays above stale.
    assert.equal(readDevConfig({ DROVER_HEARTBEAT_INTERVAL_MS: "60000" }).fleet.offlineAfterMs, 360_000);
  });

  it("rejects a heartbeat interval that is not a number of milliseconds, naming the variable", () => {
    configError(() => readDevConfig({ DROVER_HEARTBEAT_INTERVAL_MS: "5s" }), "DROVER_HEARTBEAT_INTERVAL_MS");
    configError(() => readDevConfig({ DROVER_HEARTBEAT_INTERVAL_MS: "0" }), "DROVER_HEARTBEAT_INTERVAL_MS");
  });

  it("rejects thresholds in the wrong order, naming the variable", () => {
    const stale = configError(() => readDevConfig({ DROVER_HEARTBEAT_INTERVAL_MS: "5000", DROVER_STALE_AFTER_MS: "4000" }), "DROVER_STALE_AFTER_MS");
    assert.match(stale.message, /heartbeat interval/);
    const offline = configError(() => readDevConfig({ DROVER_STALE_AFTER_MS: "20000", DROVER_OFFLINE_AFTER_MS: "20000" }), "DROVER_OFFLINE_AFTER_MS");
    assert.match(offline.message, /stale threshold/);
    const claim = configError(() => readDevConfig({ DROVER_DEPLOY_TICK_MS: "1000", DROVER_DEPLOY_CLAIM_MS: "3000" }), "DROVER_DEPLOY_CLAIM_MS");
    assert.match(claim.message, /at least 4 times DROVER_DEPLOY_TICK_MS \(1000 ms\), got 3000/);
  });
});

describe("EnvReader", () => {
  it("does nothing on done() when every value was good", () => {
    const r = new EnvReader({ N: "7" });
    assert.equal(r.integer("N", 1, 0, 10), 7);
    r.done();
  });

  it("returns the fallback for a bad value and still fails on done()", () => {
    const r = new EnvReader({ N: "70" });
    assert.equal(r.integer("N", 1, 0, 10), 1);
    configError(() => r.done(), "N");
  });
});
