// Health checks: the settings' defaults, the threshold state machine (pure),
// and each kind of check against real sockets, servers and processes.

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";

import { HealthCheckSchema, HealthState } from "../gen/ts/drover/common/v1/service_pb.ts";
import { healthSettings, INITIAL_TALLY, runCheck, tallyExit, tallyStart, tallyVerdict, type CheckTarget, type HealthTally } from "./health_check.ts";

const { HEALTHY, UNHEALTHY, UNSPECIFIED } = HealthState;

describe("healthSettings", () => {
  it("fills in the defaults of an unset check: the process check every 5 s, 2 s timeout, thresholds 1 and 3, no initial delay", () => {
    assert.deepEqual(healthSettings(undefined), { check: { kind: "process" }, intervalMs: 5_000, timeoutMs: 2_000, healthyThreshold: 1, unhealthyThreshold: 3, initialDelayMs: 0 });
  });

  it("caps the timeout at the interval, reads thresholds and the http path, and defaults the path to /", () => {
    const s = healthSettings(create(HealthCheckSchema, { check: { case: "http", value: { port: 8080 } }, interval: durationFromMs(500), healthyThreshold: 2, unhealthyThreshold: 5, initialDelay: durationFromMs(250) }));
    assert.deepEqual(s, { check: { kind: "http", port: 8080, path: "/" }, intervalMs: 500, timeoutMs: 500, healthyThreshold: 2, unhealthyThreshold: 5, initialDelayMs: 250 });
    const t = healthSettings(create(HealthCheckSchema, { check: { case: "tcp", value: { port: 0 } }, interval: durationFromMs(1_000), timeout: durationFromMs(100) }));
    assert.deepEqual([t.check, t.timeoutMs], [{ kind: "tcp", port: 0 }, 100]);
  });
});

describe("the health tally (pure)", () => {
  const thresholds = { healthyThreshold: 2, unhealthyThreshold: 3 };
  const run = (from: HealthTally, verdicts: boolean[]) => verdicts.map((v) => (from = tallyVerdict(from, v, thresholds)).state);

  it("stays UNSPECIFIED until a threshold is reached, then becomes HEALTHY after 2 passes in a row", () => {
    assert.deepEqual(run(INITIAL_TALLY, [true, false, true, true]), [UNSPECIFIED, UNSPECIFIED, UNSPECIFIED, HEALTHY]);
  });

  it("becomes UNHEALTHY after 3 failures in a row, and a pass in between starts the count again", () => {
    assert.deepEqual(run(INITIAL_TALLY, [false, false, true, false, false, false]), [UNSPECIFIED, UNSPECIFIED, UNSPECIFIED, UNSPECIFIED, UNSPECIFIED, UNHEALTHY]);
  });

  it("keeps HEALTHY through fewer failures than the threshold", () => {
    const healthy = { state: HEALTHY, passes: 2, failures: 0 };
    assert.deepEqual(run(healthy, [false, false, true, false]), [HEALTHY, HEALTHY, HEALTHY, HEALTHY]);
  });

  it("thresholds of 1 follow every verdict", () => {
    let t = INITIAL_TALLY;
    const states = [true, false, true].map((v) => (t = tallyVerdict(t, v, { healthyThreshold: 1, unhealthyThreshold: 1 })).state);
    assert.deepEqual(states, [HEALTHY, UNHEALTHY, HEALTHY]);
  });

  it("an exit makes it UNHEALTHY at once, and a start keeps the state but counts again from zero", () => {
    const exited = tallyExit();
    assert.deepEqual(exited, { state: UNHEALTHY, passes: 0, failures: 0 });
    assert.deepEqual(tallyStart({ state: HEALTHY, passes: 1, failures: 2 }), { state: HEALTHY, passes: 0, failures: 0 });
    assert.deepEqual(run(tallyStart(exited), [true, true]), [UNHEALTHY, HEALTHY]);
  });
});

