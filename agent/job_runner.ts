// Runs one attempt's ExecSpec on this machine: its commands one after
// another, each a child process in its own process group.
//
//   STARTING → (checks, directories) → RUNNING once the first command has
//   spawned → SUCCEEDED | FAILED | CANCELLED | TIMED_OUT
//
// The minimal runner: argv only (a shell only when both the job and the
// agent allow it), a per-attempt directory, a clean environment, output to
// files, timeouts and cancellation. Resource limits, containers and bundles
// come with the full runner.
//
// Layout under the agent's state directory:
//
//   runs/<jobId>/<attemptId>/          the attempt directory
//     cmd-000.stdout.log               output of command 0 (appended)
//     cmd-000.stderr.log
//     work/                            the commands' working directory
//
// Each command runs detached (a new session, so a new process group whose id
// is the child's pid). Signals go to the whole group, so a command that
// started children of its own cannot leave them behind: a SIGTERM (then a
// SIGKILL after the grace period) reaches the grandchildren too, and when a
// command's main process has ended, whatever is left of its group is killed.
//
// Output goes straight to files the child inherits as its stdout and stderr,
// not through pipes: the agent copies nothing, and a grandchild that keeps
// the descriptors open cannot keep a command "running" after it exited.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, open, type FileHandle } from "node:fs/promises";
import { isAbsolute, join, relative, resolve } from "node:path";

import { durationMs } from "@bufbuild/protobuf/wkt";

import type { Command, ExecSpec } from "../gen/ts/drover/common/v1/exec_pb.ts";
import { AttemptState } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import type { Logger } from "../lib/logger.ts";
import { bundleDir } from "./bundle.ts";

/** A change of an attempt's state, as the runner reports it. */
export interface AttemptUpdate {
  state: AttemptState;
  /** Exit code of the last command run; -1 when a signal ended it or it never started. Final states only. */
  exitCode: number;
  /** The signal that ended the last command, if any (for example "SIGKILL"). */
  signal: string;
  /** What happened, in words (empty for STARTING and RUNNING). */
  message: string;
  time: Date;
}

export interface JobRunnerOptions {
  attemptId: string;
  jobId: string;
  /** The run and stage the job belongs to, if any (they name the bundle's directory). */
  runId?: string;
  stageName?: string;
  exec: ExecSpec;
  /** The agent's state directory; the attempt lives under runs/<jobId>/<attemptId>. */
  stateDir: string;
  /** The agent's shell policy (DROVER_ALLOW_SHELL): exec.allowShell is honoured only when true. */
  allowShell: boolean;
  /** Longest the whole attempt may run, ms; undefined or 0: no limit. */
  timeoutMs?: number;
  /** Time between SIGTERM and SIGKILL when a timeout stops a command, ms. Default 10 000. */
  timeoutGraceMs?: number;
  /** Called for every state change, in order. Must not throw. */
  onUpdate: (update: AttemptUpdate) => void;
  /** PATH and HOME given to commands; default the agent's own. */
  agentEnv?: { PATH?: string; HOME?: string };
  logger: Logger;
}

/** Why the runner is stopping the attempt early. */
interface Stop {
  state: AttemptState.CANCELLED | AttemptState.TIMED_OUT;
  message: string;
  graceMs: number;
}

/** How one command ended. */
interface CommandEnd {
  exitCode: number;
  signal: string;
  /** Set when the command did not succeed: what to tell the user. */
  failure?: string;
  /** TIMED_OUT when its own timeout stopped it. */
  timedOut: boolean;
}

/** The states after which nothing changes. */
export const FINAL_STATES: ReadonlySet<AttemptState> = new Set([
  AttemptState.SUCCEEDED,
  AttemptState.FAILED,
  AttemptState.CANCELLED,
  AttemptState.TIMED_OUT,
]);

