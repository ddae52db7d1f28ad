// Runs and run modes on a real database, PGlite and PostgreSQL alike: the
// Scheduler's service and SchedulerRuns over a JobStore, with no agents.
// Jobs are ended by writing their final state the way an agent's event
// would, and the follow-up loop is driven by hand (processDue), so each test
// reads as a script: submit → end a job → follow up → look.
//
// On PostgreSQL also: two follow-up processors, each with its own pool,
// racing over the same due jobs do every follow-up exactly once.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { PrismaClient } from "../../gen/prisma/scheduler/client.ts";
import {
  CancelJobRequestSchema,
  ClaimPlaceableJobsRequestSchema,
  RecordPlacementsRequestSchema,
  ReportJobEventsRequestSchema,
  RunSpecSchema,
  RunState,
  SubmitJobRequestSchema,
  StageState,
  JobSpecSchema,
  type JobSpec,
  type RunSpec,
} from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { AttemptState } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { createMemoryBus } from "../../lib/bus/memory.ts";
import type { DroverClients } from "../../lib/clients.ts";
import { defaultSchedulingSettings } from "../../lib/config.ts";
import { openPostgres, type Database } from "../../lib/db/database.ts";
import { migrate } from "../../lib/db/migrate.ts";
import { createTestDatabase, openTempPglite, openTempPostgres, type TestDatabase } from "../../lib/db/testing.ts";
import { createLogger } from "../../lib/logger.ts";
import { requirePostgres } from "../../lib/testing/services.ts";
import { JobStore, type JobRow } from "./job_store.ts";
import { SchedulerRuns } from "./runs.ts";
import { SchedulerServiceImpl } from "./service.ts";
import { SchedulerSignals } from "./signals.ts";

const adminUrl = await requirePostgres();
const log = createLogger("silent");

/** The Scheduler's jobs and runs on one database, with a Fleet that swallows what is sent to agents. */
function scheduler(prisma: PrismaClient, settings = defaultSchedulingSettings()) {
  const bus = createMemoryBus();
  const store = new JobStore(prisma);
  const signals = new SchedulerSignals(bus, log);
  const fleet = { sendToAgents: async () => ({}) } as unknown as DroverClients["fleet"];
  const jobs = new SchedulerServiceImpl({ store, signals, clients: { fleet }, settings, log });
  const runs = new SchedulerRuns({ db: prisma, store, signals, jobs, settings, log });
  return { store, jobs, runs, bus };
}

type JobInit = Exclude<MessageInitShape<typeof JobSpecSchema>, JobSpec>;

const job = (name = "step"): JobInit => ({ name, exec: { commands: [{ argv: ["true"] }] } });

function runSpec(stages: Record<string, string[]>, extra: (name: string) => JobInit = () => ({})): RunSpec {
  return create(RunSpecSchema, { name: "test", stages: Object.entries(stages).map(([name, requires]) => ({ name, requires, job: { ...job(name), ...extra(name) } })) });
}

