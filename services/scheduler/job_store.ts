// The scheduler's tables, jobs and attempts, and every change to them.
//
// Each change is one statement that names the state it expects (a
// compare-and-set): two replicas doing the same background work, or a job
// event racing a lease sweep, cannot both win — the loser's statement
// changes nothing and it moves on. Work that comes in bulk (submits, job
// events, placements) is written set-based, a batch per statement, with the
// rows passed as one JSON parameter.

import { randomUUID } from "node:crypto";
import type { PrismaClient } from "../../gen/prisma/scheduler/client.ts";
import type { SqlQueryable } from "../../lib/db/executor.ts";
import { newestFirst, withDates } from "./sql.ts";

/** A job as stored. */
export interface JobRow {
  id: string;
  state: string;
  spec: unknown;
  priority: number;
  idempotencyKey: string | null;
  createdAt: Date;
  updatedAt: Date;
  attemptCount: number;
  failureCount: number;
  lostCount: number;
  currentAttemptId: string | null;
  notBefore: Date | null;
  waitingForCapacity: boolean;
  waitReason: string | null;
  claimId: string | null;
  claimExpiresAt: Date | null;
  cancelRequestedAt: Date | null;
  endReason: string | null;
  endedAt: Date | null;
  runId: string | null;
  stageName: string | null;
  repeatOf: string | null;
  repeatIndex: number;
  nextJobId: string | null;
  scheduleId: string | null;
  concurrencyKey: string | null;
  concurrencyLimit: number;
  followupPending: boolean;
}

/** An attempt as stored. */
export interface AttemptRow {
  id: string;
  jobId: string;
  number: number;
  agentId: string;
  state: string;
  auctionId: string | null;
  createdAt: Date;
  startedAt: Date | null;
  endedAt: Date | null;
  exitCode: number | null;
  signal: string | null;
  reason: string | null;
  leaseExpiresAt: Date;
  /** How each command that ran ended: CommandResults in proto JSON form, with "index" always present, in index order. */
  commands: unknown[];
  /** A service replica's health (HealthStatus in proto JSON form) as its agent last reported it; null before. */
  health: unknown | null;
}

/**
 * The ids in $1 (a JSON array of text) as UUIDs, for `IN (...)`: cast so the
 * primary key answers (id::text would scan the table); the CASE keeps ids
 * that are not UUIDs from failing the cast (they name nothing).
 */
const UUIDS_OF_PARAM = `SELECT CASE WHEN t.id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN t.id::uuid END
                         FROM jsonb_array_elements_text($1::jsonb) AS t(id)`;

/** An attempt and its job as job events are decided on them (eventRows). */
export interface EventRow {
  attempt: Pick<AttemptRow, "id" | "number" | "agentId" | "state" | "reason" | "startedAt">;
  job: Pick<JobRow, "id" | "state" | "currentAttemptId" | "cancelRequestedAt" | "endReason" | "failureCount" | "lostCount" | "concurrencyKey"> & {
    /** The spec's retry policy, proto JSON form; null when it has none. */
    retry: unknown;
  };
}

/** A placement the store accepted: what its Assignment is built from. */
export interface Assigned {
  jobId: string;
  runId: string | null;
  stageName: string | null;
  /** The stored spec (proto JSON form), for the jobs assign() was asked for it; undefined otherwise. */
  spec?: unknown;
  attempt: { id: string; jobId: string; agentId: string; leaseExpiresAt: Date };
}

/** A job's columns but its spec, as JobRow names them, from a table aliased "j". */
const JOB_COLUMNS_BUT_SPEC = `j.id::text AS id, j.state, j.priority, j.idempotency_key AS "idempotencyKey",
  j.created_at AS "createdAt", j.updated_at AS "updatedAt", j.attempt_count AS "attemptCount",
  j.failure_count AS "failureCount", j.lost_count AS "lostCount", j.current_attempt_id::text AS "currentAttemptId",
  j.not_before AS "notBefore", j.waiting_for_capacity AS "waitingForCapacity", j.wait_reason AS "waitReason",
  j.claim_id::text AS "claimId", j.claim_expires_at AS "claimExpiresAt", j.cancel_requested_at AS "cancelRequestedAt",
  j.end_reason AS "endReason", j.ended_at AS "endedAt", j.run_id::text AS "runId", j.stage_name AS "stageName",
  j.repeat_of::text AS "repeatOf", j.repeat_index AS "repeatIndex", j.next_job_id::text AS "nextJobId",
  j.schedule_id::text AS "scheduleId", j.concurrency_key AS "concurrencyKey", j.concurrency_limit AS "concurrencyLimit",
  j.followup_pending AS "followupPending"`;

/** A job's columns, as JobRow names them, from a table aliased "j". */
export const JOB_COLUMNS = `${JOB_COLUMNS_BUT_SPEC}, j.spec`;

const ATTEMPT_COLUMNS = `a.id::text AS id, a.job_id::text AS "jobId", a.number, a.agent_id AS "agentId", a.state,
  a.auction_id::text AS "auctionId", a.created_at AS "createdAt", a.started_at AS "startedAt", a.ended_at AS "endedAt",
  a.exit_code AS "exitCode", a.signal, a.reason, a.lease_expires_at AS "leaseExpiresAt", a.commands, a.health`;

/** States a job ends in. */
export const FINAL_JOB_STATES = ["succeeded", "failed", "cancelled", "timed_out", "dead"] as const;
/** The same, as an SQL list for `state IN (…)`. */
export const FINAL_STATES_SQL = FINAL_JOB_STATES.map((s) => `'${s}'`).join(", ");

/**
 * The jobs (aliased j) whose follow-up is due: ended, flagged. The cheap look
 * (JobStore.anyFollowupDue) and the claim (RunStore.claimFollowups) say the
 * same.
 */
export const FOLLOWUP_DUE = `j.followup_pending AND j.ended_at IS NOT NULL AND j.state IN (${FINAL_STATES_SQL})`;

