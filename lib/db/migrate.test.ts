import assert from "node:assert/strict";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import pg from "pg";

import { SERVICE_NAMES, type ServiceName } from "../config.ts";
import { requirePostgres } from "../testing/services.ts";
import { openPglite, openPostgres, type Database } from "./database.ts";
import {
  MigrationChecksumError,
  migrate,
  migrationsDirOf,
  pgExecutor,
  readMigrations,
  type SqlExecutor,
} from "./migrate.ts";
import { serviceRoleSql } from "./roles.ts";
import { createTestDatabase, withAdmin, type TestDatabase } from "./testing.ts";

const adminUrl = await requirePostgres();

// What every service's migrations folder holds, to compare with what the
// database recorded.
const onDisk = Object.fromEntries(SERVICE_NAMES.map((s) => [s, readMigrations(migrationsDirOf(s))])) as Record<
  ServiceName,
  ReturnType<typeof readMigrations>
>;

async function migrateAll(db: SqlExecutor): Promise<Record<ServiceName, string[]>> {
  const applied = {} as Record<ServiceName, string[]>;
  for (const service of SERVICE_NAMES) applied[service] = (await migrate(db, service)).applied;
  return applied;
}

async function recorded(db: SqlExecutor, service: ServiceName) {
  return db.query<{ migration_name: string; checksum: string; applied_steps_count: number }>(
    `SELECT migration_name, checksum, applied_steps_count FROM "${service}"."_prisma_migrations"
      WHERE finished_at IS NOT NULL ORDER BY migration_name`,
  );
}

async function schemasIn(db: SqlExecutor): Promise<string[]> {
  const rows = await db.query<{ nspname: string }>(
    "SELECT nspname FROM pg_namespace WHERE nspname = ANY($1::text[]) ORDER BY nspname",
    [SERVICE_NAMES],
  );
  return rows.map((r) => r.nspname);
}

// A migrations folder of our own, for the cases that need to break one;
// starts as a copy of base when given.
function tempMigrations(files: Record<string, string>, base?: string): string {
  const dir = mkdtempSync(join(tmpdir(), "drover-migrations-"));
  if (base) cpSync(base, dir, { recursive: true });
  for (const [name, sql] of Object.entries(files)) {
    mkdirSync(join(dir, name));
    writeFileSync(join(dir, name, "migration.sql"), sql);
  }
  return dir;
}

