// The driver contract: how the agent runs one command of an attempt.
//
// JobRunner (job_runner.ts) owns an attempt: the order of its commands,
// timeouts, cancels, the execution bundle and the JobEvents. For each
// command it asks a Runner, chosen by the job's driver, to
//
//   start(task)             → a handle (start it; output goes to the task's files)
//   wait(handle)            → how it ended (resolves once, however it ends)
//   stop(handle, grace, s)  → signal s, then SIGKILL after grace; idempotent
//   status(handle)          → running | exited | gone
//   destroy(handle)         → release what start() made (containers, cgroups); idempotent
//   reattach(saved)         → after an agent restart, the handle again if the
//                             command still runs, else how it ended if that is
//                             known, else undefined
//
// as Nomad's drivers do (plugins/drivers: StartTask, WaitTask, StopTask,
// DestroyTask, RecoverTask). Handles are plain JSON (SavedHandle) so the
// bundle's manifest can keep them across an agent restart.

import type { Command, ExecSpec } from "../gen/ts/drover/common/v1/exec_pb.ts";
import type { Logger } from "../lib/logger.ts";

/** What a driver can do; JobRunner and the bidding read these. */
export interface RunnerCapabilities {
  /** Commands outlive the agent and can be re-attached after it restarts. */
  reattach: boolean;
  /** ExecSpec.memory_limit_bytes is enforced. */
  memoryLimit: boolean;
  /** ExecSpec.nice is applied. */
  nice: boolean;
  /** Peak resident memory is measured (CommandResult.peak_rss_bytes). */
  peakRss: boolean;
}

/** One command to start, with everything decided: env, cwd and files are final. */
export interface CommandTask {
  attemptId: string;
  jobId: string;
  /** Index of the command in the ExecSpec. */
  index: number;
  command: Command;
  exec: ExecSpec;
  /** Absolute working directory (the process driver's cwd; docker mounts workDir). */
  cwd: string;
  /** The attempt's work directory. */
  workDir: string;
  /** The bundle directory: status files and the like go here. */
  bundleDir: string;
  /** Files the command's output is appended to. */
  stdoutPath: string;
  stderrPath: string;
  /** The complete environment of the command. */
  env: Record<string, string>;
  /** Run through /bin/sh -c (the job asked and the agent allows it). */
  shell: boolean;
  /**
   * A service replica's assigned port (its PORT), when it has one. The
   * docker driver publishes it on the host under the same number, so the
   * agent's tcp and http checks, and clients, reach the container there.
   */
  port?: number;
  logger: Logger;
}

/** A started command, as JSON so that the manifest can keep it. */
export interface SavedHandle {
  driver: string;
  /** The driver's id for it: a pid for processes, a container id for docker. */
  id: string;
  /** When it started (ISO 8601). */
  startTime: string;
  /** Driver-specific facts for reattach (for processes: the kernel's start time of the pid). */
  extra?: Record<string, string | number>;
}

/** How a command ended. */
export interface CommandExit {
  /** Exit code; -1 when a signal ended it or it never started. */
  exitCode: number;
  /** The signal that ended it ("SIGKILL"), or "". */
  signal: string;
  /** Highest resident memory seen, bytes; 0 when not measured. */
  peakRssBytes: number;
  /** When it ended. */
  endTime: Date;
  /** Set when it could not start, or the driver knows more than the code says ("out of memory"). */
  failure?: string;
}

export type CommandStatus = "running" | "exited" | "gone";

/** A command the driver started; what wait/stop/status/destroy act on. */
export interface CommandHandle {
  readonly saved: SavedHandle;
}

/** Whether the driver can run anything on this machine now. */
export type Availability = { available: true } | { available: false; reason: string };

export interface Runner {
  /** The driver name jobs ask for ("process", "docker"). */
  readonly driver: string;
  readonly capabilities: RunnerCapabilities;
  /** Checked at agent start (and before Hello): drivers that are not available are not reported. */
  availability(): Promise<Availability>;
  /**
   * Starts the command. Rejects (with a message for the user) when it cannot
   * start: a missing executable, an image that does not exist...
   */
  start(task: CommandTask): Promise<CommandHandle>;
  /** Resolves once with how the command ended. */
  wait(handle: CommandHandle): Promise<CommandExit>;
  /** Sends signal, then SIGKILL after graceMs if it still runs. Idempotent; never throws. */
  stop(handle: CommandHandle, graceMs: number, signal?: NodeJS.Signals): Promise<void>;
  status(handle: CommandHandle): Promise<CommandStatus>;
  /** Releases what start() made. Idempotent; never throws. */
  destroy(handle: CommandHandle): Promise<void>;
  /**
   * After an agent restart: the handle again when the command still runs,
   * how it ended when that is known, undefined when nothing is known.
   */
  reattach(saved: SavedHandle, task: CommandTask): Promise<CommandHandle | CommandExit | undefined>;
}

/** The runners by driver name. */
export class RunnerRegistry {
  private readonly runners = new Map<string, Runner>();
  private readonly unavailable = new Map<string, string>();

  constructor(runners: readonly Runner[] = []) {
    for (const r of runners) this.runners.set(r.driver, r);
  }

  /** Asks every runner whether it can run here; returns the available drivers' names. */
  async probe(log?: Logger): Promise<string[]> {
    this.unavailable.clear();
    for (const [driver, runner] of this.runners) {
      let a: Availability;
      try {
        a = await runner.availability();
      } catch (err) {
        a = { available: false, reason: (err as Error).message };
      }
      if (!a.available) {
        this.unavailable.set(driver, a.reason);
        log?.info({ driver, reason: a.reason }, "driver not available");
      }
    }
    return this.drivers();
  }

  /** Drivers available here (after probe(): the ones that said so). */
  drivers(): string[] {
    return [...this.runners.keys()].filter((d) => !this.unavailable.has(d));
  }

  /** The runner for driver, or why there is none. */
  get(driver: string): Runner | { unavailable: string } {
    const r = this.runners.get(driver);
    if (!r) return { unavailable: `driver ${driver} is not known to this agent` };
    const why = this.unavailable.get(driver);
    if (why !== undefined) return { unavailable: `driver ${driver} is not available here: ${why}` };
    return r;
  }
}