/** Whether a stored job state is one it ends in. */
export function isFinalJobState(state: string): boolean {
  return (FINAL_JOB_STATES as readonly string[]).includes(state);
}
/** States of an attempt that still holds its job. */
export const LIVE_ATTEMPT_STATES = ["assigned", "running"] as const;

const JOB_DATES = ["createdAt", "updatedAt", "notBefore", "claimExpiresAt", "cancelRequestedAt", "endedAt"] as const;
const ATTEMPT_DATES = ["createdAt", "startedAt", "endedAt", "leaseExpiresAt"] as const;

export function jobRow(r: JobRow): JobRow {
  return withDates(r, JOB_DATES);
}

function attemptRow(r: AttemptRow): AttemptRow {
  return withDates(r, ATTEMPT_DATES);
}

/** A job to insert. */
export interface NewJob {
  spec: object;
  priority: number;
  idempotencyKey: string | null;
  /** The run and stage it belongs to. */
  runId?: string | null;
  stageName?: string | null;
  /** In a chain of repeats: the first job, and this one's place (1 for the first). */
  repeatOf?: string | null;
  repeatIndex?: number;
  /** The schedule whose tick fired it. */
  scheduleId?: string | null;
  /** Not placeable before this (a repeat's delay). */
  notBefore?: Date | null;
  /** At most concurrencyLimit jobs with this key hold an agent at a time. */
  concurrencyKey?: string | null;
  concurrencyLimit?: number;
  /** Something follows its end (a run's release, the next repeat). */
  followupPending?: boolean;
}

/** The stored columns of a new job, as insert's JSON input names them. */
function newJobInput(j: NewJob) {
  return {
    id: randomUUID(),
    spec: j.spec,
    priority: j.priority,
    idempotency_key: j.idempotencyKey,
    run_id: j.runId ?? null,
    stage_name: j.stageName ?? null,
    repeat_of: j.repeatOf ?? null,
    repeat_index: j.repeatIndex ?? 1,
    schedule_id: j.scheduleId ?? null,
    not_before: j.notBefore?.toISOString() ?? null,
    concurrency_key: j.concurrencyKey ?? null,
    concurrency_limit: j.concurrencyLimit ?? 1,
    followup_pending: j.followupPending ?? false,
  };
}

/** The most command results an attempt keeps, the latest by index (a service's restarts add one each). */
export const MAX_COMMAND_RESULTS = 50;

/** A claimed job, for placement. */
export interface ClaimedJob {
  job: JobRow;
  previousAgentIds: string[];
  /** A service replica's: the agents of its deployment's other live replicas, one entry per replica. */
  siblingAgentIds: string[];
  /** Those replicas' jobs, in the same order. */
  siblingJobIds: string[];
}

/** A change to write to an attempt and, with it, its job, guarded by the states read. */
export interface AttemptChange {
  attemptId: string;
  agentId: string;
  /** The attempt must still be in this state. */
  fromState: string;
  state: string;
  startedAt?: Date;
  endedAt?: Date;
  exitCode?: number;
  signal?: string;
  reason?: string;
  /** New lease length from now, ms; unset keeps the lease. */
  leaseMs?: number;
  /** The job's new fields, applied only if the attempt is still the job's current one. */
  job?: JobChange;
}

/** A service replica's health (a HealthStatus in proto JSON form) as its attempt's agent reported it, with the event's sequence. */
export interface HealthReport {
  attemptId: string;
  agentId: string;
  sequence: number;
  health: Record<string, unknown>;
}

/** One command's result (a CommandResult in proto JSON form, "index" always present) as its attempt's agent reported it. */
export interface CommandReport {
  attemptId: string;
  agentId: string;
  result: { index: number } & Record<string, unknown>;
}

/** New fields for a job whose attempt changed. */
export interface JobChange {
  state: string;
  notBefore?: Date | null;
  waitReason?: string | null;
  endReason?: string | null;
  ended?: boolean;
  failureInc?: number;
  lostInc?: number;
  /** The job lets go of its attempt (it goes back to pending). */
  releaseAttempt?: boolean;
}

export class JobStore {
  /**
   * `db` is the Scheduler's Prisma client, or a transaction's. `raw`, when
   * given, runs the store's queries instead: node-postgres (or PGlite)
   * straight, without Prisma's per-query cost (its engine, and every row
   * serialised once more), which on the hot paths (submits, claims,
   * placements, job events) cost the Scheduler more CPU than the statements
   * themselves. Transactions (claimKeyed) and row counts stay with Prisma.
   */
  constructor(
    private readonly db: PrismaClient,
    private readonly raw?: SqlQueryable,
  ) {}

  /** Runs one statement and resolves its rows: through `raw` when given, else Prisma's raw query. */
  private query<T>(sql: string, ...params: unknown[]): Promise<T[]> {
    return this.raw ? this.raw.query<T>(sql, params) : this.db.$queryRawUnsafe<T[]>(sql, ...params);
  }

  /**
   * Whether any ended job has a follow-up to do (followups.ts): a cheap look,
   * outside any transaction, before claiming. The follow-up loop asks it
   * whenever a job with a follow-up ends here (at most every 50 ms) and on
   * its poll, so it runs on the raw executor, not through Prisma.
   */
  async anyFollowupDue(): Promise<boolean> {
    const rows = await this.query<unknown>(`SELECT 1 FROM "scheduler"."jobs" j WHERE ${FOLLOWUP_DUE} LIMIT 1`);
    return rows.length > 0;
  }

