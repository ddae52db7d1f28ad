// Runs one attempt's ExecSpec on this machine: its commands one after
// another, each through the driver's Runner (runner.ts), recorded in the
// attempt's execution bundle (bundle.ts).
//
//   STARTING → (checks, bundle) → RUNNING once the first command has
//   started → one event per finished command → SUCCEEDED | FAILED |
//   CANCELLED | TIMED_OUT
//
// Every report is a numbered AttemptUpdate (sequence 1, 2, 3...). The
// manifest is written before the report that depends on it: when the agent
// dies at any point, the bundle says what was running (the driver's handle)
// and what ended how, and `resume` carries on from there after a restart:
//
//   command with a handle → reattach: still running → wait for it as before;
//                                     ended → its status from the bundle;
//                                     unknown → the attempt is lost (FAILED
//                                     with a reason that says so)
//   command without one   → never started if it has no log files yet: run it;
//                           otherwise unknown, as above
//   a final state set     → report it again (same event id: applied once)
//
// A service replica (Assignment.service) runs its commands the same way, but
// its last command is the service: when it exits by itself the attempt goes
// on (supervise): a RUNNING event with its result, the restart delay
// (service_supervisor.ts), and the same command again under the next index,
// each run with its own cmd-NNN files and manifest record. Its health is
// checked while it runs (ReplicaHealth) and every change is a RUNNING event
// with a HealthStatus. Only a cancel (or a command that cannot start) ends
// it; the attempt's timeout does not apply. After an agent restart a service
// that still runs is re-attached, and one that ended meanwhile, or left no
// exit status, is started again.
//
// Commands run argv only (a shell only when both the job and the agent allow
// it), in the attempt's work directory (a relative cwd stays under it; an
// absolute one must be under a root the agent allows, DROVER_ALLOWED_ROOTS),
// with a clean environment (PATH and HOME from the agent, then the spec's env
// and the command's; inherit_env adds all of the agent's first). Values of
// secret_env are redacted from the manifest and from the agent's own logs.

import { writeFile, mkdir, realpath } from "node:fs/promises";
import { existsSync } from "node:fs";
import { isAbsolute, join, relative, resolve, sep } from "node:path";

import { toJson } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";

import { ExecSpecSchema, type Command, type ExecSpec } from "../gen/ts/drover/common/v1/exec_pb.ts";
import { HealthState, type ServiceRun } from "../gen/ts/drover/common/v1/service_pb.ts";
import { AttemptState } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import type { Logger } from "../lib/logger.ts";
import { ASSIGNMENT, bundleDir, closeBundle, createBundle, logFileName, writeManifest, SAFE_NAME, type CommandRecord, type Manifest } from "./bundle.ts";
import { healthSettings } from "./health_check.ts";
import type { NumberedHealth } from "./job_events.ts";
import type { CommandExit, CommandHandle, CommandTask, Runner } from "./runner.ts";
import { ReplicaHealth, replicaPorts, restartDelayMs, restartDelays, type HealthReport, type RestartDelays } from "./service_supervisor.ts";

/** A change of an attempt's state, as the runner reports it. */
export interface AttemptUpdate {
  state: AttemptState;
  /** 1, 2, 3... per attempt. */
  sequence: number;
  /** Exit code of the last command run; -1 when a signal ended it or it never started. Final states only. */
  exitCode: number;
  /** The signal that ended the last command, if any (for example "SIGKILL"). */
  signal: string;
  /** What happened, in words (empty for STARTING and RUNNING). */
  message: string;
  time: Date;
  /** Set when the update says a command ended (and on the final update, for the last command). */
  command?: CommandRecord;
  /** Set on a service replica's health reports (state RUNNING). */
  health?: NumberedHealth;
}

export interface JobRunnerOptions {
  attemptId: string;
  jobId: string;
  /** The run and stage the job belongs to, if any (they name the bundle's directory). */
  runId?: string;
  stageName?: string;
  exec: ExecSpec;
  /** The driver's name and its runner. */
  driver: string;
  runner: Runner;
  /** The agent's state directory; the bundle lives under runs/. */
  stateDir: string;
  /** The agent's shell policy (DROVER_ALLOW_SHELL): exec.allowShell is honoured only when true. */
  allowShell: boolean;
  /** Absolute directories an absolute cwd may be under (DROVER_ALLOWED_ROOTS). */
  allowedRoots?: readonly string[];
  /** Longest the whole attempt may run, ms; undefined or 0: no limit. Not applied to a service replica. */
  timeoutMs?: number;
  /** Set when the attempt is a service replica: its last command is restarted when it exits, and its health checked. */
  service?: ServiceRun;
  /** SIGTERM → SIGKILL when a timeout stops a command and the spec sets no stop_grace_period, ms. Default 10 000. */
  timeoutGraceMs?: number;
  /** Called for every update, in order. Must not throw. */
  onUpdate: (update: AttemptUpdate) => void;
  /** Called once the new bundle's directory and first manifest exist, before any command starts (the log shipper starts watching it). Must not throw. */
  onBundle?: (dir: string) => void;
  /** The agent's environment; default process.env. Commands get its PATH and HOME, or all of it with inherit_env. */
  agentEnv?: NodeJS.ProcessEnv;
  /** The Assignment as received, kept in the bundle (0600) while the attempt runs so a restarted agent can resume it. */
  assignment?: Uint8Array;
  /** Recorded in the manifest. */
  hostname?: string;
  agentId?: string;
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
  record: CommandRecord;
  /** TIMED_OUT when its own timeout stopped it. */
  timedOut: boolean;
  /** False when it could not be prepared or started (nothing ran). */
  started: boolean;
}

