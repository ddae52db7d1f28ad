// What happens after a job ends, when something must follow it:
//
//   a run's stage ended   → release the stages whose requirements all
//                           succeeded, skip those that can never run, and end
//                           the run once no stage is left to run (settleRun)
//   a repeating job ended → submit the next job of its chain, unless the
//                           chain is done or the job was cancelled (nextRepeat)
//
// Jobs that need this are inserted with followup_pending = true. The loop
// here runs on every replica; each round is one transaction that claims due
// jobs with FOR UPDATE SKIP LOCKED, does their follow-ups and clears the
// flag, so a follow-up is done exactly once however many replicas race: a
// claimed job is invisible to the others until the commit, and once
// committed it is no longer due. A crash mid-way rolls back everything,
// the flag included, and the job is due again. The jobs a follow-up creates
// carry idempotency keys (run:<run>:<stage>, repeat:<first>:<index>) as a
// second guard.
//
// Woken when a job with a follow-up ends on this replica (the signals'
// followupsDue), and polls every sweep interval for what another replica
// left behind (it died before its own loop got to it); a round that finds
// nothing due costs one indexed look and no transaction. Every few seconds
// the loop also repairs what a CancelRun that died half-way left: live
// stage jobs of a cancelled run that were never asked to stop.

import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { CancelJobRequestSchema, CancelJobsRequestSchema, JobSpecSchema, RunSpecSchema, type JobSpec, type RunMode } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import type { PrismaClient } from "../../gen/prisma/scheduler/client.ts";
import type { SchedulingSettings } from "../../lib/config.ts";
import { durationMs } from "../../lib/host/time.ts";
import type { Logger } from "../../lib/logger.ts";
import { Alarm, sleep } from "../../lib/timers.ts";
import { release, type StageDef, type StageState } from "./dag.ts";
import { JobStore, type JobRow } from "./job_store.ts";
import { RunStore, type RunRow, type SkipNote, type Sql } from "./run_store.ts";
import { newJobOf, type SchedulerServiceImpl } from "./service.ts";
import type { SchedulerSignals } from "./signals.ts";

// ---- Pure decisions ------------------------------------------------------------------

/** A stage's state from its job's. */
export function stageStateOfJob(jobState: string): StageState {
  switch (jobState) {
    case "pending":
    case "offered":
      return "pending";
    case "assigned":
    case "running":
      return "running";
    case "succeeded":
      return "succeeded";
    case "cancelled":
      return "cancelled";
    default: // failed, dead, timed_out
      return "failed";
  }
}

/**
 * Every stage's state: its job's when released, skipped when noted so,
 * otherwise blocked. A stage with a job is what its job is, even if it was
 * also noted skipped (a cancel racing its release).
 */
export function stageStates(stages: readonly StageDef[], jobs: readonly Pick<JobRow, "stageName" | "state">[], skipped: Readonly<Record<string, SkipNote>>): Record<string, StageState> {
  const byStage = new Map(jobs.map((j) => [j.stageName, j.state]));
  const states: Record<string, StageState> = {};
  for (const s of stages) {
    const job = byStage.get(s.name);
    states[s.name] = job !== undefined ? stageStateOfJob(job) : skipped[s.name] ? "skipped" : "blocked";
  }
  return states;
}

/** What settling a run does: stages to release and skip (with why), and the run's end if it ended. */
export interface RunDecision {
  release: string[];
  skip: Record<string, Omit<SkipNote, "at">>;
  /** Unset while the run goes on. */
  end?: { state: "succeeded" | "failed" | "cancelled"; reason: string | null };
}

/**
 * What a run does next, from its stages' states. While it is not being
 * cancelled, dag.release decides. Once it is, nothing more is released:
 * every blocked stage is skipped, and for the run's end a stage skipped by
 * the cancel counts as cancelled (so a cancelled run whose stages only
 * succeeded or were never started ends cancelled, not failed). The run ends
 * when no stage is pending or running.
 */
export function decideRun(stages: readonly StageDef[], states: Readonly<Record<string, StageState>>, skipped: Readonly<Record<string, SkipNote>>, cancel: { reason: string } | null): RunDecision {
  if (cancel) {
    const skip: RunDecision["skip"] = {};
    const forEnd: Record<string, StageState> = {};
    for (const s of stages) {
      const state = states[s.name] ?? "blocked";
      if (state === "blocked") skip[s.name] = { reason: `run cancelled: ${cancel.reason}`, cause: "cancel" };
      const byCancel = state === "blocked" || (state === "skipped" && skipped[s.name]?.cause === "cancel");
      forEnd[s.name] = byCancel ? "cancelled" : state;
    }
    const { runState } = release(stages, forEnd);
    return { release: [], skip, end: runState === "running" ? undefined : { state: runState, reason: endReason(stages, forEnd, runState, cancel.reason) } };
  }
  const r = release(stages, states);
  const after: Record<string, StageState> = { ...states };
  for (const name of r.skip) after[name] = "skipped";
  for (const name of r.release) after[name] = "pending";
  const skip: RunDecision["skip"] = {};
  for (const name of r.skip) {
    const stage = stages.find((s) => s.name === name)!;
    const cause = stage.requires.find((req) => ["failed", "cancelled", "skipped"].includes(after[req] ?? ""));
    const how = after[cause!] === "skipped" ? "was skipped" : after[cause!] === "cancelled" ? "was cancelled" : "failed";
    skip[name] = { reason: `requires "${cause}", which ${how}`, cause: "requirement" };
  }
  return { release: r.release, skip, end: r.runState === "running" ? undefined : { state: r.runState, reason: endReason(stages, after, r.runState, null) } };
}