  /** Inserts jobs in one statement; resolves each job, and whether it was created (false: its idempotency key had one already). */
  async insert(jobs: readonly NewJob[]): Promise<{ job: JobRow; created: boolean }[]> {
    const input = jobs.map(newJobInput);
    const inserted = await this.query<JobRow>(
      `WITH input AS (
         SELECT * FROM jsonb_to_recordset($1::jsonb) AS t(id uuid, spec jsonb, priority int, idempotency_key text,
           run_id uuid, stage_name text, repeat_of uuid, repeat_index int, schedule_id uuid, not_before timestamptz,
           concurrency_key text, concurrency_limit int, followup_pending boolean)
       ), j AS (
         INSERT INTO "scheduler"."jobs" (id, state, spec, priority, idempotency_key, run_id, stage_name, repeat_of,
           repeat_index, schedule_id, not_before, concurrency_key, concurrency_limit, followup_pending)
         SELECT id, 'pending', spec, priority, idempotency_key, run_id, stage_name, repeat_of,
           repeat_index, schedule_id, not_before, concurrency_key, concurrency_limit, followup_pending FROM input
         ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING *
       )
       SELECT ${JOB_COLUMNS_BUT_SPEC} FROM j`,
      JSON.stringify(input),
    );
    // The spec is the one just written: not read back (parsing it again cost more than the insert).
    const specs = new Map<string, object>(input.map((i) => [i.id, i.spec]));
    const byId = new Map(inserted.map((r) => [r.id, jobRow({ ...r, spec: specs.get(r.id) })]));
    const missingKeys = input.filter((i) => !byId.has(i.id)).map((i) => i.idempotency_key!);
    const existing = new Map<string, JobRow>();
    if (missingKeys.length > 0) {
      for (const r of await this.query<JobRow>(
        `SELECT ${JOB_COLUMNS} FROM "scheduler"."jobs" j WHERE j.idempotency_key IS NOT NULL AND j.idempotency_key IN (SELECT jsonb_array_elements_text($1::jsonb))`,
        JSON.stringify(missingKeys),
      )) {
        existing.set(r.idempotencyKey!, jobRow(r));
      }
    }
    return input.map((i) => {
      const created = byId.get(i.id);
      if (created) return { job: created, created: true };
      const found = existing.get(i.idempotency_key!);
      if (!found) throw new Error(`job with idempotency key ${i.idempotency_key} neither inserted nor found`);
      return { job: found, created: false };
    });
  }

  async get(id: string): Promise<JobRow | null> {
    return (await this.getMany([id]))[0] ?? null;
  }

  /** The jobs of these ids that exist, in no particular order. */
  async getMany(ids: readonly string[]): Promise<JobRow[]> {
    if (ids.length === 0) return [];
    const rows = await this.query<JobRow>(
      `SELECT ${JOB_COLUMNS} FROM "scheduler"."jobs" j WHERE j.id IN (SELECT t.id::uuid FROM jsonb_array_elements_text($1::jsonb) AS t(id))`,
      JSON.stringify(ids),
    );
    return rows.map(jobRow);
  }

  /** Newest first, after the job `afterId` when given; only the jobs `ids` when given. */
  async list(opts: { state?: string; limit: number; afterId?: string; ids?: readonly string[] }): Promise<JobRow[]> {
    return (await newestFirst<JobRow>(this.db, `"scheduler"."jobs"`, "j", JOB_COLUMNS, opts)).map(jobRow);
  }

  /** Each job's latest attempt (the highest number), by job id; jobs never placed have none. */
  async latestAttempts(jobIds: readonly string[]): Promise<Map<string, AttemptRow>> {
    if (jobIds.length === 0) return new Map();
    // DISTINCT ON with (job_id, number DESC) reads one row per job from the (job_id, number) unique index.
    const rows = await this.query<AttemptRow>(
      `SELECT DISTINCT ON (a.job_id) ${ATTEMPT_COLUMNS} FROM "scheduler"."attempts" a
        WHERE a.job_id IN (SELECT t.id::uuid FROM jsonb_array_elements_text($1::jsonb) AS t(id))
        ORDER BY a.job_id, a.number DESC`,
      JSON.stringify([...new Set(jobIds)]),
    );
    return new Map(rows.map((r) => [r.jobId, attemptRow(r)]));
  }

  /** Every attempt of each job, oldest first, by job id in lower case (a job never placed has an empty list). */
  async attemptsOfJobs(jobIds: readonly string[]): Promise<Map<string, AttemptRow[]>> {
    const out = new Map<string, AttemptRow[]>(jobIds.map((id) => [id.toLowerCase(), []]));
    if (jobIds.length === 0) return out;
    const rows = await this.query<AttemptRow>(
      `SELECT ${ATTEMPT_COLUMNS} FROM "scheduler"."attempts" a
        WHERE a.job_id IN (SELECT t.id::uuid FROM jsonb_array_elements_text($1::jsonb) AS t(id))
        ORDER BY a.job_id, a.number`,
      JSON.stringify([...out.keys()]),
    );
    for (const r of rows) out.get(r.jobId)?.push(attemptRow(r));
    return out;
  }

  async attemptsOf(jobId: string): Promise<AttemptRow[]> {
    return (await this.attemptsOfJobs([jobId])).get(jobId.toLowerCase())!;
  }

  /** Attempts with their jobs, by attempt id; ids that are not UUIDs name none. */
  async attemptsWithJobs(attemptIds: readonly string[]): Promise<{ attempt: AttemptRow; job: JobRow }[]> {
    if (attemptIds.length === 0) return [];
    const rows = await this.query<AttemptRow & { job: JobRow }>(
      `SELECT ${ATTEMPT_COLUMNS}, (SELECT row_to_json(x) FROM (SELECT ${JOB_COLUMNS} FROM "scheduler"."jobs" j WHERE j.id = a.job_id) x) AS job
         FROM "scheduler"."attempts" a
        WHERE a.id IN (${UUIDS_OF_PARAM})`,
      JSON.stringify(attemptIds),
    );
    return rows.map(({ job, ...attempt }) => ({ attempt: attemptRow(attempt as AttemptRow), job: jobRow(job) }));
  }

