// Dev mode's embedded database has no autovacuum: PGlite runs PostgreSQL
// as a single backend, with no postmaster to start the autovacuum workers,
// and it keeps no table statistics. Every change of a job's state leaves a
// dead row version behind, and nothing cleans them up, nor tells the
// planner how big the tables grew. A long-lived embedded control plane
// then slows down as its history grows: after 20,000 jobs, submit →
// Assignment at 100 jobs/s went from 6 ms p50 to 44 ms (bench/README.md,
// scheduling, session 18).
//
// So dev mode vacuums the database itself, every DROVER_VACUUM_INTERVAL_MS
// (plain VACUUM: it removes dead rows, skips the pages that have none, and
// updates each table's size for the planner; ANALYZE over the same tables
// took ten times as long). PGlite has one connection, so a vacuum holds up
// every other statement while it runs: it goes table by table, so that
// other statements run in between (after 20,000 jobs the largest table
// took ~6 ms, the whole database in one statement 33-56 ms), and after a
// round that took d ms the next waits at least MAX_SHARE_DIVISOR × d, so
// vacuuming never takes more than a twentieth of the database's time,
// however large it gets.

import type { Logger } from "../logger.ts";
import type { SqlQueryable } from "./executor.ts";

/** The next vacuum waits at least this many times as long as the last one took. */
export const MAX_SHARE_DIVISOR = 20;

/** How long to wait before the next vacuum, after one that took `tookMs`. */
export function nextVacuumDelay(intervalMs: number, tookMs: number): number {
  return Math.max(intervalMs, Math.ceil(tookMs * MAX_SHARE_DIVISOR));
}

/** Vacuums the embedded database on a timer; promises no vacuum is running once stop() resolves. */
export class EmbeddedVacuum {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly db: SqlQueryable,
    private readonly log: Logger,
    /** Between vacuums at least, ms; 0: never. */
    private readonly intervalMs: number,
  ) {}

  start(): void {
    if (this.intervalMs > 0 && !this.stopped) this.schedule(this.intervalMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /**
   * One round: every table outside the system schemas, one VACUUM each. A
   * failure is logged, not thrown, and ends the round. Resolves how long it
   * took, ms.
   */
  private async vacuum(): Promise<number> {
    const started = performance.now();
    try {
      const tables = await this.db.query<{ name: string }>(
        `SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`,
      );
      for (const { name } of tables) {
        if (this.stopped) break;
        await this.db.exec(`VACUUM ${name}`);
      }
      this.log.debug({ ms: Math.round(performance.now() - started), tables: tables.length }, "vacuumed the embedded database");
    } catch (err) {
      if (!this.stopped) this.log.warn({ err }, "could not vacuum the embedded database; trying again later");
    }
    return performance.now() - started;
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(() => {
      this.running = this.vacuum().then((took) => {
        this.running = undefined;
        if (!this.stopped) this.schedule(nextVacuumDelay(this.intervalMs, took));
      });
    }, delayMs);
    // It must not keep a process alive that has nothing else to do.
    this.timer.unref();
  }
}
