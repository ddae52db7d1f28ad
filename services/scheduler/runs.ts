// DAG runs: SubmitRun, GetRun, ListRuns, CancelRun, and the follow-up loop
// (followups.ts) that moves runs along, and repeating jobs too, as jobs end.
//
//   SubmitRun ──▶ one transaction: the run row + its root stages' jobs
//   a stage's job ends ──▶ its follow-up (one transaction, one replica):
//                          release / skip stages, end the run when settled
//   CancelRun ──▶ one transaction: cancel requested, blocked stages skipped;
//                 then each live stage job is cancelled like CancelJob; the
//                 run ends cancelled when the last of them has ended
//
// A run's state is never set by hand: it is derived from its stages each
// time they change (followups.ts decideRun, over dag.ts release).

import { create, toJson } from "@bufbuild/protobuf";
import { timestampFromDate, type Duration } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { PrismaClient } from "../../gen/prisma/scheduler/client.ts";
import {
  CancelJobRequestSchema,
  CancelJobsRequestSchema,
  JobState,
  RunSchema,
  RunSpecSchema,
  RunState,
  StageSchema,
  StageState,
  type CancelRunRequest,
  type GetRunRequest,
  type ListRunsRequest,
  type Run,
  type RunSpec,
  type SchedulerService,
  type SubmitRunRequest,
} from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import type { SchedulingSettings } from "../../lib/config.ts";
import { decodePageToken, pageSize, splitPage } from "../../lib/host/paging.ts";
import type { Logger } from "../../lib/logger.ts";
import { validateDag } from "./dag.ts";
import { Followups, settleRun, stagesOf, stageStates, TX_OPTIONS } from "./followups.ts";
import { isFinalJobState, type JobRow, type JobStore } from "./job_store.ts";
import { RunStore, type RunRow } from "./run_store.ts";
import { jobMessage, stateOf, type SchedulerServiceImpl } from "./service.ts";
import type { SchedulerSignals } from "./signals.ts";
import { redactRunSpec } from "./secrets.ts";

export interface RunsDeps {
  db: PrismaClient;
  store: JobStore;
  signals: SchedulerSignals;
  jobs: SchedulerServiceImpl;
  settings: SchedulingSettings;
  log: Logger;
}

type RunMethods = Pick<ServiceImpl<typeof SchedulerService>, "submitRun" | "getRun" | "listRuns" | "cancelRun">;

/** Runs (the four RPCs, and submit/isRunning/cancel for schedules); promises a run's stages each get at most one job. */
export class SchedulerRuns implements RunMethods {
  private readonly runs: RunStore;
  /** The follow-up loop (exposed for tests, which drive it by hand). */
  readonly followups: Followups;

  constructor(private readonly deps: RunsDeps) {
    this.runs = new RunStore(deps.db);
    this.followups = new Followups({ db: deps.db, store: deps.store, signals: deps.signals, jobs: deps.jobs, settings: deps.settings, log: deps.log });
  }

  /** Starts the follow-up loop. */
  start(): void {
    this.followups.start();
  }

  async stop(): Promise<void> {
    await this.followups.stop();
  }

  /**
   * Submits a run (SubmitRun, and a schedule's tick with its id): checks it,
   * then stores the run and its root stages' jobs in one transaction, so a
   * crash leaves either both or neither. With a key already used, resolves
   * that run (created: false) and stores nothing.
   */
  async submit(spec: RunSpec, idempotencyKey: string | null, extra: { scheduleId?: string } = {}): Promise<{ run: Run; created: boolean }> {
    this.checkSpec(spec, "spec");
    const { run, created, jobs } = await this.deps.db.$transaction(async (tx) => {
      const inserted = await new RunStore(tx).insert({ spec: toJson(RunSpecSchema, spec) as object, idempotencyKey, scheduleId: extra.scheduleId ?? null });
      return { ...inserted, jobs: inserted.created ? await settleRun(tx, inserted.run.id) : [] };
    }, TX_OPTIONS);
    if (jobs.length > 0) {
      this.deps.signals.placeable();
      this.deps.signals.changed(jobs.map((j) => j.id));
    }
    if (created) this.deps.log.info({ runId: run.id, stages: spec.stages.length, roots: jobs.map((j) => j.stageName) }, "run submitted");
    return { run: await this.show(run.id), created };
  }

  /** Whether the run has not ended yet (for a schedule's overlap policy). False for a run that does not exist. */
  async isRunning(runId: string): Promise<boolean> {
    return (await this.runs.get(runId))?.state === "running";
  }

  /** Cancels a run as CancelRun does (for a schedule's overlap policy); a run that already ended is left alone. */
  async cancel(runId: string, reason: string): Promise<void> {
    try {
      await this.cancelRunNow(runId, reason, undefined);
    } catch (err) {
      if (!(err instanceof ConnectError && err.code === Code.FailedPrecondition)) throw err;
    }
  }

  async submitRun(req: SubmitRunRequest) {
    return this.submit(req.spec!, req.idempotencyKey || null);
  }

  async getRun(req: GetRunRequest) {
    return { run: await this.show(req.id) };
  }

  async listRuns(req: ListRunsRequest) {
    const size = pageSize(req.pageSize);
    const after = decodePageToken(req.pageToken);
    if (after !== undefined && !(await this.runs.get(after))) {
      throw new ConnectError("page_token: does not name a run", Code.InvalidArgument);
    }
    const rows = await this.runs.list({ state: req.state ? RunState[req.state].toLowerCase() : undefined, limit: size + 1, afterId: after });
    const { page, nextPageToken } = splitPage(rows, size, (r) => r.id);
    return { runs: page.map((r) => runMessage(r, null)), nextPageToken };
  }