  /**
   * What job events are decided on (lifecycle.ts), by attempt id: the
   * attempt's and its job's few columns that matter, and the job's retry
   * policy. Every event of every job reads these, so nothing else is read.
   */
  async eventRows(attemptIds: readonly string[]): Promise<EventRow[]> {
    if (attemptIds.length === 0) return [];
    const rows = await this.query<EventRow["attempt"] & Omit<EventRow["job"], "id" | "state"> & { jobId: string; jobState: string }>(
      `SELECT a.id::text AS id, a.number, a.agent_id AS "agentId", a.state, a.reason, a.started_at AS "startedAt",
              j.id::text AS "jobId", j.state AS "jobState", j.current_attempt_id::text AS "currentAttemptId",
              j.cancel_requested_at AS "cancelRequestedAt", j.end_reason AS "endReason", j.failure_count AS "failureCount",
              j.lost_count AS "lostCount", j.concurrency_key AS "concurrencyKey", j.spec -> 'retry' AS retry
         FROM "scheduler"."attempts" a JOIN "scheduler"."jobs" j ON j.id = a.job_id
        WHERE a.id IN (${UUIDS_OF_PARAM})`,
      JSON.stringify(attemptIds),
    );
    return rows.map((row) => withDates(row, ["startedAt", "cancelRequestedAt"])).map((r) => ({
      attempt: { id: r.id, number: r.number, agentId: r.agentId, state: r.state, reason: r.reason, startedAt: r.startedAt },
      job: {
        id: r.jobId,
        state: r.jobState,
        currentAttemptId: r.currentAttemptId,
        cancelRequestedAt: r.cancelRequestedAt,
        endReason: r.endReason,
        failureCount: r.failureCount,
        lostCount: r.lostCount,
        concurrencyKey: r.concurrencyKey,
        retry: r.retry,
      },
    }));
  }

  /**
   * Claims up to `limit` placeable pending jobs (priority, then age) for
   * `claimMs`: they become offered. SKIP LOCKED: replicas claiming at once
   * get different jobs.
   */
  async claim(limit: number, claimMs: number): Promise<ClaimedJob[]> {
    // Keyed jobs first: their slots bound how many there can be, so they
    // cannot crowd out the rest, and the rest cannot starve them. Most
    // claims find no keyed job waiting, and one statement both looks and
    // claims the rest (a round trip less on every job's way to an agent);
    // when keyed jobs wait it claims nothing, and the keyed claim goes first.
    let keyed: JobRow[] = [];
    let rows = await this.claimUnkeyed(limit, claimMs, true);
    if (rows === "keyed jobs wait") {
      keyed = await this.claimKeyed(limit, claimMs);
      rows = limit - keyed.length <= 0 ? [] : ((await this.claimUnkeyed(limit - keyed.length, claimMs, false)) as JobRow[]);
    }
    const jobs = [...keyed, ...rows].sort((a, b) => b.priority - a.priority || a.createdAt.getTime() - b.createdAt.getTime());
    const retried = jobs.filter((j) => j.attemptCount > 0).map((j) => j.id);
    const previous = new Map<string, string[]>();
    if (retried.length > 0) {
      const attempts = await this.query<{ jobId: string; agentId: string }>(
        `SELECT job_id::text AS "jobId", agent_id AS "agentId" FROM "scheduler"."attempts"
          WHERE job_id::text IN (SELECT jsonb_array_elements_text($1::jsonb)) ORDER BY number`,
        JSON.stringify(retried),
      );
      for (const a of attempts) previous.set(a.jobId, [...(previous.get(a.jobId) ?? []), a.agentId]);
    }
    const siblings = await this.siblingsOf(jobs);
    return jobs.map((job) => {
      const live = siblings.get(deploymentOf(job) ?? "") ?? [];
      return { job, previousAgentIds: previous.get(job.id) ?? [], siblingAgentIds: live.map((s) => s.agentId), siblingJobIds: live.map((s) => s.jobId) };
    });
  }

  /**
   * Claims up to `limit` placeable pending jobs without a concurrency key.
   * `unlessKeyedWait`: claims none, and says so, when a job with a key is
   * placeable (it is to be claimed first), in the same statement.
   */
  private async claimUnkeyed(limit: number, claimMs: number, unlessKeyedWait: boolean): Promise<JobRow[] | "keyed jobs wait"> {
    const rows = await this.query<JobRow & { keyedWaiting: boolean }>(
      `WITH keyed AS (
         SELECT $3::boolean AND EXISTS (
           SELECT 1 FROM "scheduler"."jobs"
            WHERE state = 'pending' AND concurrency_key IS NOT NULL AND (not_before IS NULL OR not_before <= now())
         ) AS waiting -- jobs_pending_concurrency_key (a partial index) answers this without a scan
       ), picked AS (
         SELECT id FROM "scheduler"."jobs"
          WHERE state = 'pending' AND (not_before IS NULL OR not_before <= now()) AND concurrency_key IS NULL
            AND NOT (SELECT waiting FROM keyed)
          ORDER BY priority DESC, created_at
          LIMIT $1 FOR UPDATE SKIP LOCKED
       ), j AS (
         UPDATE "scheduler"."jobs" AS jobs
            SET state = 'offered', claim_id = gen_random_uuid(), claim_expires_at = now() + $2 * interval '1 millisecond',
                updated_at = now()
           FROM picked WHERE jobs.id = picked.id
         RETURNING jobs.*
       )
       SELECT k.waiting AS "keyedWaiting", c.* FROM keyed k LEFT JOIN (SELECT ${JOB_COLUMNS} FROM j) c ON true
        ORDER BY c.priority DESC, c."createdAt"`,
      limit,
      claimMs,
      unlessKeyedWait,
    );
    // One row even when nothing was claimed (the flag's), with the job's columns null.
    if (rows[0]?.keyedWaiting) return "keyed jobs wait";
    return rows.filter((r) => r.id !== null).map(({ keyedWaiting: _, ...r }) => jobRow(r));
  }

