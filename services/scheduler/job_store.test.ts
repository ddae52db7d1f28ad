// The job store on both databases Drover runs on. Concurrency keys: a claim
// takes at most as many of a key's jobs as it has free slots, a slot comes
// back when its job leaves it, and claimers racing on PostgreSQL never hand
// out more slots than there are. Command results: kept once per index, in
// order, from the attempt's own agent.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { openPostgres, type Database } from "../../lib/db/database.ts";
import { migrate } from "../../lib/db/migrate.ts";
import { createTestDatabase, openTempPglite, type TestDatabase } from "../../lib/db/testing.ts";
import { requirePostgres } from "../../lib/testing/services.ts";
import { JobStore, MAX_COMMAND_RESULTS, type NewJob } from "./job_store.ts";

const pgUrl = await requirePostgres();

function job(key: string | null, limit = 1, priority = 0): NewJob {
  return { spec: { exec: { commands: [{ argv: ["true"] }] } }, priority, idempotencyKey: null, concurrencyKey: key, concurrencyLimit: limit };
}

function countByKey(rows: { concurrencyKey: string | null }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of rows) out[r.concurrencyKey ?? "-"] = (out[r.concurrencyKey ?? "-"] ?? 0) + 1;
  return out;
}

// Each database twice: the store's statements through Prisma (as inside a
// transaction, followups.ts) and through the raw executor (as the service runs them).
function contract(name: string, open: () => Promise<Database & { cleanup?: () => Promise<void> }>) {
  for (const via of ["Prisma", "the raw executor"] as const) describeContract(`${name}, through ${via}`, open, via === "the raw executor");
}

