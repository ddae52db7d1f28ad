// The agent's WorkHandler: bids for offers, runs assigned attempts, stops
// cancelled ones, and reports every change of an attempt's state as a
// JobEvent through the outbox (AgentWorker sends and resends them).
//
//   Offer      → decideOffer (bidding.ts) over the last machine sample, minus
//                what running attempts reserved → Bid or Decline
//   Assignment → a JobRunner, unless the attempt is known (running or ended
//                recently): a second Assignment for it is ignored; with
//                `service` set, a replica that restarts its last command
//                and reports its health until it is cancelled
//   Cancel     → the runner's cancel (SIGTERM, SIGKILL after the grace)
//   LogAck     → the LogShipper, which is also told of every bundle (new,
//                resumed, or closed with logs not yet shipped) and of every
//                attempt's end
//
// The resources an Assignment names stay reserved until its attempt ends,
// so the next offers see them as taken even before the machine's readings
// show the new process.

import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";

import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";

import { AssignmentSchema, AttemptState, type Assignment, type Cancel, type JobEvent, type LogAck, type Offer } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import type { Logger } from "../lib/logger.ts";
import { addAmounts, decideOffer, DEFAULT_DRIVER, DEFAULT_MAX_SERVICES, ZERO, type Amounts } from "./bidding.ts";
import { ASSIGNMENT, bundleDir, closeBundle, listBundles, markReported, readManifest, type Manifest } from "./bundle.ts";
import type { JobEventOutbox } from "./job_events.ts";
import { FINAL_STATES, JobRunner, secretValues, type AttemptUpdate } from "./job_runner.ts";
import type { LogShipper } from "./log_shipper.ts";
import { ProcessRunner } from "./process_runner.ts";
import { RunnerRegistry, type Runner } from "./runner.ts";
import type { MachineSample } from "./metrics.ts";
import type { OfferAnswer, WorkHandler } from "./work_handler.ts";

/** Grace between SIGTERM and SIGKILL when a Cancel sets none. */
export const DEFAULT_CANCEL_GRACE_MS = 10_000;
/** Ended attempts remembered, so that a late second Assignment for one does not run it again. */
const REMEMBERED_ATTEMPTS = 4_096;

export interface JobHandlerOptions {
  /** The agent's state directory; attempts run under <stateDir>/runs. */
  stateDir: string;
  /** The runners by driver; default: the process runner only. */
  runners?: RunnerRegistry;
  /** Absolute directories a command's absolute cwd may be under (DROVER_ALLOWED_ROOTS). */
  allowedRoots?: readonly string[];
  /** Recorded in manifests. */
  hostname?: string;
  agentId?: () => string | undefined;
  /** The most attempts at once that are not service replicas (DROVER_MAX_ATTEMPTS). */
  maxAttempts: number;
  /** The most service replicas at once (DROVER_MAX_SERVICES); default 128. */
  maxServices?: number;
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
  /** Ships the attempts' output; told of every bundle and every attempt's end, and given the LogAcks. None: output stays in the bundles. */
  logs?: LogShipper;
}

/** An attempt this agent runs. */
interface Running {
  jobId: string;
  /** A service replica: counted against maxServices, not maxAttempts. */
  service: boolean;
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
  /** Bundles of ended attempts whose final event Fleet has not confirmed yet. */
  private readonly unreported = new Map<string, string>();
  private readonly runners: RunnerRegistry;
  /** Every attempt's runner until it has fully ended (its bundle closed). */
  private readonly finishing = new Map<string, Promise<AttemptUpdate>>();
  /** Set by shutdown(): no new work from then on. */
  private closing = false;

  constructor(options: JobHandlerOptions) {
    this.o = options;
    this.log = options.logger.child({ component: "job_handler" });
    this.runners = options.runners ?? new RunnerRegistry([new ProcessRunner({ allowedRoots: options.allowedRoots })]);
    options.events.onConfirm((events) => this.confirmed(events));
  }

  /** Drivers this agent can run now (Hello.drivers). */
  get drivers(): string[] {
    return this.runners.drivers();
  }