function endReason(stages: readonly StageDef[], states: Readonly<Record<string, StageState>>, runState: string, cancelReason: string | null): string | null {
  if (runState === "succeeded") return null;
  if (runState === "cancelled") return cancelReason ?? `stage "${stages.find((s) => states[s.name] === "cancelled")?.name}" was cancelled`;
  const failed = stages.find((s) => states[s.name] === "failed");
  return failed ? `stage "${failed.name}" failed` : "a stage was cancelled or skipped";
}

/**
 * The next job of a repeating job's chain, or null when the chain ends: a
 * cancelled job ends it (whatever the mode), n_times ends it after the n-th
 * job (the first counts), forever never does. The delay defaults to 0 for
 * n_times and 1 s for forever.
 */
export function nextRepeat(job: Pick<JobRow, "id" | "state" | "repeatOf" | "repeatIndex">, mode: RunMode | undefined): { repeatOf: string; repeatIndex: number; delayMs: number } | null {
  if (!mode || mode.mode.case === undefined || job.state === "cancelled") return null;
  if (mode.mode.case === "nTimes" && job.repeatIndex >= mode.mode.value) return null;
  const delayMs = mode.delay ? durationMs(mode.delay) : mode.mode.case === "forever" ? 1000 : 0;
  return { repeatOf: job.repeatOf ?? job.id, repeatIndex: job.repeatIndex + 1, delayMs };
}

/** The stages of a stored run, as dag.ts sees them, with each stage's job spec. */
export function stagesOf(run: Pick<RunRow, "spec">) {
  const spec = fromJson(RunSpecSchema, run.spec as JsonValue, { ignoreUnknownFields: true });
  return { spec, defs: spec.stages.map((s): StageDef => ({ name: s.name, requires: s.requires })) };
}

/** The idempotency key of a stage's job: one job per stage, however often it is released. */
export const stageJobKey = (runId: string, stage: string) => `run:${runId}:${stage}`;
/** The idempotency key of a repeat: one job per place in the chain. */
export const repeatJobKey = (firstJobId: string, index: number) => `repeat:${firstJobId}:${index}`;

// ---- Applying them -------------------------------------------------------------------

/**
 * Brings a run up to date with its stages, under its row lock: releases,
 * skips and ends as decideRun says. Only inside a transaction (sql is its
 * client). Resolves the jobs created.
 */
export async function settleRun(sql: Sql, runId: string, now = new Date()): Promise<JobRow[]> {
  const runs = new RunStore(sql);
  const run = await runs.lock(runId);
  if (!run || run.state !== "running") return [];
  const { spec, defs } = stagesOf(run);
  const jobs = await runs.stageJobs(runId);
  const cancel = run.cancelRequestedAt ? { reason: run.endReason ?? "cancelled" } : null;
  const decision = decideRun(defs, stageStates(defs, jobs, run.skipped), run.skipped, cancel);

  let created: JobRow[] = [];
  if (decision.release.length > 0) {
    const byName = new Map(spec.stages.map((s) => [s.name, s]));
    const inserted = await new JobStore(sql as unknown as PrismaClient).insert(
      decision.release.map((name) => newJobOf(byName.get(name)!.job!, stageJobKey(runId, name), { runId, stageName: name, followupPending: true })),
    );
    created = inserted.filter((i) => i.created).map((i) => i.job);
  }
  const at = now.toISOString();
  await runs.skip(runId, Object.fromEntries(Object.entries(decision.skip).map(([name, note]) => [name, { ...note, at }])));
  if (decision.end) await runs.end(runId, decision.end.state, decision.end.reason);
  return created;
}

/** Options of a transaction that may wait behind others (PGlite has one connection, shared by the whole process). */
export const TX_OPTIONS = { maxWait: 30_000, timeout: 60_000 } as const;

export interface FollowupDeps {
  db: PrismaClient;
  store: JobStore;
  signals: SchedulerSignals;
  jobs: SchedulerServiceImpl;
  settings: Pick<SchedulingSettings, "sweepIntervalMs">;
  log: Logger;
}

/** Due jobs per round. */
const BATCH = 100;
/** How old a run's cancel must be before the repair takes over its stage jobs. */
const CANCEL_REPAIR_AFTER_MS = 5_000;
// Least time between two rounds woken one after another (each batch of events that ends such jobs wakes the loop).
const MIN_ROUND_GAP_MS = 50;

