// Retention: the output of attempts idle longer than retentionDays (no
// frame stored or stream advanced since: log_attempts.updated_at) is
// deleted, attempt row, streams and chunks together.
//
// Every replica runs the loop; each round is claimed by one of them at a
// time with a transaction-scoped advisory lock (pg_try_advisory_xact_lock,
// which PGlite has too): a replica that does not get it skips the round.
// The lock is taken again by each batch's transaction, so a round is a
// series of short transactions; if two replicas interleave batches they
// still cannot both delete an attempt (its row is locked FOR UPDATE SKIP
// LOCKED, and the delete of a row already gone deletes nothing).
// An attempt that ingestion is writing to holds its row lock, so it is
// skipped this round, and ingestion has just made it young again.

import type { PrismaClient } from "../../gen/prisma/log/client.ts";
import type { LogSettings } from "../../lib/config.ts";
import type { Logger } from "../../lib/logger.ts";
import { sleep } from "../../lib/timers.ts";

/** Attempts deleted per transaction. */
const ATTEMPTS_PER_BATCH = 100;
/** The advisory lock of retention rounds (any constant that no other part of the log schema's database uses). */
const RETENTION_LOCK = "drover.log.retention";

export interface RetentionDeps {
  db: PrismaClient;
  logger: Logger;
  settings: LogSettings;
}

/** Deletes old output every retentionIntervalMs, one replica at a time; promises stop() returns only after a round in progress ends. */
export class Retention {
  private readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(private readonly deps: RetentionDeps) {}

  /** Starts the loop in the background: a first round at once, then one every interval. */
  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await this.loop;
  }

  /**
   * One round: deletes attempts not updated since `now` minus retentionDays,
   * batch by batch. Resolves what it deleted; nothing when another replica
   * holds the round.
   */
  async runOnce(now: Date = new Date()): Promise<{ attempts: number; chunks: number }> {
    const cutoff = new Date(now.getTime() - this.deps.settings.retentionDays * 86_400_000).toISOString();
    const total = { attempts: 0, chunks: 0 };
    for (;;) {
      const batch = await this.deps.db.$transaction(async (tx) => {
        const [claim] = await tx.$queryRawUnsafe<{ ok: boolean }[]>(`SELECT pg_try_advisory_xact_lock(hashtext($1)) AS ok`, RETENTION_LOCK);
        if (!claim?.ok) return null;
        const ids = await tx.$queryRawUnsafe<{ attempt_id: string }[]>(
          `SELECT attempt_id FROM "log"."log_attempts" WHERE updated_at < $1::timestamptz
            ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED`,
          cutoff,
          ATTEMPTS_PER_BATCH,
        );
        if (ids.length === 0) return { attempts: 0, chunks: 0 };
        const list = JSON.stringify(ids.map((r) => r.attempt_id));
        const chunks = await tx.$executeRawUnsafe(`DELETE FROM "log"."log_chunks" WHERE attempt_id IN (SELECT jsonb_array_elements_text($1::jsonb))`, list);
        await tx.$executeRawUnsafe(`DELETE FROM "log"."log_streams" WHERE attempt_id IN (SELECT jsonb_array_elements_text($1::jsonb))`, list);
        const attempts = await tx.$executeRawUnsafe(`DELETE FROM "log"."log_attempts" WHERE attempt_id IN (SELECT jsonb_array_elements_text($1::jsonb))`, list);
        return { attempts, chunks };
      }, { maxWait: 10_000, timeout: 120_000 });
      if (batch === null) break;
      total.attempts += batch.attempts;
      total.chunks += batch.chunks;
      if (batch.attempts < ATTEMPTS_PER_BATCH || this.stopping.signal.aborted) break;
    }
    if (total.attempts > 0) this.deps.logger.info({ ...total, cutoff }, "deleted the output of idle attempts");
    return total;
  }

  // Exits when stop() is called (after the round in progress).
  private async run(): Promise<void> {
    while (!this.stopping.signal.aborted) {
      try {
        await this.runOnce();
      } catch (err) {
        this.deps.logger.warn({ err }, "retention round failed; trying again next interval");
      }
      await sleep(this.deps.settings.retentionIntervalMs, this.stopping.signal);
    }
  }
}