  /**
   * For the deployments of the service replicas among `jobs`: the agents
   * their live (assigned or running) replicas hold, one entry per replica
   * with its job, by deployment name. One query, answered by
   * jobs_live_service_deployment.
   */
  private async siblingsOf(jobs: readonly JobRow[]): Promise<Map<string, { jobId: string; agentId: string }[]>> {
    const names = [...new Set(jobs.map(deploymentOf).filter((d): d is string => d !== undefined))];
    const out = new Map<string, { jobId: string; agentId: string }[]>();
    if (names.length === 0) return out;
    const rows = await this.query<{ deployment: string; jobId: string; agentId: string }>(
      `SELECT j.spec -> 'service' ->> 'deployment' AS deployment, j.id::text AS "jobId", a.agent_id AS "agentId"
         FROM "scheduler"."jobs" j JOIN "scheduler"."attempts" a ON a.id = j.current_attempt_id
        WHERE j.state IN ('assigned', 'running') AND j.spec -> 'service' ->> 'deployment' IS NOT NULL
          AND j.spec -> 'service' ->> 'deployment' IN (SELECT jsonb_array_elements_text($1::jsonb))`,
      JSON.stringify(names),
    );
    for (const r of rows) {
      const live = out.get(r.deployment);
      if (live) live.push({ jobId: r.jobId, agentId: r.agentId });
      else out.set(r.deployment, [{ jobId: r.jobId, agentId: r.agentId }]);
    }
    return out;
  }

  /**
   * Claims placeable jobs that have a concurrency key, as many per key as
   * it has free slots: a key's slots are held by its jobs that are offered,
   * assigned or running, and each job counts against its own limit. One
   * transaction takes a transaction-scoped advisory lock per key, in key
   * order (no deadlock between replicas), so two replicas cannot both see
   * the last free slot; the statement after the locks reads the counts
   * afresh (READ COMMITTED), including what the previous holder committed.
   * claim() calls it only when its first statement saw a keyed job waiting.
   */
  private async claimKeyed(limit: number, claimMs: number): Promise<JobRow[]> {
    const keys = await this.query<{ key: string }>(
      `SELECT DISTINCT concurrency_key AS key FROM "scheduler"."jobs"
        WHERE state = 'pending' AND concurrency_key IS NOT NULL AND (not_before IS NULL OR not_before <= now())
        LIMIT 100`, // jobs_pending_concurrency_key (a partial index) answers this without a scan
    );
    if (keys.length === 0) return [];
    const sorted = JSON.stringify(keys.map((k) => k.key).sort());
    const rows = await this.db.$transaction(async (tx) => {
      // In the array's order, which is sorted.
      await tx.$queryRawUnsafe(
        `SELECT count(pg_advisory_xact_lock(hashtext('drover.scheduler.concurrency:' || k)))::int AS n FROM jsonb_array_elements_text($1::jsonb) AS t(k)`,
        sorted,
      );
      return tx.$queryRawUnsafe<JobRow[]>(
        `WITH keys AS (
           SELECT jsonb_array_elements_text($1::jsonb) AS k
         ), live AS (
           SELECT concurrency_key AS k, count(*)::int AS n FROM "scheduler"."jobs"
            WHERE concurrency_key IS NOT NULL AND concurrency_key IN (SELECT k FROM keys) AND state IN ('offered', 'assigned', 'running')
            GROUP BY concurrency_key
         ), ranked AS (
           SELECT id, priority, created_at, concurrency_limit,
                  row_number() OVER (PARTITION BY concurrency_key ORDER BY priority DESC, created_at) AS rank,
                  COALESCE((SELECT n FROM live WHERE live.k = jobs.concurrency_key), 0) AS held
             FROM "scheduler"."jobs" jobs
            WHERE state = 'pending' AND (not_before IS NULL OR not_before <= now())
              AND concurrency_key IS NOT NULL AND concurrency_key IN (SELECT k FROM keys)
         ), picked AS (
           SELECT id FROM ranked WHERE rank <= concurrency_limit - held ORDER BY priority DESC, created_at LIMIT $2
         ), j AS (
           UPDATE "scheduler"."jobs" AS jobs
              SET state = 'offered', claim_id = gen_random_uuid(), claim_expires_at = now() + $3 * interval '1 millisecond',
                  updated_at = now()
             FROM picked WHERE jobs.id = picked.id AND jobs.state = 'pending'
           RETURNING jobs.*
         )
         SELECT ${JOB_COLUMNS} FROM j`,
        sorted,
        limit,
        claimMs,
      );
    });
    return rows.map(jobRow);
  }

  /** How many jobs with each key hold a slot (offered, assigned or running). */
  async concurrencyHolders(keys: readonly string[]): Promise<Map<string, number>> {
    if (keys.length === 0) return new Map();
    const rows = await this.query<{ k: string; n: number }>(
      `SELECT concurrency_key AS k, count(*)::int AS n FROM "scheduler"."jobs"
        WHERE concurrency_key IS NOT NULL AND concurrency_key IN (SELECT jsonb_array_elements_text($1::jsonb))
          AND state IN ('offered', 'assigned', 'running')
        GROUP BY concurrency_key`,
      JSON.stringify([...new Set(keys)]),
    );
    return new Map(rows.map((r) => [r.k, Number(r.n)]));
  }

