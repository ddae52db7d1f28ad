import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import fs, { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { SERVICE_NAMES } from "../config.ts";
import { requirePostgres } from "../testing/services.ts";
import { openPglite, type Database } from "./database.ts";
import { migrate } from "./migrate.ts";
import { openTempPglite, openTempPostgres } from "./testing.ts";

const adminUrl = await requirePostgres();

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

/** A process that opens PGlite on argv[1], commits a row, says so, and waits to be killed. */
const KILLED_HOLDER = `
const { PGlite } = require("@electric-sql/pglite");
(async () => {
  const db = await PGlite.create(process.argv[1]);
  await db.exec("CREATE TABLE t (id int); INSERT INTO t VALUES (7)");
  console.log("committed");
  setInterval(() => {}, 1000);
})();
`;

/** Runs KILLED_HOLDER on dir and kills it with SIGKILL once it committed: pg_control then says "in production". */
async function killedHolder(dir: string): Promise<void> {
  const child = spawn(process.execPath, ["-e", KILLED_HOLDER, dir], { cwd: process.cwd(), stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (d: Buffer) => d.toString().includes("committed") && resolve());
    child.once("exit", (code) => reject(new Error(`the holder exited (${code}) before it committed`)));
  });
  child.kill("SIGKILL");
  await exited;
}

function countFiles(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) n += e.isDirectory() ? countFiles(join(dir, e.name)) : 1;
  return n;
}

// The same script on either wiring: the generated client must behave alike.
function crudCases(open: () => Promise<Database>) {
  let db: Database;
  before(async () => {
    db = await open();
    for (const service of SERVICE_NAMES) await migrate(db.executor, service);
  });
  after(async () => {
    await db?.close();
  });

  it("the fleet client creates an ApiToken and finds it by its hash, with the database's defaults filled in", async () => {
    const fleet = db.prismaFor("fleet");
    const created = await fleet.apiToken.create({ data: { name: "laptop", role: "operator", tokenHash: sha256("secret") } });
    const found = await fleet.apiToken.findUnique({ where: { tokenHash: sha256("secret") } });
    assert.deepEqual(found, created);
    assert.match(created.id, /^[0-9a-f-]{36}$/);
    assert.ok(created.createdAt instanceof Date);
    assert.equal(created.revokedAt, null);

    await fleet.apiToken.update({ where: { id: created.id }, data: { revokedAt: new Date() } });
    assert.equal(await fleet.apiToken.count({ where: { revokedAt: null } }), 0);
    await fleet.apiToken.delete({ where: { id: created.id } });
    assert.equal(await fleet.apiToken.findUnique({ where: { id: created.id } }), null);
  });

  it("the migrations' CHECK constraints reject a role the API does not know", async () => {
    await assert.rejects(
      db.prismaFor("fleet").apiToken.create({ data: { name: "x", role: "root", tokenHash: sha256("x") } }),
      /api_tokens_role_check/,
    );
  });

  it("each service's client writes and reads its own table (Json, BigInt, Bytes, a relation)", async () => {
    const job = await db.prismaFor("scheduler").job.create({ data: { state: "pending", spec: { image: "busybox" } } });
    assert.deepEqual(job.spec, { image: "busybox" });
    assert.equal(job.priority, 0);

    const auction = await db.prismaFor("bid").auction.create({ data: { jobId: job.id, state: "open" } });
    assert.deepEqual(auction.explanation, {});

    const deployment = await db.prismaFor("deploy").deployment.create({
      data: { name: "web", currentRevision: 1, revisions: { create: { number: 1, spec: {}, specHash: sha256("{}") } } },
      include: { revisions: true },
    });
    assert.equal(deployment.revisions[0].number, 1);
    await db.prismaFor("deploy").deployment.delete({ where: { id: deployment.id } });
    assert.equal(await db.prismaFor("deploy").revision.count(), 0, "revisions go with their deployment");

    const chunk = await db.prismaFor("log").logChunk.create({
      data: { attemptId: "a1", stream: "stdout", startOffset: 2n ** 40n, endOffset: 2n ** 40n + 6n, data: Buffer.from("hello\n") },
    });
    assert.equal(chunk.startOffset, 2n ** 40n);
    assert.equal(Buffer.from(chunk.data).toString(), "hello\n");
  });

  it("an interactive transaction commits, and rolls back when its body throws", async () => {
    const scheduler = db.prismaFor("scheduler");
    await scheduler.$transaction(async (tx) => {
      await tx.job.create({ data: { state: "pending", spec: {}, idempotencyKey: "committed" } });
    });
    await assert.rejects(
      scheduler.$transaction(async (tx) => {
        await tx.job.create({ data: { state: "pending", spec: {}, idempotencyKey: "rolled-back" } });
        throw new Error("changed my mind");
      }),
      /changed my mind/,
    );
    const keys = (await scheduler.job.findMany({ where: { idempotencyKey: { not: null } } })).map((j) => j.idempotencyKey);
    assert.deepEqual(keys, ["committed"]);
  });

  it("prismaFor hands out one client per service", () => {
    assert.equal(db.prismaFor("bid"), db.prismaFor("bid"));
    assert.notEqual(db.prismaFor("bid") as unknown, db.prismaFor("log") as unknown);
  });
}

