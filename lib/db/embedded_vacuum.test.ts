// Dev mode's vacuum loop on a real embedded database (PGlite): it vacuums on
// its timer (pg_class.reltuples, which only VACUUM or ANALYZE set, goes from
// -1 to the table's rows), spaces its runs by how long the last one took,
// survives a failed run, and stops for good, also when asked to mid-run.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { createLogger } from "../logger.ts";
import { sleep } from "../timers.ts";
import type { Database } from "./database.ts";
import { EmbeddedVacuum, MAX_SHARE_DIVISOR, nextVacuumDelay } from "./embedded_vacuum.ts";
import type { SqlQueryable } from "./executor.ts";
import { openTempPglite } from "./testing.ts";

const log = createLogger("silent");

describe("nextVacuumDelay", () => {
  it("waits the interval, or MAX_SHARE_DIVISOR times the last vacuum when that is longer", () => {
    assert.equal(nextVacuumDelay(10_000, 30), 10_000);
    assert.equal(nextVacuumDelay(10_000, 800), 800 * MAX_SHARE_DIVISOR);
    assert.equal(nextVacuumDelay(10, 2.5), Math.ceil(2.5 * MAX_SHARE_DIVISOR));
  });
});

describe("EmbeddedVacuum on PGlite", () => {
  let db: Database;

  before(async () => {
    db = await openTempPglite();
  });
  after(async () => {
    await db?.close();
  });

  /** The executor, counting the vacuums run through it. */
  const counting = () => {
    const seen = { vacuums: 0 };
    const executor: SqlQueryable = {
      query: (sql, params) => db.executor.query(sql, params),
      exec: (script) => {
        if (script.startsWith("VACUUM")) seen.vacuums++;
        return db.executor.exec(script);
      },
    };
    return { executor, seen };
  };

  const reltuples = async (table: string) => (await db.executor.query<{ n: number }>(`SELECT reltuples::float8 AS n FROM pg_class WHERE relname = $1`, [table]))[0]!.n;

  it("vacuums on its timer, table by table: a table updated over and over gets its size recorded, and it stops for good", async () => {
    await db.executor.exec(`CREATE TABLE churn (id int PRIMARY KEY, state text); INSERT INTO churn SELECT g, 'pending' FROM generate_series(1, 500) g`);
    await db.executor.exec(`CREATE SCHEMA "other one"; CREATE TABLE "other one".churn2 (id int PRIMARY KEY); INSERT INTO "other one".churn2 SELECT generate_series(1, 30)`);
    for (const state of ["offered", "running", "succeeded"]) await db.executor.exec(`UPDATE churn SET state = '${state}'`);
    assert.equal(await reltuples("churn"), -1, "never vacuumed yet");
    assert.equal(await reltuples("churn2"), -1);
    const { executor, seen } = counting();
    const vacuum = new EmbeddedVacuum(executor, log, 20);
    vacuum.start();
    const deadline = Date.now() + 10_000;
    while ((await reltuples("churn")) < 0) {
      assert.ok(Date.now() < deadline, "vacuumed within 10 s");
      await sleep(10);
    }
    assert.equal(await reltuples("churn"), 500);
    assert.equal(await reltuples("churn2"), 30, "every table, in every schema, a quoted name too");
    await vacuum.stop();
    const stoppedAt = seen.vacuums;
    assert.ok(stoppedAt >= 1);
    await sleep(100);
    assert.equal(seen.vacuums, stoppedAt, "no vacuum after stop()");
  });

  it("stop() during a vacuum waits for it to end, and nothing runs afterwards", async () => {
    let runs = 0;
    let ended = 0;
    let tookMs = 0;
    let started!: () => void;
    const firstStarted = new Promise<void>((resolve) => (started = resolve));
    const slow: SqlQueryable = {
      query: (sql, params) => db.executor.query(sql, params),
      exec: async (script) => {
        const t0 = performance.now();
        runs++;
        started();
        await sleep(10);
        await db.executor.exec(script);
        ended++;
        tookMs = performance.now() - t0;
      },
    };
    const vacuum = new EmbeddedVacuum(slow, log, 5);
    vacuum.start();
    await firstStarted;
    await vacuum.stop();
    assert.equal(ended, runs, "the vacuum under way ended before stop() resolved");
    // Long enough for the next one, had stop() not stopped the loop.
    await sleep(nextVacuumDelay(5, tookMs) + 200);
    assert.equal(runs, 1, "none after stop()");
  });

  it("never runs with an interval of 0", async () => {
    const { executor, seen } = counting();
    const vacuum = new EmbeddedVacuum(executor, log, 0);
    vacuum.start();
    await sleep(100);
    await vacuum.stop();
    assert.equal(seen.vacuums, 0);
  });

  it("keeps going after a vacuum that failed", async () => {
    let calls = 0;
    const flaky: SqlQueryable = {
      query: (sql, params) => db.executor.query(sql, params),
      exec: async (script) => {
        calls++;
        if (calls === 1) throw new Error("the database is busy");
        return db.executor.exec(script);
      },
    };
    const vacuum = new EmbeddedVacuum(flaky, log, 10);
    vacuum.start();
    const deadline = Date.now() + 10_000;
    while (calls < 3) {
      assert.ok(Date.now() < deadline, "ran again after the failure");
      await sleep(10);
    }
    await vacuum.stop();
  });
});
