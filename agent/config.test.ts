import assert from "node:assert/strict";
import os from "node:os";
import { resolve } from "node:path";
import { describe, it } from "node:test";

import { ConfigError } from "../lib/config.ts";
import { readAgentConfig } from "./config.ts";

/** Runs read, expects a ConfigError naming `variable`, and returns its message. */
function configError(read: () => unknown, variable: string): string {
  try {
    read();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.match(err.message, new RegExp(`\\b${variable}\\b`));
    return err.message;
  }
  assert.fail("expected a ConfigError");
}

describe("readAgentConfig", () => {
  it("reads flags, with documented defaults for the rest", () => {
    assert.deepEqual(readAgentConfig(["--server", "http://fleet:7070", "--token", "t-1"], {}, { cores: 6 }), {
      server: "http://fleet:7070",
      token: "t-1",
      labels: {},
      stateDir: resolve(".drover-agent"),
      logLevel: "info",
      reconnectMaxMs: 30_000,
      pingIntervalMs: 15_000,
      pingTimeoutMs: 10_000,
      welcomeTimeoutMs: 15_000,
      maxAttempts: 6,
      maxServices: 128,
      allowShell: false,
      allowedRoots: [],
      bundleRetentionDays: 7,
      bundleMaxBytes: 10 * 1024 ** 3,
    });
  });

  it("reads the same settings from the environment", () => {
    const config = readAgentConfig([], {
      DROVER_SERVER: "https://fleet.example:443",
      DROVER_TOKEN: "t-2",
      DROVER_LABELS: "zone=a, gpu = none",
      DROVER_STATE_DIR: "/var/lib/drover-agent",
      DROVER_LOG_LEVEL: "debug",
      DROVER_RECONNECT_MAX_MS: "5000",
      DROVER_PING_INTERVAL_MS: "2000",
      DROVER_PING_TIMEOUT_MS: "1000",
      DROVER_WELCOME_TIMEOUT_MS: "3000",
      DROVER_MAX_ATTEMPTS: "3",
      DROVER_MAX_SERVICES: "20",
      DROVER_ALLOW_SHELL: "true",
      DROVER_ALLOWED_ROOTS: "/srv/builds:/data",
      DROVER_DOCKER_SOCKET: "/run/docker.sock",
      DROVER_BUNDLE_RETENTION_DAYS: "3",
      DROVER_BUNDLE_MAX_BYTES: "1048576",
    });
    assert.deepEqual(config, {
      server: "https://fleet.example:443",
      token: "t-2",
      labels: { zone: "a", gpu: "none" },
      stateDir: "/var/lib/drover-agent",
      logLevel: "debug",
      reconnectMaxMs: 5_000,
      pingIntervalMs: 2_000,
      pingTimeoutMs: 1_000,
      welcomeTimeoutMs: 3_000,
      maxAttempts: 3,
      maxServices: 20,
      allowShell: true,
      allowedRoots: ["/srv/builds", "/data"],
      dockerSocket: "/run/docker.sock",
      bundleRetentionDays: 3,
      bundleMaxBytes: 1_048_576,
    });
  });

  it("prefers a flag to its variable", () => {
    const config = readAgentConfig(["--labels", "zone=b"], { DROVER_SERVER: "http://x:1", DROVER_LABELS: "zone=a" });
    assert.deepEqual(config.labels, { zone: "b" });
  });

  it("leaves the token empty when none is given (main requires it until the agent has registered)", () => {
    assert.equal(readAgentConfig(["--server", "http://fleet:7070"], {}).token, "");
  });

  it("names DROVER_SERVER when the server is missing or not an http(s) URL", () => {
    configError(() => readAgentConfig([], {}), "DROVER_SERVER");
    configError(() => readAgentConfig(["--server", "fleet:7070"], {}), "DROVER_SERVER");
    configError(() => readAgentConfig(["--server", "ftp://fleet"], {}), "DROVER_SERVER");
  });

  it("names DROVER_LABELS when a label is not k=v", () => {
    const message = configError(() => readAgentConfig(["--server", "http://x:1", "--labels", "zone=a,gpu"], {}), "DROVER_LABELS");
    assert.match(message, /"gpu"/);
  });

  it("names DROVER_PING_TIMEOUT_MS when it is not a number of milliseconds", () => {
    configError(() => readAgentConfig(["--server", "http://x:1"], { DROVER_PING_TIMEOUT_MS: "10s" }), "DROVER_PING_TIMEOUT_MS");
  });

  it("names DROVER_RECONNECT_MAX_MS when the cap is out of range", () => {
    configError(() => readAgentConfig(["--server", "http://x:1"], { DROVER_RECONNECT_MAX_MS: "5" }), "DROVER_RECONNECT_MAX_MS");
  });

  it("takes at least one attempt at a time, whatever the core count says", () => {
    assert.equal(readAgentConfig(["--server", "http://x:1"], {}, { cores: 0 }).maxAttempts, 1);
    // A relative state directory is made absolute: commands run elsewhere, and their shims write into it.
    assert.equal(readAgentConfig(["--server", "http://x:1", "--state-dir", "rel/agent"], {}).stateDir, resolve("rel/agent"));
    assert.equal(readAgentConfig(["--server", "http://x:1"], {}).maxAttempts, os.availableParallelism());
  });

  it("names DROVER_MAX_ATTEMPTS when it is not a positive integer", () => {
    configError(() => readAgentConfig(["--server", "http://x:1"], { DROVER_MAX_ATTEMPTS: "0" }), "DROVER_MAX_ATTEMPTS");
    configError(() => readAgentConfig(["--server", "http://x:1"], { DROVER_MAX_ATTEMPTS: "many" }), "DROVER_MAX_ATTEMPTS");
  });

  it("names DROVER_ALLOW_SHELL when it is neither true nor false", () => {
    const message = configError(() => readAgentConfig(["--server", "http://x:1"], { DROVER_ALLOW_SHELL: "yes" }), "DROVER_ALLOW_SHELL");
    assert.match(message, /true, false/);
  });

  it("names DROVER_ALLOWED_ROOTS when a root is not absolute, and DROVER_BUNDLE_RETENTION_DAYS when it is 0", () => {
    assert.throws(() => readAgentConfig([], { DROVER_SERVER: "http://x:1", DROVER_ALLOWED_ROOTS: "/srv:builds" }), /DROVER_ALLOWED_ROOTS.*"builds"/);
    assert.throws(() => readAgentConfig([], { DROVER_SERVER: "http://x:1", DROVER_BUNDLE_RETENTION_DAYS: "0" }), /DROVER_BUNDLE_RETENTION_DAYS/);
  });

  it("turns an unknown flag into a configuration error with the usage", () => {
    const message = configError(() => readAgentConfig(["--servr", "http://x:1"], {}), "arguments");
    assert.match(message, /usage: drover-agent --server URL/);
  });
});