  /**
   * Settles claims with winners: each job still held by its claim becomes
   * assigned, with a new attempt under a lease of `leaseMs`. Resolves the
   * job ids that were (jobs whose claim lapsed or that were cancelled are
   * left out).
   */
  async assign(
    placements: readonly { jobId: string; claimId: string; agentId: string; auctionId: string | null; attemptId: string }[],
    leaseMs: number,
    specsFor: readonly string[] = [],
  ): Promise<Assigned[]> {
    if (placements.length === 0) return [];
    // Only what an Assignment needs comes back (RecordPlacements has most
    // specs from the claim): every column parsed costs the Scheduler's CPU.
    const rows = await this.query<Omit<Assigned, "attempt"> & { attemptId: string; agentId: string; leaseExpiresAt: Date }>(
      `WITH input AS (
         SELECT * FROM jsonb_to_recordset($1::jsonb) AS t(job_id uuid, claim_id uuid, agent_id text, auction_id uuid, attempt_id uuid)
       ), j AS (
         UPDATE "scheduler"."jobs" AS jobs
            SET state = 'assigned', attempt_count = jobs.attempt_count + 1, current_attempt_id = i.attempt_id,
                claim_id = NULL, claim_expires_at = NULL, wait_reason = NULL, waiting_for_capacity = false,
                not_before = NULL, updated_at = now()
           FROM input i
          WHERE jobs.id = i.job_id AND jobs.state = 'offered' AND jobs.claim_id = i.claim_id
         RETURNING jobs.id, jobs.attempt_count, jobs.run_id, jobs.stage_name, jobs.spec
       ), a AS (
         INSERT INTO "scheduler"."attempts" (id, job_id, number, agent_id, state, auction_id, lease_expires_at)
         SELECT i.attempt_id, j.id, j.attempt_count, i.agent_id, 'assigned', i.auction_id, now() + $2 * interval '1 millisecond'
           FROM j JOIN input i ON i.job_id = j.id
         RETURNING id, job_id, agent_id, lease_expires_at
       )
       SELECT j.id::text AS "jobId", j.run_id::text AS "runId", j.stage_name AS "stageName",
              CASE WHEN j.id::text IN (SELECT jsonb_array_elements_text($3::jsonb)) THEN j.spec END AS spec,
              a.id::text AS "attemptId", a.agent_id AS "agentId", a.lease_expires_at AS "leaseExpiresAt"
         FROM j JOIN a ON a.job_id = j.id`,
      JSON.stringify(placements.map((p) => ({ job_id: p.jobId, claim_id: p.claimId, agent_id: p.agentId, auction_id: p.auctionId, attempt_id: p.attemptId }))),
      leaseMs,
      JSON.stringify(specsFor.map((id) => id.toLowerCase())),
    );
    return rows.map((row) => withDates(row, ["leaseExpiresAt"])).map(({ attemptId, agentId, leaseExpiresAt, ...job }) => ({
      ...job,
      spec: job.spec ?? undefined,
      attempt: { id: attemptId, jobId: job.jobId, agentId, leaseExpiresAt },
    }));
  }

  /**
   * Settles claims without winners: the jobs wait for capacity, looked at
   * again after each one's retryMs at the latest. Resolves the job ids changed.
   */
  async wait(placements: readonly { jobId: string; claimId: string; reason: string; retryMs: number }[]): Promise<string[]> {
    if (placements.length === 0) return [];
    const rows = await this.query<{ id: string }>(
      `UPDATE "scheduler"."jobs" AS jobs
          SET state = 'pending', claim_id = NULL, claim_expires_at = NULL, waiting_for_capacity = true,
              wait_reason = i.reason, not_before = now() + i.retry_ms * interval '1 millisecond', updated_at = now()
         FROM jsonb_to_recordset($1::jsonb) AS i(job_id uuid, claim_id uuid, reason text, retry_ms int)
        WHERE jobs.id = i.job_id AND jobs.state = 'offered' AND jobs.claim_id = i.claim_id
       RETURNING jobs.id::text AS id`,
      JSON.stringify(placements.map((p) => ({ job_id: p.jobId, claim_id: p.claimId, reason: p.reason, retry_ms: Math.round(p.retryMs) }))),
    );
    return rows.map((r) => r.id);
  }

  /** Jobs waiting for capacity become placeable now. */
  async wake(): Promise<number> {
    return this.db.$executeRawUnsafe(
      `UPDATE "scheduler"."jobs" SET not_before = NULL, updated_at = now() WHERE state = 'pending' AND waiting_for_capacity AND not_before IS NOT NULL`,
    );
  }

  /** Claims that lapsed go back to pending. Resolves the job ids. */
  async releaseLapsedClaims(): Promise<string[]> {
    const rows = await this.query<{ id: string }>(
      `UPDATE "scheduler"."jobs" SET state = 'pending', claim_id = NULL, claim_expires_at = NULL, updated_at = now()
        WHERE state = 'offered' AND claim_expires_at < now()
       RETURNING id::text AS id`,
    );
    return rows.map((r) => r.id);
  }

  /** Attempts holding a job whose lease ended, oldest first. */
  async expiredLeases(limit: number): Promise<AttemptRow[]> {
    const rows = await this.query<AttemptRow>(
      `SELECT ${ATTEMPT_COLUMNS} FROM "scheduler"."attempts" a
        WHERE a.state IN ('assigned', 'running') AND a.lease_expires_at < now()
        ORDER BY a.lease_expires_at LIMIT $1`,
      limit,
    );
    return rows.map(attemptRow);
  }

  /** Extends the leases of running attempts still expired (so two replicas renewing is harmless). */
  async renew(attemptIds: readonly string[], leaseMs: number): Promise<number> {
    if (attemptIds.length === 0) return 0;
    return this.db.$executeRawUnsafe(
      `UPDATE "scheduler"."attempts" SET lease_expires_at = now() + $2 * interval '1 millisecond'
        WHERE id::text IN (SELECT jsonb_array_elements_text($1::jsonb)) AND state = 'running' AND lease_expires_at < now()`,
      JSON.stringify(attemptIds),
      leaseMs,
    );
  }

  /** Ends the leases of an agent's live attempts now, so the next sweep reclaims them. */
  async expireLeasesOf(agentId: string): Promise<number> {
    return this.db.$executeRawUnsafe(
      `UPDATE "scheduler"."attempts" SET lease_expires_at = now() WHERE agent_id = $1 AND state IN ('assigned', 'running') AND lease_expires_at > now()`,
      agentId,
    );
  }

