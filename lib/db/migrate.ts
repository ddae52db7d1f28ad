// The project's migrator. Prisma's own `migrate deploy` needs a native schema
// engine that cannot be downloaded on our machines, so each service applies
// its hand-written SQL migrations (prisma/<service>/migrations, in Prisma's
// folder layout) itself at start-up.
//
// Order of work, for one service:
//   1. hold one connection, and on it a Postgres advisory lock keyed by the
//      service's schema, so that replicas starting together take turns;
//   2. create the schema and its `_prisma_migrations` table if missing;
//   3. compare what is applied with what is on disk: an applied migration
//      whose file changed stops everything (its checksum no longer matches);
//   4. apply each pending migration, in name order, in its own transaction
//      together with its bookkeeping row, so it is recorded exactly when it
//      took effect.
//
// The bookkeeping table has Prisma's columns and checksums (SHA-256 hex of
// migration.sql) and lives in the service's own schema, so that `prisma
// migrate deploy` with `?schema=<service>` in its URL could take over.

import { createHash, randomUUID } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { SERVICE_NAMES, type ServiceName } from "../config.ts";
import type { SqlExecutor, SqlQueryable } from "./executor.ts";

export type { SqlExecutor, SqlQueryable } from "./executor.ts";
export { pgExecutor, pgliteExecutor } from "./executor.ts";

/** What one migrate() call found and did. */
export interface MigrationReport {
  /** Names of the migrations this call applied, in order. */
  applied: string[];
  /** Names of the migrations that were applied before this call. */
  alreadyApplied: string[];
}

/** A migration whose file no longer matches what was applied; the service must not start. */
export class MigrationChecksumError extends Error {
  constructor(
    readonly service: ServiceName,
    readonly migration: string,
  ) {
    super(
      `migration ${migration} of schema "${service}" was changed after it was applied ` +
        `(its checksum differs from the one recorded in ${service}._prisma_migrations); ` +
        `restore the file and put the change in a new migration`,
    );
    this.name = "MigrationChecksumError";
  }
}

/** The migrations folder of a service in this repository. */
export function migrationsDirOf(service: ServiceName): string {
  return fileURLToPath(new URL(`../../prisma/${service}/migrations`, import.meta.url));
}

/** A migration on disk. */
export interface Migration {
  /** Folder name, <timestamp>_<name>; sorts in the order to apply. */
  name: string;
  sql: string;
  /** SHA-256 hex of migration.sql's bytes, as Prisma computes it. */
  checksum: string;
}

/** Reads the migrations of a folder in Prisma's layout, in name order. */
export function readMigrations(migrationsDir: string): Migration[] {
  if (!existsSync(migrationsDir)) return [];
  return readdirSync(migrationsDir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && existsSync(join(migrationsDir, entry.name, "migration.sql")))
    .map((entry) => entry.name)
    .sort()
    .map((name) => {
      const bytes = readFileSync(join(migrationsDir, name, "migration.sql"));
      return { name, sql: bytes.toString("utf8"), checksum: createHash("sha256").update(bytes).digest("hex") };
    });
}

/**
 * Applies the service's pending migrations in name order, each in its own
 * transaction, under an advisory lock so concurrent callers take turns.
 * Running it again applies nothing. Throws MigrationChecksumError, before
 * applying anything, if an applied migration's file has changed.
 */
