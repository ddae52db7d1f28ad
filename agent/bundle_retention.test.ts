import assert from "node:assert/strict";
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, chown, mkdir, mkdtemp, readdir, rm, stat, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

import { createLogger } from "../lib/logger.ts";
import { bundleDir, closeBundle, createBundle, logFileName, markLogsShipped, markReported, MANIFEST, readManifest, writeManifest, type Manifest } from "./bundle.ts";
import { BundleRetention, retentionPlan, type BundleRetentionOptions, type StoredBundle } from "./bundle_retention.ts";
import { eventually, memoryLogger } from "./testing/fake_fleet.ts";

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
/** The tests' "now": bundles end relative to it. */
const NOW = Date.parse("2030-06-01T12:00:00Z");
const KB = 1_000;

/** A bundle to lay out on disk. */
interface BundleSpec {
  attemptId: string;
  jobId?: string;
  runId?: string;
  stageName?: string;
  /** How long before NOW the attempt ended; unset for an open (running) bundle. */
  endedAgoMs?: number;
  /** Whether Fleet confirmed the final event; default true for closed bundles. */
  reported?: boolean;
  /** Whether the Log service has the bundle's logs complete; default true for closed bundles. */
  shipped?: boolean;
  /** Size of cmd-000.stdout.log. */
  logBytes?: number;
  /** Size of a file in work/. */
  workBytes?: number;
}

/** Writes a bundle the way the agent does (bundle.ts), and returns its directory. */
async function makeBundle(stateDir: string, spec: BundleSpec): Promise<string> {
  const ids = { attemptId: spec.attemptId, jobId: spec.jobId ?? `job-${spec.attemptId}`, runId: spec.runId, stageName: spec.stageName };
  const dir = bundleDir(stateDir, ids);
  await createBundle(dir);
  await writeFile(join(dir, logFileName(0, "stdout")), Buffer.alloc(spec.logBytes ?? 10 * KB, "x"));
  await writeFile(join(dir, logFileName(0, "stderr")), "");
  if (spec.workBytes) await writeFile(join(dir, "work", "output.bin"), Buffer.alloc(spec.workBytes, "w"));
  const manifest: Manifest = {
    version: 1,
    ...ids,
    hostname: "test-host",
    driver: "process",
    spec: { commands: [["true"]] },
    assignedTime: new Date(NOW - 30 * DAY).toISOString(),
    state: "RUNNING",
    commands: [{ index: 0, argv: ["true"] }],
    closed: false,
  };
  await writeManifest(dir, manifest);
  if (spec.endedAgoMs === undefined) return dir;
  const closed = await closeBundle(dir, { ...manifest, state: "SUCCEEDED", exitCode: 0, endTime: new Date(NOW - spec.endedAgoMs).toISOString() });
  if (spec.reported ?? true) await markReported(dir, closed);
  if (spec.shipped ?? true) await markLogsShipped(dir, closed);
  return dir;
}

/** Every file's size under dir, recursively. */
async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) total += (await stat(join(e.parentPath, e.name))).size;
  return total;
}

/** Sets the mtime of dir and of everything in it. */
async function age(dir: string, mtimeMs: number): Promise<void> {
  const t = new Date(mtimeMs);
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) await utimes(join(e.parentPath, e.name), t, t);
  await utimes(dir, t, t);
}

/** Runs fn with a fresh state directory, removed afterwards whatever happens. */
async function withStateDir(fn: (stateDir: string) => Promise<void>): Promise<void> {
  const stateDir = await mkdtemp(join(os.tmpdir(), "drover-retention-"));
  try {
    await fn(stateDir);
  } finally {
    await rm(stateDir, { recursive: true, force: true });
  }
}

function retention(stateDir: string, options: Partial<BundleRetentionOptions> = {}): BundleRetention {
  return new BundleRetention({ stateDir, maxAgeMs: 7 * DAY, maxBytes: 1e12, logger: createLogger("silent"), now: () => NOW, ...options });
}