const DEFAULT_TIMEOUT_GRACE_MS = 10_000;
/** Ids become directory names, so they are held to a safe alphabet. */
const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Runs one attempt; run() once, cancel() any time. */
export class JobRunner {
  private readonly o: JobRunnerOptions;
  private readonly log: Logger;
  private current: { child: ChildProcess; index: number } | undefined;
  private stopping: Stop | undefined;
  private killTimer: NodeJS.Timeout | undefined;
  private attemptTimer: NodeJS.Timeout | undefined;
  private lastState = AttemptState.UNSPECIFIED;
  /** Set when no command will run any more: a cancel then has nothing to stop. */
  private commandsDone = false;
  private result: Promise<AttemptUpdate> | undefined;

  constructor(options: JobRunnerOptions) {
    this.o = options;
    this.log = options.logger.child({ component: "job_runner", attemptId: options.attemptId, jobId: options.jobId });
  }

  /** The attempt's state as last reported (UNSPECIFIED before run()). */
  get state(): AttemptState {
    return this.lastState;
  }

  /** The attempt directory. */
  get directory(): string {
    return bundleDir(this.o.stateDir, this.o);
  }

  /** Runs the attempt to its end; resolves with the final update. Calling it again returns the same promise. */
  run(): Promise<AttemptUpdate> {
    this.result ??= this.execute().finally(() => {
      clearTimeout(this.attemptTimer);
      clearTimeout(this.killTimer);
    });
    return this.result;
  }

  /**
   * Stops the attempt: SIGTERM to the running command's group, SIGKILL after
   * graceMs, no further commands; it ends CANCELLED. Ignored once the attempt
   * has ended or is already being stopped.
   */
  cancel(graceMs: number, reason = "cancelled"): void {
    this.stop({ state: AttemptState.CANCELLED, message: reason, graceMs });
  }

  private async execute(): Promise<AttemptUpdate> {
    this.report(AttemptState.STARTING);
    const { exec } = this.o;
    const problem = this.check(exec);
    if (problem) return this.finish(AttemptState.FAILED, -1, "", problem);

    const workDir = join(this.directory, "work");
    try {
      await mkdir(workDir, { recursive: true });
    } catch (err) {
      return this.finish(AttemptState.FAILED, -1, "", `could not create the attempt directory ${this.directory}: ${(err as Error).message}`);
    }
    if (this.o.timeoutMs && this.o.timeoutMs > 0) {
      const ms = this.o.timeoutMs;
      this.attemptTimer = setTimeout(
        () => this.stop({ state: AttemptState.TIMED_OUT, message: `the attempt timed out after ${seconds(ms)}`, graceMs: this.timeoutGraceMs }),
        ms,
      );
    }

    let last: CommandEnd = { exitCode: -1, signal: "", timedOut: false };
    let firstFailure: { state: AttemptState; message: string } | undefined;
    for (const [index, command] of exec.commands.entries()) {
      if (this.stopping) break;
      last = await this.runCommand(index, command, workDir);
      if (last.failure !== undefined && !firstFailure) {
        firstFailure = { state: last.timedOut ? AttemptState.TIMED_OUT : AttemptState.FAILED, message: last.failure };
      }
      if (firstFailure && !exec.continueOnFailure) break;
    }
    this.commandsDone = true;
    // Cancel and the attempt's timeout win over how the command they stopped
    // happened to end: the user asked for that stop, or the limit caused it.
    if (this.stopping) return this.finish(this.stopping.state, last.exitCode, last.signal, this.stopping.message);
    if (firstFailure) return this.finish(firstFailure.state, last.exitCode, last.signal, firstFailure.message);
    const n = exec.commands.length;
    return this.finish(AttemptState.SUCCEEDED, last.exitCode, last.signal, `${n} command${n === 1 ? "" : "s"} succeeded`);
  }