export async function migrate(
  db: SqlExecutor,
  service: ServiceName,
  migrationsDir: string = migrationsDirOf(service),
): Promise<MigrationReport> {
  if (!SERVICE_NAMES.includes(service)) throw new Error(`migrate: unknown service ${JSON.stringify(service)}`);
  const migrations = readMigrations(migrationsDir);
  const schema = quoteIdent(service);
  const lockKey = advisoryLockKey(service);

  // Session-level lock: it must outlive the per-migration transactions, and
  // it is released with the connection if this process dies mid-way.
  return db.session(async (session) => {
    await session.query("SELECT pg_advisory_lock($1::bigint)", [lockKey]);
    let failed = false;
    try {
      await ensureBookkeeping(session, service);

      const rows = await session.query<{ migration_name: string; checksum: string; finished: boolean }>(
        `SELECT migration_name, checksum, finished_at IS NOT NULL AS finished
           FROM ${schema}."_prisma_migrations" WHERE rolled_back_at IS NULL`,
      );
      // Only `prisma migrate deploy` leaves a started, unfinished row (this
      // migrator records a migration in the transaction that applies it).
      // Like Prisma, refuse until someone has looked at it.
      const unfinished = rows.find((row) => !row.finished);
      if (unfinished) {
        throw new Error(
          `migration ${unfinished.migration_name} of schema "${service}" was started and never finished; ` +
            `repair the schema, then mark it with \`prisma migrate resolve\` or delete its row in ${service}._prisma_migrations`,
        );
      }
      const applied = new Map(rows.map((row) => [row.migration_name, row.checksum]));
      // Every check before the first change, so a bad tree applies nothing.
      for (const migration of migrations) {
        const checksum = applied.get(migration.name);
        if (checksum !== undefined && checksum !== migration.checksum) {
          throw new MigrationChecksumError(service, migration.name);
        }
      }
      // Applied migrations unknown to this tree are left alone: they come
      // from a newer release, and an older replica still running must start.
      const report: MigrationReport = {
        applied: [],
        alreadyApplied: migrations.filter((m) => applied.has(m.name)).map((m) => m.name),
      };
      for (const migration of migrations) {
        if (applied.has(migration.name)) continue;
        await session.transaction((tx) => applyOne(tx, service, migration));
        report.applied.push(migration.name);
      }
      return report;
    } catch (error) {
      failed = true;
      throw error;
    } finally {
      // After a failure the unlock's own error (a dead connection, say) must
      // not hide the first one; a dead connection has dropped the lock anyway.
      const unlock = session.query("SELECT pg_advisory_unlock($1::bigint)", [lockKey]);
      await (failed ? unlock.catch(() => {}) : unlock);
    }
  });
}

async function applyOne(tx: SqlQueryable, service: ServiceName, migration: Migration): Promise<void> {
  const table = `${quoteIdent(service)}."_prisma_migrations"`;
  try {
    await tx.exec(migration.sql);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`migration ${migration.name} of schema "${service}" failed: ${message}`, { cause: error });
  }
  // Same row as Prisma writes for a finished migration; one step because
  // the whole file runs as one transaction.
  await tx.query(
    `INSERT INTO ${table}
       (id, checksum, migration_name, logs, started_at, finished_at, applied_steps_count)
     VALUES ($1, $2, $3, NULL, now(), clock_timestamp(), 1)`,
    [randomUUID(), migration.checksum, migration.name],
  );
}

// The schema is created without CREATE SCHEMA IF NOT EXISTS, which needs
// CREATE on the database even when the schema exists; a split-mode service
// role only owns its schema (prisma/README.md). The table is Prisma's own
// definition, so `prisma migrate deploy` recognises it.
async function ensureBookkeeping(db: SqlQueryable, service: ServiceName): Promise<void> {
  const [exists] = await db.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [service]);
  if (!exists) await db.exec(`CREATE SCHEMA ${quoteIdent(service)}`);
  await db.exec(`
    CREATE TABLE IF NOT EXISTS ${quoteIdent(service)}."_prisma_migrations" (
      "id"                  VARCHAR(36) PRIMARY KEY NOT NULL,
      "checksum"            VARCHAR(64) NOT NULL,
      "finished_at"         TIMESTAMPTZ,
      "migration_name"      VARCHAR(255) NOT NULL,
      "logs"                TEXT,
      "rolled_back_at"      TIMESTAMPTZ,
      "started_at"          TIMESTAMPTZ NOT NULL DEFAULT now(),
      "applied_steps_count" INTEGER NOT NULL DEFAULT 0
    )`);
}

/**
 * The advisory lock id for a schema's migrations: the first 8 bytes of a
 * SHA-256, as a signed bigint (in text, for the $1::bigint parameter).
 * Advisory locks are per database, so schemas of other databases never
 * contend.
 */
export function advisoryLockKey(schema: string): string {
  const digest = createHash("sha256").update(`drover.migrate:${schema}`).digest();
  return digest.readBigInt64BE(0).toString();
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