/** The follow-up loop; promises each ended job's follow-up is done once, by one replica. */
export class Followups {
  private readonly stopping = new AbortController();
  private loop?: Promise<void>;
  private readonly alarm = new Alarm();
  private unsubscribe?: () => void;

  constructor(private readonly deps: FollowupDeps) {}

  start(): void {
    if (this.loop) return;
    this.unsubscribe = this.deps.signals.onFollowupsDue(() => this.wake());
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.stopping.abort();
    await this.loop;
  }

  /** Makes the loop look again now. */
  wake(): void {
    this.alarm.ring();
  }

  /**
   * One transaction: claims up to `limit` due jobs, does their follow-ups,
   * clears their flags. Resolves how many jobs it claimed (tests call it
   * directly; the loop repeats it while batches come back full).
   */
  async processDue(limit = BATCH): Promise<number> {
    const { db, store, signals } = this.deps;
    // Most rounds find nothing: look first, so that an idle round opens no
    // transaction (on PGlite a transaction holds up every other query).
    if (!(await store.anyFollowupDue())) return 0;
    const done = await db.$transaction(async (tx) => {
      const runs = new RunStore(tx);
      const due = await runs.claimFollowups(limit);
      if (due.length === 0) return { claimed: 0, created: [] as JobRow[], changed: [] as string[] };
      const now = new Date();
      const created: JobRow[] = [];

      // Repeats: one insert for the batch, then each ended job points at its next.
      const repeats: { job: JobRow; spec: JobSpec; next: NonNullable<ReturnType<typeof nextRepeat>> }[] = [];
      for (const job of due) {
        if (job.runId) continue; // a stage runs once (SubmitRun refuses run modes)
        const spec = fromJson(JobSpecSchema, job.spec as JsonValue, { ignoreUnknownFields: true });
        const next = nextRepeat(job, spec.runMode);
        if (next) repeats.push({ job, spec, next });
      }
      if (repeats.length > 0) {
        const inserted = await new JobStore(tx as unknown as PrismaClient).insert(
          repeats.map(({ job, spec, next }) =>
            newJobOf(spec, repeatJobKey(next.repeatOf, next.repeatIndex), {
              repeatOf: next.repeatOf,
              repeatIndex: next.repeatIndex,
              scheduleId: job.scheduleId,
              notBefore: next.delayMs > 0 ? new Date(now.getTime() + next.delayMs) : null,
            }),
          ),
        );
        await runs.setNextJobs(repeats.map((r, i) => ({ jobId: r.job.id, nextJobId: inserted[i]!.job.id })));
        created.push(...inserted.filter((i) => i.created).map((i) => i.job));
      }

      // Runs, in id order so that two rounds locking the same runs cannot deadlock.
      const runIds = [...new Set(due.flatMap((j) => (j.runId ? [j.runId] : [])))].sort();
      for (const runId of runIds) created.push(...(await settleRun(tx, runId, now)));

      await runs.clearFollowups(due.map((j) => j.id));
      return { claimed: due.length, created, changed: [...repeats.map((r) => r.job.id), ...created.map((j) => j.id)] };
    }, TX_OPTIONS);
    // After the commit: the doorbells must not ring for jobs a rollback removed.
    if (done.created.length > 0) signals.placeable();
    signals.changed(done.changed);
    return done.claimed;
  }

  /** Cancels live stage jobs of cancelled runs that a CancelRun which died half-way never stopped. Resolves how many. */
  async repairCancels(): Promise<number> {
    const left = await new RunStore(this.deps.db).uncancelledStageJobs(CANCEL_REPAIR_AFTER_MS, BATCH);
    if (left.length === 0) return 0;
    const jobs = left.map(({ jobId, reason }) => create(CancelJobRequestSchema, { id: jobId, reason }));
    await this.deps.jobs.cancelJobs(create(CancelJobsRequestSchema, { jobs })).catch((err) => this.deps.log.debug({ err, jobs: jobs.length }, "could not cancel the stage jobs of cancelled runs"));
    this.deps.log.info({ jobs: left.length, runs: [...new Set(left.map((l) => l.runId))] }, "cancelled stage jobs a CancelRun left running");
    return left.length;
  }

  // Exits once stop() is called; a failed round is logged and tried again
  // after the interval.
  private async run(): Promise<void> {
    const { settings, log } = this.deps;
    const signal = this.stopping.signal;
    let lastRepair = 0;
    while (!signal.aborted) {
      this.alarm.reset();
      try {
        while (!signal.aborted && (await this.processDue()) === BATCH);
        if (!signal.aborted && Date.now() - lastRepair >= CANCEL_REPAIR_AFTER_MS) {
          lastRepair = Date.now();
          await this.repairCancels();
        }
      } catch (err) {
        if (!signal.aborted) log.warn({ err }, "a follow-up round failed; trying again");
      }
      if (signal.aborted) continue;
      if (this.alarm.rang()) {
        // Woken again while it looked: let the wake-ups gather for a moment
        // rather than look once per batch of events.
        await sleep(MIN_ROUND_GAP_MS, signal);
        continue;
      }
      await this.alarm.sleep(settings.sweepIntervalMs, signal);
    }
  }
}