  /** Why the spec cannot run here, or undefined. Checked before anything is created or spawned. */
  private check(exec: ExecSpec): string | undefined {
    for (const [what, id] of [["attempt id", this.o.attemptId], ["job id", this.o.jobId]] as const) {
      if (!SAFE_ID.test(id)) return `the ${what} ${JSON.stringify(id)} cannot name a directory (letters, digits, '.', '_' and '-' only)`;
    }
    if (exec.commands.length === 0) return "the job has no commands";
    if (exec.allowShell && !this.o.allowShell) {
      return "the job asks for a shell (allow_shell) but this agent does not allow shells (DROVER_ALLOW_SHELL=true allows them)";
    }
    for (const [index, command] of exec.commands.entries()) {
      if (command.argv.length === 0 || command.argv.some((a) => a === "")) return `command ${index + 1} has an empty argv or an empty argument`;
      const cwdProblem = workingDirectoryProblem(command.cwd);
      if (cwdProblem) return `command ${index + 1}: ${cwdProblem}`;
    }
    return undefined;
  }

  private async runCommand(index: number, command: Command, workDir: string): Promise<CommandEnd> {
    const name = `command ${index + 1} (${command.argv[0]})`;
    const cwd = resolve(workDir, command.cwd);
    const base = join(this.directory, `cmd-${String(index).padStart(3, "0")}`);
    let stdout: FileHandle | undefined;
    let stderr: FileHandle | undefined;
    try {
      await mkdir(cwd, { recursive: true });
      stdout = await open(`${base}.stdout.log`, "a");
      stderr = await open(`${base}.stderr.log`, "a");
    } catch (err) {
      await Promise.all([stdout?.close(), stderr?.close()]);
      return { exitCode: -1, signal: "", timedOut: false, failure: `${name} could not be prepared: ${(err as Error).message}` };
    }
    // Cancelled while the files were opening: do not start what would be killed at once.
    if (this.stopping) {
      await Promise.all([stdout.close(), stderr.close()]);
      return { exitCode: -1, signal: "", timedOut: false };
    }

    const [file, ...args] = this.o.exec.allowShell ? ["/bin/sh", "-c", command.argv.join(" ")] : command.argv;
    const log = this.log.child({ command: index });
    let timedOut = false;
    let commandTimer: NodeJS.Timeout | undefined;
    const end = await new Promise<CommandEnd>((settle) => {
      let child: ChildProcess;
      try {
        child = spawn(file!, args, {
          cwd,
          env: this.environment(command),
          stdio: ["ignore", stdout.fd, stderr.fd],
          detached: true,
        });
      } catch (err) {
        // Synchronous failures (an argument with a NUL byte, for one).
        settle({ exitCode: -1, signal: "", timedOut: false, failure: `${name} could not start: ${(err as Error).message}` });
        return;
      }
      this.current = { child, index };
      child.once("spawn", () => {
        log.debug({ pid: child.pid, argv: command.argv }, "command started");
        if (this.lastState !== AttemptState.RUNNING) this.report(AttemptState.RUNNING);
        // A cancel that came while the process was being created.
        if (this.stopping) this.signalGroup("SIGTERM");
        const timeout = command.timeout ? durationMs(command.timeout) : 0;
        if (timeout > 0) {
          commandTimer = setTimeout(() => {
            timedOut = true;
            log.info({ timeoutMs: timeout }, "command timed out; stopping it");
            this.terminate(this.timeoutGraceMs);
          }, timeout);
        }
      });
      child.once("error", (err) => {
        // ENOENT, EACCES...: the process never ran, and no 'exit' follows.
        if (child.pid === undefined) settle({ exitCode: -1, signal: "", timedOut: false, failure: `${name} could not start: ${err.message}` });
        else log.warn({ err }, "child process error");
      });
      child.once("exit", (code, signal) => {
        // Whatever the command left in its group goes with it.
        if (child.pid !== undefined) killGroup(child.pid, "SIGKILL");
        if (signal) {
          const failure = timedOut ? `${name} timed out after ${seconds(durationMs(command.timeout!))}` : `${name} was killed by ${signal}`;
          settle({ exitCode: -1, signal, timedOut, failure });
        } else if (code !== 0) {
          const failure = timedOut ? `${name} timed out after ${seconds(durationMs(command.timeout!))} (exit code ${code})` : `${name} exited with code ${code}`;
          settle({ exitCode: code ?? -1, signal: "", timedOut, failure });
        } else {
          settle({ exitCode: 0, signal: "", timedOut });
        }
      });
    });
    clearTimeout(commandTimer);
    clearTimeout(this.killTimer);
    this.killTimer = undefined;
    this.current = undefined;
    await Promise.all([stdout.close(), stderr.close()]);
    log.debug({ exitCode: end.exitCode, signal: end.signal || undefined }, "command ended");
    return end;
  }