/** A service replica's supervision, next to the manifest's ServiceRecord. */
interface Replica {
  run: ServiceRun;
  delays: RestartDelays;
  /** Set once the manifest is known. */
  health?: ReplicaHealth;
  /** Ends the restart delay at once (a cancel). */
  wake?: () => void;
}

/** The states after which nothing changes. */
export const FINAL_STATES: ReadonlySet<AttemptState> = new Set([
  AttemptState.SUCCEEDED,
  AttemptState.FAILED,
  AttemptState.CANCELLED,
  AttemptState.TIMED_OUT,
]);

const DEFAULT_TIMEOUT_GRACE_MS = 10_000;
export const REDACTED = "[REDACTED]";

/** Runs one attempt; run() or resume() once, cancel() any time. */
export class JobRunner {
  private readonly o: JobRunnerOptions;
  private readonly log: Logger;
  private readonly secrets: string[];
  private current: { handle: CommandHandle; index: number } | undefined;
  private stopping: Stop | undefined;
  private attemptTimer: NodeJS.Timeout | undefined;
  private lastState = AttemptState.UNSPECIFIED;
  private sequence = 0;
  /** Set when no command will run any more: a cancel then has nothing to stop. */
  private commandsDone = false;
  private result: Promise<AttemptUpdate> | undefined;
  private manifest: Manifest | undefined;
  private readonly replica: Replica | undefined;
  /** Manifest writes, one after another (they share a temporary file). */
  private saving: Promise<void> = Promise.resolve();
  /** A service replica's save-then-report steps, one at a time, so the health checks' and the restart loop's never interleave. */
  private announcing: Promise<void> = Promise.resolve();

  constructor(options: JobRunnerOptions) {
    this.o = options;
    this.log = options.logger.child({ component: "job_runner", attemptId: options.attemptId, jobId: options.jobId });
    this.secrets = secretValues(options.exec);
    if (options.service) this.replica = { run: options.service, delays: restartDelays(options.service.restart) };
  }

  /** The attempt's state as last reported (UNSPECIFIED before run()). */
  get state(): AttemptState {
    return this.lastState;
  }

  /** The execution bundle's directory. */
  get directory(): string {
    return bundleDir(this.o.stateDir, this.o);
  }

  /** Runs the attempt to its end; resolves with the final update. Calling it again returns the same promise. */
  run(): Promise<AttemptUpdate> {
    this.result ??= this.execute().finally(() => clearTimeout(this.attemptTimer));
    return this.result;
  }

  /** Carries on an attempt a previous agent process started, from its open manifest. */
  resume(manifest: Manifest): Promise<AttemptUpdate> {
    this.result ??= this.continueFrom(manifest).finally(() => clearTimeout(this.attemptTimer));
    return this.result;
  }

  /**
   * Stops the attempt: SIGTERM to the running command, SIGKILL after graceMs,
   * no further commands; it ends CANCELLED. Ignored once the attempt has
   * ended or is already being stopped.
   */
  cancel(graceMs: number, reason = "cancelled"): void {
    this.stop({ state: AttemptState.CANCELLED, message: reason, graceMs });
  }