describe("a Prisma client on the embedded database (PGlite)", () => {
  crudCases(openTempPglite);
});

describe("a Prisma client on PostgreSQL", () => {
  if (adminUrl === null) {
    it("needs PostgreSQL", async (t) => {
      await requirePostgres(t);
    });
    return;
  }
  crudCases(() => openTempPostgres(adminUrl, { max: 4 }));
});

describe("openPglite", () => {
  it("refuses to open a directory that is already open in this process", async () => {
    const db = await openTempPglite();
    try {
      await assert.rejects(openPglite(db.dataDir), /already open in this process/);
    } finally {
      await db.close();
    }
  });

  // A power loss must not take a commit the caller saw: each one reaches the
  // disk through fsync (PGlite alone stops at the page cache; durableStart).
  describe("on a data directory", () => {
    /** fsync() calls on the process's files while fn runs. */
    async function fsyncsDuring(fn: () => Promise<void>): Promise<number> {
      const original = fs.fsyncSync;
      let calls = 0;
      fs.fsyncSync = (fd) => {
        calls += 1;
        original(fd);
      };
      try {
        await fn();
      } finally {
        fs.fsyncSync = original;
      }
      return calls;
    }

    for (const [name, options, flushed] of [
      ["flushes each commit to the disk", {}, true],
      ["flushes nothing with fsync: false", { fsync: false }, false],
    ] as const) {
      it(name, async () => {
        const dataDir = mkdtempSync(join(tmpdir(), "drover-pglite-fsync-"));
        const db = await openPglite(dataDir, options);
        try {
          assert.equal((await db.executor.query<{ fsync: string }>("SHOW fsync"))[0]!.fsync, flushed ? "on" : "off");
          await db.executor.query("CREATE TABLE t (id int PRIMARY KEY)");
          const calls = await fsyncsDuring(async () => {
            for (let i = 0; i < 5; i++) await db.executor.query("INSERT INTO t VALUES ($1)", [i]);
          });
          if (flushed) assert.ok(calls >= 5, `${calls} fsync() calls for 5 commits`);
          else assert.equal(calls, 0);
        } finally {
          await db.close();
          rmSync(dataDir, { recursive: true, force: true });
        }
      });
    }

    it("after a process that held it was killed, syncs the whole directory before and after recovery, and keeps its commit", async () => {
      const dataDir = mkdtempSync(join(tmpdir(), "drover-pglite-fsync-"));
      try {
        await killedHolder(dataDir);
        const files = countFiles(dataDir);
        let db: Database | undefined;
        const calls = await fsyncsDuring(async () => {
          db = await openPglite(dataDir);
        });
        try {
          assert.ok(calls >= 2 * files, `${calls} fsync() calls on opening a directory of ${files} files after a crash`);
          assert.deepEqual(await db!.executor.query("SELECT id FROM t"), [{ id: 7 }]);
        } finally {
          await db!.close();
        }
        // A clean shutdown leaves nothing to sync: the next open does not walk the directory.
        const clean = await fsyncsDuring(async () => {
          db = await openPglite(dataDir);
        });
        await db!.close();
        assert.ok(clean < files, `${clean} fsync() calls on opening a directory of ${files} files after a clean shutdown`);
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    });

    it("runs on a file system that refuses fsync on a directory, as some do (EINVAL)", async () => {
      const dataDir = mkdtempSync(join(tmpdir(), "drover-pglite-fsync-"));
      const original = fs.fsyncSync;
      let refused = 0;
      fs.fsyncSync = (fd) => {
        if (fs.fstatSync(fd).isDirectory()) {
          refused += 1;
          throw Object.assign(new Error("EINVAL: invalid argument, fsync"), { code: "EINVAL" });
        }
        original(fd);
      };
      try {
        await killedHolder(dataDir); // so that opening syncs the whole tree, directories too
        const db = await openPglite(dataDir);
        try {
          await db.executor.query("INSERT INTO t VALUES (8)");
          assert.deepEqual(await db.executor.query("SELECT id FROM t ORDER BY id"), [{ id: 7 }, { id: 8 }]);
        } finally {
          await db.close();
        }
        assert.ok(refused > 0, "no directory was synced");
      } finally {
        fs.fsyncSync = original;
        rmSync(dataDir, { recursive: true, force: true });
      }
    });

    it("keeps what it committed across a close and a reopen", async () => {
      const dataDir = mkdtempSync(join(tmpdir(), "drover-pglite-fsync-"));
      try {
        let db = await openPglite(dataDir);
        await db.executor.query("CREATE TABLE t (id int PRIMARY KEY)");
        await db.executor.query("INSERT INTO t VALUES (1), (2)");
        await db.close();
        db = await openPglite(dataDir);
        assert.deepEqual(await db.executor.query("SELECT id FROM t ORDER BY id"), [{ id: 1 }, { id: 2 }]);
        await db.close();
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    });
  });

  it("closes once however often close() is called, and no client is handed out afterwards", async () => {
    const db = await openPglite("memory://");
    await Promise.all([db.close(), db.close()]);
    assert.throws(() => db.prismaFor("fleet"), /closed/);
  });
});
