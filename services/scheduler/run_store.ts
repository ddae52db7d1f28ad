// The runs table, and the follow-up columns of jobs (followup_pending,
// next_job_id): every read and write that runs and run modes need.
//
// A RunStore works on the client it is given: the PrismaClient, or the
// transaction client inside db.$transaction, which is how follow-ups and
// run changes are made atomic (see runs.ts). It uses only raw SQL, so
// either kind of client will do.

import { FINAL_STATES_SQL, FOLLOWUP_DUE, JOB_COLUMNS, jobRow, type JobRow } from "./job_store.ts";
import { newestFirst, withDates, type Sql } from "./sql.ts";

export type { Sql };

/** Why a stage will never run, as stored in runs.skipped (keyed by stage name). */
export interface SkipNote {
  /** In words: 'requires "build", which failed', 'run cancelled: ...'. */
  reason: string;
  /** When it was skipped (ISO 8601). */
  at: string;
  /** "requirement": a stage it requires failed, was cancelled or skipped; "cancel": the run was cancelled first. */
  cause: "requirement" | "cancel";
}

/** A run as stored. */
export interface RunRow {
  id: string;
  /** running | succeeded | failed | cancelled */
  state: string;
  /** The RunSpec in proto JSON form. */
  spec: unknown;
  idempotencyKey: string | null;
  scheduleId: string | null;
  skipped: Record<string, SkipNote>;
  cancelRequestedAt: Date | null;
  endReason: string | null;
  createdAt: Date;
  updatedAt: Date;
  endedAt: Date | null;
}

const RUN_COLUMNS = `r.id::text AS id, r.state, r.spec, r.idempotency_key AS "idempotencyKey", r.schedule_id::text AS "scheduleId",
  r.skipped, r.cancel_requested_at AS "cancelRequestedAt", r.end_reason AS "endReason", r.created_at AS "createdAt",
  r.updated_at AS "updatedAt", r.ended_at AS "endedAt"`;

function runRow(r: RunRow): RunRow {
  withDates(r, ["cancelRequestedAt", "createdAt", "updatedAt", "endedAt"]);
  if (typeof r.skipped === "string") r.skipped = JSON.parse(r.skipped) as Record<string, SkipNote>;
  r.skipped ??= {};
  return r;
}

export class RunStore {
  constructor(private readonly db: Sql) {}

  /** Inserts a running run; with a key already used, resolves the run that has it (created: false). */
  async insert(run: { spec: object; idempotencyKey: string | null; scheduleId: string | null }): Promise<{ run: RunRow; created: boolean }> {
    const inserted = await this.db.$queryRawUnsafe<RunRow[]>(
      `WITH r AS (
         INSERT INTO "scheduler"."runs" (state, spec, idempotency_key, schedule_id)
         VALUES ('running', $1::jsonb, $2, $3::uuid)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING *
       ) SELECT ${RUN_COLUMNS} FROM r`,
      JSON.stringify(run.spec),
      run.idempotencyKey,
      run.scheduleId,
    );
    if (inserted[0]) return { run: runRow(inserted[0]), created: true };
    const rows = await this.db.$queryRawUnsafe<RunRow[]>(`SELECT ${RUN_COLUMNS} FROM "scheduler"."runs" r WHERE r.idempotency_key = $1`, run.idempotencyKey);
    if (!rows[0]) throw new Error(`run with idempotency key ${run.idempotencyKey} neither inserted nor found`);
    return { run: runRow(rows[0]), created: false };
  }

  async get(id: string): Promise<RunRow | null> {
    const rows = await this.db.$queryRawUnsafe<RunRow[]>(`SELECT ${RUN_COLUMNS} FROM "scheduler"."runs" r WHERE r.id = $1::uuid`, id);
    return rows[0] ? runRow(rows[0]) : null;
  }

  /**
   * The run, its row locked until the transaction ends: every change to a
   * run's stages (release, skip, cancel, end) happens under this lock, so
   * two follow-ups of one run, or a follow-up and a CancelRun, take turns.
   * Only inside a transaction.
   */
  async lock(id: string): Promise<RunRow | null> {
    const rows = await this.db.$queryRawUnsafe<RunRow[]>(`SELECT ${RUN_COLUMNS} FROM "scheduler"."runs" r WHERE r.id = $1::uuid FOR UPDATE`, id);
    return rows[0] ? runRow(rows[0]) : null;
  }

  /** Newest first, after the run `afterId` when given. */
  async list(opts: { state?: string; limit: number; afterId?: string }): Promise<RunRow[]> {
    return (await newestFirst<RunRow>(this.db, `"scheduler"."runs"`, "r", RUN_COLUMNS, opts)).map(runRow);
  }

