import { randomUUID } from "node:crypto";
import { create, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { durationFromMs, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { CommandResultSchema } from "../../gen/ts/drover/common/v1/exec_pb.ts";
import { HealthStatusSchema } from "../../gen/ts/drover/common/v1/service_pb.ts";
import { AttemptState as ReportedAttemptState } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { Role } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import {
  AttemptSchema,
  AttemptState,
  JobSchema,
  JobSpecSchema,
  RetryPolicySchema,
  JobState,
  SchedulerService,
  type CancelJobRequest,
  type CancelJobsRequest,
  type ClaimPlaceableJobsRequest,
  type DescribeAttemptsRequest,
  type GetJobRequest,
  type Job,
  type JobSpec,
  type ListJobsRequest,
  type RecordPlacementsRequest,
  type ReportJobEventsRequest,
  type ReportRunningAttemptsRequest,
  type ResubmitJobRequest,
  type SubmitJobRequest,
  type SubmitJobsRequest,
  type WatchJobRequest,
  type WatchJobResponse,
} from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { Batcher } from "../../lib/batcher.ts";
import type { DroverClients } from "../../lib/clients.ts";
import type { SchedulingSettings } from "../../lib/config.ts";
import { healthCheckProblem } from "../../lib/health_check_rules.ts";
import type { AccessRule } from "../../lib/host/interceptors.ts";
import { decodePageToken, pageSize, splitPage } from "../../lib/host/paging.ts";
import { durationMs } from "../../lib/host/time.ts";
import type { Logger } from "../../lib/logger.ts";
import { isFinalJobState, type AttemptChange, type ClaimedJob, type AttemptRow, type CommandReport, type EventRow, type HealthReport, type JobRow, type JobStore, type NewJob } from "./job_store.ts";
import { onEvent, type ReportedState } from "./lifecycle.ts";
import { retrySettings } from "./retry.ts";
import type { SchedulerRuns } from "./runs.ts";
import type { SchedulerSchedules } from "./schedules.ts";
import type { SchedulerSignals } from "./signals.ts";
import { redactJobSpec, secretValues } from "./secrets.ts";

/** Who may call what on SchedulerService (methods not listed: admin and operator). */
export const schedulerAccess: Record<string, AccessRule> = {
  // For the other services, which call with the admin token.
  ClaimPlaceableJobs: [Role.ADMIN],
  RecordPlacements: [Role.ADMIN],
  WakeWaitingJobs: [Role.ADMIN],
  ReportJobEvents: [Role.ADMIN],
  ReportRunningAttempts: [Role.ADMIN],
  // For the Log service: the answer carries secret values.
  DescribeAttempts: [Role.ADMIN],
};

/** Grace between SIGTERM and SIGKILL when CancelJob does not say. */
export const DEFAULT_CANCEL_GRACE_MS = 10_000;

// Stored state names are the enum's names in lower case ("pending", "timed_out").
function stateName(state: JobState): string {
  return JobState[state].toLowerCase();
}

/** The enum value of a stored lower-case state name ("timed_out" → TIMED_OUT); 0 for an unknown name. */
export function stateOf<E extends Record<string, string | number>>(e: E, name: string): number {
  const value = e[name.toUpperCase() as keyof E];
  return typeof value === "number" ? value : 0;
}

const ts = (d: Date | null | undefined) => (d ? timestampFromDate(d) : undefined);

function attemptMessage(a: AttemptRow) {
  return create(AttemptSchema, {
    id: a.id,
    number: a.number,
    agentId: a.agentId,
    state: stateOf(AttemptState, a.state),
    createTime: ts(a.createdAt),
    startTime: ts(a.startedAt),
    endTime: ts(a.endedAt),
    exitCode: a.exitCode ?? 0,
    signal: a.signal ?? "",
    reason: a.reason ?? "",
    leaseExpireTime: a.state === "assigned" || a.state === "running" ? ts(a.leaseExpiresAt) : undefined,
    auctionId: a.auctionId ?? "",
    commands: a.commands.map((c) => fromJson(CommandResultSchema, c as JsonValue, { ignoreUnknownFields: true })),
    health: a.health ? fromJson(HealthStatusSchema, a.health as JsonValue, { ignoreUnknownFields: true }) : undefined,
  });
}

/**
 * A stored job as the API shows it. `spec` is the job's spec when the caller
 * has it parsed already (the request that created it): it is then redacted
 * in place and used instead of parsing the stored one again.
 */
export function jobMessage(row: JobRow, attempts: AttemptRow[] = [], holders?: ReadonlyMap<string, number>, spec?: JobSpec): Job {
  const pending = row.state === "pending";
  const held = pending && row.concurrencyKey ? (holders?.get(row.concurrencyKey) ?? 0) : 0;
  const slotless = pending && row.concurrencyKey !== null && held >= row.concurrencyLimit;
  return create(JobSchema, {
    id: row.id,
    state: stateOf(JobState, row.state),
    spec: redactJobSpec(spec ?? fromJson(JobSpecSchema, row.spec as JsonValue, { ignoreUnknownFields: true })),
    idempotencyKey: row.idempotencyKey ?? "",
    createTime: timestampFromDate(row.createdAt),
    updateTime: timestampFromDate(row.updatedAt),
    attempts: attempts.map(attemptMessage),
    attemptCount: row.attemptCount,
    waitReason: slotless
      ? `waiting for a concurrency slot: ${held} of ${row.concurrencyLimit} jobs with key "${row.concurrencyKey}" hold one`
      : pending
        ? (row.waitReason ?? "waiting for placement")
        : "",
    concurrencyHolders: held,
    retryTime: pending && row.notBefore && !row.waitingForCapacity ? timestampFromDate(row.notBefore) : undefined,
    endReason: row.endReason && isFinalJobState(row.state) ? row.endReason : "",
    runId: row.runId ?? "",
    stageName: row.stageName ?? "",
    repeatOf: row.repeatOf ?? "",
    repeatIndex: row.repeatIndex,
    nextJobId: row.nextJobId ?? "",
    scheduleId: row.scheduleId ?? "",
  });
}

/**
 * The stored columns a spec implies: its priority, concurrency key and
 * whether a run mode makes something follow its end. `extra` places the job
 * (a run's stage, a repeat, a schedule's tick).
 */
export function newJobOf(spec: JobSpec, idempotencyKey: string | null, extra: Partial<NewJob> = {}): NewJob {
  return {
    spec: toJson(JobSpecSchema, spec) as object,
    priority: spec.priority,
    idempotencyKey,
    concurrencyKey: spec.concurrencyKey || null,
    concurrencyLimit: Math.max(1, spec.concurrencyLimit),
    followupPending: spec.runMode !== undefined && spec.runMode.mode.case !== undefined,
    ...extra,
  };
}

const REPORTED: Record<number, ReportedState> = {
  [ReportedAttemptState.STARTING]: "starting",
  [ReportedAttemptState.RUNNING]: "running",
  [ReportedAttemptState.SUCCEEDED]: "succeeded",
  [ReportedAttemptState.FAILED]: "failed",
  [ReportedAttemptState.CANCELLED]: "cancelled",
  [ReportedAttemptState.TIMED_OUT]: "timed_out",
};

export interface SchedulerDeps {
  store: JobStore;
  signals: SchedulerSignals;
  clients: Pick<DroverClients, "fleet">;
  settings: SchedulingSettings;
  log: Logger;
  random?: () => number;
}

/**
 * SchedulerService: accepts jobs and drives each through its states. The
 * decisions are lifecycle.ts and retry.ts; the writes, job_store.ts; the
 * background sweeps of claims and leases, sweeper.ts.
 */
type JobMethods = Omit<
  ServiceImpl<typeof SchedulerService>,
  "submitRun" | "getRun" | "listRuns" | "cancelRun" | "createSchedule" | "getSchedule" | "listSchedules" | "pauseSchedule" | "resumeSchedule" | "deleteSchedule"
>;

export class SchedulerServiceImpl implements JobMethods {
  private readonly submits: Batcher<NewJob, { job: JobRow; created: boolean }>;
  private readonly events: Batcher<ReportJobEventsRequest["events"], void>;
  private readonly random: () => number;
  /**
   * The specs of the jobs this replica handed out in claims, parsed for the
   * claim's answer, by claim id, until the claim's end: RecordPlacements
   * builds the Assignments from them instead of parsing the stored specs
   * again. Placements recorded through another replica parse them there.
   */
  private readonly claimedSpecs = new Map<string, { jobId: string; spec: JobSpec; expiresAt: number }>();

  constructor(private readonly deps: SchedulerDeps) {
    this.random = deps.random ?? Math.random;
    // Submits arriving together share one INSERT.
    this.submits = new Batcher(
      async (jobs) => {
        const results = await deps.store.insert(jobs);
        if (results.some((r) => r.created)) deps.signals.placeable();
        return results;
      },
      { maxSize: 500, concurrency: 4 },
    );
    // Event reports are applied one batch at a time: two batches touching
    // one attempt would otherwise race each other's compare-and-set.
    this.events = new Batcher<ReportJobEventsRequest["events"], void>(async (batches) => {
      await this.applyEvents(batches.flat());
      return batches.map(() => undefined);
    }, { maxSize: 50, concurrency: 1 });
  }

  // ---- Jobs ----------------------------------------------------------------------

  /** Submits a job built elsewhere (a run's stage, a repeat, a schedule's tick): batched with SubmitJob's. */
  submit(job: NewJob): Promise<{ job: JobRow; created: boolean }> {
    return this.submits.add(job);
  }

  async submitJob(req: SubmitJobRequest) {
    this.checkSpec(req.spec!, "spec");
    const { job, created } = await this.submits.add(newJobOf(req.spec!, req.idempotencyKey || null));
    // A job it created has the request's spec (stored above as JSON): no need to parse it back.
    return { job: jobMessage(job, [], undefined, created ? req.spec : undefined), created };
  }

  async submitJobs(req: SubmitJobsRequest) {
    req.jobs.forEach((j, i) => this.checkSpec(j.spec!, `jobs[${i}].spec`));
    // One statement for all of them (not the batcher, which may split them): all or none.
    const results = await this.deps.store.insert(req.jobs.map((j) => newJobOf(j.spec!, j.idempotencyKey || null)));
    if (results.some((r) => r.created)) this.deps.signals.placeable();
    return { jobs: results.map(({ job, created }, i) => ({ job: jobMessage(job, [], undefined, created ? req.jobs[i]!.spec : undefined), created })) };
  }

  async getJob(req: GetJobRequest) {
    const row = await this.mustGet(req.id);
    return { job: jobMessage(row, await this.deps.store.attemptsOf(row.id), await this.holdersOf([row])) };
  }

  async listJobs(req: ListJobsRequest) {
    // With ids (at most 1000, as many as a page can hold) the page holds every one of them that exists.
    const ids = req.ids.length > 0 ? [...new Set(req.ids.map((id) => id.toLowerCase()))] : undefined;
    const size = Math.max(pageSize(req.pageSize), ids?.length ?? 0);
    const after = decodePageToken(req.pageToken);
    if (after !== undefined && !(await this.deps.store.get(after))) {
      throw new ConnectError("page_token: does not name a job", Code.InvalidArgument);
    }
    const rows = await this.deps.store.list({ state: req.state ? stateName(req.state) : undefined, limit: size + 1, afterId: after, ids });
    const { page, nextPageToken } = splitPage(rows, size, (r) => r.id);
    // Each job's latest attempt, so a caller sees its replicas' state and health without a GetJob each.
    const [holders, latest] = await Promise.all([this.holdersOf(page), this.deps.store.latestAttempts(page.map((r) => r.id))]);
    return { jobs: page.map((r) => jobMessage(r, latest.has(r.id) ? [latest.get(r.id)!] : [], holders)), nextPageToken };
  }

  async cancelJob(req: CancelJobRequest): Promise<{ job: Job }> {
    const id = req.id.toLowerCase();
    const { row, attempts } = (await this.cancel([req], () => "id")).get(id)!;
    if (isFinalJobState(row.state) && row.state !== "cancelled") {
      throw new ConnectError(`job ${row.id} already ended: ${row.state}`, Code.FailedPrecondition);
    }
    return { job: jobMessage(row, attempts) };
  }

  async cancelJobs(req: CancelJobsRequest): Promise<{ jobs: Job[] }> {
    const after = await this.cancel(req.jobs, (i) => `jobs[${i}].id`);
    return {
      jobs: req.jobs.map((j) => {
        const { row, attempts } = after.get(j.id.toLowerCase())!;
        return jobMessage(row, attempts);
      }),
    };
  }

  /**
   * Cancels jobs as CancelJob says, in a few statements however many there
   * are, and tells the agents that hold some in one message. NOT_FOUND
   * (naming `field(i)`) when a job does not exist, before anything is
   * cancelled. Resolves each job as it is afterwards, by id.
   */
  private async cancel(reqs: readonly CancelJobRequest[], field: (i: number) => string): Promise<Map<string, { row: JobRow; attempts: AttemptRow[] }>> {
    const { store, signals } = this.deps;
    const byId = new Map<string, { id: string; reason: string; graceMs: number }>();
    for (const r of reqs) {
      const id = r.id.toLowerCase();
      if (!byId.has(id)) byId.set(id, { id, reason: r.reason || "cancelled by a user", graceMs: r.gracePeriod ? durationMs(r.gracePeriod) : DEFAULT_CANCEL_GRACE_MS });
    }
    let rows = await store.getMany([...byId.keys()]);
    if (rows.length < byId.size) {
      const found = new Set(rows.map((r) => r.id));
      const i = reqs.findIndex((r) => !found.has(r.id.toLowerCase()));
      throw new ConnectError(`${field(i)}: job ${reqs[i]!.id} not found`, Code.NotFound);
    }
    const changed: string[] = [];
    const cancels: { agentId: string; attemptId: string; graceMs: number; reason: string }[] = [];
    let slotFreed = false;
    let followups = false;
    // A job may move between the read and the write (claimed, assigned, ended): look again at those.
    for (let round = 0; round < 10; round++) {
      const live = rows.filter((r) => !isFinalJobState(r.state));
      if (live.length === 0) break;
      const unplaced = await store.cancelUnplaced(live.filter((r) => r.state === "pending" || r.state === "offered").map((r) => byId.get(r.id)!));
      slotFreed ||= unplaced.some((r) => r.concurrencyKey);
      followups ||= unplaced.some((r) => r.followupPending);
      const held = await store.requestCancel(live.filter((r) => r.state === "assigned" || r.state === "running").map((r) => byId.get(r.id)!));
      const current = await store.latestAttempts(held.flatMap((h) => (h.currentAttemptId ? [h.id] : [])));
      for (const h of held) {
        const attempt = current.get(h.id);
        const { graceMs, reason } = byId.get(h.id)!;
        if (attempt?.id === h.currentAttemptId) cancels.push({ agentId: attempt.agentId, attemptId: attempt.id, graceMs, reason });
      }
      const done = new Set([...unplaced, ...held].map((r) => r.id));
      changed.push(...done);
      const moved = live.filter((r) => !done.has(r.id));
      if (moved.length === 0) break;
      rows = await store.getMany(moved.map((r) => r.id));
    }
    await this.sendCancels(cancels);
    signals.changed(changed);
    // An offered job with a concurrency key held one of its key's slots.
    if (slotFreed) signals.placeable();
    if (followups) signals.followupsDue();
    const after = await store.getMany([...byId.keys()]);
    const attempts = await store.attemptsOfJobs(after.map((r) => r.id));
    return new Map(after.map((row) => [row.id, { row, attempts: attempts.get(row.id) ?? [] }]));
  }

  async *watchJob(req: WatchJobRequest, ctx: HandlerContext): AsyncGenerator<WatchJobResponse> {
    const { store, signals } = this.deps;
    let wake: (() => void) | undefined;
    let changed = true;
    const stop = signals.watchJob(req.id, () => {
      changed = true;
      wake?.();
    });
    try {
      let last = "";
      for (;;) {
        if (changed) {
          changed = false;
          const row = await this.mustGet(req.id);
          const attempts = await store.attemptsOf(row.id);
          const version = `${row.updatedAt.getTime()}:${row.state}:${attempts.map((a) => `${a.state}/${a.commands.length}:${(a.commands.at(-1) as { index?: number } | undefined)?.index ?? ""}/${JSON.stringify(a.health)}`).join(",")}`;
          if (version !== last) {
            last = version;
            yield { job: jobMessage(row, attempts) } as WatchJobResponse;
          }
          if (isFinalJobState(row.state)) return;
        }
        // Doorbells may be lost: look again every few seconds regardless.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            changed = true;
            resolve();
          }, 2000);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
          ctx.signal.addEventListener("abort", wake, { once: true });
        });
        if (ctx.signal.aborted) return;
      }
    } finally {
      stop();
    }
  }

  async resubmitJob(req: ResubmitJobRequest) {
    const row = await this.mustGet(req.id);
    if (!isFinalJobState(row.state)) {
      throw new ConnectError(`job ${row.id} has not ended (${row.state}); cancel it first`, Code.FailedPrecondition);
    }
    const { job, created } = await this.submits.add(newJobOf(fromJson(JobSpecSchema, row.spec as JsonValue, { ignoreUnknownFields: true }), req.idempotencyKey || null));
    return { job: jobMessage(job), created };
  }

  // ---- For the Bid service ---------------------------------------------------------

  async claimPlaceableJobs(req: ClaimPlaceableJobsRequest, ctx: HandlerContext) {
    const { store, signals, settings } = this.deps;
    const deadline = Date.now() + (req.wait ? durationMs(req.wait) : 0);
    const waits = deadline > Date.now();
    for (;;) {
      // A claim right after one that left nothing placeable finds nothing
      // either, unless a wake-up came since: a caller that waits skips it.
      if (!(waits && signals.drainedSinceLastRing)) {
        const rings = signals.claiming();
        const claimed = await store.claim(req.maxJobs, settings.claimMs);
        if (claimed.length < req.maxJobs) signals.drained(rings);
        else signals.nudge(); // more may be left: another claimer of this replica looks too
        if (claimed.length > 0) return this.claimedResponse(claimed);
      }
      const left = deadline - Date.now();
      if (left <= 0 || ctx.signal.aborted) return { jobs: [] };
      // Retries come due without a doorbell: the signals' due poll wakes one
      // waiting claimer DUE_POLL_MS after the replica's last claim.
      await signals.untilPlaceable(left, ctx.signal);
    }
  }

  /** What a claim that took jobs answers; keeps their specs for their RecordPlacements. */
  private claimedResponse(claimed: readonly ClaimedJob[]) {
    const { signals, settings } = this.deps;
    signals.changed(claimed.map((c) => c.job.id));
    const now = Date.now();
    this.forgetLapsedClaims(now);
    return {
      jobs: claimed.map(({ job, previousAgentIds, siblingAgentIds, siblingJobIds }) => {
        const spec = fromJson(JobSpecSchema, job.spec as JsonValue, { ignoreUnknownFields: true });
        this.claimedSpecs.set(job.claimId!, { jobId: job.id, spec, expiresAt: now + settings.claimMs });
        return { jobId: job.id, claimId: job.claimId!, spec, attemptNumber: job.attemptCount + 1, previousAgentIds, siblingAgentIds, siblingJobIds };
      }),
      claimExpireTime: ts(claimed[0]!.job.claimExpiresAt),
    };
  }

  async recordPlacements(req: RecordPlacementsRequest) {
    const { store, signals, settings, clients, log } = this.deps;
    const won = req.placements.filter((p) => p.agentId !== "").map((p) => ({ jobId: p.jobId, claimId: p.claimId, agentId: p.agentId, auctionId: p.auctionId || null, attemptId: randomUUID() }));
    const lost = req.placements
      .filter((p) => p.agentId === "")
      .map((p) => ({ jobId: p.jobId, claimId: p.claimId, reason: p.waitReason || "no agent took the job", retryMs: p.retryAfter ? durationMs(p.retryAfter) : settings.waitRetryMs }));
    // Every claim named here has ended (placed, waiting, or lapsed meanwhile): its spec is taken or dropped.
    const specs = new Map<string, JobSpec>();
    for (const p of req.placements) {
      const claimed = this.claimedSpecs.get(p.claimId);
      if (claimed?.jobId === p.jobId) specs.set(p.jobId, claimed.spec);
      this.claimedSpecs.delete(p.claimId);
    }
    // The store reads back only the specs this replica did not keep from the claim.
    const unknownSpecs = won.filter((p) => !specs.has(p.jobId)).map((p) => p.jobId);
    const [assigned, waiting] = await Promise.all([store.assign(won, settings.confirmMs, unknownSpecs), store.wait(lost)]);
    if (assigned.length > 0) {
      const messages = assigned.map((job) => {
        const { attempt } = job;
        const spec = specs.get(job.jobId) ?? fromJson(JobSpecSchema, job.spec as JsonValue, { ignoreUnknownFields: true });
        return {
          agentId: attempt.agentId,
          message: {
            messageId: `assign:${attempt.id}`,
            message: {
              case: "assignment" as const,
              value: {
                attemptId: attempt.id,
                jobId: job.jobId,
                exec: spec.exec,
                driver: spec.driver || "process",
                resources: spec.resources,
                leaseExpireTime: timestampFromDate(attempt.leaseExpiresAt),
                timeout: spec.timeout,
                // The agent names the attempt's bundle directory after these.
                runId: job.runId ?? "",
                stageName: job.stageName ?? "",
                // A service replica: the agent restarts it and reports its health.
                service: spec.service,
              },
            },
          },
        };
      });
      // Stored in Fleet's outbox, the assignment reaches the agent even if
      // it reconnects first. If this fails the attempt is never confirmed,
      // its lease lapses and the job is placed again.
      await clients.fleet.sendToAgents({ messages }).catch((err) => log.warn({ err, attempts: messages.length }, "could not send assignments; their leases will lapse"));
    }
    signals.changed([...assigned.map((a) => a.jobId), ...waiting]);
    const byJob = new Map(assigned.map((a) => [a.jobId, a.attempt.id]));
    const waited = new Set(waiting);
    return {
      results: req.placements.map((p) => ({
        jobId: p.jobId,
        accepted: byJob.has(p.jobId) || waited.has(p.jobId),
        attemptId: byJob.get(p.jobId) ?? "",
      })),
    };
  }

  async wakeWaitingJobs() {
    const woken = await this.deps.store.wake();
    if (woken > 0) this.deps.signals.placeable();
    return { woken };
  }

  // ---- For Fleet -------------------------------------------------------------------

  async reportJobEvents(req: ReportJobEventsRequest) {
    await this.events.add(req.events);
    return {};
  }

  async reportRunningAttempts(req: ReportRunningAttemptsRequest) {
    const { store } = this.deps;
    const found = new Map((await store.attemptsWithJobs(req.running.map((r) => r.attemptId))).map((x) => [x.attempt.id, x]));
    const cancels: { agentId: string; attemptId: string; graceMs: number; reason: string }[] = [];
    for (const r of req.running) {
      const x = found.get(r.attemptId);
      const holds = x && x.attempt.agentId === req.agentId && (x.attempt.state === "assigned" || x.attempt.state === "running") && x.job.currentAttemptId === x.attempt.id;
      if (!holds) {
        cancels.push({ agentId: req.agentId, attemptId: r.attemptId, graceMs: DEFAULT_CANCEL_GRACE_MS, reason: x ? `attempt is ${x.attempt.state}; its job was placed elsewhere` : "unknown attempt" });
      }
    }
    await this.sendCancels(cancels);
    return { cancelledAttemptIds: cancels.map((c) => c.attemptId) };
  }

  // ---- For the Log service ---------------------------------------------------------

  async describeAttempts(req: DescribeAttemptsRequest) {
    const found = await this.deps.store.attemptsWithJobs([...new Set(req.attemptIds)]);
    return {
      attempts: found.map(({ attempt, job }) => ({
        attemptId: attempt.id,
        jobId: job.id,
        agentId: attempt.agentId,
        runId: job.runId ?? "",
        stageName: job.stageName ?? "",
        secretValues: secretValues(fromJson(JobSpecSchema, job.spec as JsonValue, { ignoreUnknownFields: true }).exec),
        jobEnded: isFinalJobState(job.state),
      })),
    };
  }

  // ---- Helpers ---------------------------------------------------------------------

  /**
   * Checks what protovalidate cannot: the server's own policy (allow_shell),
   * what the driver needs of the spec (an image for docker, none for
   * process), bytes no exec call can carry (NUL), secret names that
   * name no variable, and what a service job cannot be (checkService).
   * `field` prefixes the error's field path.
   */
  checkSpec(spec: JobSpec, field: string): void {
    if (spec.service) checkService(spec, field);
    const exec = spec.exec;
    if (exec?.allowShell && !this.deps.settings.allowShell) {
      throw new ConnectError(`${field}.exec.allow_shell: shells are not allowed by this server (DROVER_ALLOW_SHELL)`, Code.InvalidArgument);
    }
    if (!exec) return;
    const invalid = (at: string, why: string) => new ConnectError(`${field}.exec.${at}: ${why}`, Code.InvalidArgument);
    // execve takes C strings: a NUL would cut the value short on the agent, running something else than was asked.
    const noNul = (at: string, value: string) => {
      if (value.includes("\u0000")) throw invalid(at, "contains a NUL byte");
    };
    for (const [name, value] of Object.entries(exec.env)) noNul(`env["${name}"]`, value);
    exec.commands.forEach((c, i) => {
      c.argv.forEach((arg, j) => noNul(`commands[${i}].argv[${j}]`, arg));
      noNul(`commands[${i}].cwd`, c.cwd);
      for (const [name, value] of Object.entries(c.env)) noNul(`commands[${i}].env["${name}"]`, value);
    });
    if (spec.driver === "docker" && exec.image === "") throw invalid("image", "required by the docker driver");
    if (spec.driver !== "docker" && exec.image !== "") throw invalid("image", "only the docker driver runs images");
    const named = new Set([...Object.keys(exec.env), ...exec.commands.flatMap((c) => Object.keys(c.env))]);
    exec.secretEnv.forEach((name, i) => {
      if (!named.has(name)) throw invalid(`secret_env[${i}]`, `"${name}" is not set in exec.env or any command's env`);
    });
  }

  /** Slots held per concurrency key of the pending jobs among rows (for their wait reasons). */
  private holdersOf(rows: readonly JobRow[]): Promise<Map<string, number>> {
    return this.deps.store.concurrencyHolders(rows.flatMap((r) => (r.state === "pending" && r.concurrencyKey ? [r.concurrencyKey] : [])));
  }

  /** Drops the specs of claims that lapsed unplaced (their Bid replica went away); claims end in the order they were made. */
  private forgetLapsedClaims(now: number): void {
    for (const [claimId, { expiresAt }] of this.claimedSpecs) {
      if (expiresAt > now) return;
      this.claimedSpecs.delete(claimId);
    }
  }

  private async mustGet(id: string): Promise<JobRow> {
    const row = await this.deps.store.get(id);
    if (!row) throw new ConnectError(`job ${id} not found`, Code.NotFound);
    return row;
  }

  /** Applies agents' events in order; stale ones get a Cancel. Retries the compare-and-set a few times when rows moved. */
  private async applyEvents(events: ReportJobEventsRequest["events"]): Promise<void> {
    const { store, signals, settings } = this.deps;
    // Command results and health first, in one statement for the batch:
    // they do not depend on the state changes (the store keeps results by
    // index and the health of the greatest sequence, from the attempt's own
    // agent only), and a final event carries the last result. A health-only
    // event (RUNNING on a running attempt) changes nothing else below.
    const changedJobs = await store.recordReports(events.flatMap(commandReport), events.flatMap(healthReport));
    let todo = events.filter((e) => REPORTED[e.event!.state] !== undefined);
    const cancels: { agentId: string; attemptId: string; graceMs: number; reason: string }[] = [];
    let placeable = false;
    let followups = false;
    for (let round = 0; round < 5 && todo.length > 0; round++) {
      const rows = new Map((await store.eventRows([...new Set(todo.map((e) => e.event!.attemptId))])).map((x) => [x.attempt.id, x]));
      // Events of one attempt apply in order to the rows as they would be after each.
      const pending = new Map<string, { change: AttemptChange; events: typeof todo }>();
      for (const e of todo) {
        const event = e.event!;
        const x = rows.get(event.attemptId);
        if (!x || x.attempt.agentId !== e.agentId) continue; // not ours to apply: unknown attempt or wrong agent
        const state = REPORTED[event.state]!;
        const outcome = onEvent(x.attempt, x.job, {
          state,
          exitCode: event.exitCode,
          signal: event.signal,
          message: event.message,
          time: event.time ? timestampDate(event.time) : new Date(),
        }, { nowMs: Date.now(), random: this.random, leaseMs: settings.leaseMs, retry: retrySettings(state === "failed" || state === "timed_out" ? jobRetry(x.job) : undefined) });
        if (outcome.kind === "stale") cancels.push({ agentId: e.agentId, attemptId: event.attemptId, graceMs: DEFAULT_CANCEL_GRACE_MS, reason: outcome.reason });
        if (outcome.kind !== "change") continue;
        const c = outcome.change;
        const prior = pending.get(c.attemptId);
        // Merge with an earlier change of the same attempt in this batch: one write, guarded by the first state read.
        const merged: AttemptChange = prior ? { ...prior.change, ...c, fromState: prior.change.fromState, startedAt: prior.change.startedAt ?? c.startedAt, job: c.job ?? prior.change.job } : c;
        pending.set(c.attemptId, { change: merged, events: [...(prior?.events ?? []), e] });
        x.attempt = { ...x.attempt, state: c.state, startedAt: merged.startedAt ?? x.attempt.startedAt };
        if (c.job) x.job = { ...x.job, state: c.job.state };
      }
      const changes = [...pending.values()];
      const applied = await store.applyAttemptChanges(changes.map((p) => p.change));
      for (const id of applied.jobs) changedJobs.add(id);
      followups ||= applied.followups.size > 0;
      for (const p of changes) {
        if (!applied.attempts.has(p.change.attemptId) || !p.change.job) continue;
        // Back to pending, or a concurrency slot freed: something may be placeable now.
        if (p.change.job.state === "pending" || (rows.get(p.change.attemptId)?.job.concurrencyKey && p.change.job.ended)) placeable = true;
      }
      todo = changes.filter((p) => !applied.attempts.has(p.change.attemptId)).flatMap((p) => p.events);
    }
    if (todo.length > 0) this.deps.log.warn({ events: todo.length }, "job events kept losing races with other changes; dropped");
    await this.sendCancels(cancels);
    signals.changed(changedJobs);
    if (placeable) signals.placeable();
    if (followups) signals.followupsDue();
  }

  /** Sends Cancels through Fleet (stored there, so they reach agents that are away now). */
  async sendCancels(cancels: readonly { agentId: string; attemptId: string; graceMs: number; reason: string }[]): Promise<void> {
    if (cancels.length === 0) return;
    await this.deps.clients.fleet
      .sendToAgents({
        messages: cancels.map((c) => ({
          agentId: c.agentId,
          message: {
            messageId: `cancel:${c.attemptId}`,
            message: { case: "cancel" as const, value: { attemptId: c.attemptId, reason: c.reason, gracePeriod: durationFromMs(c.graceMs) } },
          },
        })),
      })
      .catch((err) => this.deps.log.warn({ err, cancels: cancels.length }, "could not send cancels to agents"));
  }
}

