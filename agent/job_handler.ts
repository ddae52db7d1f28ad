// The agent's WorkHandler: bids for offers, runs assigned attempts, stops
// cancelled ones, and reports every change of an attempt's state as a
// JobEvent through the outbox (AgentWorker sends and resends them).
//
//   Offer      → decideOffer (bidding.ts) over the last machine sample, minus
//                what running attempts reserved → Bid or Decline
//   Assignment → a JobRunner, unless the attempt is known (running or ended
//                recently): a second Assignment for it is ignored
//   Cancel     → the runner's cancel (SIGTERM, SIGKILL after the grace)
//
// The resources an Assignment names stay reserved until its attempt ends,
// so the next offers see them as taken even before the machine's readings
// show the new process.

import { durationMs } from "@bufbuild/protobuf/wkt";

import { AttemptState, type Assignment, type Cancel, type LogAck, type Offer } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import type { Logger } from "../lib/logger.ts";
import { addAmounts, decideOffer, DEFAULT_DRIVER, ZERO, type Amounts } from "./bidding.ts";
import type { JobEventOutbox } from "./job_events.ts";
import { JobRunner, type AttemptUpdate } from "./job_runner.ts";
import type { MachineSample } from "./metrics.ts";
import type { OfferAnswer, WorkHandler } from "./work_handler.ts";

/** Grace between SIGTERM and SIGKILL when a Cancel sets none. */
export const DEFAULT_CANCEL_GRACE_MS = 10_000;
/** Ended attempts remembered, so that a late second Assignment for one does not run it again. */
const REMEMBERED_ATTEMPTS = 4_096;

export interface JobHandlerOptions {
  /** The agent's state directory; attempts run under <stateDir>/runs. */
  stateDir: string;
  /** Drivers this agent runs (Hello.drivers). */
  drivers: readonly string[];
  /** The most attempts at once (DROVER_MAX_ATTEMPTS). */
  maxAttempts: number;
  /** Whether jobs may use a shell (DROVER_ALLOW_SHELL). */
  allowShell: boolean;
  /** The last machine sample (RememberingProbe.latest); undefined before the first. */
  lastSample: () => MachineSample | undefined;
  /** Where attempts' JobEvents go. */
  events: JobEventOutbox;
  logger: Logger;
  /** SIGTERM → SIGKILL grace for a Cancel without one, ms. Default DEFAULT_CANCEL_GRACE_MS. */
  defaultCancelGraceMs?: number;
  /** SIGTERM → SIGKILL grace when a timeout stops a command, ms. Default 10 000. */
  timeoutGraceMs?: number;
}

/** An attempt this agent runs. */
interface Running {
  jobId: string;
  runner: JobRunner;
  reserved: Amounts;
  done: Promise<AttemptUpdate>;
}

/** Runs the work Fleet gives this agent; see the top of the file. */
export class JobHandler implements WorkHandler {
  private readonly o: JobHandlerOptions;
  private readonly log: Logger;
  private readonly attempts = new Map<string, Running>();
  /** Attempts that ended here, with their final state, oldest first. */
  private readonly ended = new Map<string, AttemptState>();
  /** Set by shutdown(): no new work from then on. */
  private closing = false;

  constructor(options: JobHandlerOptions) {
    this.o = options;
    this.log = options.logger.child({ component: "job_handler" });
  }

  async offer(offer: Offer): Promise<OfferAnswer> {
    if (this.closing) return { case: "decline", value: { offerId: offer.offerId, reason: "the agent is stopping" } };
    const sample = this.o.lastSample();
    const decision = decideOffer(
      { driver: offer.driver, resources: offer.resources },
      {
        drivers: this.o.drivers,
        total: sample?.total,
        free: sample?.free,
        reserved: this.reserved(),
        running: this.attempts.size,
        maxAttempts: this.o.maxAttempts,
        cpuPercent: sample?.metrics.cpuPercent ?? 0,
        load1: sample?.metrics.load1 ?? 0,
        cores: (sample?.total.cpuMillis ?? 0) / 1000,
      },
    );
    const fields = { offerId: offer.offerId, jobId: offer.jobId, driver: offer.driver };
    if (decision.kind === "decline") {
      this.log.info({ ...fields, reason: decision.reason }, "declining an offer");
      return { case: "decline", value: { offerId: offer.offerId, reason: decision.reason } };
    }
    this.log.debug({ ...fields, score: decision.score }, "bidding for an offer");
    return { case: "bid", value: { offerId: offer.offerId, score: decision.score, free: decision.free } };
  }