  /** PATH and HOME from the agent, then the spec's env, then the command's: nothing else leaks from the agent. */
  private environment(command: Command): Record<string, string> {
    const agent = this.o.agentEnv ?? { PATH: process.env.PATH, HOME: process.env.HOME };
    const env: Record<string, string> = {};
    if (agent.PATH !== undefined) env.PATH = agent.PATH;
    if (agent.HOME !== undefined) env.HOME = agent.HOME;
    return { ...env, ...this.o.exec.env, ...command.env };
  }

  private get timeoutGraceMs(): number {
    return this.o.timeoutGraceMs ?? DEFAULT_TIMEOUT_GRACE_MS;
  }

  private stop(stop: Stop): void {
    if (this.stopping || this.commandsDone || FINAL_STATES.has(this.lastState)) return;
    this.stopping = stop;
    this.log.info({ state: AttemptState[stop.state], reason: stop.message, graceMs: stop.graceMs }, "stopping the attempt");
    this.terminate(stop.graceMs);
  }

  /** SIGTERM to the running command's group now, SIGKILL after graceMs. */
  private terminate(graceMs: number): void {
    if (!this.current || this.killTimer) return;
    this.signalGroup("SIGTERM");
    this.killTimer = setTimeout(() => {
      this.log.info({ graceMs }, "the command outlived its grace period; killing its process group");
      this.signalGroup("SIGKILL");
    }, graceMs);
  }

  private signalGroup(signal: NodeJS.Signals): void {
    const pid = this.current?.child.pid;
    if (pid !== undefined) killGroup(pid, signal);
  }

  private report(state: AttemptState, exitCode = 0, signal = "", message = ""): AttemptUpdate {
    this.lastState = state;
    const update: AttemptUpdate = { state, exitCode, signal, message, time: new Date() };
    try {
      this.o.onUpdate(update);
    } catch (err) {
      this.log.error({ err }, "the attempt update listener threw");
    }
    return update;
  }

  private finish(state: AttemptState, exitCode: number, signal: string, message: string): AttemptUpdate {
    const update = this.report(state, exitCode, signal, message);
    const fields = { state: AttemptState[state], exitCode, signal: signal || undefined, reason: message };
    if (state === AttemptState.SUCCEEDED) this.log.info(fields, "attempt succeeded");
    else this.log.warn(fields, "attempt ended");
    return update;
  }
}

/** Why cwd cannot be a command's working directory, or undefined. It must stay inside the work directory. */
export function workingDirectoryProblem(cwd: string): string | undefined {
  if (cwd === "") return undefined;
  // Absolute paths are refused until the agent has a list of roots it allows.
  if (isAbsolute(cwd)) return `the working directory ${JSON.stringify(cwd)} is absolute; it must be relative to the attempt's work directory`;
  const inside = relative("/work", resolve("/work", cwd));
  if (inside === ".." || inside.startsWith("../") || isAbsolute(inside)) {
    return `the working directory ${JSON.stringify(cwd)} leaves the attempt's work directory`;
  }
  return undefined;
}

/**
 * Signals every process in the group led by pid. Never throws: it runs from
 * timers, and a group that is already gone (ESRCH) is the outcome it wants.
 */
function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: nothing left to signal. EPERM cannot happen for our own children.
  }
}

function seconds(ms: number): string {
  return `${Math.round(ms) / 1000} s`;
}