function cases(open: () => Promise<Database>) {
  let db: Database;
  let prisma: PrismaClient;
  let s: ReturnType<typeof scheduler>;

  before(async () => {
    db = await open();
    await migrate(db.executor, "scheduler");
    prisma = db.prismaFor("scheduler");
    s = scheduler(prisma);
  });
  after(async () => {
    await db?.close();
  });

  /** Ends a job the way an agent's final event would. */
  async function end(id: string, state: "succeeded" | "failed" | "timed_out" | "dead" = "succeeded") {
    const n = await prisma.$executeRawUnsafe(
      `UPDATE "scheduler"."jobs" SET state = $2, ended_at = now(), end_reason = $3, updated_at = now() WHERE id = $1::uuid AND state NOT IN ('succeeded', 'failed', 'timed_out', 'dead', 'cancelled')`,
      id,
      state,
      state === "succeeded" ? "exited with code 0" : "exited with code 1",
    );
    assert.equal(n, 1, `job ${id} was live`);
  }

  /** Follow-ups until none is due. */
  async function followUp() {
    while ((await s.runs.followups.processDue()) > 0);
  }

  const stageJobs = async (runId: string) =>
    new Map((await prisma.$queryRawUnsafe<{ stage: string; id: string; state: string }[]>(`SELECT stage_name AS stage, id::text AS id, state FROM "scheduler"."jobs" WHERE run_id = $1::uuid`, runId)).map((r) => [r.stage, r]));

  const stageView = async (runId: string) => {
    const { run } = await s.runs.getRun({ id: runId } as never);
    return Object.fromEntries(run.stages.map((st) => [st.name, StageState[st.state]]));
  };

  async function count(table: "runs" | "jobs"): Promise<number> {
    const [row] = await prisma.$queryRawUnsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM "scheduler"."${table}"`);
    return row!.n;
  }

  it("runs a diamond in order: a stage's job is created only once every stage it requires succeeded", async () => {
    const { run, created } = await s.runs.submit(runSpec({ a: [], b: ["a"], c: ["a"], d: ["b", "c"] }), null);
    assert.equal(created, true);
    assert.equal(run.state, RunState.RUNNING);
    assert.deepEqual([...(await stageJobs(run.id)).keys()], ["a"]);
    assert.deepEqual(
      run.stages.map((st) => [st.name, StageState[st.state], st.reason]),
      [["a", "PENDING", "waiting for placement"], ["b", "BLOCKED", "waiting for a"], ["c", "BLOCKED", "waiting for a"], ["d", "BLOCKED", "waiting for b, c"]],
    );

    await followUp(); // nothing has ended: nothing to do
    assert.deepEqual([...(await stageJobs(run.id)).keys()], ["a"]);

    // Claimed by Bid, its job is in an auction: the stage still says why it waits.
    assert.deepEqual((await s.store.claim(10, 60_000)).map((c) => c.job.stageName), ["a"]);
    const { run: offered } = await s.runs.getRun({ id: run.id } as never);
    assert.deepEqual([StageState[offered.stages[0]!.state], offered.stages[0]!.reason], ["PENDING", "offered to agents: collecting bids"]);

    await end((await stageJobs(run.id)).get("a")!.id);
    await followUp();
    assert.deepEqual([...(await stageJobs(run.id)).keys()].sort(), ["a", "b", "c"]);

    await end((await stageJobs(run.id)).get("b")!.id);
    await followUp();
    assert.equal((await stageJobs(run.id)).has("d"), false, "d waits for c");
    const { run: halfway } = await s.runs.getRun({ id: run.id } as never);
    assert.equal(halfway.stages[3]!.reason, "waiting for c");

    await end((await stageJobs(run.id)).get("c")!.id);
    await followUp();
    const d = (await stageJobs(run.id)).get("d")!;
    assert.ok(d, "d is released");
    const row = (await s.store.get(d.id))!;
    assert.equal(row.runId, run.id);
    assert.equal(row.stageName, "d");
    assert.equal(row.idempotencyKey, `run:${run.id}:d`);

    await end(d.id);
    await followUp();
    const { run: done } = await s.runs.getRun({ id: run.id } as never);
    assert.equal(done.state, RunState.SUCCEEDED);
    assert.ok(done.endTime);
    assert.ok(done.stages.every((st) => st.state === StageState.SUCCEEDED && st.jobId && st.startTime && st.endTime));
  });

  it("skips everything downstream of a failed stage, and the run fails once nothing runs", async () => {
    const { run } = await s.runs.submit(runSpec({ build: [], test: ["build"], ship: ["test"], lint: [] }), null);
    await end((await stageJobs(run.id)).get("build")!.id, "dead");
    await followUp();
    assert.deepEqual(await stageView(run.id), { build: "FAILED", test: "SKIPPED", ship: "SKIPPED", lint: "PENDING" });
    const { run: mid } = await s.runs.getRun({ id: run.id } as never);
    assert.equal(mid.state, RunState.RUNNING, "lint still runs");
    assert.equal(mid.stages[1]!.reason, 'requires "build", which failed');
    assert.equal(mid.stages[2]!.reason, 'requires "test", which was skipped');
    assert.ok(mid.stages[1]!.endTime);

    await end((await stageJobs(run.id)).get("lint")!.id);
    await followUp();
    const { run: done } = await s.runs.getRun({ id: run.id } as never);
    assert.equal(done.state, RunState.FAILED);
    assert.equal((await stageJobs(run.id)).size, 2, "test and ship never got jobs");
  });

  it("cancels a run: live stage jobs are cancelled, blocked stages skipped, and the run ends cancelled", async () => {
    const { run } = await s.runs.submit(runSpec({ a: [], b: ["a"], c: [] }), null);
    await end((await stageJobs(run.id)).get("c")!.id);
    const { run: cancelled } = await s.runs.cancelRun({ id: run.id, reason: "changed my mind" } as never);
    await followUp();
    const { run: after } = await s.runs.getRun({ id: run.id } as never);
    assert.equal(after.state, RunState.CANCELLED);
    assert.deepEqual(await stageView(run.id), { a: "CANCELLED", b: "SKIPPED", c: "SUCCEEDED" });
    assert.equal(after.stages[1]!.reason, "run cancelled: changed my mind");
    assert.match(after.stages[0]!.reason, /changed my mind/);
    assert.ok(cancelled.stages.find((st) => st.name === "b")!.state === StageState.SKIPPED);

    // Again: the same run back. On a run that succeeded: FAILED_PRECONDITION.
    assert.equal((await s.runs.cancelRun({ id: run.id, reason: "" } as never)).run.state, RunState.CANCELLED);
    const { run: other } = await s.runs.submit(runSpec({ only: [] }), null);
    await end((await stageJobs(other.id)).get("only")!.id);
    await followUp();
    await assert.rejects(s.runs.cancelRun({ id: other.id, reason: "" } as never), (err: ConnectError) => err.code === Code.FailedPrecondition && /already ended: succeeded/.test(err.message));
    await assert.rejects(s.runs.getRun({ id: "00000000-0000-4000-8000-000000000000" } as never), (err: ConnectError) => err.code === Code.NotFound);
  });

  it("refuses a cycle, an unknown requirement, a stage with a run mode and a shell, naming the field, and stores nothing", async () => {
    const before = [await count("runs"), await count("jobs")];
    const refused = async (spec: RunSpec, message: RegExp) =>
      assert.rejects(s.runs.submitRun({ spec, idempotencyKey: "" } as never), (err: ConnectError) => err.code === Code.InvalidArgument && message.test(err.rawMessage));
    await refused(runSpec({ a: ["b"], b: ["a"] }), /^spec\.stages: cycle: a → b → a$/);
    await refused(runSpec({ a: [], b: [], c: ["a", "x"] }), /^spec\.stages\[2\]\.requires\[1\]: no stage named "x"$/);
    await refused(runSpec({ a: [], b: ["a"] }, (n) => (n === "b" ? { runMode: { mode: { case: "nTimes" as const, value: 2 } } } : {})), /^spec\.stages\[1\]\.job\.run_mode: /);
    await refused(runSpec({ a: [] }, () => ({ exec: { allowShell: true, commands: [{ argv: ["true"] }] } })), /^spec\.stages\[0\]\.job\.exec\.allow_shell: /);
    assert.deepEqual([await count("runs"), await count("jobs")], before);
  });

  it("submitting a run again with its idempotency key returns the same run and starts nothing more", async () => {
    const first = await s.runs.submitRun({ spec: runSpec({ a: [], b: ["a"] }), idempotencyKey: "nightly-42" } as never);
    const again = await s.runs.submitRun({ spec: runSpec({ a: [], b: ["a"] }), idempotencyKey: "nightly-42" } as never);
    assert.equal(first.created, true);
    assert.equal(again.created, false);
    assert.equal(again.run.id, first.run.id);
    assert.equal(again.run.idempotencyKey, "nightly-42");
    assert.equal((await stageJobs(first.run.id)).size, 1);
  });

  it("lists runs newest first, a page at a time, and by state", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await s.runs.submit(runSpec({ x: [] }), `list-${i}`)).run.id);
    const all = (await s.runs.listRuns({ state: 0, pageSize: 0, pageToken: "" } as never)).runs.map((r) => r.id);
    assert.deepEqual(all.slice(0, 3), ids.reverse());
    const page1 = await s.runs.listRuns({ state: 0, pageSize: 2, pageToken: "" } as never);
    const page2 = await s.runs.listRuns({ state: 0, pageSize: 2, pageToken: page1.nextPageToken } as never);
    assert.deepEqual([...page1.runs, ...page2.runs].map((r) => r.id).slice(0, 3), ids);
    assert.equal(page1.runs[0]!.stages.length, 0, "lists leave the stages out");
    const succeeded = await s.runs.listRuns({ state: RunState.SUCCEEDED, pageSize: 0, pageToken: "" } as never);
    assert.ok(succeeded.runs.length >= 1 && succeeded.runs.every((r) => r.state === RunState.SUCCEEDED));
    assert.equal(await s.runs.isRunning(ids[0]!), true);
  });

  it("n_times: 3 makes exactly three jobs, each pointing at the next, whether they succeed or fail", async () => {
    const { job: first } = await s.jobs.submitJob(create(SubmitJobRequestSchema, { spec: { ...job("thrice"), runMode: { mode: { case: "nTimes" as const, value: 3 } } } }));
    const chain: JobRow[] = [(await s.store.get(first.id))!];
    for (const state of ["succeeded", "failed", "timed_out"] as const) {
      await end(chain.at(-1)!.id, state);
      await followUp();
      const ended = (await s.store.get(chain.at(-1)!.id))!;
      if (!ended.nextJobId) break;
      chain.push((await s.store.get(ended.nextJobId))!);
    }
    assert.equal(chain.length, 3);
    assert.deepEqual(chain.map((j) => [j.repeatOf, j.repeatIndex]), [[null, 1], [first.id, 2], [first.id, 3]]);
    assert.equal(chain[1]!.notBefore, null, "n_times repeats at once by default");
    assert.equal((await s.store.get(chain[2]!.id))!.nextJobId, null);
    const [{ n }] = await prisma.$queryRawUnsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM "scheduler"."jobs" WHERE id = $1::uuid OR repeat_of = $1::uuid`, first.id);
    assert.equal(n, 3);
    const { job: shown } = await s.jobs.getJob({ id: chain[0]!.id } as never);
    assert.equal(shown.nextJobId, chain[1]!.id);
  });

  it("forever keeps submitting the next job, a second later by default, until a job of the chain is cancelled", async () => {
    const { job: first } = await s.jobs.submitJob(create(SubmitJobRequestSchema, { spec: { ...job("forever"), runMode: { mode: { case: "forever" as const, value: true } } } }));
    let current = first.id;
    for (let i = 0; i < 4; i++) {
      await end(current, i % 2 ? "failed" : "succeeded");
      const ended = Date.now();
      await followUp();
      const next = (await s.store.get((await s.store.get(current))!.nextJobId!))!;
      assert.equal(next.repeatIndex, i + 2);
      assert.ok(next.notBefore && Math.abs(next.notBefore.getTime() - ended - 1000) < 1000, "placeable a second after the end");
      current = next.id;
    }
    await s.jobs.cancelJob({ id: current, reason: "enough" } as never);
    await followUp();
    assert.equal((await s.store.get(current))!.nextJobId, null, "the cancel ended the chain");
    const [{ n }] = await prisma.$queryRawUnsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM "scheduler"."jobs" WHERE id = $1::uuid OR repeat_of = $1::uuid`, first.id);
    assert.equal(n, 5);
  });

  it("the loop does follow-ups by itself once started, woken when this replica ends a job with one (its events, a cancel)", async () => {
    const bus = createMemoryBus();
    const signals = new SchedulerSignals(bus, log);
    await signals.start();
    const settings = { ...defaultSchedulingSettings(), sweepIntervalMs: 60_000 }; // the wake-up, not the poll
    const store = new JobStore(prisma);
    const fleet = { sendToAgents: async () => ({}) } as unknown as DroverClients["fleet"];
    const jobs = new SchedulerServiceImpl({ store, signals, clients: { fleet }, settings, log });
    const runs = new SchedulerRuns({ db: prisma, store, signals, jobs, settings, log });
    runs.start();
    const until = async (what: string, done: () => Promise<boolean>) => {
      const deadline = Date.now() + 20_000;
      while (!(await done())) {
        assert.ok(Date.now() < deadline, what);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    try {
      const { run } = await runs.submit(runSpec({ a: [], b: ["a"], c: ["b"] }), null);
      await new Promise((r) => setTimeout(r, 200)); // the loop's first round has passed
      // a ends as an agent's SUCCEEDED event reports it: claimed, placed, then the event.
      const a = (await stageJobs(run.id)).get("a")!;
      // (Earlier tests left pending jobs in this database: the claim may take them too.)
      const { jobs: claimed } = await jobs.claimPlaceableJobs(create(ClaimPlaceableJobsRequestSchema, { bidder: "test", maxJobs: 1000 }), { signal: new AbortController().signal } as never);
      const claim = claimed.find((j) => j.jobId === a.id);
      assert.ok(claim, "a was claimed");
      const placed = await jobs.recordPlacements(create(RecordPlacementsRequestSchema, { placements: [{ jobId: a.id, claimId: claim.claimId, agentId: "ag_f" }] }));
      const attemptId = placed.results[0]!.attemptId;
      await jobs.reportJobEvents(create(ReportJobEventsRequestSchema, { events: [{ agentId: "ag_f", event: { eventId: "e1", attemptId, state: AttemptState.SUCCEEDED, exitCode: 0 } }] }));
      assert.equal((await store.get(a.id))!.state, "succeeded");
      await until("b was released", async () => (await stageJobs(run.id)).has("b"));
      // b is cancelled while pending: c can never run, and the run ends.
      await jobs.cancelJob(create(CancelJobRequestSchema, { id: (await stageJobs(run.id)).get("b")!.id, reason: "not today" }));
      await until("the run ended", async () => (await prisma.$queryRawUnsafe<{ ended: boolean }[]>(`SELECT ended_at IS NOT NULL AS ended FROM "scheduler"."runs" WHERE id = $1::uuid`, run.id))[0]!.ended);
      assert.equal((await stageView(run.id)).c, StageState[StageState.SKIPPED]);
    } finally {
      await runs.stop();
      await signals.stop();
      await bus.close();
    }
  });
}

describe("runs on the embedded database (PGlite)", () => {
  cases(openTempPglite);
});

describe("runs on PostgreSQL", () => {
  if (adminUrl === null) {
    it("needs PostgreSQL", async (t) => {
      await requirePostgres(t);
    });
    return;
  }
  cases(() => openTempPostgres(adminUrl, { max: 4 }));
});

describe("follow-ups on PostgreSQL with two processors", () => {
  if (adminUrl === null) {
    it("needs PostgreSQL", async (t) => {
      await requirePostgres(t);
    });
    return;
  }
  let testDb: TestDatabase;
  let dbs: Database[] = [];
  before(async () => {
    testDb = await createTestDatabase(adminUrl);
    dbs = [openPostgres(testDb.url, { max: 4 }), openPostgres(testDb.url, { max: 4 })];
    await migrate(dbs[0]!.executor, "scheduler");
  });
  after(async () => {
    await Promise.allSettled(dbs.map((d) => d.close()));
    await testDb?.drop();
  });

  it("two replicas racing over the same due jobs do each follow-up exactly once and create no duplicate jobs", async (t) => {
    const [a, b] = dbs.map((d) => scheduler(d.prismaFor("scheduler")));
    const prisma = dbs[0]!.prismaFor("scheduler");
    const RUNS = 40;
    const CHAINS = 40;
    const runIds: string[] = [];
    for (let i = 0; i < RUNS; i++) runIds.push((await a!.runs.submit(runSpec({ left: [], right: [], join: ["left", "right"] }), null)).run.id);
    const chainIds: string[] = [];
    for (let i = 0; i < CHAINS; i++) chainIds.push((await a!.jobs.submitJob(create(SubmitJobRequestSchema, { spec: { ...job("chain"), runMode: { mode: { case: "nTimes" as const, value: 3 } } } }))).job.id);

    // Everything live ends, both replicas follow up at once (small batches, so they interleave), until nothing is live.
    let claimed = 0;
    let ended = 0;
    const byReplica = [0, 0];
    for (let round = 0; round < 10; round++) {
      const live = await prisma.$queryRawUnsafe<{ id: string }[]>(`SELECT id::text AS id FROM "scheduler"."jobs" WHERE state = 'pending'`);
      if (live.length === 0) break;
      await prisma.$executeRawUnsafe(`UPDATE "scheduler"."jobs" SET state = 'succeeded', ended_at = now() WHERE state = 'pending'`);
      ended += live.length;
      const drain = async (x: typeof a) => {
        let n = 0;
        for (let got; (got = await x!.runs.followups.processDue(7)) > 0; ) n += got;
        return n;
      };
      const [na, nb] = await Promise.all([drain(a), drain(b)]);
      claimed += na + nb;
      byReplica[0] += na;
      byReplica[1] += nb;
    }
    t.diagnostic(`follow-ups done by replica a: ${byReplica[0]}, by replica b: ${byReplica[1]}`);
    assert.equal(claimed, ended, "every ended job was followed up once, by one of the two");
    const [dup] = await prisma.$queryRawUnsafe<{ n: number }[]>(
      `SELECT count(*)::int AS n FROM (SELECT run_id, stage_name FROM "scheduler"."jobs" WHERE run_id IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1) x`,
    );
    assert.equal(dup!.n, 0);
    const [{ jobs, followups }] = await prisma.$queryRawUnsafe<{ jobs: number; followups: number }[]>(
      `SELECT count(*)::int AS jobs, count(*) FILTER (WHERE followup_pending)::int AS followups FROM "scheduler"."jobs"`,
    );
    assert.equal(jobs, RUNS * 3 + CHAINS * 3);
    assert.equal(followups, 0);
    for (const id of runIds.slice(0, 5)) assert.equal((await a!.runs.getRun({ id } as never)).run.state, RunState.SUCCEEDED);
    const [{ n: done }] = await prisma.$queryRawUnsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM "scheduler"."runs" WHERE state = 'succeeded'`);
    assert.equal(done, RUNS);
    const [{ n: links }] = await prisma.$queryRawUnsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM "scheduler"."jobs" WHERE next_job_id IS NOT NULL`);
    assert.equal(links, CHAINS * 2);
    const [{ n: chained }] = await prisma.$queryRawUnsafe<{ n: number }[]>(
      `SELECT count(DISTINCT (repeat_of, repeat_index))::int AS n FROM "scheduler"."jobs" WHERE repeat_of::text IN (SELECT jsonb_array_elements_text($1::jsonb))`,
      JSON.stringify(chainIds),
    );
    assert.equal(chained, CHAINS * 2, "each chain has one job at index 2 and one at 3");
  });
});