  private async execute(): Promise<AttemptUpdate> {
    this.report(AttemptState.STARTING);
    for (const [what, id] of [["attempt id", this.o.attemptId], ["job id", this.o.jobId]] as const) {
      // Without a safe id there is no directory to put a bundle in.
      if (!SAFE_NAME.test(id)) return this.finishWithoutBundle(`the ${what} ${JSON.stringify(id)} cannot name a directory (letters, digits, '.', '_' and '-' only)`);
    }
    let port = 0;
    if (this.replica?.run.assignPort) {
      try {
        port = await replicaPorts.assign();
      } catch (err) {
        return this.finishWithoutBundle(`could not find a free TCP port for the replica: ${(err as Error).message}`);
      }
    }
    const startTime = new Date();
    this.manifest = {
      version: 1,
      attemptId: this.o.attemptId,
      jobId: this.o.jobId,
      ...(this.o.runId ? { runId: this.o.runId } : {}),
      ...(this.o.stageName ? { stageName: this.o.stageName } : {}),
      ...(this.o.agentId ? { agentId: this.o.agentId } : {}),
      hostname: this.o.hostname ?? "",
      driver: this.o.driver,
      spec: this.redactedSpec(),
      ...(this.attemptTimeoutMs ? { timeoutMs: this.attemptTimeoutMs } : {}),
      assignedTime: startTime.toISOString(),
      startTime: startTime.toISOString(),
      state: "STARTING",
      commands: this.o.exec.commands.map((c, index) => ({ index, argv: c.argv.map((a) => this.redact(a)) })),
      ...(this.replica ? { service: { port } } : {}),
      closed: false,
      sequence: this.sequence,
    };
    try {
      await createBundle(this.directory);
      await Promise.all([this.o.assignment ? writeFile(join(this.directory, ASSIGNMENT), this.o.assignment, { mode: 0o600 }) : undefined, this.save()]);
    } catch (err) {
      return this.finishWithoutBundle(`could not create the execution bundle ${this.directory}: ${(err as Error).message}`);
    }
    try {
      this.o.onBundle?.(this.directory);
    } catch (err) {
      this.log.error({ err }, "the bundle listener threw");
    }
    const problem = this.check(this.o.exec);
    if (problem) return this.finish(AttemptState.FAILED, problem);
    this.armAttemptTimeout(this.attemptTimeoutMs);
    return this.runFrom(0, undefined);
  }

  private async continueFrom(manifest: Manifest): Promise<AttemptUpdate> {
    this.manifest = manifest;
    this.sequence = manifest.sequence ?? manifest.commands.length + 2;
    this.lastState = AttemptState[manifest.state as keyof typeof AttemptState] ?? AttemptState.RUNNING;
    const finalState = AttemptState[manifest.state as keyof typeof AttemptState];
    if (FINAL_STATES.has(finalState)) return this.finish(finalState, manifest.message ?? "", true);
    this.log.info({ state: manifest.state }, "resuming an attempt a previous agent process started");
    if (this.attemptTimeoutMs) {
      const left = this.attemptTimeoutMs - (Date.now() - Date.parse(manifest.startTime ?? manifest.assignedTime));
      this.armAttemptTimeout(Math.max(left, 1));
    }
    if (this.replica) {
      manifest.service ??= { port: 0 };
      replicaPorts.hold(manifest.service.port);
      this.resendLastHealth();
    }
    const index = manifest.commands.findIndex((c) => c.endTime === undefined);
    if (index < 0) {
      // The service had ended and was waiting for its restart when the agent went down.
      if (this.isServiceRun(manifest.commands.length - 1)) return this.runFrom(manifest.commands.length - 1, { record: manifest.commands.at(-1)!, timedOut: false, started: true });
      return this.runFrom(manifest.commands.length, undefined);
    }
    const record = manifest.commands[index]!;
    const task = await this.taskFor(index).catch(() => undefined);
    let outcome: CommandHandle | CommandExit | undefined;
    if (record.handle && task) {
      outcome = await this.o.runner.reattach(record.handle, task).catch(() => undefined);
    } else if (!existsSync(join(this.directory, logFileName(index, "stdout")))) {
      // Never started: it is run as if nothing had happened.
      return this.runFrom(index, undefined);
    }
    if (outcome === undefined && this.isServiceRun(index)) {
      // A service is restarted however it ended; here nobody knows how.
      const gone: CommandRecord = { ...record, endTime: new Date().toISOString(), exitCode: -1, signal: "", failure: `${this.commandName(index)} ended while the agent was down and left no exit status` };
      delete gone.handle;
      return this.runFrom(index, { record: gone, timedOut: false, started: true });
    }
    if (outcome === undefined) {
      const lost: CommandRecord = { ...record, endTime: new Date().toISOString(), exitCode: -1, signal: "", failure: `the outcome of command ${index + 1} is unknown: the agent restarted while it ran and it left no exit status` };
      return this.endCommands({ record: lost, timedOut: false, started: true }, { state: AttemptState.FAILED, message: `lost: ${lost.failure}` });
    }
    if ("exitCode" in outcome) return this.runFrom(index, this.recordExit(index, record, outcome, false));
    this.log.info({ command: index, handle: record.handle }, "re-attached to a command that outlived the agent");
    this.current = { handle: outcome, index };
    if (this.lastState !== AttemptState.RUNNING) this.report(AttemptState.RUNNING);
    if (this.isServiceRun(index)) this.replicaStarted(outcome, task!);
    return this.runFrom(index, await this.waitFor(index, record, outcome, undefined));
  }