function describeContract(name: string, open: () => Promise<Database & { cleanup?: () => Promise<void> }>, raw: boolean) {
  describe(`the job store on ${name}`, () => {
    let db: Database & { cleanup?: () => Promise<void> };
    let store: JobStore;
    before(async () => {
      db = await open();
      await migrate(db.executor, "scheduler");
      store = new JobStore(db.prismaFor("scheduler"), raw ? db.executor : undefined);
    });
    after(async () => {
      await db?.close();
      await db?.cleanup?.();
    });

    it("claims no more of a key's jobs than it has slots, and the rest as usual", async () => {
      await store.insert([...Array.from({ length: 6 }, () => job("deploy-prod", 2)), job("backup", 1), job("backup", 1), job(null), job(null), job(null)]);
      const first = await store.claim(100, 60_000);
      assert.deepEqual(countByKey(first.map((c) => c.job)), { "deploy-prod": 2, backup: 1, "-": 3 });
      const second = await store.claim(100, 60_000);
      assert.deepEqual(second, [], "every slot is held");
      assert.deepEqual(Object.fromEntries(await store.concurrencyHolders(["deploy-prod", "backup", "nothing"])), { "deploy-prod": 2, backup: 1 });

      // A job that found no agent gives its slot back...
      const backup = first.find((c) => c.job.concurrencyKey === "backup")!.job;
      assert.deepEqual(await store.wait([{ jobId: backup.id, claimId: backup.claimId!, reason: "no agent", retryMs: 0 }]), [backup.id]);
      const third = await store.claim(100, 60_000);
      assert.deepEqual(countByKey(third.map((c) => c.job)), { backup: 1 });

      // ...and so does one that ends: assign, run and finish one deploy-prod job.
      const deploy = first.find((c) => c.job.concurrencyKey === "deploy-prod")!.job;
      const [assigned] = await store.assign([{ jobId: deploy.id, claimId: deploy.claimId!, agentId: "ag_1", auctionId: null, attemptId: crypto.randomUUID() }], 60_000);
      const ended = await store.applyAttemptChanges([
        { attemptId: assigned!.attempt.id, agentId: "ag_1", fromState: "assigned", state: "succeeded", endedAt: new Date(), exitCode: 0, job: { state: "succeeded", ended: true, endReason: "exit 0" } },
      ]);
      assert.ok(ended.jobs.has(deploy.id));
      const fourth = await store.claim(100, 60_000);
      assert.deepEqual(countByKey(fourth.map((c) => c.job)), { "deploy-prod": 1 });
    });

    it("counts each job against its own limit, highest priority first", async () => {
      await store.insert([job("mixed", 1, 5), job("mixed", 3, 1), job("mixed", 3, 0)]);
      const claimed = await store.claim(100, 60_000);
      // The first job takes the key's only slot as far as its limit of 1 goes; the next (limit 3) sees one holder and fits, so does the third.
      assert.deepEqual(claimed.filter((c) => c.job.concurrencyKey === "mixed").map((c) => c.job.priority), [5, 1, 0]);
      await store.insert([job("mixed", 1, 9)]);
      assert.deepEqual(await store.claim(100, 60_000), [], "three hold the key: a job with limit 1 waits");
    });

    it("records command results by index from the attempt's agent: once each, in index order, after the attempt ended too", async () => {
      const [inserted] = await store.insert([job(null)]);
      const claimed = (await store.claim(100, 60_000)).find((c) => c.job.id === inserted!.job.id)!.job;
      const [assigned] = await store.assign([{ jobId: claimed.id, claimId: claimed.claimId!, agentId: "ag_cmd", auctionId: null, attemptId: crypto.randomUUID() }], 60_000);
      const attempt = assigned!.attempt;
      const result = (index: number, exitCode: number, message = "") => ({ index, exitCode, duration: "1.500s", peakRssBytes: "1048576", ...(message ? { message } : {}) });
      const report = (index: number, exitCode: number, agentId = "ag_cmd", message = "") => ({ attemptId: attempt.id, agentId, result: result(index, exitCode, message) });

      // The second command's result arrives first, in a batch with the first's twice and a stranger's claim.
      assert.deepEqual([...(await store.recordCommands([report(1, 0), report(0, 0), report(0, 0), report(2, 9, "ag_other")]))], [claimed.id]);
      // Sent again (a resend after a reconnect), with a different message: the first stored result stays; nothing changed.
      assert.deepEqual([...(await store.recordCommands([report(1, 3, "ag_cmd", "a rewrite")]))], []);
      await store.applyAttemptChanges([{ attemptId: attempt.id, agentId: "ag_cmd", fromState: "assigned", state: "failed", endedAt: new Date(), exitCode: 2, job: { state: "failed", ended: true } }]);
      // The final event's result, recorded after the attempt ended.
      assert.deepEqual([...(await store.recordCommands([report(2, 2, "ag_cmd", "exited with code 2")]))], [claimed.id]);

      const [stored] = await store.attemptsOf(claimed.id);
      assert.deepEqual(stored!.commands, [result(0, 0), result(1, 0), result(2, 2, "exited with code 2")]);
      assert.deepEqual((await store.attemptsWithJobs([attempt.id]))[0]!.attempt.commands, stored!.commands);
    });

    // A service replica's attempt: a one-command spec whose agent reports a
    // result per process exit and restart, and its health as it changes.
    async function runningAttempt(agentId: string) {
      const [inserted] = await store.insert([job(null)]);
      const claimed = (await store.claim(100, 60_000)).find((c) => c.job.id === inserted!.job.id)!.job;
      const [assigned] = await store.assign([{ jobId: claimed.id, claimId: claimed.claimId!, agentId, auctionId: null, attemptId: crypto.randomUUID() }], 60_000);
      return assigned!.attempt;
    }
    const healthOf = async (attemptId: string) => {
      const [x] = await store.attemptsWithJobs([attemptId]);
      const [row] = await db.prismaFor("scheduler").$queryRawUnsafe<{ seq: string | null }[]>(`SELECT health_sequence::text AS seq FROM "scheduler"."attempts" WHERE id = $1::uuid`, attemptId);
      return { health: x!.attempt.health, sequence: row!.seq === null ? null : Number(row!.seq) };
    };

    it("keeps a service's command results past the spec's command count, one per index", async () => {
      const attempt = await runningAttempt("ag_svc");
      const report = (index: number) => ({ attemptId: attempt.id, agentId: "ag_svc", result: { index, exitCode: 1 } });
      await store.recordCommands([report(0), report(1)]);
      assert.deepEqual([...(await store.recordCommands([report(7), report(2), report(1)]))], [attempt.jobId]);
      assert.deepEqual((await store.attemptsOf(attempt.jobId))[0]!.commands.map((c) => (c as { index: number }).index), [0, 1, 2, 7]);
    });

    it("keeps only the latest MAX_COMMAND_RESULTS results of a crash-looping replica, and an older one resent changes nothing", async () => {
      const attempt = await runningAttempt("ag_loop");
      const report = (index: number) => ({ attemptId: attempt.id, agentId: "ag_loop", result: { index, exitCode: 1 } });
      const indices = async () => (await store.attemptsOf(attempt.jobId))[0]!.commands.map((c) => (c as { index: number }).index);
      // 60 restarts, reported ten at a time.
      for (let from = 0; from < 60; from += 10) await store.recordCommands(Array.from({ length: 10 }, (_, i) => report(from + i)));
      const latest = Array.from({ length: MAX_COMMAND_RESULTS }, (_, i) => 60 - MAX_COMMAND_RESULTS + i);
      assert.deepEqual(await indices(), latest);
      assert.deepEqual([...(await store.recordCommands([report(3)]))], [], "older than every result kept: not new");
      assert.deepEqual(await indices(), latest);
      assert.deepEqual([...(await store.recordCommands([report(60)]))], [attempt.jobId]);
      assert.deepEqual(await indices(), [...latest.slice(1), 60]);
    });

    it("keeps the health of the greatest sequence from the attempt's agent while it is live, whatever order the events come in", async () => {
      const attempt = await runningAttempt("ag_h");
      const h = (sequence: number, state: string, agentId = "ag_h") => ({ attemptId: attempt.id, agentId, sequence, health: { state, restarts: sequence } });
      // One batch: two reports of the attempt (the greater wins), a stranger's with a greater sequence, and a result.
      const changed = await store.recordReports([{ attemptId: attempt.id, agentId: "ag_h", result: { index: 0, exitCode: 0 } }], [h(3, "HEALTH_STATE_HEALTHY"), h(2, "HEALTH_STATE_UNHEALTHY"), h(9, "HEALTH_STATE_UNHEALTHY", "ag_other")]);
      assert.deepEqual([...changed], [attempt.jobId]);
      assert.deepEqual(await healthOf(attempt.id), { health: { state: "HEALTH_STATE_HEALTHY", restarts: 3 }, sequence: 3 });
      assert.equal((await store.attemptsOf(attempt.jobId))[0]!.commands.length, 1, "the result was recorded by the same statement");

      // Late (sequence 2) and resent (sequence 3, other words): nothing changes, no job is said to have changed.
      assert.deepEqual([...(await store.recordReports([], [h(2, "HEALTH_STATE_UNHEALTHY")]))], []);
      assert.deepEqual([...(await store.recordReports([], [{ ...h(3, "HEALTH_STATE_UNHEALTHY") }]))], []);
      assert.deepEqual((await healthOf(attempt.id)).health, { state: "HEALTH_STATE_HEALTHY", restarts: 3 });

      // Newer news is taken; sequences past 2^31 (uint32) too.
      await store.recordReports([], [h(4, "HEALTH_STATE_UNHEALTHY")]);
      assert.deepEqual(await healthOf(attempt.id), { health: { state: "HEALTH_STATE_UNHEALTHY", restarts: 4 }, sequence: 4 });
      await store.recordReports([], [h(4_000_000_000, "HEALTH_STATE_HEALTHY")]);
      assert.equal((await healthOf(attempt.id)).sequence, 4_000_000_000);

      // Once the attempt ended, health reports change nothing.
      await store.applyAttemptChanges([{ attemptId: attempt.id, agentId: "ag_h", fromState: "assigned", state: "cancelled", endedAt: new Date(), job: { state: "cancelled", ended: true } }]);
      assert.deepEqual([...(await store.recordReports([], [h(4_000_000_001, "HEALTH_STATE_UNHEALTHY")]))], []);
      assert.equal((await healthOf(attempt.id)).sequence, 4_000_000_000);
      assert.equal((await store.attemptsOf(attempt.jobId))[0]!.state, "cancelled", "health never moves the state");
    });

    it("claims the jobs without a key while keyed jobs wait for slots, and keyed jobs before them once a slot is free", async () => {
      // One statement claims when no keyed job waits; this is the other way, through the keyed claim first.
      // (A high priority puts these first among whatever earlier tests left pending.)
      await store.insert([job("nightly", 1, 100), job("nightly", 1, 100)]);
      const [holder] = await store.claim(1, 60_000);
      assert.equal(holder!.job.concurrencyKey, "nightly");
      const free = await store.insert([job(null, 1, 5), job(null, 1, 5)]);
      const claimed = await store.claim(10, 60_000);
      const ids = new Set(claimed.map((c) => c.job.id));
      assert.ok(free.every((f) => ids.has(f.job.id)), "the waiting keyed job holds up nothing");
      assert.deepEqual(claimed.filter((c) => c.job.concurrencyKey !== null), [], "and is not claimed: its slot is held");

      // The slot comes back: the keyed job is claimed, ahead of a job with a higher priority and no key.
      await store.wait([{ jobId: holder!.job.id, claimId: holder!.job.claimId!, reason: "no agent", retryMs: 60_000 }]);
      await store.insert([job(null, 1, 99)]);
      const next = await store.claim(1, 60_000);
      assert.deepEqual(next.map((c) => c.job.concurrencyKey), ["nightly"]);
    });

    it("lists only the jobs asked for by id, newest first, with each one's latest attempt", async () => {
      const inserted = await store.insert([job(null), job(null), job(null)]);
      const [a, b, c] = inserted.map((r) => r.job);
      const listed = await store.list({ limit: 10, ids: [a!.id, c!.id, crypto.randomUUID()] });
      // One INSERT gives them one created_at: newest first then means by id, descending.
      assert.deepEqual(listed.map((r) => r.id), [a!.id, c!.id].sort().reverse());
      assert.deepEqual(await store.list({ limit: 10, ids: [b!.id], state: "running" }), [], "the state filter applies too");

      const first = await runningAttempt("ag_l1");
      await store.applyAttemptChanges([{ attemptId: first.id, agentId: "ag_l1", fromState: "assigned", state: "lost", endedAt: new Date(), job: { state: "pending", releaseAttempt: true, lostInc: 1 } }]);
      const again = (await store.claim(100, 60_000)).find((x) => x.job.id === first.jobId)!.job;
      const [second] = await store.assign([{ jobId: again.id, claimId: again.claimId!, agentId: "ag_l2", auctionId: null, attemptId: crypto.randomUUID() }], 60_000);
      const latest = await store.latestAttempts([first.jobId, b!.id]);
      assert.deepEqual([...latest.keys()], [first.jobId], "a job never placed has none");
      assert.deepEqual([latest.get(first.jobId)!.id, latest.get(first.jobId)!.number], [second!.attempt.id, 2]);
    });
  });
}