  /** An agent's attempts that still hold their jobs. */
  async liveAttemptsOf(agentId: string): Promise<AttemptRow[]> {
    const rows = await this.query<AttemptRow>(
      `SELECT ${ATTEMPT_COLUMNS} FROM "scheduler"."attempts" a WHERE a.agent_id = $1 AND a.state IN ('assigned', 'running')`,
      agentId,
    );
    return rows.map(attemptRow);
  }

  /**
   * Applies attempt changes in one statement; each only if its attempt is
   * still in `fromState`, and its job change only if the attempt is still
   * the job's current one. Resolves the attempt ids changed, the job ids
   * changed, and of those the jobs it ended whose follow-up is pending.
   */
  async applyAttemptChanges(changes: readonly AttemptChange[]): Promise<{ attempts: Set<string>; jobs: Set<string>; followups: Set<string> }> {
    if (changes.length === 0) return { attempts: new Set(), jobs: new Set(), followups: new Set() };
    const input = changes.map((c) => ({
      attempt_id: c.attemptId,
      agent_id: c.agentId,
      from_state: c.fromState,
      state: c.state,
      started_at: c.startedAt?.toISOString() ?? null,
      ended_at: c.endedAt?.toISOString() ?? null,
      exit_code: c.exitCode ?? null,
      signal: c.signal ?? null,
      reason: c.reason ?? null,
      lease_ms: c.leaseMs ?? null,
      has_job: c.job !== undefined,
      job_state: c.job?.state ?? null,
      set_not_before: c.job !== undefined && "notBefore" in c.job,
      not_before: c.job?.notBefore?.toISOString() ?? null,
      set_wait_reason: c.job !== undefined && "waitReason" in c.job,
      wait_reason: c.job?.waitReason ?? null,
      end_reason: c.job?.endReason ?? null,
      ended: c.job?.ended ?? false,
      failure_inc: c.job?.failureInc ?? 0,
      lost_inc: c.job?.lostInc ?? 0,
      release_attempt: c.job?.releaseAttempt ?? false,
    }));
    const rows = await this.query<{ attempt_id: string; job_id: string | null; followup: boolean | null }>(
      `WITH input AS (
         SELECT * FROM jsonb_to_recordset($1::jsonb) AS t(
           attempt_id uuid, agent_id text, from_state text, state text, started_at timestamptz, ended_at timestamptz,
           exit_code int, signal text, reason text, lease_ms int, has_job boolean, job_state text,
           set_not_before boolean, not_before timestamptz, set_wait_reason boolean, wait_reason text,
           end_reason text, ended boolean, failure_inc int, lost_inc int, release_attempt boolean)
       ), a AS (
         UPDATE "scheduler"."attempts" AS at
            SET state = i.state,
                started_at = COALESCE(at.started_at, i.started_at),
                ended_at = COALESCE(i.ended_at, at.ended_at),
                exit_code = COALESCE(i.exit_code, at.exit_code),
                signal = COALESCE(i.signal, at.signal),
                reason = COALESCE(i.reason, at.reason),
                lease_expires_at = CASE WHEN i.lease_ms IS NULL THEN at.lease_expires_at ELSE now() + i.lease_ms * interval '1 millisecond' END
           FROM input i
          WHERE at.id = i.attempt_id AND at.agent_id = i.agent_id AND at.state = i.from_state
         RETURNING at.id, at.job_id
       ), j AS (
         UPDATE "scheduler"."jobs" AS jobs
            SET state = i.job_state,
                not_before = CASE WHEN i.set_not_before THEN i.not_before ELSE jobs.not_before END,
                wait_reason = CASE WHEN i.set_wait_reason THEN i.wait_reason ELSE jobs.wait_reason END,
                end_reason = COALESCE(i.end_reason, jobs.end_reason),
                ended_at = CASE WHEN i.ended THEN now() ELSE jobs.ended_at END,
                failure_count = jobs.failure_count + i.failure_inc,
                lost_count = jobs.lost_count + i.lost_inc,
                current_attempt_id = CASE WHEN i.release_attempt THEN NULL ELSE jobs.current_attempt_id END,
                waiting_for_capacity = false,
                updated_at = now()
           FROM a JOIN input i ON i.attempt_id = a.id
          WHERE i.has_job AND jobs.id = a.job_id AND jobs.current_attempt_id = a.id AND jobs.state IN ('assigned', 'running')
         RETURNING jobs.id, i.ended AND jobs.followup_pending AS followup
       )
       SELECT a.id::text AS attempt_id, j.id::text AS job_id, j.followup FROM a LEFT JOIN j ON j.id = a.job_id`,
      JSON.stringify(input),
    );
    return {
      attempts: new Set(rows.map((r) => r.attempt_id)),
      jobs: new Set(rows.flatMap((r) => (r.job_id ? [r.job_id] : []))),
      followups: new Set(rows.flatMap((r) => (r.job_id && r.followup ? [r.job_id] : []))),
    };
  }

  /** Records command results alone (recordReports without health). */
  recordCommands(reports: readonly CommandReport[]): Promise<Set<string>> {
    return this.recordReports(reports, []);
  }