  /**
   * Runs commands from index on; `ended` is the end of command index when it
   * already ran. A service replica's commands before the last are its setup:
   * the first that fails ends the attempt (continue_on_failure or not); the
   * last goes to supervise().
   */
  private async runFrom(start: number, ended: CommandEnd | undefined): Promise<AttemptUpdate> {
    const { exec } = this.o;
    const continueOnFailure = exec.continueOnFailure && !this.replica;
    const end = this.replica ? this.serviceIndex : exec.commands.length;
    let last: CommandEnd | undefined;
    let firstFailure: { state: AttemptState; message: string } | undefined = this.earlierFailure(Math.min(start, end));
    for (let index = start; index < end; index++) {
      if (firstFailure && !continueOnFailure) break;
      if (this.stopping) break;
      last = index === start && ended ? ended : await this.runCommand(index);
      const failure = last.record.failure;
      if (failure !== undefined && !firstFailure) firstFailure = { state: last.timedOut ? AttemptState.TIMED_OUT : AttemptState.FAILED, message: failure };
      const more = index + 1 < exec.commands.length && !this.stopping && !(firstFailure && !continueOnFailure);
      if (more) {
        await this.save();
        this.report(AttemptState.RUNNING, "", last.record);
      }
    }
    if (this.replica && !this.stopping && !firstFailure) return this.supervise(Math.max(start, end), start >= end ? ended : undefined);
    this.commandsDone = true;
    return this.endCommands(last, firstFailure);
  }

  /** A failure among the commands before start (when resuming with continue_on_failure, or a replica's setup). */
  private earlierFailure(start: number): { state: AttemptState; message: string } | undefined {
    const failed = this.manifest?.commands.slice(0, start).find((c) => c.failure !== undefined);
    return failed ? { state: AttemptState.FAILED, message: failed.failure! } : undefined;
  }

  /**
   * A service replica's last command: runs it as run `index` (or takes the
   * end of that run when it already ended), and each time it exits by itself
   * reports its result, waits the restart delay and runs it again as the next
   * index. Only a cancel ends this (CANCELLED), or a run that cannot start
   * (FAILED: the agent cannot start the replica).
   */
  private async supervise(index: number, ended: CommandEnd | undefined): Promise<AttemptUpdate> {
    const service = this.manifest!.service!;
    let end = ended;
    for (;;) {
      end ??= await this.runCommand(index);
      this.health.stop();
      if (this.stopping) break;
      if (!end.started) {
        await this.announcing;
        return this.endCommands(end, { state: AttemptState.FAILED, message: end.record.failure ?? `${this.commandName(index)} could not start` });
      }
      const record = end.record;
      this.health.exited(exitWords(record));
      // Saved with the command's event, so a restarted agent goes on with the same delays
      // (and one that died during this delay does not double it again).
      if (service.delayFor !== index) {
        service.delayMs = restartDelayMs(this.replica!.delays, service.delayMs, record.durationMs ?? 0);
        service.delayFor = index;
      }
      await this.announce(AttemptState.RUNNING, "", record);
      this.log.info({ command: index, exitCode: record.exitCode, signal: record.signal || undefined, delayMs: service.delayMs }, "the service exited; restarting it after the delay");
      await this.restartDelay(service.delayMs ?? 0);
      if (this.stopping) break;
      index += 1;
      this.manifest!.commands[index] = { index, argv: this.commandAt(index).argv.map((a) => this.redact(a)) };
      end = undefined;
    }
    // Stopped: a health report on its way goes out before the final event.
    await this.announcing;
    if (end && !end.started && end.record.startTime === undefined && end.record.index > this.serviceIndex) {
      // Cancelled before the next run started: that run never existed.
      this.manifest!.commands.splice(end.record.index);
      end = undefined;
    }
    return this.endCommands(end, undefined);
  }