  /**
   * Picks up what a previous agent process left in the state directory,
   * before the first Hello: open bundles are resumed (their commands
   * re-attached, or their outcome read from disk, or declared lost), and
   * ended attempts whose final event Fleet never confirmed report it again.
   */
  async recover(): Promise<{ resumed: number; reported: number }> {
    let resumed = 0;
    let reported = 0;
    for (const dir of await listBundles(this.o.stateDir)) {
      const manifest = await readManifest(dir);
      if (!manifest || this.attempts.has(manifest.attemptId)) continue;
      if (manifest.closed) {
        // Its secret values left with assignment.pb: shipped unredacted, the Log service redacts it.
        if (!manifest.logsShipped) await this.o.logs?.track({ dir, attemptId: manifest.attemptId });
        if (manifest.reported) continue;
        this.reportAgain(dir, manifest);
        reported += 1;
        continue;
      }
      let assignment: Assignment | undefined;
      try {
        assignment = fromBinary(AssignmentSchema, await readFile(join(dir, ASSIGNMENT)));
      } catch {
        assignment = undefined;
      }
      const runner = this.runners.get(manifest.driver);
      if (!assignment?.exec || "unavailable" in runner) {
        // Nothing to resume with: the attempt is over, and the truth is that nobody knows how it went.
        const message = `lost: the agent restarted and ${assignment?.exec ? `driver ${manifest.driver} is not available` : "the attempt's assignment is not in its bundle"}`;
        const ended = await closeBundle(dir, { ...manifest, state: AttemptState[AttemptState.FAILED], message, exitCode: -1, endTime: new Date().toISOString() }).catch(() => manifest);
        await this.o.logs?.track({ dir, attemptId: manifest.attemptId, secrets: assignment?.exec ? secretValues(assignment.exec) : [] });
        this.reportAgain(dir, ended);
        continue;
      }
      await this.o.logs?.track({ dir, attemptId: manifest.attemptId, secrets: secretValues(assignment.exec) });
      this.start(assignment, runner, manifest);
      resumed += 1;
    }
    if (resumed + reported > 0) this.log.info({ resumed, reported }, "recovered attempts from a previous agent process");
    return { resumed, reported };
  }