describe("migrate on PostgreSQL", () => {
  if (adminUrl === null) {
    it("needs PostgreSQL", async (t) => {
      await requirePostgres(t);
    });
    return;
  }
  let testDb: TestDatabase;
  let db: Database;
  before(async () => {
    testDb = await createTestDatabase(adminUrl);
    db = openPostgres(testDb.url, { max: 4 });
  });
  after(async () => {
    await db?.close();
    await testDb?.drop();
  });

  it("applies every service's migrations to an empty database and creates the five schemas", async () => {
    const applied = await migrateAll(db.executor);
    for (const service of SERVICE_NAMES) {
      assert.deepEqual(applied[service], onDisk[service].map((m) => m.name), service);
      assert.deepEqual(
        await recorded(db.executor, service),
        onDisk[service].map((m) => ({ migration_name: m.name, checksum: m.checksum, applied_steps_count: 1 })),
      );
    }
    assert.deepEqual(await schemasIn(db.executor), [...SERVICE_NAMES].sort());
  });

  it("applies nothing when run a second time", async () => {
    for (const service of SERVICE_NAMES) {
      const report = await migrate(db.executor, service);
      assert.deepEqual(report, { applied: [], alreadyApplied: onDisk[service].map((m) => m.name) });
      assert.equal((await recorded(db.executor, service)).length, onDisk[service].length);
    }
  });

  it("refuses a migration whose file changed after it was applied, naming it", async () => {
    const [first] = onDisk.fleet;
    const dir = tempMigrations({ [first.name]: first.sql + "\n-- an edit after the fact\n" });
    try {
      await assert.rejects(migrate(db.executor, "fleet", dir), (error: unknown) => {
        assert.ok(error instanceof MigrationChecksumError);
        assert.match(error.message, new RegExp(`migration ${first.name} of schema "fleet" was changed`));
        return true;
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("applies a folder's migrations in name order and rolls back the one that fails, recording only the others", async () => {
    // A throwaway database: this case leaves a half-migrated schema behind.
    const scratch = await createTestDatabase(adminUrl);
    const client = new pg.Client({ connectionString: scratch.url });
    const dir = tempMigrations({
      "20260101000002_second": `CREATE TABLE "bid"."second" (id int); INSERT INTO "bid"."first" VALUES (2);`,
      "20260101000001_first": `CREATE TABLE "bid"."first" (id int); INSERT INTO "bid"."first" VALUES (1);`,
      "20260101000003_broken": `CREATE TABLE "bid"."third" (id int); SELECT no_such_function();`,
    });
    try {
      await client.connect();
      const executor = pgExecutor(client);
      await assert.rejects(migrate(executor, "bid", dir), /migration 20260101000003_broken of schema "bid" failed/);
      assert.deepEqual(
        (await recorded(executor, "bid")).map((r) => r.migration_name),
        ["20260101000001_first", "20260101000002_second"],
      );
      assert.deepEqual(await executor.query(`SELECT id FROM "bid"."first" ORDER BY id`), [{ id: 1 }, { id: 2 }]);
      assert.deepEqual(await executor.query(`SELECT to_regclass('"bid"."third"') AS t`), [{ t: null }]);
      // The lock was released despite the failure: a fixed folder goes on.
      writeFileSync(join(dir, "20260101000003_broken", "migration.sql"), `CREATE TABLE "bid"."third" (id int);`);
      assert.deepEqual((await migrate(executor, "bid", dir)).applied, ["20260101000003_broken"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await client.end().catch(() => {});
      await scratch.drop();
    }
  });

  it("lets two migrators racing on the same empty database both succeed, applying each migration once", async () => {
    for (let round = 0; round < 4; round++) {
      const raced = await createTestDatabase(adminUrl);
      const clients = [new pg.Client(raced.url), new pg.Client(raced.url)];
      try {
        await Promise.all(clients.map((c) => c.connect()));
        // Each migrator is a replica starting up: every service at once, on
        // its own connection.
        const reports = await Promise.all(
          clients.map((client) => {
            const executor = pgExecutor(client);
            return Promise.all(SERVICE_NAMES.map((service) => migrate(executor, service)));
          }),
        );
        const executor = pgExecutor(clients[0]);
        for (const [i, service] of SERVICE_NAMES.entries()) {
          const appliedByEither = [...reports[0][i].applied, ...reports[1][i].applied].sort();
          assert.deepEqual(appliedByEither, onDisk[service].map((m) => m.name), `round ${round}, ${service}`);
          assert.equal((await recorded(executor, service)).length, onDisk[service].length);
        }
      } finally {
        await Promise.all(clients.map((c) => c.end().catch(() => {})));
        await raced.drop();
      }
    }
  });

  it("gives a service role made by serviceRoleSql its own schema to migrate and use, and permission denied on another's", async () => {
    const scratch = await createTestDatabase(adminUrl);
    const roles = { fleet: `${scratch.name}_fleet`, scheduler: `${scratch.name}_scheduler`, bid: `${scratch.name}_bid` };
    const password = "test-password";
    const asRole = (role: string) => {
      const url = new URL(scratch.url);
      url.username = role;
      url.password = password;
      return openPostgres(url.toString(), { max: 1 });
    };
    let fleet: Database | undefined;
    let scheduler: Database | undefined;
    let bid: Database | undefined;
    const admin = new pg.Client({ connectionString: scratch.url });
    try {
      await admin.connect();
      // bid was migrated by an administrator before roles existed: its
      // role must take over the tables already there.
      await migrate(pgExecutor(admin), "bid");
      // As the README says: one script per service, run by an administrator.
      for (const service of ["fleet", "scheduler", "bid"] as const) {
        await admin.query(serviceRoleSql(service, roles[service], password));
      }
      // And the README's once-per-database part.
      await admin.query(`REVOKE ALL ON DATABASE ${scratch.name} FROM PUBLIC`);
      await admin.query(`GRANT CONNECT ON DATABASE ${scratch.name} TO ${Object.values(roles).join(", ")}`);
      await admin.query(`REVOKE CREATE ON SCHEMA public FROM PUBLIC`);

      fleet = asRole(roles.fleet);
      scheduler = asRole(roles.scheduler);
      assert.deepEqual((await migrate(fleet.executor, "fleet")).applied, onDisk.fleet.map((m) => m.name));
      assert.deepEqual((await migrate(scheduler.executor, "scheduler")).applied, onDisk.scheduler.map((m) => m.name));

      const token = await fleet.prismaFor("fleet").apiToken.create({
        data: { name: "ci", role: "agent", tokenHash: "0".repeat(64) },
      });
      assert.equal((await fleet.prismaFor("fleet").apiToken.findUnique({ where: { id: token.id } }))?.name, "ci");
      await assert.rejects(fleet.executor.query(`SELECT * FROM scheduler.jobs`), /permission denied for schema scheduler/);
      await assert.rejects(scheduler.executor.query(`SELECT * FROM fleet.api_tokens`), /permission denied for schema fleet/);
      // Unqualified names resolve to the role's own schema.
      assert.deepEqual(await fleet.executor.query(`SELECT count(*)::int AS n FROM api_tokens`), [{ n: 1 }]);
      bid = asRole(roles.bid);
      assert.deepEqual((await migrate(bid.executor, "bid")).applied, []);
      await bid.prismaFor("bid").auction.create({ data: { jobId: token.id, state: "open" } });
      await assert.rejects(bid.executor.query(`SELECT * FROM fleet.api_tokens`), /permission denied for schema fleet/);
      // And the role cannot make itself another schema.
      await assert.rejects(fleet.executor.query(`CREATE SCHEMA elsewhere`), /permission denied for database/);
      await assert.rejects(fleet.executor.query(`CREATE TABLE public.stray (id int)`), /permission denied for schema public/);
    } finally {
      await fleet?.close();
      await scheduler?.close();
      await bid?.close();
      await admin.end().catch(() => {});
      await scratch.drop();
      // Roles belong to the cluster, not the database: they outlive the drop.
      await withAdmin(adminUrl, async (c) => {
        for (const role of Object.values(roles)) await c.query(`DROP ROLE IF EXISTS ${role}`);
      });
    }
  });
});

describe("migrate on the embedded database (PGlite)", () => {
  let dataDir: string;
  let db: Database | undefined;
  before(() => {
    dataDir = mkdtempSync(join(tmpdir(), "drover-pglite-"));
  });
  after(async () => {
    await db?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("applies every service's migrations to an empty database and creates the five schemas", async () => {
    db = await openPglite(dataDir);
    const applied = await migrateAll(db.executor);
    for (const service of SERVICE_NAMES) {
      assert.deepEqual(applied[service], onDisk[service].map((m) => m.name), service);
      assert.equal((await recorded(db.executor, service)).length, onDisk[service].length);
    }
    assert.deepEqual(await schemasIn(db.executor), [...SERVICE_NAMES].sort());
  });

  it("applies nothing when run a second time, also after the database is reopened", async () => {
    for (const service of SERVICE_NAMES) assert.deepEqual((await migrate(db!.executor, service)).applied, []);
    await db!.close();
    db = await openPglite(dataDir);
    for (const service of SERVICE_NAMES) assert.deepEqual((await migrate(db.executor, service)).applied, []);
  });

  it("lets two migrators started together in one process apply each migration once", async () => {
    // The real log migrations (applied already) plus two new ones.
    const dir = tempMigrations(
      {
        "29990101000001_a": `CREATE TABLE "log"."race_a" (id int);`,
        "29990101000002_b": `CREATE TABLE "log"."race_b" (id int);`,
      },
      migrationsDirOf("log"),
    );
    try {
      const [a, b] = await Promise.all([migrate(db!.executor, "log", dir), migrate(db!.executor, "log", dir)]);
      assert.deepEqual([...a.applied, ...b.applied].sort(), ["29990101000001_a", "29990101000002_b"]);
      assert.equal((await recorded(db!.executor, "log")).length, onDisk.log.length + 2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses to go on past a migration that Prisma started and never finished, naming it", async () => {
    await db!.executor.query(
      `INSERT INTO "bid"."_prisma_migrations" (id, checksum, migration_name) VALUES ('x', 'x', '29990101000000_half_done')`,
    );
    try {
      await assert.rejects(
        migrate(db!.executor, "bid"),
        /migration 29990101000000_half_done of schema "bid" was started and never finished/,
      );
    } finally {
      await db!.executor.query(`DELETE FROM "bid"."_prisma_migrations" WHERE id = 'x'`);
    }
  });

  it("refuses a migration whose file changed after it was applied, naming it", async () => {
    const [first] = onDisk.deploy;
    const dir = tempMigrations({ [first.name]: first.sql.replace("TEXT", "VARCHAR(10)") });
    try {
      await assert.rejects(migrate(db!.executor, "deploy", dir), new RegExp(`migration ${first.name} of schema "deploy" was changed`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