  /** Waits ms, or less when the attempt is stopped meanwhile. */
  private restartDelay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.replica!.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.replica!.wake = done;
    });
  }

  /** The replica's health checks, created once the manifest is known (with the health it last reported). */
  private get health(): ReplicaHealth {
    const replica = this.replica!;
    if (!replica.health) {
      const record = this.manifest?.service;
      const last = record?.health;
      replica.health = new ReplicaHealth({
        settings: healthSettings(replica.run.healthCheck),
        port: record?.port ?? 0,
        restarts: last?.restarts ?? 0,
        ...(last ? { last: { state: HealthState[last.state as keyof typeof HealthState] ?? HealthState.UNSPECIFIED, message: last.message, since: new Date(last.since) } } : {}),
        onChange: (report) => void this.announceHealth(report),
        logger: this.log,
      });
    }
    return replica.health;
  }

  /** Run task.index of the service has started (or was re-attached): its health is checked from now on. */
  private replicaStarted(handle: CommandHandle, task: CommandTask): void {
    const target = {
      port: this.manifest?.service?.port ?? 0,
      cwd: task.workDir,
      env: task.env,
      processRunning: async () => (await this.o.runner.status(handle)) === "running",
    };
    this.health.started(target, task.index - this.serviceIndex);
  }

  /** Reports a health change as the attempt's next health event (`<attempt>:health-<n>`), recorded in the manifest first. */
  private announceHealth(report: HealthReport): Promise<void> {
    return this.chain(async () => {
      const service = this.manifest?.service;
      if (!service || this.stopping || this.commandsDone) return;
      const n = (service.health?.n ?? 0) + 1;
      const time = new Date();
      service.health = {
        n,
        sequence: this.sequence + 1,
        state: HealthState[report.state],
        message: report.message,
        since: report.since.toISOString(),
        restarts: report.restarts,
        port: report.port,
        time: time.toISOString(),
      };
      await this.save();
      this.report(AttemptState.RUNNING, report.message, undefined, 0, "", { n, ...report });
    });
  }

  /** After an agent restart: the last health event again, as it was (same id and sequence), in case it never reached Fleet. */
  private resendLastHealth(): void {
    const h = this.manifest?.service?.health;
    if (!h) return;
    const state = HealthState[h.state as keyof typeof HealthState] ?? HealthState.UNSPECIFIED;
    const update: AttemptUpdate = {
      state: AttemptState.RUNNING,
      sequence: h.sequence,
      exitCode: 0,
      signal: "",
      message: h.message,
      time: new Date(h.time),
      health: { n: h.n, state, message: h.message, since: new Date(h.since), restarts: h.restarts, port: h.port },
    };
    try {
      this.o.onUpdate(update);
    } catch (err) {
      this.log.error({ err }, "the attempt update listener threw");
    }
  }

  /** Saves the manifest, then reports: in turn with the health reports. */
  private announce(state: AttemptState, message: string, command: CommandRecord): Promise<void> {
    return this.chain(async () => {
      await this.save();
      this.report(state, message, command);
    });
  }

  private chain(step: () => Promise<void>): Promise<void> {
    const next = this.announcing.then(step);
    this.announcing = next.catch((err: unknown) => this.log.error({ err }, "could not report a service event"));
    return next;
  }

  /** The index of the service command in the spec (its last). */
  private get serviceIndex(): number {
    return this.o.exec.commands.length - 1;
  }

  /** Whether run index is the service command of a replica (its first run or a restart). */
  private isServiceRun(index: number): boolean {
    return this.replica !== undefined && index >= this.serviceIndex;
  }

  /** The spec's command run as index: a replica's restarts run its last command again. */
  private commandAt(index: number): Command {
    const { commands } = this.o.exec;
    return commands[this.replica ? Math.min(index, commands.length - 1) : index]!;
  }

  private commandName(index: number): string {
    return `command ${index + 1} (${this.redact(this.commandAt(index)?.argv[0] ?? "")})`;
  }

  /** The attempt's timeout, ms; 0: none (always for a replica, which runs until cancelled). */
  private get attemptTimeoutMs(): number {
    return this.replica ? 0 : (this.o.timeoutMs ?? 0);
  }

  private endCommands(last: CommandEnd | undefined, failure: { state: AttemptState; message: string } | undefined): Promise<AttemptUpdate> {
    this.commandsDone = true;
    if (last && this.manifest) this.manifest.commands[last.record.index] = last.record;
    // Cancel and the attempt's timeout win over how the command they stopped
    // happened to end: the user asked for that stop, or the limit caused it.
    if (this.stopping) return this.finish(this.stopping.state, this.stopping.message, false, last?.record);
    if (failure) return this.finish(failure.state, failure.message, false, last?.record);
    const n = this.o.exec.commands.length;
    return this.finish(AttemptState.SUCCEEDED, `${n} command${n === 1 ? "" : "s"} succeeded`, false, last?.record);
  }

  /** Why the spec cannot run here, or undefined. Checked before anything is spawned. */
  private check(exec: ExecSpec): string | undefined {
    if (exec.commands.length === 0) return "the job has no commands";
    if (exec.allowShell && !this.o.allowShell) {
      return "the job asks for a shell (allow_shell) but this agent does not allow shells (DROVER_ALLOW_SHELL=true allows them)";
    }
    for (const [name, value] of Object.entries(exec.env)) if (value.includes("\0")) return `env ${name} contains a NUL byte`;
    for (const [index, command] of exec.commands.entries()) {
      if (command.argv.length === 0 || command.argv.some((a) => a === "")) return `command ${index + 1} has an empty argv or an empty argument`;
      const nul = command.argv.findIndex((a) => a.includes("\0"));
      if (nul >= 0) return `command ${index + 1}: argument ${nul + 1} contains a NUL byte`;
      for (const [name, value] of Object.entries(command.env)) if (value.includes("\0")) return `command ${index + 1}: env ${name} contains a NUL byte`;
      const cwdProblem = workingDirectoryProblem(command.cwd, this.o.allowedRoots ?? []);
      if (cwdProblem) return `command ${index + 1}: ${cwdProblem}`;
    }
    return undefined;
  }

  private async taskFor(index: number): Promise<CommandTask> {
    const command = this.commandAt(index);
    const workDir = join(this.directory, "work");
    const cwd = await resolveCwd(command.cwd, workDir, this.o.allowedRoots ?? []);
    return {
      attemptId: this.o.attemptId,
      jobId: this.o.jobId,
      index,
      command,
      exec: this.o.exec,
      cwd,
      workDir,
      bundleDir: this.directory,
      stdoutPath: join(this.directory, logFileName(index, "stdout")),
      stderrPath: join(this.directory, logFileName(index, "stderr")),
      env: this.environment(command),
      shell: this.o.exec.allowShell && this.o.allowShell,
      ...(this.manifest?.service?.port ? { port: this.manifest.service.port } : {}),
      logger: this.log.child({ command: index }),
    };
  }

  private async runCommand(index: number): Promise<CommandEnd> {
    const command = this.commandAt(index);
    const name = this.commandName(index);
    const record: CommandRecord = { ...(this.manifest?.commands[index] ?? { index, argv: [] }) };
    let task: CommandTask;
    try {
      task = await this.taskFor(index);
    } catch (err) {
      return this.recordFailure(record, `${name} could not be prepared: ${(err as Error).message}`);
    }
    if (this.stopping) return { record, timedOut: false, started: false };
    let handle: CommandHandle;
    try {
      handle = await this.o.runner.start(task);
    } catch (err) {
      return this.recordFailure(record, `${name} could not start: ${this.redact((err as Error).message)}`);
    }
    record.handle = handle.saved;
    record.startTime = handle.saved.startTime;
    this.current = { handle, index };
    if (this.manifest) {
      this.manifest.commands[index] = record;
      this.manifest.state = "RUNNING";
    }
    // The handle on disk first: an agent that dies from here on finds the command again.
    await this.save();
    if (this.lastState !== AttemptState.RUNNING) this.report(AttemptState.RUNNING);
    this.log.debug({ command: index, handle: handle.saved.id, argv: command.argv.map((a) => this.redact(a)) }, "command started");
    if (this.isServiceRun(index)) this.replicaStarted(handle, task);
    return this.waitFor(index, record, handle, command);
  }

  private async waitFor(index: number, record: CommandRecord, handle: CommandHandle, command: Command | undefined): Promise<CommandEnd> {
    command ??= this.commandAt(index);
    // A cancel that came while the command was starting.
    if (this.stopping) void this.o.runner.stop(handle, this.stopping.graceMs);
    let timedOut = false;
    // A service runs until it is cancelled: its own timeout does not apply either.
    const timeout = command.timeout && !this.isServiceRun(index) ? durationMs(command.timeout) : 0;
    const timer =
      timeout > 0
        ? setTimeout(() => {
            timedOut = true;
            this.log.info({ command: index, timeoutMs: timeout }, "command timed out; stopping it");
            void this.o.runner.stop(handle, this.graceMs);
          }, Math.max(1, timeout - (Date.now() - Date.parse(record.startTime ?? new Date().toISOString()))))
        : undefined;
    const exit = await this.o.runner.wait(handle);
    clearTimeout(timer);
    await this.o.runner.destroy(handle);
    this.current = undefined;
    const end = this.recordExit(index, record, exit, timedOut, timeout);
    this.log.debug({ command: index, exitCode: exit.exitCode, signal: exit.signal || undefined }, "command ended");
    return end;
  }

  private recordExit(index: number, record: CommandRecord, exit: CommandExit, timedOut: boolean, timeoutMs = 0): CommandEnd {
    const name = this.commandName(index);
    const ended: CommandRecord = { ...record, endTime: exit.endTime.toISOString(), exitCode: exit.exitCode, signal: exit.signal, peakRssBytes: exit.peakRssBytes };
    delete ended.handle;
    if (record.startTime) ended.durationMs = exit.endTime.getTime() - Date.parse(record.startTime);
    const after = timedOut ? ` timed out after ${seconds(timeoutMs)}` : "";
    if (exit.failure) ended.failure = `${name}${after || ""}: ${exit.failure}`;
    else if (exit.signal) ended.failure = timedOut ? `${name}${after}` : `${name} was killed by ${exit.signal}`;
    else if (exit.exitCode !== 0) ended.failure = timedOut ? `${name}${after} (exit code ${exit.exitCode})` : `${name} exited with code ${exit.exitCode}`;
    if (this.manifest) this.manifest.commands[index] = ended;
    return { record: ended, timedOut, started: true };
  }

  private recordFailure(record: CommandRecord, failure: string): CommandEnd {
    const ended: CommandRecord = { ...record, endTime: new Date().toISOString(), exitCode: -1, signal: "", failure };
    if (this.manifest) this.manifest.commands[record.index] = ended;
    return { record: ended, timedOut: false, started: false };
  }

  /**
   * PATH and HOME from the agent (or all of its env with inherit_env), then
   * the spec's env, then the command's, then a replica's PORT. A container keeps its image's PATH
   * and HOME: it gets the spec's and the command's env only.
   */
  private environment(command: Command): Record<string, string> {
    const agent = this.o.agentEnv ?? process.env;
    const env: Record<string, string> = {};
    if (this.o.driver === "docker") {
      // nothing of the agent's
    } else if (this.o.exec.inheritEnv) {
      for (const [k, v] of Object.entries(agent)) if (v !== undefined) env[k] = v;
    } else {
      if (agent.PATH !== undefined) env.PATH = agent.PATH;
      if (agent.HOME !== undefined) env.HOME = agent.HOME;
    }
    // A replica's assigned port wins over a PORT the spec sets: it is the one its checks use.
    const port = this.manifest?.service?.port;
    return { ...env, ...this.o.exec.env, ...command.env, ...(port ? { PORT: String(port) } : {}) };
  }

  private get graceMs(): number {
    const spec = this.o.exec.stopGracePeriod;
    return spec ? durationMs(spec) : (this.o.timeoutGraceMs ?? DEFAULT_TIMEOUT_GRACE_MS);
  }

  private armAttemptTimeout(ms: number): void {
    if (ms <= 0) return;
    const total = this.o.timeoutMs ?? ms;
    this.attemptTimer = setTimeout(() => this.stop({ state: AttemptState.TIMED_OUT, message: `the attempt timed out after ${seconds(total)}`, graceMs: this.graceMs }), ms);
  }

  private stop(stop: Stop): void {
    if (this.stopping || this.commandsDone || FINAL_STATES.has(this.lastState)) return;
    this.stopping = stop;
    this.log.info({ state: AttemptState[stop.state], reason: stop.message, graceMs: stop.graceMs }, "stopping the attempt");
    if (this.current) void this.o.runner.stop(this.current.handle, stop.graceMs);
    // A replica waiting to restart its service: no restart.
    this.replica?.wake?.();
  }

  private report(state: AttemptState, message = "", command?: CommandRecord, exitCode = 0, signal = "", health?: NumberedHealth): AttemptUpdate {
    this.lastState = state;
    this.sequence += 1;
    const update: AttemptUpdate = { state, sequence: this.sequence, exitCode, signal, message, time: new Date(), ...(command ? { command } : {}), ...(health ? { health } : {}) };
    try {
      this.o.onUpdate(update);
    } catch (err) {
      this.log.error({ err }, "the attempt update listener threw");
    }
    return update;
  }

  /** Records the end in the manifest, reports it, then closes the bundle (hashing can take a while for big logs). */
  private async finish(state: AttemptState, message: string, again = false, last?: CommandRecord): Promise<AttemptUpdate> {
    const m = this.manifest!;
    if (m.service?.port) replicaPorts.release(m.service.port);
    last ??= [...m.commands].reverse().find((c) => c.endTime !== undefined);
    const exitCode = last?.exitCode ?? -1;
    const signal = last?.signal ?? "";
    if (!again) {
      Object.assign(m, { state: AttemptState[state], message, exitCode, signal, endTime: new Date().toISOString(), sequence: this.sequence + 1 });
      await this.save();
    }
    const update = this.report(state, message, last, exitCode, signal);
    const fields = { state: AttemptState[state], exitCode, signal: signal || undefined, reason: message };
    if (state === AttemptState.SUCCEEDED) this.log.info(fields, "attempt succeeded");
    else if (state === AttemptState.CANCELLED) this.log.info(fields, "attempt cancelled");
    else this.log.warn(fields, "attempt ended");
    if (!m.closed) {
      try {
        this.manifest = await closeBundle(this.directory, m);
      } catch (err) {
        this.log.error({ err }, "could not close the execution bundle");
      }
    }
    return update;
  }

  private finishWithoutBundle(message: string): AttemptUpdate {
    const update = this.report(AttemptState.FAILED, message, undefined, -1);
    this.log.warn({ reason: message }, "attempt ended");
    return update;
  }

  /**
   * Writes the manifest. Every save comes before the report it precedes, so
   * it records the next sequence number as used: a resumed attempt carries on
   * after it, never reusing a number an event may already have gone out with.
   */
  private save(): Promise<void> {
    this.saving = this.saving.then(() => this.write());
    return this.saving;
  }

  private async write(): Promise<void> {
    if (!this.manifest) return;
    this.manifest.sequence = Math.max(this.manifest.sequence ?? 0, this.sequence + 1);
    try {
      await writeManifest(this.directory, this.manifest);
    } catch (err) {
      this.log.error({ err }, "could not write the manifest");
    }
  }

  private redactedSpec(): unknown {
    const json = toJson(ExecSpecSchema, this.o.exec) as { env?: Record<string, string>; commands?: { env?: Record<string, string>; argv?: string[] }[] };
    const hide = (env?: Record<string, string>) => {
      if (!env) return;
      for (const k of Object.keys(env)) if (this.o.exec.secretEnv.includes(k)) env[k] = REDACTED;
    };
    hide(json.env);
    for (const c of json.commands ?? []) {
      hide(c.env);
      if (c.argv) c.argv = c.argv.map((a) => this.redact(a));
    }
    return json;
  }

  /** The text with every secret value replaced by [REDACTED]. */
  redact(text: string): string {
    let out = text;
    for (const s of this.secrets) out = out.split(s).join(REDACTED);
    return out;
  }
}

