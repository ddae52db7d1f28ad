// The parts of a service replica that are not about running commands (those
// stay in job_runner.ts, which restarts the service command): the restart
// delay (pure), the assigned port (held for the replica's life, so that a
// replica whose process is down between restarts does not find its port
// given to another), and ReplicaHealth, which checks the running process on
// a timer and says when its health changes.
//
//   process starts ─▶ started(target, restarts): a new restart count → onChange;
//                     initial_delay ─▶ check ─▶ interval ─▶ check ...
//                                        └─ tallyVerdict: state changed → onChange
//   process exits  ─▶ exited("exited with code 1"): checks stop, UNHEALTHY → onChange
//
// Checks of one process run one at a time and never outlive it: a verdict
// that arrives after the process ended (or after stop()) is dropped.

import { durationMs } from "@bufbuild/protobuf/wkt";

import { HealthState, type RestartPolicy } from "../gen/ts/drover/common/v1/service_pb.ts";
import { freePort } from "../lib/free_port.ts";
import type { Logger } from "../lib/logger.ts";
import { INITIAL_TALLY, runCheck, tallyExit, tallyStart, tallyVerdict, type CheckTarget, type HealthSettings, type HealthTally } from "./health_check.ts";

/** RestartPolicy.initial_delay when unset, ms. */
export const DEFAULT_RESTART_DELAY_MS = 1_000;
/** RestartPolicy.max_delay when unset, ms. */
export const DEFAULT_MAX_RESTART_DELAY_MS = 60_000;
/** A run at least this long was not a crash loop: the delay starts again from initial_delay. */
export const STABLE_RUN_MS = 60_000;
/** Doubling starts from at least this, so an initial_delay of 0 cannot restart a crashing command in a hot loop. */
export const MIN_DOUBLED_DELAY_MS = 100;

/** A RestartPolicy with its defaults applied, ms. */
export interface RestartDelays {
  initialMs: number;
  maxMs: number;
}

export function restartDelays(policy: RestartPolicy | undefined): RestartDelays {
  return {
    initialMs: policy?.initialDelay ? durationMs(policy.initialDelay) : DEFAULT_RESTART_DELAY_MS,
    maxMs: policy?.maxDelay ? durationMs(policy.maxDelay) : DEFAULT_MAX_RESTART_DELAY_MS,
  };
}

/**
 * The wait before the next start, given the previous wait (undefined before
 * the first restart) and how long the run that just ended lasted: the
 * initial delay the first time and after a stable run, else twice the
 * previous, never more than the maximum.
 */
export function restartDelayMs(delays: RestartDelays, previousMs: number | undefined, ranMs: number): number {
  if (previousMs === undefined || ranMs >= STABLE_RUN_MS) return Math.min(delays.initialMs, delays.maxMs);
  return Math.min(delays.maxMs, Math.max(previousMs * 2, MIN_DOUBLED_DELAY_MS));
}

/**
 * The ports assigned to this agent's live replicas. The kernel hands out a
 * port again once nothing listens on it, which is the case while a
 * replica's process waits for its restart; the book skips those.
 */
export class PortBook {
  private readonly held = new Set<number>();

  constructor(private readonly pick: () => Promise<number> = freePort) {}

  /** A free port no live replica holds, held until released. */
  async assign(): Promise<number> {
    for (let tries = 0; tries < 32; tries++) {
      const port = await this.pick();
      if (this.held.has(port)) continue;
      this.held.add(port);
      return port;
    }
    throw new Error("every free port the system offered is held by another replica");
  }

  /** A port a replica already has (resumed after an agent restart). */
  hold(port: number): void {
    if (port > 0) this.held.add(port);
  }

  release(port: number): void {
    this.held.delete(port);
  }
}

/** This agent process's replicas' ports. */
export const replicaPorts = new PortBook();

/** A replica's health as reported in HealthStatus. */
export interface HealthReport {
  state: HealthState;
  message: string;
  /** Since when the state holds. */
  since: Date;
  /** How many times the agent restarted the replica's process. */
  restarts: number;
  /** The assigned port, 0 when none. */
  port: number;
}

export interface ReplicaHealthOptions {
  settings: HealthSettings;
  port: number;
  restarts: number;
  /** The health last reported (by an earlier agent process): the state starts from it. */
  last?: Pick<HealthReport, "state" | "message" | "since">;
  /** Told of every change of state (and of restarts). Must not throw. */
  onChange: (report: HealthReport) => void;
  logger: Logger;
}

/** Checks one replica's process while it runs; says when its health changes. */
export class ReplicaHealth {
  private readonly o: ReplicaHealthOptions;
  private tally: HealthTally;
  private message: string;
  private since: Date;
  private restartCount: number;
  /** Bumped on every start and stop: a check of an earlier run is ignored. */
  private generation = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(options: ReplicaHealthOptions) {
    this.o = options;
    this.tally = options.last ? { ...INITIAL_TALLY, state: options.last.state } : INITIAL_TALLY;
    this.message = options.last?.message ?? "";
    this.since = options.last?.since ?? new Date();
    this.restartCount = options.restarts;
  }

  get report(): HealthReport {
    return { state: this.tally.state, message: this.message, since: this.since, restarts: this.restartCount, port: this.o.port };
  }

  /**
   * The process has started (or was re-attached) after `restarts` restarts:
   * a new count is reported, and checks begin after the initial delay.
   */
  started(target: CheckTarget, restarts: number): void {
    this.stop();
    this.tally = tallyStart(this.tally);
    if (restarts !== this.restartCount) {
      this.restartCount = restarts;
      this.changed();
    }
    const generation = this.generation;
    const check = async () => {
      const began = Date.now();
      const verdict = await runCheck(this.o.settings, target);
      if (generation !== this.generation) return;
      this.verdict(verdict.passed, verdict.message);
      this.timer = setTimeout(() => void check(), Math.max(0, this.o.settings.intervalMs - (Date.now() - began)));
    };
    this.timer = setTimeout(() => void check(), this.o.settings.initialDelayMs);
  }

  /** The process ended by itself: no more checks, and unhealthy at once. */
  exited(message: string): void {
    this.stop();
    const before = this.tally.state;
    this.tally = tallyExit();
    this.message = message;
    if (before !== this.tally.state) {
      this.since = new Date();
      this.changed();
    }
  }

  /** No more checks (the replica is being stopped, or its process ended). */
  stop(): void {
    this.generation += 1;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private verdict(passed: boolean, message: string): void {
    const before = this.tally.state;
    this.tally = tallyVerdict(this.tally, passed, this.o.settings);
    if (this.tally.state === before) return;
    this.message = message;
    this.since = new Date();
    this.o.logger.info({ health: HealthState[this.tally.state], reason: message }, "replica health changed");
    this.changed();
  }

  private changed(): void {
    try {
      this.o.onChange(this.report);
    } catch (err) {
      this.o.logger.error({ err }, "the health listener threw");
    }
  }
}