describe("retentionPlan", () => {
  const b = (dir: string, kind: StoredBundle["kind"], agoMs: number, reported = true): StoredBundle => ({ dir, bytes: 1, kind, atMs: 1_000 * DAY - agoMs, reported });
  const policy = { nowMs: 1_000 * DAY, maxAgeMs: 7 * DAY };

  it("expires closed bundles and unreadable directories older than maxAgeMs, reported or not", () => {
    const plan = retentionPlan([b("old", "closed", 8 * DAY), b("old-unreported", "closed", 8 * DAY, false), b("stale", "unreadable", 8 * DAY), b("young", "closed", DAY)], policy);
    assert.deepEqual(
      plan.expired.map((x) => x.dir),
      ["old", "old-unreported", "stale"],
    );
  });

  it("never lists open or active bundles, however old", () => {
    const plan = retentionPlan([b("open", "open", 100 * DAY), b("active", "active", 100 * DAY)], policy);
    assert.deepEqual(plan, { expired: [], bySize: [] });
  });

  it("orders the size candidates reported first, each group oldest first", () => {
    const plan = retentionPlan([b("r-2d", "closed", 2 * DAY), b("u-6d", "closed", 6 * DAY, false), b("r-5d", "closed", 5 * DAY), b("u-1d", "closed", DAY, false), b("fresh-unreadable", "unreadable", DAY)], policy);
    assert.deepEqual(
      plan.bySize.map((x) => x.dir),
      ["r-5d", "r-2d", "u-6d", "u-1d"],
    );
  });
});

