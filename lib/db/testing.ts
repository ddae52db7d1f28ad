// Test helpers for code that needs a database of its own: a fresh
// PostgreSQL database per test file (so runs never see each other's rows)
// and a fresh embedded PGlite in a temporary directory.

import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import pg from "pg";

import { openPglite, openPostgres, type Database, type PostgresOptions } from "./database.ts";

/** A database made for one test run; drop() removes it, even with connections still open. */
export interface TestDatabase {
  /** Its name, drover_test_<random>. */
  name: string;
  /** The admin URL with the database switched to this one. */
  url: string;
  /** Drops it; safe to call twice. */
  drop(): Promise<void>;
}

/**
 * Creates an empty database next to the maintenance database at adminUrl
 * (normally requirePostgres()'s URL, which points at "postgres").
 */
export async function createTestDatabase(adminUrl: string): Promise<TestDatabase> {
  const name = `drover_test_${randomBytes(6).toString("hex")}`;
  await withAdmin(adminUrl, (admin) => admin.query(`CREATE DATABASE ${name}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  let dropped: Promise<void> | undefined;
  return {
    name,
    url: url.toString(),
    drop: () => (dropped ??= withAdmin(adminUrl, (admin) => dropDatabase(admin, name))),
  };
}

// SQLSTATE 55006: the database is being accessed by other users.
const OBJECT_IN_USE = "55006";

/**
 * Drops a database, first without FORCE for up to ~1 s while sessions are
 * still connected: a pg.Pool's end() resolves before its connections have
 * closed, and FORCE ending one under it raised "terminating connection due
 * to administrator command" on a client with no listener left (seen once in
 * integration/deploy_split.test.ts). FORCE then ends what a failed test
 * left open (PostgreSQL 13+).
 */
async function dropDatabase(admin: pg.Client, name: string): Promise<void> {
  for (let i = 0; i < 20; i++) {
    try {
      await admin.query(`DROP DATABASE IF EXISTS ${name}`);
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== OBJECT_IN_USE) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}

/** Runs fn on a short-lived connection to the maintenance database. */
export async function withAdmin<T>(adminUrl: string, fn: (admin: pg.Client) => Promise<T>): Promise<T> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.end();
  }
}

/** An embedded database in a new temporary directory; close() also deletes the directory. */
export async function openTempPglite(): Promise<Database & { dataDir: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), "drover-pglite-"));
  let db: Database;
  try {
    db = await openPglite(dataDir);
  } catch (error) {
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
  return {
    ...db,
    dataDir,
    prismaFor: db.prismaFor,
    async close() {
      try {
        await db.close();
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}

/** A new PostgreSQL database made for a test (createTestDatabase) and opened; close() also drops it. */
export async function openTempPostgres(adminUrl: string, options: PostgresOptions = {}): Promise<Database> {
  const testDb = await createTestDatabase(adminUrl);
  const db = openPostgres(testDb.url, options);
  return { ...db, close: () => db.close().finally(() => testDb.drop()) };
}