/** The values of the spec's secret_env names, wherever they are set. Longest first, so no secret is half-redacted by a shorter one. */
export function secretValues(exec: ExecSpec): string[] {
  const values = new Set<string>();
  for (const name of exec.secretEnv) {
    const v = exec.env[name];
    if (v) values.add(v);
    for (const c of exec.commands) if (c.env[name]) values.add(c.env[name]!);
  }
  return [...values].sort((a, b) => b.length - a.length);
}

/**
 * Why cwd cannot be a command's working directory, or undefined. A relative
 * cwd must stay inside the work directory; an absolute one must be under one
 * of the allowed roots (checked again on the real path when the command starts).
 */
export function workingDirectoryProblem(cwd: string, allowedRoots: readonly string[] = []): string | undefined {
  if (cwd === "") return undefined;
  if (cwd.includes("\0")) return `the working directory contains a NUL byte`;
  if (isAbsolute(cwd)) {
    if (allowedRoots.some((root) => inside(root, resolve(cwd)))) return undefined;
    return allowedRoots.length === 0
      ? `the working directory ${JSON.stringify(cwd)} is absolute; it must be relative to the attempt's work directory (DROVER_ALLOWED_ROOTS lists absolute roots an agent allows)`
      : `the working directory ${JSON.stringify(cwd)} is not under a root this agent allows (${allowedRoots.join(", ")})`;
  }
  if (!inside("/work", resolve("/work", cwd))) return `the working directory ${JSON.stringify(cwd)} leaves the attempt's work directory`;
  return undefined;
}

