// A dev-mode data directory whose embedded database already exists, with
// every service's migrations applied: for tests that start dev mode but are
// not about its very first start.
//
// Creating PGlite's database (its initdb) is about half of a fresh dev-mode
// start, 2-5 s on a two-core machine, and the test suite starts dev mode a
// dozen times. So the first test process that asks builds one template under
// the system's temporary directory, named after what it depends on (the
// PGlite version, the migrations and the migrator), and every later one
// copies it (~0.1 s). Dev mode then opens its database as it does after any
// restart, finds nothing to migrate, and creates its admin token as on a
// first start, for there is none in the copy.
//
//   const dataDir = await preparedDataDir();   // then start dev mode on it
//
// integration/dev_mode.test.ts starts from an empty directory, as a new
// user does.

import { createHash, randomBytes } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { SERVICE_NAMES } from "../config.ts";
import { migrate, migrationsDirOf, readMigrations } from "../db/migrate.ts";

const ROOT = resolve(import.meta.dirname, "../..");

// One build per process at most, shared by concurrent callers.
let template: Promise<string> | undefined;

/** A new temporary directory holding a copy of the template's pgdata; the caller removes it. */
export async function preparedDataDir(prefix = "drover-dev-"): Promise<string> {
  template ??= templateDir();
  const source = await template;
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cpSync(join(source, "pgdata"), join(dir, "pgdata"), { recursive: true });
  return dir;
}

/** The template's directory, built first if no process has built it yet. */
async function templateDir(): Promise<string> {
  const final = join(tmpdir(), `drover-test-pgdata-${templateKey()}`);
  if (existsSync(join(final, "pgdata"))) return final;

  // Built aside and renamed into place, so a reader never sees half a
  // template; when two processes race, the first rename wins and the
  // loser's copy is removed.
  const building = join(tmpdir(), `drover-test-pgdata-building-${randomBytes(6).toString("hex")}`);
  try {
    // Loaded only here: the Prisma clients it brings cost every other test process start-up time.
    const { openPglite } = await import("../db/database.ts");
    const db = await openPglite(join(building, "pgdata"));
    try {
      for (const service of SERVICE_NAMES) await migrate(db.executor, service);
    } finally {
      await db.close();
    }
    try {
      renameSync(building, final);
    } catch (err) {
      if (!existsSync(join(final, "pgdata"))) throw err;
    }
  } finally {
    rmSync(building, { recursive: true, force: true });
  }
  return final;
}

/** A hash of everything the template's contents follow from. */
function templateKey(): string {
  const hash = createHash("sha256");
  hash.update(readFileSync(join(ROOT, "node_modules", "@electric-sql", "pglite", "package.json")));
  hash.update(readFileSync(join(ROOT, "lib", "db", "migrate.ts")));
  for (const service of SERVICE_NAMES) {
    for (const m of readMigrations(migrationsDirOf(service))) hash.update(`${service}/${m.name}:${m.checksum}\n`);
  }
  return hash.digest("hex").slice(0, 16);
}
