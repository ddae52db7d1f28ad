// The raw SQL executor on both wirings: the same statements give the same
// rows, errors and transactions. A repeated statement runs as a named
// prepared statement (executor.ts: PreparedStatements on PGlite,
// StatementNames on node-postgres, unless told not to), so each case runs
// its statements more than once.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { requirePostgres } from "../testing/services.ts";
import type { Database } from "./database.ts";
import { MAX_PREPARED } from "./executor.ts";
import { openTempPglite, openTempPostgres } from "./testing.ts";

const adminUrl = await requirePostgres();

interface Row {
  id: number;
  name: string | null;
  doc: unknown;
  data: Uint8Array | null;
  at: Date | null;
  big: string | bigint | null;
}

/** prepares: whether the executor keeps statements prepared. */
function executorCases(open: () => Promise<Database>, prepares: boolean) {
  let db: Database;
  before(async () => {
    db = await open();
    await db.executor.exec(`CREATE TABLE ex (id int PRIMARY KEY, name text, doc jsonb, data bytea, at timestamptz, big int8)`);
  });
  after(async () => {
    await db?.close();
  });

  const insert = `INSERT INTO ex (id, name, doc, data, at, big) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *`;
  const byId = `SELECT * FROM ex WHERE id = $1`;

  it("runs a statement again and again with parameters and results of every kind, nulls included", async () => {
    const at = new Date("2026-12-05T10:00:00.123Z");
    for (let id = 1; id <= 3; id++) {
      const [row] = await db.executor.query<Row>(insert, [id, `job ${id}`, JSON.stringify({ n: id, tags: ["a"] }), Buffer.from([0, id, 255]), at, "9007199254740993"]);
      assert.equal(row!.id, id);
    }
    await db.executor.query(insert, [4, null, null, null, null, null]);
    for (let id = 1; id <= 3; id++) {
      const [row] = await db.executor.query<Row>(byId, [id]);
      assert.equal(row!.name, `job ${id}`);
      assert.deepEqual(row!.doc, { n: id, tags: ["a"] });
      assert.deepEqual([...row!.data!], [0, id, 255]);
      assert.equal(row!.at!.getTime(), at.getTime());
      assert.equal(String(row!.big), "9007199254740993");
    }
    const [empty] = await db.executor.query<Row>(byId, [4]);
    assert.deepEqual([empty!.name, empty!.doc, empty!.data, empty!.at, empty!.big], [null, null, null, null, null]);
    assert.deepEqual(await db.executor.query(byId, [404]), []);
    // No rows described: an UPDATE without RETURNING.
    assert.deepEqual(await db.executor.query(`UPDATE ex SET name = $2 WHERE id = $1`, [4, "four"]), []);
    assert.equal((await db.executor.query<Row>(byId, [4]))[0]!.name, "four");
  });

  it(prepares ? "keeps a statement prepared once, run as often as it is" : "keeps no statement prepared", async () => {
    const count = `SELECT count(*)::int AS n FROM ex WHERE id > $1`;
    for (let i = 0; i < 3; i++) await db.executor.query(count, [0]);
    const prepared = await db.executor.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_prepared_statements WHERE statement = $1`, [count]);
    assert.equal(prepared[0]!.n, prepares ? 1 : 0);
  });

  it("keeps at most MAX_PREPARED statements prepared, keeping the one run all along", async () => {
    const hot = `SELECT $1::int AS n`;
    for (let i = 0; i < MAX_PREPARED + 40; i++) {
      const [row] = await db.executor.query<{ n: number }>(`SELECT $1::int + ${i} AS n`, [1]);
      assert.equal(row!.n, 1 + i);
      await db.executor.query(hot, [i]);
    }
    const [kept] = await db.executor.query<{ n: number; hot: number }>(
      `SELECT count(*)::int AS n, count(*) FILTER (WHERE statement = $1)::int AS hot FROM pg_prepared_statements`,
      [hot],
    );
    if (prepares) {
      // PGlite closes the least recently run; node-postgres names the first MAX_PREPARED texts and runs the rest unnamed.
      assert.ok(kept!.n <= MAX_PREPARED, `${kept!.n} statements kept prepared`);
      assert.equal(kept!.hot, 1, "the statement run all along is not prepared");
    } else {
      assert.equal(kept!.n, 0);
    }
  });

  it("fails a statement with PostgreSQL's code and stays usable, for the same statement too", async () => {
    await db.executor.query(insert, [10, "ten", null, null, null, null]);
    for (let i = 0; i < 2; i++) {
      await assert.rejects(db.executor.query(insert, [10, "again", null, null, null, null]), (err: { code?: string }) => err.code === "23505");
    }
    await assert.rejects(db.executor.query(`SELECT no_such_column FROM ex WHERE id = $1`, [1]), (err: { code?: string }) => err.code === "42703");
    assert.equal((await db.executor.query<Row>(byId, [10]))[0]!.name, "ten");
  });

  it("reads a result larger than the wire buffer, multi-byte text, arrays and a repeated column name", async () => {
    const text = "é漢字🙂".repeat(25);
    const many = `SELECT g AS n, $1::text || g AS t, ARRAY[g, g + 1] AS ints, ARRAY['a', $1::text] AS texts FROM generate_series(1, $2::int) g`;
    for (const count of [3000, 2]) {
      const rows = await db.executor.query<{ n: number; t: string; ints: number[]; texts: string[] }>(many, [text, count]);
      assert.equal(rows.length, count);
      assert.deepEqual(rows[count - 1], { n: count, t: `${text}${count}`, ints: [count, count + 1], texts: ["a", text] });
    }
    // The last column of a name wins, as in node-postgres's rows.
    assert.deepEqual(await db.executor.query(`SELECT $1::int AS a, 2 AS a, NULL::text AS b`, [1]), [{ a: 2, b: null }]);
  });

  it("fails a statement that errs after sending rows, with PostgreSQL's code", async () => {
    const divide = `SELECT 10 / (g - $1::int) AS q FROM generate_series(1, 2000) g`;
    for (let i = 0; i < 2; i++) {
      await assert.rejects(db.executor.query(divide, [1500]), (err: { code?: string; message?: string }) => err.code === "22012" && /division by zero/.test(err.message!));
    }
    assert.equal((await db.executor.query(divide, [5000])).length, 2000);
  });

  it("runs statements inside a transaction, and a rollback undoes them", async () => {
    await db.executor.transaction(async (tx) => {
      await tx.query(insert, [20, "kept", null, null, null, null]);
      assert.equal((await tx.query<Row>(byId, [20]))[0]!.name, "kept");
    });
    await assert.rejects(
      db.executor.transaction(async (tx) => {
        await tx.query(insert, [21, "undone", null, null, null, null]);
        await tx.query(insert, [21, "a duplicate", null, null, null, null]);
      }),
      (err: { code?: string }) => err.code === "23505",
    );
    assert.equal((await db.executor.query<Row>(byId, [20]))[0]!.name, "kept");
    assert.deepEqual(await db.executor.query(byId, [21]), []);
  });

  it("answers a statement after a schema change altered its rows, and within a transaction after one failed", async () => {
    await db.executor.query(insert, [30, "before", null, null, null, null]);
    const select = `SELECT * FROM ex WHERE id = $1`;
    assert.equal(Object.keys((await db.executor.query<Row>(select, [30]))[0]!).length, 6);
    await db.executor.exec(`ALTER TABLE ex ADD COLUMN extra text DEFAULT 'x'`);
    const [row] = await db.executor.query<Row & { extra: string }>(select, [30]);
    assert.equal(row!.extra, "x");
    assert.equal(row!.name, "before");
    await db.executor.exec(`ALTER TABLE ex DROP COLUMN extra`);
    // In a transaction a stale plan fails the transaction (PostgreSQL cannot
    // run the statement again there), and the next one prepares it afresh.
    const inTx = `SELECT * FROM ex WHERE id = $1 AND $2::int = 1`;
    await db.executor.transaction((tx) => tx.query(inTx, [30, 1]));
    await db.executor.exec(`ALTER TABLE ex ADD COLUMN extra text DEFAULT 'y'`);
    const rerun = () => db.executor.transaction((tx) => tx.query<Row & { extra: string }>(inTx, [30, 1]));
    const first = await rerun().catch((err: { code?: string }) => err);
    // PGlite's executor prepares again and retries at once, which the aborted transaction refuses (25P02).
    if (!Array.isArray(first)) assert.ok(["0A000", "25P02"].includes(first.code!), `failed with ${first.code}`);
    assert.equal((await rerun())[0]!.extra, "y");
    await db.executor.exec(`ALTER TABLE ex DROP COLUMN extra`);
  });
}

describe("the SQL executor on the embedded database (PGlite)", () => {
  executorCases(openTempPglite, true);
});

describe("the SQL executor on PostgreSQL", () => {
  if (adminUrl === null) {
    it("needs PostgreSQL", async (t) => {
      await requirePostgres(t);
    });
    return;
  }
  // One connection, so that pg_prepared_statements (per connection) shows what the executor prepared.
  executorCases(() => openTempPostgres(adminUrl, { max: 1 }), true);
});

describe("the SQL executor on PostgreSQL, told not to prepare (DROVER_PG_PREPARE=off)", () => {
  if (adminUrl === null) {
    it("needs PostgreSQL", async (t) => {
      await requirePostgres(t);
    });
    return;
  }
  executorCases(() => openTempPostgres(adminUrl, { max: 1, prepare: false }), false);
});