describe("runCheck", () => {
  let dir: string;
  let server: http.Server;
  let httpPort: number;
  const target = (over: Partial<CheckTarget> = {}): CheckTarget => ({ port: 0, cwd: dir, env: { PATH: process.env.PATH ?? "" }, processRunning: async () => true, ...over });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "drover-health-check-"));
    server = http.createServer((req, res) => {
      if (req.url === "/slow") return; // never answers
      res.statusCode = req.url === "/healthz" ? 204 : 503;
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    httpPort = (server.address() as net.AddressInfo).port;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  it("process: passes while the process runs and fails when it does not", async () => {
    assert.equal((await runCheck({ check: { kind: "process" }, timeoutMs: 100 }, target())).passed, true);
    assert.deepEqual(await runCheck({ check: { kind: "process" }, timeoutMs: 100 }, target({ processRunning: async () => false })), { passed: false, message: "the process is not running" });
  });

  it("tcp: passes when a connection opens, fails with the error on a closed port, and uses the assigned port for port 0", async () => {
    assert.deepEqual(await runCheck({ check: { kind: "tcp", port: httpPort }, timeoutMs: 1_000 }, target()), { passed: true, message: `tcp 127.0.0.1:${httpPort}: connected` });
    assert.equal((await runCheck({ check: { kind: "tcp", port: 0 }, timeoutMs: 1_000 }, target({ port: httpPort }))).passed, true);
    const closed = await closedPort();
    assert.deepEqual(await runCheck({ check: { kind: "tcp", port: closed }, timeoutMs: 1_000 }, target()), { passed: false, message: `tcp 127.0.0.1:${closed}: ECONNREFUSED` });
    assert.match((await runCheck({ check: { kind: "tcp", port: 0 }, timeoutMs: 1_000 }, target())).message, /port 0 but the replica has no assigned port/);
  });

  it("http: passes on 2xx, fails on 503 and on a server that does not answer within the timeout", async () => {
    assert.deepEqual(await runCheck({ check: { kind: "http", port: httpPort, path: "/healthz" }, timeoutMs: 1_000 }, target()), { passed: true, message: `GET http://127.0.0.1:${httpPort}/healthz answered 204` });
    assert.deepEqual(await runCheck({ check: { kind: "http", port: 0, path: "/" }, timeoutMs: 1_000 }, target({ port: httpPort })), { passed: false, message: `GET http://127.0.0.1:${httpPort}/ answered 503` });
    const started = Date.now();
    const slow = await runCheck({ check: { kind: "http", port: httpPort, path: "/slow" }, timeoutMs: 150 }, target());
    assert.deepEqual(slow, { passed: false, message: `GET http://127.0.0.1:${httpPort}/slow: no answer within 0.15 s` });
    assert.ok(Date.now() - started < 1_000, "the timeout bounds the check");
  });

  it("command: passes on exit 0, runs in the work directory with the replica's env (no shell), and reports a failure's output", async () => {
    const ok = await runCheck({ check: { kind: "command", argv: ["sh", "-c", 'test "$PORT" = 4321 && test "$(pwd)" = "$1"', "check", dir] }, timeoutMs: 2_000 }, target({ env: { PATH: process.env.PATH ?? "", PORT: "4321" } }));
    assert.deepEqual(ok, { passed: true, message: "check command sh exited with code 0" });
    const bad = await runCheck({ check: { kind: "command", argv: ["sh", "-c", "echo not ready >&2; exit 3"] }, timeoutMs: 2_000 }, target());
    assert.deepEqual(bad, { passed: false, message: "check command sh exited with code 3: not ready" });
    // argv, never a shell: the ';' is an argument to echo.
    const literal = await runCheck({ check: { kind: "command", argv: ["echo", "a;", "touch", "injected"] }, timeoutMs: 2_000 }, target());
    assert.equal(literal.passed, true);
    assert.equal(existsSync(join(dir, "injected")), false);
    const missing = await runCheck({ check: { kind: "command", argv: ["no-such-program-drover"] }, timeoutMs: 2_000 }, target());
    assert.deepEqual(missing, { passed: false, message: "check command no-such-program-drover could not start: ENOENT" });
  });

  it("command: is killed, with what it started, when it takes longer than the timeout", async () => {
    const pidFile = join(dir, "child.pid");
    const started = Date.now();
    const slow = await runCheck({ check: { kind: "command", argv: ["sh", "-c", `sleep 30 & echo $! > ${pidFile}; wait`] }, timeoutMs: 200 }, target());
    assert.deepEqual(slow, { passed: false, message: "check command sh did not finish within 0.2 s" });
    assert.ok(Date.now() - started < 2_000, `took ${Date.now() - started} ms`);
    const child = Number((await readFile(pidFile, "utf8")).trim());
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(alive(child), false, "the check's child was killed with it");
  });
});

/** True while pid is a live process (a zombie awaiting its reaper counts as dead). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** A port nothing listens on (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}