contract("PGlite", async () => openTempPglite());

if (pgUrl !== null) {
  contract("PostgreSQL", async () => {
    const testDb = await createTestDatabase(pgUrl);
    return { ...openPostgres(testDb.url), cleanup: () => testDb.drop() };
  });

  describe("concurrency keys with claimers racing on PostgreSQL", () => {
    let testDb2: TestDatabase;
    const dbs: Database[] = [];
    before(async () => {
      testDb2 = await createTestDatabase(pgUrl);
      for (let i = 0; i < 3; i++) dbs.push(openPostgres(testDb2.url, { max: 4 }));
      await migrate(dbs[0]!.executor, "scheduler");
    });
    after(async () => {
      await Promise.all(dbs.map((d) => d.close()));
      await testDb2?.drop();
    });

    // The ranking and the compare-and-set on 'pending' already make most
    // races harmless (stale claimers pick the same rows and lose them); the
    // advisory lock closes what is left (a job back to pending, or a higher
    // priority arriving, between two claimers' snapshots). This checks the
    // whole under contention, not the lock alone.
    it("never hands out more slots than a key has", async () => {
      const stores = dbs.map((d) => new JobStore(d.prismaFor("scheduler"), d.executor));
      await stores[0]!.insert([...Array.from({ length: 40 }, (_, i) => job(`key-${i % 4}`, 3)), ...Array.from({ length: 20 }, () => job(null))]);
      // Three processes' worth of claimers, many at once, one job each.
      const claims = await Promise.all(Array.from({ length: 60 }, (_, i) => stores[i % 3]!.claim(1, 60_000)));
      const claimed = claims.flat().map((c) => c.job);
      assert.equal(new Set(claimed.map((j) => j.id)).size, claimed.length, "no job claimed twice");
      assert.deepEqual(countByKey(claimed), { "key-0": 3, "key-1": 3, "key-2": 3, "key-3": 3, "-": 20 });
    });
  });
}