  async offer(offer: Offer): Promise<OfferAnswer> {
    if (this.closing) return { case: "decline", value: { offerId: offer.offerId, reason: "the agent is stopping" } };
    const sample = this.o.lastSample();
    const services = this.runningServices();
    const decision = decideOffer(
      { driver: offer.driver, resources: offer.resources, service: offer.service },
      {
        drivers: this.drivers,
        total: sample?.total,
        free: sample?.free,
        reserved: this.reserved(),
        running: this.attempts.size - services,
        maxAttempts: this.o.maxAttempts,
        runningServices: services,
        maxServices: this.o.maxServices ?? DEFAULT_MAX_SERVICES,
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
    if (existsSync(bundleDir(this.o.stateDir, assignment))) {
      // Run by an earlier agent process (an Assignment redelivered after a restart):
      // recover() resumed or reported it; it never runs twice here.
      log.info("assignment for an attempt that already has an execution bundle; ignoring it");
      return;
    }
    if (this.closing) {
      log.warn("assignment while the agent is stopping; failing the attempt");
      this.o.events.add({ attemptId, state: AttemptState.FAILED, exitCode: -1, message: "the agent is stopping" });
      this.remember(attemptId, AttemptState.FAILED);
      return;
    }
    const driver = assignment.driver || DEFAULT_DRIVER;
    const runner = this.runners.get(driver);
    if ("unavailable" in runner) {
      log.warn({ driver, reason: runner.unavailable }, "assignment for a driver this agent does not have; failing the attempt");
      this.o.events.add({ attemptId, state: AttemptState.FAILED, exitCode: -1, message: runner.unavailable });
      this.remember(attemptId, AttemptState.FAILED);
      return;
    }
    if (!assignment.exec) {
      this.o.events.add({ attemptId, state: AttemptState.FAILED, exitCode: -1, message: "the assignment has no exec spec" });
      this.remember(attemptId, AttemptState.FAILED);
      return;
    }
    const services = this.runningServices();
    const [kind, used, most] = assignment.service
      ? (["DROVER_MAX_SERVICES", services, this.o.maxServices ?? DEFAULT_MAX_SERVICES] as const)
      : (["DROVER_MAX_ATTEMPTS", this.attempts.size - services, this.o.maxAttempts] as const);
    if (used >= most) {
      // Fleet decided; the limit is for bidding. Running it beats leaving it
      // to time out, and the next offers are declined until one ends.
      log.warn({ running: used, most }, `assigned an attempt beyond ${kind}; running it`);
    }
    this.start(assignment, runner);
    log.info({ commands: assignment.exec.commands.length }, "running an attempt");
  }

  /** Service replicas among the running attempts. */
  private runningServices(): number {
    let n = 0;
    for (const r of this.attempts.values()) if (r.service) n++;
    return n;
  }

  /** Starts (or, with a manifest, resumes) an attempt's JobRunner and tracks it until it ends. */
  private start(assignment: Assignment, driverRunner: Runner, resume?: Manifest): void {
    const { attemptId, jobId } = assignment;
    const log = this.log.child({ attemptId, jobId });
    const runner = new JobRunner({
      attemptId,
      jobId,
      runId: assignment.runId || undefined,
      stageName: assignment.stageName || undefined,
      exec: assignment.exec!,
      driver: driverRunner.driver,
      runner: driverRunner,
      stateDir: this.o.stateDir,
      allowShell: this.o.allowShell,
      allowedRoots: this.o.allowedRoots,
      // A service replica runs until it is cancelled: no timeout.
      timeoutMs: assignment.timeout && !assignment.service ? durationMs(assignment.timeout) : undefined,
      service: assignment.service,
      timeoutGraceMs: this.o.timeoutGraceMs,
      assignment: toBinary(AssignmentSchema, assignment),
      hostname: this.o.hostname,
      agentId: this.o.agentId?.(),
      logger: this.o.logger,
      onBundle: (dir) => void this.o.logs?.track({ dir, attemptId, secrets: secretValues(assignment.exec!) }),
      onUpdate: (update) => {
        if (FINAL_STATES.has(update.state)) {
          // Over for the agent (its resources are free) even while the bundle is still being closed.
          this.unreported.set(attemptId, runner.directory);
          this.settle(attemptId, update.state);
        }
        this.o.events.add({ attemptId, ...update });
      },
    });
    const resources = assignment.resources;
    const running: Running = {
      jobId,
      service: assignment.service !== undefined,
      runner,
      reserved: resources ? { cpuMillis: resources.cpuMillis, memoryBytes: resources.memoryBytes, diskBytes: resources.diskBytes } : ZERO,
      done: resume ? runner.resume(resume) : runner.run(),
    };
    if (!this.ended.has(attemptId)) this.attempts.set(attemptId, running);
    this.finishing.set(attemptId, running.done);
    void running.done.then(
      () => {
        this.finishing.delete(attemptId);
        // The bundle is closed: the shipper sends the streams' ends.
        void this.o.logs?.ended(attemptId);
      },
      (err: unknown) => {
        // The runner reports its failures as updates; this is a bug in it.
        log.error({ err }, "the job runner failed");
        this.o.events.add({ attemptId, state: AttemptState.FAILED, exitCode: -1, message: `the agent failed to run the attempt: ${String(err)}` });
        this.finishing.delete(attemptId);
        this.settle(attemptId, AttemptState.FAILED);
        void this.o.logs?.ended(attemptId);
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
    if (this.o.logs) this.o.logs.logAck(ack);
    else this.log.debug({ attemptId: ack.attemptId, stream: ack.stream, offset: ack.offset.toString() }, "log ack received, but this agent ships no logs");
  }

  /** Whether the attempt runs here now. */
  isRunning(attemptId: string): boolean {
    return this.attempts.has(attemptId);
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
    for (const { runner } of this.attempts.values()) runner.cancel(graceMs, reason);
    await Promise.allSettled([...this.finishing.values()]);
  }

  /** Resources reserved by the running attempts. */
  private reserved(): Amounts {
    let sum = ZERO;
    for (const { reserved } of this.attempts.values()) sum = addAmounts(sum, reserved);
    return sum;
  }

  /** Sends an ended attempt's final event again (same id: Fleet applies it once). */
  private reportAgain(dir: string, m: Manifest): void {
    const state = AttemptState[m.state as keyof typeof AttemptState] ?? AttemptState.FAILED;
    const last = [...m.commands].reverse().find((c) => c.endTime !== undefined);
    this.unreported.set(m.attemptId, dir);
    this.remember(m.attemptId, state);
    this.o.events.add({
      attemptId: m.attemptId,
      state,
      exitCode: m.exitCode ?? -1,
      signal: m.signal ?? "",
      message: m.message ?? "",
      time: m.endTime ? new Date(m.endTime) : new Date(),
      sequence: m.sequence ?? 0,
      ...(last ? { command: last } : {}),
    });
  }

  /** Fleet confirmed events: the bundles whose final event it was are marked reported. */
  private confirmed(events: JobEvent[]): void {
    for (const e of events) {
      if (!FINAL_STATES.has(e.state)) continue;
      const dir = this.unreported.get(e.attemptId);
      if (!dir) continue;
      this.unreported.delete(e.attemptId);
      void (async () => {
        // The bundle may still be closing (hashing): wait for that before marking it.
        await this.finishing.get(e.attemptId)?.catch(() => undefined);
        const m = await readManifest(dir);
        if (m?.closed && !m.reported) await markReported(dir, m);
      })().catch((err: unknown) => this.log.warn({ err, attemptId: e.attemptId }, "could not mark the bundle reported"));
    }
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