  async cancelRun(req: CancelRunRequest) {
    return { run: await this.cancelRunNow(req.id, req.reason || "cancelled by a user", req.gracePeriod) };
  }

  // ---- Helpers ---------------------------------------------------------------------

  /**
   * Asks the run to stop: in one transaction under the run's lock, the
   * cancel is recorded and every blocked stage skipped (no follow-up
   * releases anything after that). Then each live stage job is cancelled
   * the way CancelJob does it; their follow-ups end the run. Should this
   * die half-way, the follow-up loop cancels the stage jobs left.
   */
  private async cancelRunNow(id: string, reason: string, gracePeriod: Duration | undefined): Promise<Run> {
    const requested = await this.deps.db.$transaction(async (tx) => {
      const row = await new RunStore(tx).requestCancel(id, reason);
      if (row) await settleRun(tx, id);
      return row;
    }, TX_OPTIONS);
    if (!requested) {
      const row = await this.mustGet(id);
      if (row.state !== "cancelled") throw new ConnectError(`run ${id} already ended: ${row.state}`, Code.FailedPrecondition);
      return this.show(id);
    }
    const live = (await this.runs.stageJobs(id)).filter((j) => !isFinalJobState(j.state));
    // One CancelJobs per 1000 stages; a job that ended meanwhile is left as it is, and its own end is what the run shows.
    for (let i = 0; i < live.length; i += 1000) {
      const jobs = live.slice(i, i + 1000).map((job) => create(CancelJobRequestSchema, { id: job.id, reason: `run cancelled: ${reason}`, gracePeriod }));
      await this.deps.jobs.cancelJobs(create(CancelJobsRequestSchema, { jobs }));
    }
    this.deps.log.info({ runId: id, liveStages: live.map((j) => j.stageName) }, "run cancel requested");
    // Ended stage jobs have follow-ups to do; do not wait for the next poll.
    this.followups.wake();
    return this.show(id);
  }

  /**
   * Refuses what can never be stored, naming the field under `field` ("spec"
   * for SubmitRun, "spec.run" for a schedule's template): a bad graph, a
   * stage job the server does not allow.
   */
  checkSpec(spec: RunSpec, field: string): void {
    if (spec.stages.length === 0) throw new ConnectError(`${field}.stages: a run needs at least one stage`, Code.InvalidArgument);
    const errors = validateDag(spec.stages.map((s) => ({ name: s.name, requires: s.requires })));
    if (errors.length > 0) {
      throw new ConnectError(errors.map((e) => `${field}.${e.field}: ${e.message}`).join("; "), Code.InvalidArgument);
    }
    spec.stages.forEach((stage, i) => {
      const at = `${field}.stages[${i}].job`;
      if (!stage.job) throw new ConnectError(`${at}: a stage needs a job`, Code.InvalidArgument);
      if (stage.job.runMode?.mode.case !== undefined) {
        throw new ConnectError(`${at}.run_mode: a stage runs once; run modes are for jobs outside runs`, Code.InvalidArgument);
      }
      if (stage.job.service) {
        throw new ConnectError(`${at}.service: a stage runs once; a service job runs until cancelled and cannot be a stage`, Code.InvalidArgument);
      }
      this.deps.jobs.checkSpec(stage.job, at);
    });
  }

  private async mustGet(id: string): Promise<RunRow> {
    const row = await this.runs.get(id);
    if (!row) throw new ConnectError(`run ${id} not found`, Code.NotFound);
    return row;
  }

  /** The run with its stages. */
  private async show(id: string): Promise<Run> {
    const row = await this.mustGet(id);
    return runMessage(row, await this.runs.stageJobs(id));
  }
}

/** A stored run as the API shows it; with its stages when their jobs are given. */
export function runMessage(row: RunRow, jobs: JobRow[] | null): Run {
  const { spec, defs } = stagesOf(row);
  const run = create(RunSchema, {
    id: row.id,
    state: stateOf(RunState, row.state),
    spec: redactRunSpec(spec),
    idempotencyKey: row.idempotencyKey ?? "",
    createTime: timestampFromDate(row.createdAt),
    updateTime: timestampFromDate(row.updatedAt),
    endTime: row.endedAt ? timestampFromDate(row.endedAt) : undefined,
    scheduleId: row.scheduleId ?? "",
  });
  if (!jobs) return run;
  const byStage = new Map(jobs.map((j) => [j.stageName!, j]));
  const states = stageStates(defs, jobs, row.skipped);
  run.stages = defs.map((def) => {
    const job = byStage.get(def.name);
    const stage = create(StageSchema, { name: def.name, requires: def.requires, state: stateOf(StageState, states[def.name]!) });
    if (job) {
      const shown = jobMessage(job);
      stage.jobId = job.id;
      stage.jobState = stateOf(JobState, job.state);
      stage.attemptCount = job.attemptCount;
      // An offered job is in an auction (claimed by Bid): it has no wait reason, but it does wait.
      stage.reason = shown.waitReason || shown.endReason || (job.state === "offered" ? "offered to agents: collecting bids" : "");
      stage.startTime = timestampFromDate(job.createdAt);
      if (job.endedAt) stage.endTime = timestampFromDate(job.endedAt);
    } else if (row.skipped[def.name]) {
      stage.reason = row.skipped[def.name]!.reason;
      stage.endTime = timestampFromDate(new Date(row.skipped[def.name]!.at));
    } else {
      const waiting = def.requires.filter((r) => states[r] !== "succeeded");
      stage.reason = waiting.length > 0 ? `waiting for ${waiting.join(", ")}` : "waiting to be released";
    }
    return stage;
  });
  return run;
}

