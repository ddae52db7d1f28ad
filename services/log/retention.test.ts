// Retention on both databases Drover runs on: the output of attempts idle
// past retentionDays goes, attempt, streams and chunks together; younger
// output stays; two replicas running a round at once delete each attempt
// once; a round another replica holds is skipped.

import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import pg from "pg";
import { defaultLogSettings, type LogSettings } from "../../lib/config.ts";
import { openPostgres, type Database } from "../../lib/db/database.ts";
import { migrate } from "../../lib/db/migrate.ts";
import { createTestDatabase, openTempPglite } from "../../lib/db/testing.ts";
import { createLogger } from "../../lib/logger.ts";
import { requirePostgres } from "../../lib/testing/services.ts";
import { eventually } from "../fleet/testing.ts";
import { Retention } from "./retention.ts";

const pgUrl = await requirePostgres();
const logger = createLogger((process.env.DROVER_TEST_LOG_LEVEL as "debug" | undefined) ?? "silent");
const DAY = 86_400_000;

function contract(name: string, open: () => Promise<Database & { url?: string }>) {
  describe(`retention on ${name}`, () => {
    let db: Database & { url?: string };
    const now = new Date("2026-12-04T12:00:00Z");

    before(async () => {
      db = await open();
      await migrate(db.executor, "log");
    });
    after(async () => {
      await db?.close();
    });
    beforeEach(async () => {
      await db.executor.exec(`DELETE FROM "log"."log_chunks"; DELETE FROM "log"."log_streams"; DELETE FROM "log"."log_attempts";`);
    });

    function retention(settings: Partial<LogSettings> = {}): Retention {
      return new Retention({ db: db.prismaFor("log"), logger, settings: { ...defaultLogSettings(), retentionDays: 7, ...settings } });
    }

    /** Attempts last updated `ageDays` before now, each with two streams and `chunks` chunks of stdout. */
    async function attempts(prefix: string, count: number, ageDays: number, chunks = 2): Promise<string[]> {
      const ids = Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
      const at = new Date(now.getTime() - ageDays * DAY).toISOString();
      await db.executor.query(
        `INSERT INTO "log"."log_attempts" (attempt_id, job_id, agent_id, stored_bytes, created_at, updated_at)
         SELECT id, 'job-' || id, 'ag_1', $3::int * 4, $2::timestamptz, $2::timestamptz FROM jsonb_array_elements_text($1::jsonb) AS t(id)`,
        [JSON.stringify(ids), at, chunks],
      );
      await db.executor.query(
        `INSERT INTO "log"."log_streams" (attempt_id, stream, next_offset, updated_at)
         SELECT id, s, $2::int * 4, $3::timestamptz FROM jsonb_array_elements_text($1::jsonb) AS t(id), unnest(ARRAY['stdout', 'stderr']) AS s`,
        [JSON.stringify(ids), chunks, at],
      );
      await db.executor.query(
        `INSERT INTO "log"."log_chunks" (attempt_id, stream, start_offset, end_offset, data)
         SELECT id, 'stdout', n * 4, n * 4 + 4, 'abc\n'::bytea FROM jsonb_array_elements_text($1::jsonb) AS t(id), generate_series(0, $2::int - 1) AS n`,
        [JSON.stringify(ids), chunks],
      );
      return ids;
    }

    async function left(): Promise<{ attempts: string[]; streams: number; chunks: number }> {
      const rows = await db.executor.query<{ attempt_id: string }>(`SELECT attempt_id FROM "log"."log_attempts" ORDER BY attempt_id`);
      const [streams] = await db.executor.query<{ n: number }>(`SELECT count(*)::int AS n FROM "log"."log_streams"`);
      const [chunks] = await db.executor.query<{ n: number }>(`SELECT count(*)::int AS n FROM "log"."log_chunks"`);
      return { attempts: rows.map((r) => r.attempt_id), streams: streams!.n, chunks: chunks!.n };
    }

    it("deletes attempts idle longer than retentionDays with their streams and chunks, and keeps the others", async () => {
      await attempts("old", 3, 8);
      const young = await attempts("young", 2, 6);
      const deleted = await retention().runOnce(now);
      assert.deepEqual(deleted, { attempts: 3, chunks: 6 });
      assert.deepEqual(await left(), { attempts: young, streams: 4, chunks: 4 });
      assert.deepEqual(await retention().runOnce(now), { attempts: 0, chunks: 0 }, "a second round finds nothing");
      assert.deepEqual(await retention().runOnce(new Date(now.getTime() + 2 * DAY)), { attempts: 2, chunks: 4 }, "two days on, the young ones are old");
    });

    it("works through more attempts than one batch holds", async () => {
      await attempts("many", 250, 30, 1);
      assert.deepEqual(await retention().runOnce(now), { attempts: 250, chunks: 250 });
      assert.deepEqual(await left(), { attempts: [], streams: 0, chunks: 0 });
    });

    it("deletes each attempt once when two replicas run a round at the same time", async () => {
      await attempts("race", 250, 30, 1);
      const keep = await attempts("keep", 5, 1, 1);
      const [a, b] = await Promise.all([retention().runOnce(now), retention().runOnce(now)]);
      assert.equal(a.attempts + b.attempts, 250, `deleted ${a.attempts} and ${b.attempts}`);
      assert.equal(a.chunks + b.chunks, 250);
      assert.deepEqual(await left(), { attempts: keep, streams: 10, chunks: 5 });
    });

    it("runs in the background from start() until stop(), which waits for the round in progress", async () => {
      // Old by the real clock: start() rounds use the current time.
      const nowReal = Date.now();
      const ids = ["bg-0", "bg-1"];
      await db.executor.query(
        `INSERT INTO "log"."log_attempts" (attempt_id, job_id, agent_id, updated_at) SELECT id, 'j', 'ag', $2::timestamptz FROM jsonb_array_elements_text($1::jsonb) AS t(id)`,
        [JSON.stringify(ids), new Date(nowReal - 10 * DAY).toISOString()],
      );
      const r = retention({ retentionIntervalMs: 20 });
      const started = Date.now();
      r.start();
      assert.ok(Date.now() - started < 50, "start() does not wait for a round");
      try {
        await eventually(async () => ((await left()).attempts.length === 0 ? true : undefined), 5_000, "the idle attempts deleted");
      } finally {
        await r.stop();
      }
      // Stopped: nothing is deleted any more.
      await db.executor.query(`INSERT INTO "log"."log_attempts" (attempt_id, job_id, agent_id, updated_at) VALUES ('after-stop', 'j', 'ag', $1::timestamptz)`, [new Date(nowReal - 10 * DAY).toISOString()]);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.deepEqual((await left()).attempts, ["after-stop"]);
    });

    if (name === "PostgreSQL") {
      it("skips a round while another replica holds it", async () => {
        await attempts("held", 3, 30);
        // Another replica, mid-round: it holds the lock in its transaction.
        const other = new pg.Client({ connectionString: db.url });
        await other.connect();
        try {
          await other.query("BEGIN");
          const [held] = (await other.query<{ ok: boolean }>(`SELECT pg_try_advisory_xact_lock(hashtext('drover.log.retention')) AS ok`)).rows;
          assert.equal(held?.ok, true);
          assert.deepEqual(await retention().runOnce(now), { attempts: 0, chunks: 0 });
          assert.equal((await left()).attempts.length, 3, "nothing was deleted");
          await other.query("ROLLBACK");
          assert.deepEqual(await retention().runOnce(now), { attempts: 3, chunks: 6 }, "once the other replica is done, the round is ours");
        } finally {
          await other.end();
        }
      });
    }
  });
}

contract("PGlite", openTempPglite);

describe("retention on PostgreSQL", () => {
  if (pgUrl === null) {
    it("needs PostgreSQL", async (t) => {
      await requirePostgres(t);
    });
    return;
  }
  contract("PostgreSQL", async () => {
    const testDb = await createTestDatabase(pgUrl);
    const db = openPostgres(testDb.url, { max: 8 });
    return { ...db, url: testDb.url, close: () => db.close().finally(() => testDb.drop()) };
  });
});
