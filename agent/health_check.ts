// A service replica's health checks: what a HealthCheck asks for once its
// defaults are applied (healthSettings), what one check says (runCheck), and
// how the verdicts become a state (tallyVerdict, pure).
//
//   process  healthy while the replica's process runs
//   tcp      a connection to 127.0.0.1:port opens within the timeout
//   http     GET http://127.0.0.1:port/path answers 2xx within the timeout
//   command  argv (never a shell) exits 0 within the timeout; killed (its
//            whole process group) when it takes longer
//
// Port 0 in tcp and http is the replica's assigned port (assign_port).
//
//   UNSPECIFIED ──healthy_threshold passes in a row──▶ HEALTHY
//        │                                               │  ▲
//        └──unhealthy_threshold failures in a row──▶ UNHEALTHY
//
// The process exiting makes the replica UNHEALTHY at once, whatever the
// counts; each start of the process begins counting again (the state it had
// holds until the checks say otherwise).

import { spawn } from "node:child_process";
import http from "node:http";
import net from "node:net";

import { durationMs } from "@bufbuild/protobuf/wkt";

import { HealthState, type HealthCheck } from "../gen/ts/drover/common/v1/service_pb.ts";
import { killGroup } from "./process_runner.ts";

/** interval when the check sets none, ms. */
export const DEFAULT_INTERVAL_MS = 5_000;
/** timeout when the check sets none, ms (and never more than the interval). */
export const DEFAULT_TIMEOUT_MS = 2_000;
/** Output of a failing check command kept for its message, bytes. */
const COMMAND_OUTPUT_BYTES = 512;

/** What to check. */
export type CheckKind =
  | { kind: "process" }
  | { kind: "tcp"; port: number }
  | { kind: "http"; port: number; path: string }
  | { kind: "command"; argv: readonly string[] };

/** A HealthCheck with its defaults applied: every field means what it says. */
export interface HealthSettings {
  check: CheckKind;
  /** Time between the starts of two checks, ms. */
  intervalMs: number;
  /** Longest one check may take, ms; at most intervalMs. */
  timeoutMs: number;
  /** Consecutive passes that make the replica healthy (≥ 1). */
  healthyThreshold: number;
  /** Consecutive failures that make it unhealthy (≥ 1). */
  unhealthyThreshold: number;
  /** Wait after each start of the process before the first check, ms. */
  initialDelayMs: number;
}

/** The settings of a ServiceRun's health_check; unset means the process check with every default. */
export function healthSettings(check: HealthCheck | undefined): HealthSettings {
  const intervalMs = check?.interval ? durationMs(check.interval) : DEFAULT_INTERVAL_MS;
  const timeoutMs = Math.min(check?.timeout ? durationMs(check.timeout) : DEFAULT_TIMEOUT_MS, intervalMs);
  let kind: CheckKind;
  switch (check?.check.case) {
    case "tcp":
      kind = { kind: "tcp", port: check.check.value.port };
      break;
    case "http":
      kind = { kind: "http", port: check.check.value.port, path: check.check.value.path || "/" };
      break;
    case "command":
      kind = { kind: "command", argv: check.check.value.argv };
      break;
    default:
      kind = { kind: "process" };
  }
  return {
    check: kind,
    intervalMs,
    timeoutMs,
    healthyThreshold: check?.healthyThreshold || 1,
    unhealthyThreshold: check?.unhealthyThreshold || 3,
    initialDelayMs: check?.initialDelay ? durationMs(check.initialDelay) : 0,
  };
}

/** What one check said. */
export interface Verdict {
  passed: boolean;
  /** Why, in words ("GET http://127.0.0.1:8080/ answered 503"). */
  message: string;
}

/** The replica a check looks at. */
export interface CheckTarget {
  /** The replica's assigned port; 0 when it has none. */
  port: number;
  /** Where a check command runs: the replica's work directory. */
  cwd: string;
  /** A check command's environment: the replica's (PORT included). */
  env: Record<string, string>;
  /** Whether the replica's process runs now (the process check). */
  processRunning: () => Promise<boolean>;
}

/** Runs one check against the replica; never throws, never takes much longer than timeoutMs. */
export async function runCheck(settings: Pick<HealthSettings, "check" | "timeoutMs">, target: CheckTarget): Promise<Verdict> {
  const { check, timeoutMs } = settings;
  switch (check.kind) {
    case "process":
      return (await target.processRunning().catch(() => false)) ? { passed: true, message: "the process is running" } : { passed: false, message: "the process is not running" };
    case "tcp": {
      const port = check.port || target.port;
      if (!port) return noPort("tcp");
      return tcpCheck(port, timeoutMs);
    }
    case "http": {
      const port = check.port || target.port;
      if (!port) return noPort("http");
      return httpCheck(port, check.path, timeoutMs);
    }
    case "command":
      return commandCheck(check.argv, target, timeoutMs);
  }
}