/**
 * A service job runs until it is cancelled, so nothing may end or repeat it
 * by itself (run_mode, timeout); its health check must be one that can work
 * (lib/health_check_rules.ts, which Deploy applies too). Run
 * stages and schedule templates refuse service jobs themselves (runs.ts,
 * schedules.ts).
 */
function checkService(spec: JobSpec, field: string): void {
  const invalid = (at: string, why: string) => new ConnectError(`${field}.${at}: ${why}`, Code.InvalidArgument);
  const service = spec.service!;
  if (spec.runMode?.mode.case !== undefined || spec.runMode?.delay !== undefined) throw invalid("service", "a service job cannot have run_mode");
  if (spec.timeout !== undefined) throw invalid("service", "a service job cannot have timeout");
  const problem = healthCheckProblem(service.healthCheck, service.assignPort, spec.driver || "process");
  if (problem) throw invalid(`service.${problem.field}`, problem.why);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The command result an event carries, as the store keeps it; none when it carries none. */
function commandReport(e: ReportJobEventsRequest["events"][number]): CommandReport[] {
  const command = e.event?.command;
  // An id that is not a UUID names no attempt (and would fail the batch's cast).
  if (!command || !UUID.test(e.event!.attemptId)) return [];
  // proto JSON leaves out zeros; the store finds results by index, so it is always written.
  const result = { ...(toJson(CommandResultSchema, command) as Record<string, unknown>), index: command.index };
  return [{ attemptId: e.event!.attemptId, agentId: e.agentId, result }];
}

/** The health an event carries, as the store keeps it; none when it carries none. */
function healthReport(e: ReportJobEventsRequest["events"][number]): HealthReport[] {
  const health = e.event?.health;
  if (!health || !UUID.test(e.event!.attemptId)) return [];
  return [{ attemptId: e.event!.attemptId, agentId: e.agentId, sequence: e.event!.sequence, health: toJson(HealthStatusSchema, health) as Record<string, unknown> }];
}

/** A job's retry policy (only a failure needs it), from its JSON form. */
function jobRetry(job: EventRow["job"]) {
  return job.retry === null || job.retry === undefined ? undefined : fromJson(RetryPolicySchema, job.retry as JsonValue, { ignoreUnknownFields: true });
}

/** An object's methods, bound to it, as plain properties (for composing one service from several classes). */
function boundMethods<T extends object>(o: T): { [K in keyof T]: T[K] } {
  const out: Record<string, unknown> = {};
  for (const name of Object.getOwnPropertyNames(Object.getPrototypeOf(o))) {
    const value = (o as Record<string, unknown>)[name];
    if (name !== "constructor" && typeof value === "function") out[name] = value.bind(o);
  }
  return out as { [K in keyof T]: T[K] };
}

/** SchedulerService from its three parts: jobs (this file), runs.ts and schedules.ts. */
export function schedulerRoutes(jobs: SchedulerServiceImpl, runs: SchedulerRuns, schedules: SchedulerSchedules) {
  const impl: ServiceImpl<typeof SchedulerService> = { ...boundMethods(jobs), ...boundMethods(runs), ...boundMethods(schedules) };
  return (router: ConnectRouter) => router.service(SchedulerService, impl);
}