  /**
   * Records what job events report besides a change of state, in one
   * statement for a batch, each only from the agent the attempt was
   * assigned to:
   *
   * - Command results, into the attempt's commands, whatever the attempt's
   *   state (a result is a fact about what ran, even when it arrives with or
   *   after the final event). Idempotent by index: a result already stored
   *   is kept, so one reported again (a resent event) changes nothing. Any
   *   index is kept, also past the spec's command count (a service's
   *   restarts), but only the MAX_COMMAND_RESULTS greatest: a replica
   *   crash-looping for weeks adds one result per restart, and every event
   *   rewrites the list. A result older than all of those kept is not new.
   * - Health, while the attempt is assigned or running: the report with the
   *   greatest sequence wins, in the batch and against the stored one, so
   *   a late or resent event changes nothing.
   *
   * Both are computed in the UPDATE from the row it writes, so a concurrent
   * writer's results are not lost and a concurrent newer health is not
   * overwritten. Resolves the ids of the jobs whose attempts changed.
   */
  async recordReports(commands: readonly CommandReport[], health: readonly HealthReport[]): Promise<Set<string>> {
    if (commands.length === 0 && health.length === 0) return new Set();
    // Each condition is written against "at", the row the UPDATE writes
    // (re-read under the row lock if another statement changed it first).
    const newCommands = `(i.results IS NOT NULL AND EXISTS (SELECT 1 FROM jsonb_array_elements(i.results) AS r(c)
                           WHERE NOT at.commands @> jsonb_build_array(jsonb_build_object('index', r.c->'index'))
                             AND (jsonb_array_length(at.commands) < ${MAX_COMMAND_RESULTS}
                                  OR (r.c->>'index')::int > (SELECT min((s.c->>'index')::int) FROM jsonb_array_elements(at.commands) AS s(c)))))`;
    const newHealth = `(i.health IS NOT NULL AND at.state IN ('assigned', 'running')
                         AND (at.health_sequence IS NULL OR i.sequence > at.health_sequence))`;
    const rows = await this.query<{ job_id: string }>(
      `WITH reported_commands AS (
         SELECT attempt_id, agent_id, jsonb_agg(result) AS results
           FROM jsonb_to_recordset($1::jsonb) AS t(attempt_id uuid, agent_id text, result jsonb)
          GROUP BY attempt_id, agent_id
       ), reported_health AS (
         SELECT DISTINCT ON (attempt_id, agent_id) attempt_id, agent_id, health, sequence
           FROM jsonb_to_recordset($2::jsonb) AS t(attempt_id uuid, agent_id text, health jsonb, sequence bigint)
          ORDER BY attempt_id, agent_id, sequence DESC
       ), input AS (
         SELECT COALESCE(c.attempt_id, h.attempt_id) AS attempt_id, COALESCE(c.agent_id, h.agent_id) AS agent_id,
                c.results, h.health, h.sequence
           FROM reported_commands c FULL JOIN reported_health h ON h.attempt_id = c.attempt_id AND h.agent_id = c.agent_id
       )
       UPDATE "scheduler"."attempts" AS at
          SET commands = CASE WHEN NOT ${newCommands} THEN at.commands ELSE (
                SELECT jsonb_agg(c ORDER BY (c->>'index')::int)
                  FROM (SELECT c FROM (SELECT DISTINCT ON ((c->>'index')::int) c
                                         FROM (SELECT c, 0 AS rank FROM jsonb_array_elements(at.commands) AS stored(c)
                                               UNION ALL
                                               SELECT c, 1 AS rank FROM jsonb_array_elements(i.results) AS reported(c)) AS both_
                                        ORDER BY (c->>'index')::int, rank) AS one_per_index
                         ORDER BY (c->>'index')::int DESC LIMIT ${MAX_COMMAND_RESULTS}) AS latest) END,
              health = CASE WHEN ${newHealth} THEN i.health ELSE at.health END,
              health_sequence = CASE WHEN ${newHealth} THEN i.sequence ELSE at.health_sequence END
         FROM input i
        WHERE at.id = i.attempt_id AND at.agent_id = i.agent_id AND (${newCommands} OR ${newHealth})
       RETURNING at.job_id::text AS job_id`,
      JSON.stringify(commands.map((r) => ({ attempt_id: r.attemptId, agent_id: r.agentId, result: r.result }))),
      JSON.stringify(health.map((r) => ({ attempt_id: r.attemptId, agent_id: r.agentId, health: r.health, sequence: r.sequence }))),
    );
    return new Set(rows.map((r) => r.job_id));
  }

  /** Cancels the jobs that no agent holds (pending or offered), each with its reason. Resolves the rows it cancelled. */
  async cancelUnplaced(jobs: readonly { id: string; reason: string }[]): Promise<JobRow[]> {
    if (jobs.length === 0) return [];
    const rows = await this.query<JobRow>(
      `WITH j AS (
         UPDATE "scheduler"."jobs" AS jobs
            SET state = 'cancelled', end_reason = i.reason, ended_at = now(), cancel_requested_at = now(),
                claim_id = NULL, claim_expires_at = NULL, updated_at = now()
           FROM (SELECT DISTINCT ON (id) * FROM jsonb_to_recordset($1::jsonb) AS t(id uuid, reason text)) i
          WHERE jobs.id = i.id AND jobs.state IN ('pending', 'offered')
         RETURNING jobs.*
       ) SELECT ${JOB_COLUMNS} FROM j`,
      JSON.stringify(jobs),
    );
    return rows.map(jobRow);
  }

  /** Marks the jobs held by an attempt as to be cancelled (a reason already noted stays). Resolves the rows it marked. */
  async requestCancel(jobs: readonly { id: string; reason: string }[]): Promise<JobRow[]> {
    if (jobs.length === 0) return [];
    const rows = await this.query<JobRow>(
      `WITH j AS (
         UPDATE "scheduler"."jobs" AS jobs
            SET cancel_requested_at = COALESCE(jobs.cancel_requested_at, now()), end_reason = COALESCE(jobs.end_reason, i.reason), updated_at = now()
           FROM (SELECT DISTINCT ON (id) * FROM jsonb_to_recordset($1::jsonb) AS t(id uuid, reason text)) i
          WHERE jobs.id = i.id AND jobs.state IN ('assigned', 'running')
         RETURNING jobs.*
       ) SELECT ${JOB_COLUMNS} FROM j`,
      JSON.stringify(jobs),
    );
    return rows.map(jobRow);
  }
}

/** The deployment a service replica belongs to (JobSpec.service.deployment); undefined for other jobs. */
function deploymentOf(job: JobRow): string | undefined {
  const service = (job.spec as { service?: { deployment?: unknown } } | null)?.service;
  return typeof service?.deployment === "string" && service.deployment !== "" ? service.deployment : undefined;
}