  async assignment(assignment: Assignment): Promise<void> {
    const { attemptId, jobId } = assignment;
    const log = this.log.child({ attemptId, jobId });
    if (this.attempts.has(attemptId) || this.ended.has(attemptId)) {
      log.info({ ended: this.ended.has(attemptId) }, "assignment for an attempt this agent already has; ignoring it");
      return;
    }
    if (this.closing) {
      log.warn("assignment while the agent is stopping; failing the attempt");
      this.o.events.add({ attemptId, state: AttemptState.FAILED, exitCode: -1, message: "the agent is stopping" });
      this.remember(attemptId, AttemptState.FAILED);
      return;
    }
    const driver = assignment.driver || DEFAULT_DRIVER;
    if (!this.o.drivers.includes(driver) || driver !== DEFAULT_DRIVER) {
      // Only the process driver exists so far, whatever else is listed.
      const message = `driver ${driver} not available here`;
      log.warn({ driver }, "assignment for a driver this agent does not have; failing the attempt");
      this.o.events.add({ attemptId, state: AttemptState.FAILED, exitCode: -1, message });
      this.remember(attemptId, AttemptState.FAILED);
      return;
    }
    if (!assignment.exec) {
      this.o.events.add({ attemptId, state: AttemptState.FAILED, exitCode: -1, message: "the assignment has no exec spec" });
      this.remember(attemptId, AttemptState.FAILED);
      return;
    }
    if (this.attempts.size >= this.o.maxAttempts) {
      // Fleet decided; the limit is for bidding. Running it beats leaving it
      // to time out, and the next offers are declined until one ends.
      log.warn({ running: this.attempts.size, maxAttempts: this.o.maxAttempts }, "assigned an attempt beyond DROVER_MAX_ATTEMPTS; running it");
    }
    const runner = new JobRunner({
      attemptId,
      jobId,
      runId: assignment.runId || undefined,
      stageName: assignment.stageName || undefined,
      exec: assignment.exec,
      stateDir: this.o.stateDir,
      allowShell: this.o.allowShell,
      timeoutMs: assignment.timeout ? durationMs(assignment.timeout) : undefined,
      timeoutGraceMs: this.o.timeoutGraceMs,
      logger: this.o.logger,
      onUpdate: (update) =>
        this.o.events.add({ attemptId, state: update.state, exitCode: update.exitCode, signal: update.signal, message: update.message, time: update.time }),
    });
    const resources = assignment.resources;
    const running: Running = {
      jobId,
      runner,
      reserved: resources ? { cpuMillis: resources.cpuMillis, memoryBytes: resources.memoryBytes, diskBytes: resources.diskBytes } : ZERO,
      done: runner.run(),
    };
    this.attempts.set(attemptId, running);
    log.info({ commands: assignment.exec.commands.length }, "running an attempt");
    void running.done.then(
      (end) => this.settle(attemptId, end.state),
      (err: unknown) => {
        // The runner reports its failures as updates; this is a bug in it.
        log.error({ err }, "the job runner failed");
        this.o.events.add({ attemptId, state: AttemptState.FAILED, exitCode: -1, message: `the agent failed to run the attempt: ${String(err)}` });
        this.settle(attemptId, AttemptState.FAILED);
      },
    );
  }

  async cancel(cancel: Cancel): Promise<void> {
    const running = this.attempts.get(cancel.attemptId);
    if (!running) {
      this.log.info({ attemptId: cancel.attemptId, reason: cancel.reason, ended: this.ended.has(cancel.attemptId) }, "cancel for an attempt this agent is not running; ignoring it");
      return;
    }
    const graceMs = cancel.gracePeriod ? durationMs(cancel.gracePeriod) : (this.o.defaultCancelGraceMs ?? DEFAULT_CANCEL_GRACE_MS);
    this.log.info({ attemptId: cancel.attemptId, jobId: running.jobId, reason: cancel.reason, graceMs }, "cancelling an attempt");
    running.runner.cancel(graceMs, cancel.reason ? `cancelled: ${cancel.reason}` : "cancelled");
  }

  logAck(ack: LogAck): void {
    // Logs stay in files for now; the log streamer will use these offsets.
    this.log.debug({ attemptId: ack.attemptId, stream: ack.stream, offset: ack.offset.toString() }, "log ack received");
  }

  running(): { attemptId: string; jobId: string; state: AttemptState }[] {
    return [...this.attempts].map(([attemptId, { jobId, runner }]) => ({
      attemptId,
      jobId,
      // Between the Assignment and the runner's first report.
      state: runner.state === AttemptState.UNSPECIFIED ? AttemptState.STARTING : runner.state,
    }));
  }

  /**
   * Cancels every running attempt (SIGTERM, SIGKILL after graceMs) and waits
   * for them to end, so that none outlives the agent as an orphan nobody
   * tracks. Offers and Assignments that come after it are refused. For the
   * agent's shutdown and tests' teardown.
   */
  async shutdown(graceMs: number, reason = "the agent is stopping"): Promise<void> {
    this.closing = true;
    const all = [...this.attempts.values()];
    for (const { runner } of all) runner.cancel(graceMs, reason);
    await Promise.allSettled(all.map((a) => a.done));
  }

  /** Resources reserved by the running attempts. */
  private reserved(): Amounts {
    let sum = ZERO;
    for (const { reserved } of this.attempts.values()) sum = addAmounts(sum, reserved);
    return sum;
  }

  private settle(attemptId: string, state: AttemptState): void {
    this.attempts.delete(attemptId);
    this.remember(attemptId, state);
  }

  private remember(attemptId: string, state: AttemptState): void {
    this.ended.set(attemptId, state);
    if (this.ended.size > REMEMBERED_ATTEMPTS) {
      const oldest = this.ended.keys().next().value;
      if (oldest !== undefined) this.ended.delete(oldest);
    }
  }
}
