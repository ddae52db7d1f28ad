// Cron schedules: CreateSchedule, GetSchedule, ListSchedules, Pause,
// Resume, Delete, and the ticker that fires due ticks.
//
// The ticker runs on every replica; each round:
//
//   claimDue      schedules with next_fire_at <= now(), not paused, not
//                 claimed: FOR UPDATE SKIP LOCKED + a claim lease, so each is
//                 taken by one replica (schedule_store.ts)
//   dueTicks      which ticks fire, given next_fire_at, the database's now
//                 and the missed policy (cron.ts, pure)
//   overlap       the previous tick's job or run still going: skip, allow,
//                 or cancel it first (overlapAction, cron.ts)
//   fire          each tick submits a job (or run) with the idempotency key
//                 schedule:<id>:<tick ISO>, so a tick fired twice — a replica
//                 dying between firing and advancing, its claim lapsing and
//                 another taking over — still makes one job
//   advance       next_fire_at, counters and last_* are written only while
//                 the claim is still ours (compare-and-set)
//
// Between rounds it sleeps until the earliest next tick (at most a second,
// woken at once by a create or a resume on this replica).

import { create, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { PrismaClient } from "../../gen/prisma/scheduler/client.ts";
import {
  CancelJobRequestSchema,
  MissedPolicy,
  OverlapPolicy,
  ScheduleSchema,
  ScheduleSpecSchema,
  type CreateScheduleRequest,
  type DeleteScheduleRequest,
  type GetScheduleRequest,
  type ListSchedulesRequest,
  type PauseScheduleRequest,
  type ResumeScheduleRequest,
  type Schedule,
  type ScheduleSpec,
  type SchedulerService,
} from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import type { SchedulingSettings } from "../../lib/config.ts";
import { decodePageToken, pageSize, splitPage } from "../../lib/host/paging.ts";
import type { Logger } from "../../lib/logger.ts";
import { Alarm } from "../../lib/timers.ts";
import { CronError, dueTicks, overlapAction, parseCron, type CronSchedule, type MissedPolicyName, type OverlapPolicyName } from "./cron.ts";
import { isFinalJobState, type JobStore } from "./job_store.ts";
import type { SchedulerRuns } from "./runs.ts";
import { ScheduleStore, type Advance, type ScheduleRow } from "./schedule_store.ts";
import { newJobOf, type SchedulerServiceImpl } from "./service.ts";
import type { SchedulerSignals } from "./signals.ts";
import { redactJobSpec, redactRunSpec } from "./secrets.ts";

/** What schedules need: the database, the job side (submit, cancel, checkSpec) and the runs side (submit, isRunning, cancel). */
export interface SchedulesDeps {
  db: PrismaClient;
  store: JobStore;
  signals: SchedulerSignals;
  jobs: SchedulerServiceImpl;
  runs: SchedulerRuns;
  settings: SchedulingSettings;
  log: Logger;
  /** How long a replica's claim on a schedule lasts while it fires its ticks; default CLAIM_MS. */
  claimMs?: number;
}

/** A replica's claim on a schedule: far longer than a round takes; after a crash, the delay before another replica fires. */
export const CLAIM_MS = 10_000;
/** Longest the ticker sleeps: a schedule created on another replica is seen within this. */
const MAX_SLEEP_MS = 1000;
/** Schedules claimed per statement. */
const CLAIM_BATCH = 100;
/** After a round that failed, the schedule is tried again after this. */
const RETRY_MS = 1000;

/**
 * How late a tick may be found and still count as on time rather than
 * missed: a second, or two scheduler sweeps when those are slower. Later
 * than this, no replica was there to fire it: the missed policy decides.
 */
export function missedToleranceMs(settings: SchedulingSettings): number {
  return Math.max(1000, 2 * settings.sweepIntervalMs);
}

const OVERLAP: Record<OverlapPolicy, OverlapPolicyName> = {
  [OverlapPolicy.UNSPECIFIED]: "skip",
  [OverlapPolicy.SKIP]: "skip",
  [OverlapPolicy.ALLOW]: "allow",
  [OverlapPolicy.CANCEL_PREVIOUS]: "cancel_previous",
};

const MISSED: Record<MissedPolicy, MissedPolicyName> = {
  [MissedPolicy.UNSPECIFIED]: "run_once",
  [MissedPolicy.SKIP]: "skip",
  [MissedPolicy.RUN_ONCE]: "run_once",
  [MissedPolicy.BACKFILL]: "backfill",
};

const ts = (d: Date | null) => (d ? timestampFromDate(d) : undefined);

function specOf(row: ScheduleRow): ScheduleSpec {
  return fromJson(ScheduleSpecSchema, row.spec as JsonValue, { ignoreUnknownFields: true });
}

/** The spec with its template's secret values hidden. */
function redactScheduleSpec(spec: ScheduleSpec): ScheduleSpec {
  if (spec.template.case === "job") redactJobSpec(spec.template.value);
  if (spec.template.case === "run") redactRunSpec(spec.template.value);
  return spec;
}

/** A stored schedule as the API shows it. */
export function scheduleMessage(row: ScheduleRow): Schedule {
  return create(ScheduleSchema, {
    id: row.id,
    spec: redactScheduleSpec(specOf(row)),
    paused: row.paused,
    createTime: timestampFromDate(row.createdAt),
    updateTime: timestampFromDate(row.updatedAt),
    nextFireTime: row.paused ? undefined : ts(row.nextFireAt),
    lastFireTime: ts(row.lastFireAt),
    lastJobId: row.lastJobId ?? "",
    lastRunId: row.lastRunId ?? "",
    fireCount: row.fireCount,
    skipCount: row.skipCount,
    lastSkipReason: row.lastSkipReason ?? "",
  });
}

/** Parses a spec's expression and zone, as INVALID_ARGUMENT naming the field. */
function cronOf(spec: ScheduleSpec, field = "spec"): CronSchedule {
  try {
    return parseCron(spec.cron, spec.timeZone);
  } catch (err) {
    if (err instanceof CronError) throw new ConnectError(`${field}.${err.field}: ${err.message}`, Code.InvalidArgument);
    throw err;
  }
}

type ScheduleMethods = Pick<
  ServiceImpl<typeof SchedulerService>,
  "createSchedule" | "getSchedule" | "listSchedules" | "pauseSchedule" | "resumeSchedule" | "deleteSchedule"
>;

/** Schedules (the six RPCs) and the ticker; promises each tick fires at most one job or run, however many replicas tick. */
export class SchedulerSchedules implements ScheduleMethods {
  readonly schedules: ScheduleStore;
  private readonly claimMs: number;
  private readonly stopping = new AbortController();
  private loop?: Promise<void>;
  private readonly alarm = new Alarm();

  constructor(private readonly deps: SchedulesDeps) {
    this.schedules = new ScheduleStore(deps.db);
    this.claimMs = deps.claimMs ?? CLAIM_MS;
  }

  /** Starts the ticker. */
  start(): void {
    this.loop ??= this.tickLoop();
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    this.wake();
    await this.loop;
  }

  /** Makes the ticker look again now (a schedule was created or resumed). */
  wake(): void {
    this.alarm.ring();
  }

  // ---- RPCs ------------------------------------------------------------------------

  async createSchedule(req: CreateScheduleRequest) {
    const spec = req.spec;
    if (!spec) throw new ConnectError("spec: required", Code.InvalidArgument);
    if (spec.name === "") throw new ConnectError("spec.name: required", Code.InvalidArgument);
    const cron = cronOf(spec);
    this.checkTemplate(spec);
    const next = cron.next(await this.schedules.now());
    if (next === null) throw new ConnectError(`spec.cron: ${JSON.stringify(spec.cron)} never fires`, Code.InvalidArgument);
    const row = await this.schedules.create({ name: spec.name, spec: toJson(ScheduleSpecSchema, spec) as object, paused: req.paused, nextFireAt: req.paused ? null : next });
    if (!row) throw new ConnectError(`schedule ${JSON.stringify(spec.name)} already exists`, Code.AlreadyExists);
    this.deps.log.info({ scheduleId: row.id, name: row.name, cron: spec.cron, timeZone: spec.timeZone || "UTC", nextFireAt: row.nextFireAt }, "schedule created");
    this.wake();
    return { schedule: scheduleMessage(row) };
  }

  async getSchedule(req: GetScheduleRequest) {
    return { schedule: scheduleMessage(await this.mustFind(req.id)) };
  }

  async listSchedules(req: ListSchedulesRequest) {
    const size = pageSize(req.pageSize);
    const after = decodePageToken(req.pageToken);
    const rows = await this.schedules.list({ limit: size + 1, afterName: after });
    const { page, nextPageToken } = splitPage(rows, size, (r) => r.name);
    return { schedules: page.map(scheduleMessage), nextPageToken };
  }

  async pauseSchedule(req: PauseScheduleRequest) {
    const row = await this.schedules.pause(req.id);
    if (!row) throw notFound(req.id);
    return { schedule: scheduleMessage(row) };
  }

  async resumeSchedule(req: ResumeScheduleRequest) {
    const found = await this.mustFind(req.id);
    if (!found.paused) return { schedule: scheduleMessage(found) };
    // From now: ticks that passed while paused are not fired.
    const next = cronOf(specOf(found)).next(await this.schedules.now());
    const row = await this.schedules.resume(found.id, next);
    if (!row) throw notFound(req.id);
    this.wake();
    return { schedule: scheduleMessage(row) };
  }

  async deleteSchedule(req: DeleteScheduleRequest) {
    if (!(await this.schedules.delete(req.id))) throw notFound(req.id);
    return {};
  }

  // ---- The ticker --------------------------------------------------------------------

  /**
   * Fires every due tick of every schedule this replica can claim, until
   * none is left. Resolves how many schedules it handled (tests call it directly).
   */
  async tick(): Promise<number> {
    let handled = 0;
    for (;;) {
      const { rows, now } = await this.schedules.claimDue(CLAIM_BATCH, this.claimMs);
      await Promise.all(rows.map((row) => this.fireDue(row, now)));
      handled += rows.length;
      if (rows.length < CLAIM_BATCH || this.stopping.signal.aborted) return handled;
    }
  }

  // Exits when stop() is called; a failed round is logged and the loop goes on.
  private async tickLoop(): Promise<void> {
    const signal = this.stopping.signal;
    while (!signal.aborted) {
      let sleepMs = MAX_SLEEP_MS;
      this.alarm.reset();
      try {
        await this.tick();
        const { at, now } = await this.schedules.earliest();
        if (at) sleepMs = Math.min(MAX_SLEEP_MS, Math.max(0, at.getTime() - now.getTime()));
      } catch (err) {
        if (!signal.aborted) this.deps.log.warn({ err }, "a schedule round failed; trying again");
      }
      if (this.alarm.rang() || signal.aborted) continue;
      await this.alarm.sleep(sleepMs, signal);
    }
  }

  /** One claimed schedule: decide, fire, advance. Errors leave it to be retried after RETRY_MS. */
  private async fireDue(row: ScheduleRow, now: Date): Promise<void> {
    const { log } = this.deps;
    const claimId = row.claimId!;
    try {
      const spec = specOf(row);
      const due = dueTicks(
        { cron: cronOf(spec), nextFireAt: row.nextFireAt!, missed: MISSED[spec.missed] ?? "run_once", backfillLimit: spec.backfillLimit },
        now,
        missedToleranceMs(this.deps.settings),
      );
      const advance: Advance = { id: row.id, claimId, nextFireAt: due.next };
      let skipped = due.skipped;
      let skipReason = due.skipReason;
      if (due.fire.length > 0) {
        // Overlap is judged once per round, against what the previous round
        // fired: ticks of one round (a backfill) do not block each other.
        const going = await this.previousGoing(row);
        const action = overlapAction(OVERLAP[spec.overlap] ?? "skip", going !== null);
        if (action === "skip") {
          skipped += due.fire.length;
          skipReason = `${due.fire.length === 1 ? `tick ${due.fire[0]!.toISOString()}` : `${due.fire.length} ticks`} skipped: ${going} is still going (overlap policy SKIP)`;
        } else {
          if (action === "cancel_previous") await this.cancelPrevious(row, due.fire[0]!);
          let last: { jobId?: string; runId?: string } = {};
          for (const tick of due.fire) last = await this.fire(row.id, spec, tick);
          advance.fired = { count: due.fire.length, lastTick: due.fire[due.fire.length - 1]!, ...last };
        }
      }
      if (skipped > 0) advance.skipped = { count: skipped, reason: skipReason ?? "skipped" };
      const advanced = await this.schedules.advance(advance);
      if (!advanced) {
        // Deleted, or our claim lapsed and another replica took it: whatever
        // we fired, it fires with the same keys and records it.
        log.info({ scheduleId: row.id }, "schedule changed while its ticks fired; not advanced");
        return;
      }
      if (advance.fired) log.info({ scheduleId: row.id, name: row.name, ticks: advance.fired.count, jobId: advance.fired.jobId, runId: advance.fired.runId, nextFireAt: due.next }, "schedule fired");
      if (advance.skipped) log.info({ scheduleId: row.id, name: row.name, skipped: advance.skipped.count, reason: advance.skipped.reason }, "schedule ticks skipped");
    } catch (err) {
      log.warn({ err, scheduleId: row.id, name: row.name }, "could not fire a schedule's ticks; trying again");
      await this.schedules.release(row.id, claimId, RETRY_MS).catch((e) => log.warn({ err: e, scheduleId: row.id }, "could not release a schedule's claim; it lapses"));
    }
  }

  /** Fires one tick: its job or run, under the tick's idempotency key. */
  private async fire(scheduleId: string, spec: ScheduleSpec, tick: Date): Promise<{ jobId?: string; runId?: string }> {
    const key = tickKey(scheduleId, tick);
    const template = spec.template;
    switch (template.case) {
      case "job": {
        const { job } = await this.deps.jobs.submit(newJobOf(template.value, key, { scheduleId }));
        return { jobId: job.id };
      }
      case "run": {
        const { run } = await this.deps.runs.submit(template.value, key, { scheduleId });
        return { runId: run.id };
      }
      default:
        throw new Error(`schedule ${scheduleId} has no template`);
    }
  }

  /** What the previous tick fired, in words, when it is still going; null when nothing is. */
  private async previousGoing(row: ScheduleRow): Promise<string | null> {
    if (row.lastJobId) {
      const job = await this.deps.store.get(row.lastJobId);
      if (job && !isFinalJobState(job.state)) return `job ${job.id} (${job.state})`;
    }
    if (row.lastRunId && (await this.deps.runs.isRunning(row.lastRunId))) return `run ${row.lastRunId}`;
    return null;
  }

  /** Cancels what the previous tick fired (overlap CANCEL_PREVIOUS); something that ended meanwhile is left alone. */
  private async cancelPrevious(row: ScheduleRow, tick: Date): Promise<void> {
    const reason = `cancelled by schedule ${row.name}: tick ${tick.toISOString()} replaces it (overlap policy CANCEL_PREVIOUS)`;
    if (row.lastJobId) {
      await this.deps.jobs.cancelJob(create(CancelJobRequestSchema, { id: row.lastJobId, reason })).catch((err) => {
        if (!(err instanceof ConnectError && (err.code === Code.FailedPrecondition || err.code === Code.NotFound))) throw err;
      });
    }
    if (row.lastRunId) await this.deps.runs.cancel(row.lastRunId, reason);
  }

  // ---- Helpers ---------------------------------------------------------------------

  /** Refuses a template that could never fire, naming the field: nothing is stored. */
  private checkTemplate(spec: ScheduleSpec): void {
    const template = spec.template;
    switch (template.case) {
      case "job":
        if (template.value.runMode?.mode.case !== undefined) {
          throw new ConnectError("spec.job.run_mode: a schedule's job runs once per tick; run modes are for jobs submitted on their own", Code.InvalidArgument);
        }
        if (template.value.service) {
          throw new ConnectError("spec.job.service: a schedule's job runs once per tick; a service job runs until cancelled", Code.InvalidArgument);
        }
        if (!template.value.exec) throw new ConnectError("spec.job.exec: required", Code.InvalidArgument);
        this.deps.jobs.checkSpec(template.value, "spec.job");
        return;
      case "run":
        this.deps.runs.checkSpec(template.value, "spec.run");
        return;
      default:
        throw new ConnectError("spec.template: a job or a run to fire is required", Code.InvalidArgument);
    }
  }

  private async mustFind(idOrName: string): Promise<ScheduleRow> {
    const row = await this.schedules.find(idOrName);
    if (!row) throw notFound(idOrName);
    return row;
  }
}

/** The idempotency key of a schedule's tick: whoever fires it, and however often, it makes one job or run. */
export function tickKey(scheduleId: string, tick: Date): string {
  return `schedule:${scheduleId}:${tick.toISOString()}`;
}

function notFound(idOrName: string): ConnectError {
  return new ConnectError(`schedule ${JSON.stringify(idOrName)} not found`, Code.NotFound);
}
