// The schedules table, and every change to it.
//
// Firing is claimed, not locked: claimDue takes due schedules with FOR
// UPDATE SKIP LOCKED in one statement and marks them with a claim (an id and
// a lease), so replicas ticking at once take different schedules and no
// transaction stays open while jobs are submitted (PGlite has one
// connection). advance() then moves the schedule on only while the claim is
// still the one it took: should the claim have lapsed and another replica
// fired the same ticks, exactly one of the two advances lands — and the
// ticks' idempotency keys made both fire the same jobs.

import type { PrismaClient } from "../../gen/prisma/scheduler/client.ts";
import { withDates } from "./sql.ts";

/** A schedule as stored. */
export interface ScheduleRow {
  id: string;
  name: string;
  /** The ScheduleSpec, proto JSON. */
  spec: unknown;
  paused: boolean;
  nextFireAt: Date | null;
  lastFireAt: Date | null;
  lastJobId: string | null;
  lastRunId: string | null;
  fireCount: bigint;
  skipCount: bigint;
  lastSkipReason: string | null;
  claimId: string | null;
  claimExpiresAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

// Counters come back as text: int8 arrives as BigInt from pg but may not from every adapter.
const COLUMNS = `s.id::text AS id, s.name, s.spec, s.paused, s.next_fire_at AS "nextFireAt", s.last_fire_at AS "lastFireAt",
  s.last_job_id::text AS "lastJobId", s.last_run_id::text AS "lastRunId", s.fire_count::text AS "fireCount",
  s.skip_count::text AS "skipCount", s.last_skip_reason AS "lastSkipReason", s.claim_id::text AS "claimId",
  s.claim_expires_at AS "claimExpiresAt", s.created_at AS "createdAt", s.updated_at AS "updatedAt"`;

const DATES = ["nextFireAt", "lastFireAt", "claimExpiresAt", "createdAt", "updatedAt"] as const;

// Raw rows may carry timestamps as strings (PGlite) or Dates (pg).
function scheduleRow(r: Record<string, unknown>): ScheduleRow {
  withDates(r, DATES);
  r.fireCount = BigInt(r.fireCount as string);
  r.skipCount = BigInt(r.skipCount as string);
  return r as unknown as ScheduleRow;
}

function asDate(v: unknown): Date {
  return v instanceof Date ? v : new Date(v as string);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The row an id-or-name names, as a subquery on $1: a UUID is tried as an id
 * first, then as a name (names may look like UUIDs).
 */
function named(idOrName: string): string {
  return UUID.test(idOrName)
    ? `(SELECT id FROM "scheduler"."schedules" WHERE id = $1::text::uuid OR name = $1::text ORDER BY (id = $1::text::uuid) DESC LIMIT 1)`
    : `(SELECT id FROM "scheduler"."schedules" WHERE name = $1::text)`;
}

/** What a round of firing did to a schedule, written by advance(). */
export interface Advance {
  id: string;
  /** The claim the round held; nothing is written unless it still holds. */
  claimId: string;
  /** The tick it waits for next; null when the expression has none left. */
  nextFireAt: Date | null;
  /** The latest tick fired, and what it fired (a job or a run). */
  fired?: { count: number; lastTick: Date; jobId?: string; runId?: string };
  /** Ticks that fired nothing, and why. */
  skipped?: { count: number; reason: string };
}

/** Reads and writes schedules; every write after create is guarded by what it expects (paused, a claim). */
export class ScheduleStore {
  constructor(private readonly db: PrismaClient) {}

  /** The database's clock: replicas' clocks may differ, the database's is the one all ticks are judged by. */
  async now(): Promise<Date> {
    const rows = await this.db.$queryRawUnsafe<{ now: Date | string }[]>(`SELECT now() AS now`);
    return asDate(rows[0]!.now);
  }

  /** Inserts a schedule; null when the name is taken. */
  async create(s: { name: string; spec: object; paused: boolean; nextFireAt: Date | null }): Promise<ScheduleRow | null> {
    const rows = await this.db.$queryRawUnsafe<Record<string, unknown>[]>(
      `WITH s AS (
         INSERT INTO "scheduler"."schedules" (name, spec, paused, next_fire_at)
         VALUES ($1, $2::jsonb, $3, $4::timestamptz)
         ON CONFLICT (name) DO NOTHING
         RETURNING *
       ) SELECT ${COLUMNS} FROM s`,
      s.name,
      JSON.stringify(s.spec),
      s.paused,
      s.nextFireAt?.toISOString() ?? null,
    );
    return rows[0] ? scheduleRow(rows[0]) : null;
  }

  /** By id (UUID) or name. */
  async find(idOrName: string): Promise<ScheduleRow | null> {
    const rows = await this.db.$queryRawUnsafe<Record<string, unknown>[]>(
      `SELECT ${COLUMNS} FROM "scheduler"."schedules" s WHERE s.id = ${named(idOrName)}`,
      idOrName,
    );
    return rows[0] ? scheduleRow(rows[0]) : null;
  }

  /** By name, after the name `afterName` when given. */
  async list(opts: { limit: number; afterName?: string }): Promise<ScheduleRow[]> {
    const rows = await this.db.$queryRawUnsafe<Record<string, unknown>[]>(
      `SELECT ${COLUMNS} FROM "scheduler"."schedules" s WHERE $2::text IS NULL OR s.name > $2 ORDER BY s.name LIMIT $1`,
      opts.limit,
      opts.afterName ?? null,
    );
    return rows.map(scheduleRow);
  }

  /**
   * Pauses (idempotent): no next tick. A round in flight keeps its claim: it
   * still records what it fired, but cannot give the schedule a next tick.
   * Null when not found.
   */
  async pause(idOrName: string): Promise<ScheduleRow | null> {
    const rows = await this.db.$queryRawUnsafe<Record<string, unknown>[]>(
      `WITH s AS (
         UPDATE "scheduler"."schedules"
            SET paused = true, next_fire_at = NULL,
                updated_at = CASE WHEN paused THEN updated_at ELSE now() END
          WHERE id = ${named(idOrName)}
         RETURNING *
       ) SELECT ${COLUMNS} FROM s`,
      idOrName,
    );
    return rows[0] ? scheduleRow(rows[0]) : null;
  }

  /**
   * Resumes a paused schedule with its next tick; a schedule not paused is
   * returned as it is. A round still in flight from before the pause loses
   * its claim, so it cannot put back a next tick from before. Null when not found.
   */
  async resume(idOrName: string, nextFireAt: Date | null): Promise<ScheduleRow | null> {
    const rows = await this.db.$queryRawUnsafe<Record<string, unknown>[]>(
      `WITH s AS (
         UPDATE "scheduler"."schedules"
            SET paused = false, next_fire_at = $2::timestamptz, claim_id = NULL, claim_expires_at = NULL, updated_at = now()
          WHERE id = ${named(idOrName)} AND paused
         RETURNING *
       ) SELECT ${COLUMNS} FROM s`,
      idOrName,
      nextFireAt?.toISOString() ?? null,
    );
    return rows[0] ? scheduleRow(rows[0]) : this.find(idOrName);
  }

  /** Deletes; false when not found. */
  async delete(idOrName: string): Promise<boolean> {
    const n = await this.db.$executeRawUnsafe(`DELETE FROM "scheduler"."schedules" WHERE id = ${named(idOrName)}`, idOrName);
    return n > 0;
  }

  /**
   * Claims up to `limit` schedules with a tick due (not paused, no live
   * claim) for `leaseMs`, earliest first. Resolves them with their new
   * claim ids, and the database's clock at the claim.
   */
  async claimDue(limit: number, leaseMs: number): Promise<{ rows: ScheduleRow[]; now: Date }> {
    const rows = await this.db.$queryRawUnsafe<(Record<string, unknown> & { dbNow: Date | string })[]>(
      `WITH picked AS (
         SELECT id FROM "scheduler"."schedules"
          WHERE NOT paused AND next_fire_at <= now() AND (claim_expires_at IS NULL OR claim_expires_at < now())
          ORDER BY next_fire_at
          LIMIT $1 FOR UPDATE SKIP LOCKED
       ), s AS (
         UPDATE "scheduler"."schedules" AS sc
            SET claim_id = gen_random_uuid(), claim_expires_at = now() + $2 * interval '1 millisecond'
           FROM picked WHERE sc.id = picked.id
         RETURNING sc.*
       )
       SELECT ${COLUMNS}, now() AS "dbNow" FROM s ORDER BY s.next_fire_at`,
      limit,
      leaseMs,
    );
    if (rows.length === 0) return { rows: [], now: await this.now() };
    const now = asDate(rows[0]!.dbNow);
    return { rows: rows.map(({ dbNow: _, ...r }) => scheduleRow(r)), now };
  }

  /**
   * When the ticker should look next: the earliest tick of a schedule not
   * paused, or, for one claimed by a replica, when that claim lapses. With
   * the database's clock now.
   */
  async earliest(): Promise<{ at: Date | null; now: Date }> {
    const rows = await this.db.$queryRawUnsafe<{ at: Date | string | null; now: Date | string }[]>(
      `SELECT min(CASE WHEN claim_expires_at > now() THEN greatest(next_fire_at, claim_expires_at) ELSE next_fire_at END) AS at, now() AS now
         FROM "scheduler"."schedules" WHERE NOT paused AND next_fire_at IS NOT NULL`,
    );
    return { at: rows[0]!.at === null ? null : asDate(rows[0]!.at), now: asDate(rows[0]!.now) };
  }

  /**
   * Writes a round's outcome and lets go of the claim, only while the claim
   * is still the one taken; a schedule paused meanwhile keeps no next tick.
   * Resolves whether it did.
   */
  async advance(a: Advance): Promise<boolean> {
    const n = await this.db.$executeRawUnsafe(
      `UPDATE "scheduler"."schedules"
          SET next_fire_at = CASE WHEN paused THEN NULL ELSE $3::timestamptz END, claim_id = NULL, claim_expires_at = NULL,
              fire_count = fire_count + $4, last_fire_at = COALESCE($5::timestamptz, last_fire_at),
              last_job_id = COALESCE($6::uuid, last_job_id), last_run_id = COALESCE($7::uuid, last_run_id),
              skip_count = skip_count + $8, last_skip_reason = COALESCE($9, last_skip_reason), updated_at = now()
        WHERE id = $1::uuid AND claim_id = $2::uuid`,
      a.id,
      a.claimId,
      a.nextFireAt?.toISOString() ?? null,
      a.fired?.count ?? 0,
      a.fired?.lastTick.toISOString() ?? null,
      a.fired?.jobId ?? null,
      a.fired?.runId ?? null,
      a.skipped?.count ?? 0,
      a.skipped?.reason ?? null,
    );
    return n > 0;
  }

  /** Lets go of a claim after a failed round; the schedule is tried again after retryMs (by any replica). */
  async release(id: string, claimId: string, retryMs: number): Promise<void> {
    await this.db.$executeRawUnsafe(
      `UPDATE "scheduler"."schedules" SET claim_id = NULL, claim_expires_at = now() + $3 * interval '1 millisecond'
        WHERE id = $1::uuid AND claim_id = $2::uuid`,
      id,
      claimId,
      retryMs,
    );
  }
}