/** The absolute cwd for a command, created when under the work directory; symlinks may not lead out. */
async function resolveCwd(cwd: string, workDir: string, allowedRoots: readonly string[]): Promise<string> {
  // The work directory itself: the agent just made it, nothing to check.
  if (cwd === "" || cwd === ".") return workDir;
  if (isAbsolute(cwd)) {
    const real = await realpath(cwd).catch(() => {
      throw new Error(`the working directory ${cwd} does not exist`);
    });
    const roots = await Promise.all(allowedRoots.map((r) => realpath(r).catch(() => r)));
    if (!roots.some((root) => inside(root, real))) throw new Error(`the working directory ${cwd} resolves to ${real}, outside the allowed roots`);
    return real;
  }
  const dir = resolve(workDir, cwd);
  await mkdir(dir, { recursive: true });
  const [real, root] = await Promise.all([realpath(dir), realpath(workDir)]);
  if (!inside(root, real)) throw new Error(`the working directory ${cwd} resolves to ${real}, outside the work directory`);
  return dir;
}

function inside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === "" || (!rel.startsWith(`..${sep}`) && rel !== ".." && !isAbsolute(rel));
}

/** How a service run ended, as its health message says it. */
function exitWords(record: CommandRecord): string {
  if (record.signal) return `killed by ${record.signal}`;
  if (record.exitCode !== undefined && record.exitCode >= 0) return `exited with code ${record.exitCode}`;
  return record.failure ?? "ended";
}

function seconds(ms: number): string {
  return `${Math.round(ms) / 1000} s`;
}