  /** The jobs of a run's released stages. */
  async stageJobs(runId: string): Promise<JobRow[]> {
    const rows = await this.db.$queryRawUnsafe<JobRow[]>(`SELECT ${JOB_COLUMNS} FROM "scheduler"."jobs" j WHERE j.run_id = $1::uuid`, runId);
    return rows.map(jobRow);
  }

  /** Records stages as skipped; a stage already skipped keeps its first note. */
  async skip(runId: string, notes: Record<string, SkipNote>): Promise<void> {
    if (Object.keys(notes).length === 0) return;
    await this.db.$executeRawUnsafe(
      `UPDATE "scheduler"."runs" SET skipped = $2::jsonb || skipped, updated_at = now() WHERE id = $1::uuid`,
      runId,
      JSON.stringify(notes),
    );
  }

  /** Ends a running run in `state`; a run that already ended keeps its end. */
  async end(runId: string, state: string, endReason: string | null): Promise<void> {
    await this.db.$executeRawUnsafe(
      `UPDATE "scheduler"."runs" SET state = $2, end_reason = COALESCE(end_reason, $3), ended_at = now(), updated_at = now()
        WHERE id = $1::uuid AND state = 'running'`,
      runId,
      state,
      endReason,
    );
  }

  /** Marks a running run as to be cancelled (the first reason stays). Resolves the row when it is running. */
  async requestCancel(runId: string, reason: string): Promise<RunRow | null> {
    const rows = await this.db.$queryRawUnsafe<RunRow[]>(
      `WITH r AS (
         UPDATE "scheduler"."runs" SET cancel_requested_at = COALESCE(cancel_requested_at, now()), end_reason = COALESCE(end_reason, $2),
                updated_at = now()
          WHERE id = $1::uuid AND state = 'running'
         RETURNING *
       ) SELECT ${RUN_COLUMNS} FROM r`,
      runId,
      reason,
    );
    return rows[0] ? runRow(rows[0]) : null;
  }

  /**
   * Live stage jobs of runs being cancelled that were never asked to stop:
   * what a CancelRun that died half-way left behind. Only runs whose cancel
   * is older than `graceMs`, so a CancelRun still at work is left to finish.
   */
  async uncancelledStageJobs(graceMs: number, limit: number): Promise<{ jobId: string; runId: string; reason: string }[]> {
    return this.db.$queryRawUnsafe(
      `SELECT j.id::text AS "jobId", r.id::text AS "runId", COALESCE(r.end_reason, 'run cancelled') AS reason
         FROM "scheduler"."runs" r JOIN "scheduler"."jobs" j ON j.run_id = r.id AND j.run_id IS NOT NULL
        WHERE r.state = 'running' AND r.cancel_requested_at < now() - $1 * interval '1 millisecond'
          AND j.state NOT IN (${FINAL_STATES_SQL}) AND j.cancel_requested_at IS NULL
        LIMIT $2`,
      graceMs,
      limit,
    );
  }

  // ---- Follow-ups --------------------------------------------------------------------

  /**
   * Ended jobs whose follow-up is still to do, oldest end first, locked
   * until the transaction ends. SKIP LOCKED: processors on other replicas
   * get other jobs, never the same one. Only inside a transaction.
   */
  async claimFollowups(limit: number): Promise<JobRow[]> {
    const rows = await this.db.$queryRawUnsafe<JobRow[]>(
      `SELECT ${JOB_COLUMNS} FROM "scheduler"."jobs" j
        WHERE ${FOLLOWUP_DUE}
        ORDER BY j.ended_at LIMIT $1 FOR UPDATE SKIP LOCKED`,
      limit,
    );
    return rows.map(jobRow);
  }

  /** The follow-ups of these jobs are done. */
  async clearFollowups(jobIds: readonly string[]): Promise<void> {
    if (jobIds.length === 0) return;
    await this.db.$executeRawUnsafe(
      `UPDATE "scheduler"."jobs" SET followup_pending = false WHERE id::text IN (SELECT jsonb_array_elements_text($1::jsonb))`,
      JSON.stringify(jobIds),
    );
  }

  /** Points each ended job at the job that repeats it. */
  async setNextJobs(links: readonly { jobId: string; nextJobId: string }[]): Promise<void> {
    if (links.length === 0) return;
    await this.db.$executeRawUnsafe(
      `UPDATE "scheduler"."jobs" AS jobs SET next_job_id = l.next_job_id, updated_at = now()
         FROM jsonb_to_recordset($1::jsonb) AS l(job_id uuid, next_job_id uuid)
        WHERE jobs.id = l.job_id`,
      JSON.stringify(links.map((l) => ({ job_id: l.jobId, next_job_id: l.nextJobId }))),
    );
  }
}