function noPort(kind: string): Verdict {
  return { passed: false, message: `the ${kind} check has port 0 but the replica has no assigned port (assign_port)` };
}

function tcpCheck(port: number, timeoutMs: number): Promise<Verdict> {
  const where = `tcp 127.0.0.1:${port}`;
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    const done = (verdict: Verdict) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(verdict);
    };
    const timer = setTimeout(() => done({ passed: false, message: `${where}: no connection within ${seconds(timeoutMs)}` }), timeoutMs);
    socket.once("connect", () => done({ passed: true, message: `${where}: connected` }));
    socket.once("error", (err) => done({ passed: false, message: `${where}: ${errorText(err)}` }));
  });
}

function httpCheck(port: number, path: string, timeoutMs: number): Promise<Verdict> {
  const url = `http://127.0.0.1:${port}${path}`;
  return new Promise((resolve) => {
    let settled = false;
    const done = (verdict: Verdict) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request.destroy();
      resolve(verdict);
    };
    // agent: false: a fresh connection each time, none left open between checks.
    const request = http.get(url, { agent: false }, (response) => {
      const status = response.statusCode ?? 0;
      response.resume();
      done({ passed: status >= 200 && status < 300, message: `GET ${url} answered ${status}` });
    });
    const timer = setTimeout(() => done({ passed: false, message: `GET ${url}: no answer within ${seconds(timeoutMs)}` }), timeoutMs);
    request.once("error", (err) => done({ passed: false, message: `GET ${url}: ${errorText(err)}` }));
  });
}

function commandCheck(argv: readonly string[], target: CheckTarget, timeoutMs: number): Promise<Verdict> {
  const name = argv[0] ?? "";
  return new Promise((resolve) => {
    let output = "";
    let timedOut = false;
    // Its own process group, so that a timeout kills what it started too.
    const child = spawn(name, argv.slice(1), { cwd: target.cwd, env: target.env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    const keep = (chunk: Buffer) => {
      if (output.length < COMMAND_OUTPUT_BYTES) output += chunk.toString("utf8");
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) killGroup(child.pid, "SIGKILL");
    }, timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      resolve({ passed: false, message: `check command ${name} could not start: ${errorText(err)}` });
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (child.pid !== undefined) killGroup(child.pid, "SIGKILL");
      const said = output.trim().slice(0, COMMAND_OUTPUT_BYTES);
      const tail = said ? `: ${said}` : "";
      if (timedOut) resolve({ passed: false, message: `check command ${name} did not finish within ${seconds(timeoutMs)}` });
      else if (code === 0) resolve({ passed: true, message: `check command ${name} exited with code 0` });
      else if (signal) resolve({ passed: false, message: `check command ${name} was killed by ${signal}${tail}` });
      else resolve({ passed: false, message: `check command ${name} exited with code ${code}${tail}` });
    });
  });
}

/** The health state and the counts it depends on. */
export interface HealthTally {
  state: HealthState;
  /** Passing checks in a row since the last failure or start. */
  passes: number;
  /** Failing checks in a row since the last pass or start. */
  failures: number;
}

export const INITIAL_TALLY: HealthTally = { state: HealthState.UNSPECIFIED, passes: 0, failures: 0 };

/** The tally after one more check. */
export function tallyVerdict(t: HealthTally, passed: boolean, thresholds: Pick<HealthSettings, "healthyThreshold" | "unhealthyThreshold">): HealthTally {
  const passes = passed ? t.passes + 1 : 0;
  const failures = passed ? 0 : t.failures + 1;
  let state = t.state;
  if (passes >= thresholds.healthyThreshold) state = HealthState.HEALTHY;
  if (failures >= thresholds.unhealthyThreshold) state = HealthState.UNHEALTHY;
  return { state, passes, failures };
}

/** The tally once the process has exited: unhealthy at once. */
export function tallyExit(): HealthTally {
  return { state: HealthState.UNHEALTHY, passes: 0, failures: 0 };
}

/** The tally when the process (re)starts: the state holds, the counting begins again. */
export function tallyStart(t: HealthTally): HealthTally {
  return { state: t.state, passes: 0, failures: 0 };
}

function errorText(err: Error): string {
  return (err as NodeJS.ErrnoException).code ?? err.message;
}

function seconds(ms: number): string {
  return `${Math.round(ms) / 1000} s`;
}