describe("BundleRetention", () => {
  it("removes closed bundles that ended longer ago than maxAgeMs and keeps younger ones", () =>
    withStateDir(async (stateDir) => {
      const old = await makeBundle(stateDir, { attemptId: "a-old", endedAgoMs: 8 * DAY });
      const young = await makeBundle(stateDir, { attemptId: "a-young", endedAgoMs: 6 * DAY });
      const youngBytes = await treeBytes(young);
      const oldBytes = await treeBytes(old);

      const result = await retention(stateDir).pruneOnce();

      assert.deepEqual(result, { removed: [old], freedBytes: oldBytes, keptBytes: youngBytes });
      assert.equal(existsSync(old), false);
      assert.equal(existsSync(young), true);
    }));

  it("removes files the closed bundle made read-only (0444), since their directory is writable", () =>
    withStateDir(async (stateDir) => {
      const dir = await makeBundle(stateDir, { attemptId: "a-ro", endedAgoMs: 8 * DAY });
      assert.equal((await stat(join(dir, MANIFEST))).mode & 0o777, 0o444);
      assert.equal((await stat(join(dir, logFileName(0, "stdout")))).mode & 0o777, 0o444);

      const result = await retention(stateDir).pruneOnce();

      assert.deepEqual(result.removed, [dir]);
      assert.equal(existsSync(dir), false);
    }));

  it(
    "removes a read-only bundle, and a read-only directory a job left in work/, as an ordinary user (root ignores modes, so this runs as nobody)",
    { skip: process.getuid?.() !== 0 && "needs root to run a child as nobody; the test above covers a non-root run" },
    () =>
      withStateDir(async (stateDir) => {
        const dir = await makeBundle(stateDir, { attemptId: "a-nobody", endedAgoMs: 8 * DAY });
        const cache = join(dir, "work", "gomodcache", "pkg");
        await mkdir(cache, { recursive: true });
        await writeFile(join(cache, "mod.go"), "package pkg\n", { mode: 0o444 });
        await chmod(cache, 0o555);
        await chmod(join(dir, "work", "gomodcache"), 0o555);
        for (const e of [stateDir, ...(await readdir(stateDir, { recursive: true })).map((n) => join(stateDir, n))]) await chown(e, 65534, 65534);

        // nobody may not be able to read the repository (a clone under a
        // 0700 temporary directory, as CI makes): the code it runs is bundled
        // into a directory anyone can read.
        const code = await mkdtemp(join(os.tmpdir(), "drover-retention-nobody-"));
        let child: SpawnSyncReturns<string>;
        try {
          await chmod(code, 0o755);
          const entry = join(code, "entry.ts");
          await writeFile(
            entry,
            [
              `import { BundleRetention } from ${JSON.stringify(fileURLToPath(new URL("./bundle_retention.ts", import.meta.url)))};`,
              `import { createLogger } from ${JSON.stringify(fileURLToPath(new URL("../lib/logger.ts", import.meta.url)))};`,
              `const r = new BundleRetention({ stateDir: ${JSON.stringify(stateDir)}, maxAgeMs: ${7 * DAY}, maxBytes: 1e12, logger: createLogger("silent"), now: () => ${NOW} });`,
              `console.log(JSON.stringify(await r.pruneOnce()));`,
            ].join("\n"),
          );
          await build({
            entryPoints: [entry],
            bundle: true,
            platform: "node",
            format: "esm",
            target: "node20",
            outfile: join(code, "prune.mjs"),
            logLevel: "warning",
            banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
          });
          await chmod(join(code, "prune.mjs"), 0o644);
          child = spawnSync(process.execPath, [join(code, "prune.mjs")], { uid: 65534, gid: 65534, cwd: "/", encoding: "utf8" });
        } finally {
          await rm(code, { recursive: true, force: true });
        }

        assert.equal(child.status, 0, child.stderr);
        assert.deepEqual(JSON.parse(child.stdout).removed, [dir]);
        assert.equal(existsSync(dir), false);
      }),
  );

  it("counts every file toward the total, work/ included", () =>
    withStateDir(async (stateDir) => {
      const dir = await makeBundle(stateDir, { attemptId: "a-work", endedAgoMs: DAY, workBytes: 50 * KB });
      const bytes = await treeBytes(dir);
      assert.ok(bytes > 50 * KB);

      assert.deepEqual(await retention(stateDir, { maxBytes: bytes }).pruneOnce(), { removed: [], freedBytes: 0, keptBytes: bytes });
      assert.deepEqual(await retention(stateDir, { maxBytes: bytes - 1 }).pruneOnce(), { removed: [dir], freedBytes: bytes, keptBytes: 0 });
    }));

  it("removes closed bundles oldest first while all bundles together exceed maxBytes", () =>
    withStateDir(async (stateDir) => {
      const newest = await makeBundle(stateDir, { attemptId: "a-1d", endedAgoMs: 1 * DAY, logBytes: 100 * KB });
      const oldest = await makeBundle(stateDir, { attemptId: "a-3d", endedAgoMs: 3 * DAY, logBytes: 100 * KB });
      const middle = await makeBundle(stateDir, { attemptId: "a-2d", endedAgoMs: 2 * DAY, logBytes: 100 * KB });
      const keptBytes = (await treeBytes(newest)) + (await treeBytes(middle));

      // Three bundles of a little over 100 kB against a cap of 250 kB: one has to go.
      const result = await retention(stateDir, { maxBytes: 250 * KB }).pruneOnce();

      assert.deepEqual(result.removed, [oldest]);
      assert.equal(result.keptBytes, keptBytes);

      // Under 100 kB of room: the middle one goes next, then the newest.
      assert.deepEqual((await retention(stateDir, { maxBytes: 50 * KB }).pruneOnce()).removed, [middle, newest]);
    }));

  it("never removes an open bundle or one whose attempt isActive says runs, even the oldest, past maxAgeMs and over the cap", () =>
    withStateDir(async (stateDir) => {
      const open = await makeBundle(stateDir, { attemptId: "a-open", logBytes: 200 * KB });
      await age(open, NOW - 30 * DAY);
      const active = await makeBundle(stateDir, { attemptId: "a-active", endedAgoMs: 30 * DAY, logBytes: 200 * KB });
      const closed = await makeBundle(stateDir, { attemptId: "a-closed", endedAgoMs: 1 * DAY, logBytes: 10 * KB });
      const { logger, records } = memoryLogger();

      const result = await retention(stateDir, { maxBytes: 100 * KB, isActive: (id) => id === "a-active", logger }).pruneOnce();

      assert.deepEqual(result.removed, [closed]);
      assert.equal(result.keptBytes, (await treeBytes(open)) + (await treeBytes(active)));
      assert.ok(existsSync(open) && existsSync(active));
      assert.ok(
        records.some((r) => r.level === 40 && String(r.msg).includes("over the size cap")),
        "it says the cap cannot be met",
      );
    }));

  it("removes an unreported closed bundle for size only after every reported one, though age removes it like any other", () =>
    withStateDir(async (stateDir) => {
      const unreported = await makeBundle(stateDir, { attemptId: "a-unreported", endedAgoMs: 5 * DAY, reported: false, logBytes: 100 * KB });
      const reportedOld = await makeBundle(stateDir, { attemptId: "a-reported-4d", endedAgoMs: 4 * DAY, logBytes: 100 * KB });
      const reportedNew = await makeBundle(stateDir, { attemptId: "a-reported-1d", endedAgoMs: 1 * DAY, logBytes: 100 * KB });

      // Room for two: the oldest reported one goes although the unreported one is older.
      assert.deepEqual((await retention(stateDir, { maxBytes: 250 * KB }).pruneOnce()).removed, [reportedOld]);
      // Room for none: the last reported one, then the unreported one.
      assert.deepEqual((await retention(stateDir, { maxBytes: 0 }).pruneOnce()).removed, [reportedNew, unreported]);

      const expired = await makeBundle(stateDir, { attemptId: "a-unreported-old", endedAgoMs: 8 * DAY, reported: false });
      assert.deepEqual((await retention(stateDir).pruneOnce()).removed, [expired]);
    }));

  it("keeps a closed bundle whose logs are not shipped whatever its age, and removes it for size only after every other one", () =>
    withStateDir(async (stateDir) => {
      const unshipped = await makeBundle(stateDir, { attemptId: "a-unshipped", endedAgoMs: 30 * DAY, shipped: false, logBytes: 100 * KB });
      const unreported = await makeBundle(stateDir, { attemptId: "a-unreported", endedAgoMs: 2 * DAY, reported: false, logBytes: 100 * KB });
      const reported = await makeBundle(stateDir, { attemptId: "a-reported", endedAgoMs: 1 * DAY, logBytes: 100 * KB });

      // Thirty days old, far past maxAgeMs: kept, since its output is not stored anywhere else yet.
      assert.deepEqual((await retention(stateDir).pruneOnce()).removed, []);
      // Over the cap: the reported one, then the unreported one, and the unshipped one last.
      assert.deepEqual((await retention(stateDir, { maxBytes: 150 * KB }).pruneOnce()).removed, [reported, unreported]);
      assert.equal(existsSync(unshipped), true);
      assert.deepEqual((await retention(stateDir, { maxBytes: 0 }).pruneOnce()).removed, [unshipped]);
    }));

  it("sees a bundle's logs shipped once the shipper marked it, and the reported mark survives the shipped one", () =>
    withStateDir(async (stateDir) => {
      const dir = await makeBundle(stateDir, { attemptId: "a-1", endedAgoMs: 30 * DAY, reported: false, shipped: false });
      const closed = (await readManifest(dir))!;
      // Both marks at once, as JobHandler and LogShipper may set them: neither undoes the other.
      await Promise.all([markReported(dir, closed), markLogsShipped(dir, closed)]);
      const marked = (await readManifest(dir))!;
      assert.equal(marked.reported, true);
      assert.equal(marked.logsShipped, true);
      assert.deepEqual((await retention(stateDir).pruneOnce()).removed, [dir]);
    }));

  it("removes a directory without a manifest once nothing in it changed for maxAgeMs, keeps a fresh one, and logs the removal", () =>
    withStateDir(async (stateDir) => {
      const stale = join(stateDir, "runs", "job-crashed", "job-crashed", "a-crashed");
      await createBundle(stale);
      await writeFile(join(stale, logFileName(0, "stdout")), "started\n");
      await age(stale, NOW - 8 * DAY);
      const fresh = join(stateDir, "runs", "job-new", "job-new", "a-new");
      await createBundle(fresh);
      await age(fresh, NOW - 1 * MINUTE);
      const corrupt = await makeBundle(stateDir, { attemptId: "a-corrupt", endedAgoMs: 1 * DAY });
      await chmod(join(corrupt, MANIFEST), 0o644);
      await writeFile(join(corrupt, MANIFEST), "{ half a manifest");
      await age(corrupt, NOW - 2 * DAY);
      const { logger, records } = memoryLogger();

      const result = await retention(stateDir, { logger }).pruneOnce();

      assert.deepEqual(result.removed, [stale]);
      assert.ok(existsSync(fresh) && existsSync(corrupt));
      assert.ok(records.some((r) => r.level === 40 && r.dir === stale && String(r.msg).includes("without a readable manifest")));
    }));

  it("removes the parents a removal leaves empty, keeps those with other bundles, and never removes runs/", () =>
    withStateDir(async (stateDir) => {
      const onlyInRun = await makeBundle(stateDir, { attemptId: "a-1", runId: "run-1", stageName: "build", endedAgoMs: 8 * DAY });
      const firstOfTwo = await makeBundle(stateDir, { attemptId: "a-2", runId: "run-2", stageName: "test", endedAgoMs: 8 * DAY });
      const secondOfTwo = await makeBundle(stateDir, { attemptId: "a-3", runId: "run-2", stageName: "test", endedAgoMs: 1 * DAY });
      const runs = join(stateDir, "runs");

      await retention(stateDir).pruneOnce();

      assert.equal(existsSync(onlyInRun), false);
      assert.equal(existsSync(join(runs, "run-1")), false, "run-1/build/ and run-1/ went with their last bundle");
      assert.equal(existsSync(firstOfTwo), false);
      assert.ok(existsSync(secondOfTwo));

      await retention(stateDir, { maxBytes: 0 }).pruneOnce();

      assert.deepEqual(await readdir(runs), []);
    }));

  it("runs concurrent pruneOnce calls as one round: nothing is removed twice and none of them throws", () =>
    withStateDir(async (stateDir) => {
      const dirs = await Promise.all(["a-1", "a-2", "a-3"].map((attemptId) => makeBundle(stateDir, { attemptId, endedAgoMs: 8 * DAY })));
      const r = retention(stateDir);

      const results = await Promise.all([r.pruneOnce(), r.pruneOnce(), r.pruneOnce()]);

      assert.deepEqual([...results[0].removed].sort(), [...dirs].sort());
      for (const result of results) assert.deepEqual(result, results[0]);
      assert.deepEqual(await r.pruneOnce(), { removed: [], freedBytes: 0, keptBytes: 0 });
    }));

  it("logs one info line per round that removed something, with the count, freed and kept bytes, and none otherwise", () =>
    withStateDir(async (stateDir) => {
      const old = await makeBundle(stateDir, { attemptId: "a-old", endedAgoMs: 8 * DAY });
      const young = await makeBundle(stateDir, { attemptId: "a-young", endedAgoMs: 1 * DAY });
      const [oldBytes, youngBytes] = [await treeBytes(old), await treeBytes(young)];
      const { logger, records } = memoryLogger();
      const r = retention(stateDir, { logger });

      await r.pruneOnce();
      await r.pruneOnce();

      const info = records.filter((x) => x.level === 30);
      assert.equal(info.length, 1);
      assert.equal(info[0].component, "bundle_retention");
      assert.deepEqual([info[0].removed, info[0].freedBytes, info[0].keptBytes], [1, oldBytes, youngBytes]);
    }));

  it("prunes soon after start() and again every interval, and stops after stop()", () =>
    withStateDir(async (stateDir) => {
      let rounds = 0;
      const r = retention(stateDir, {
        intervalMs: 20,
        now: () => {
          rounds++;
          return NOW;
        },
      });
      try {
        const first = await makeBundle(stateDir, { attemptId: "a-first", endedAgoMs: 8 * DAY });
        r.start();
        await eventually("the first round", () => (existsSync(first) ? undefined : true), 2_000);
        const second = await makeBundle(stateDir, { attemptId: "a-second", endedAgoMs: 8 * DAY });
        await eventually("a later round", () => (existsSync(second) ? undefined : true), 2_000);
      } finally {
        await r.stop();
      }
      const roundsAtStop = rounds;
      const third = await makeBundle(stateDir, { attemptId: "a-third", endedAgoMs: 8 * DAY });
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(rounds, roundsAtStop, "no round after stop()");
      assert.ok(existsSync(third));
    }));

  it("logs a round that fails instead of letting it escape the timer, and keeps going", () =>
    withStateDir(async (stateDir) => {
      const { logger, records } = memoryLogger();
      let calls = 0;
      const r = retention(stateDir, {
        intervalMs: 10,
        logger,
        now: () => {
          if (++calls === 1) throw new Error("clock broke");
          return NOW;
        },
      });
      try {
        const dir = await makeBundle(stateDir, { attemptId: "a-old", endedAgoMs: 8 * DAY });
        r.start();
        await eventually("the round after the failed one", () => (existsSync(dir) ? undefined : true), 2_000);
      } finally {
        await r.stop();
      }
      assert.ok(records.some((x) => x.level === 50 && String(x.msg).includes("round failed")));
    }));

  it("refuses an interval setTimeout cannot honour", () => {
    assert.throws(() => retention("/nonexistent", { intervalMs: 0 }), RangeError);
    assert.throws(() => retention("/nonexistent", { intervalMs: 2 ** 31 }), RangeError);
  });
});
