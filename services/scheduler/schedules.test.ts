// Schedules against a real PostgreSQL database (a fresh one for this file):
// the Scheduler's pieces assembled in-process as scheduler.ts does (no Fleet:
// jobs stay pending, which is what overlap tests want), called through an
// in-memory Connect transport with the server's validation interceptor.
// Ticks are real: six-field expressions fire every second.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, createRouterTransport, type Client } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { MissedPolicy, OverlapPolicy, SchedulerService, type ScheduleSpecSchema } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { createMemoryBus } from "../../lib/bus/memory.ts";
import type { DroverClients } from "../../lib/clients.ts";
import { defaultSchedulingSettings } from "../../lib/config.ts";
import { openPostgres, type Database } from "../../lib/db/database.ts";
import { migrate } from "../../lib/db/migrate.ts";
import { createTestDatabase, type TestDatabase } from "../../lib/db/testing.ts";
import { validationInterceptor } from "../../lib/host/interceptors.ts";
import { createLogger } from "../../lib/logger.ts";
import { requirePostgres } from "../../lib/testing/services.ts";
import { eventually } from "../fleet/testing.ts";
import { JobStore } from "./job_store.ts";
import { SchedulerRuns } from "./runs.ts";
import { SchedulerSchedules } from "./schedules.ts";
import { SchedulerServiceImpl, schedulerRoutes } from "./service.ts";
import { SchedulerSignals } from "./signals.ts";

const adminUrl = await requirePostgres();

const log = createLogger((process.env.DROVER_TEST_LOG_LEVEL as "debug" | undefined) ?? "silent");
const settings = { ...defaultSchedulingSettings(), sweepIntervalMs: 100 };
// No agents here; a Cancel for one goes nowhere.
const fleet = { sendToAgents: async () => ({}) } as unknown as DroverClients["fleet"];
const exec = { commands: [{ argv: ["echo", "tick"] }] };

/** One Scheduler replica's pieces on its own connection pool, with a count of the jobs its ticker submitted. */
interface Replica {
  db: Database;
  schedules: SchedulerSchedules;
  client: Client<typeof SchedulerService>;
  submitted: string[];
  close(): Promise<void>;
}

async function replica(url: string): Promise<Replica> {
  const db = openPostgres(url, { max: 4 });
  const prisma = db.prismaFor("scheduler");
  const bus = createMemoryBus();
  const store = new JobStore(prisma);
  const signals = new SchedulerSignals(bus, log);
  await signals.start();
  const jobs = new SchedulerServiceImpl({ store, signals, clients: { fleet }, settings, log });
  const submitted: string[] = [];
  const submit = jobs.submit.bind(jobs);
  jobs.submit = (job) => {
    if (job.idempotencyKey) submitted.push(job.idempotencyKey);
    return submit(job);
  };
  const runs = new SchedulerRuns({ db: prisma, store, signals, jobs, settings, log });
  const schedules = new SchedulerSchedules({ db: prisma, store, signals, jobs, runs, settings, log });
  const client = createClient(SchedulerService, createRouterTransport(schedulerRoutes(jobs, runs, schedules), { router: { interceptors: [validationInterceptor()] } }));
  runs.start();
  return {
    db,
    schedules,
    client,
    submitted,
    async close() {
      await schedules.stop();
      await runs.stop();
      await signals.stop();
      await bus.close();
      await db.close();
    },
  };
}

let testDb: TestDatabase;
let sql: Database;
let a: Replica;

type SpecInit = MessageInitShape<typeof ScheduleSpecSchema>;
let names = 0;
/** A spec firing an echo job every second, named uniquely, with overrides. */
function everySecond(over: Partial<SpecInit> = {}): SpecInit {
  return { name: `s${++names}`, cron: "*/1 * * * * *", template: { case: "job", value: { exec } }, ...over } as SpecInit;
}

async function jobsOf(scheduleId: string): Promise<{ id: string; key: string; state: string; created: Date; scheduleId: string; endReason: string | null }[]> {
  const rows = await sql.executor.query<{ id: string; key: string; state: string; created: Date; scheduleId: string; endReason: string | null }>(
    `SELECT id::text, idempotency_key AS key, state, created_at AS created, schedule_id::text AS "scheduleId", end_reason AS "endReason"
       FROM scheduler.jobs WHERE schedule_id = $1::uuid ORDER BY idempotency_key`,
    [scheduleId],
  );
  return rows.map((r) => ({ ...r, created: new Date(r.created) }));
}

function tickOf(key: string): Date {
  return new Date(key.split(":").slice(2).join(":"));
}

async function invalid(p: Promise<unknown>): Promise<ConnectError> {
  const err = await p.then(() => assert.fail("accepted"), (e) => ConnectError.from(e));
  assert.equal(err.code, Code.InvalidArgument, err.message);
  return err;
}

describe("schedules", () => {
  // Without PostgreSQL: skipped with the reason on a laptop; in CI requirePostgres already threw.
  if (adminUrl === null) {
    it("needs PostgreSQL", async (t) => {
      await requirePostgres(t);
    });
    return;
  }

  before(async () => {
    testDb = await createTestDatabase(adminUrl);
    sql = openPostgres(testDb.url, { max: 2 });
    await migrate(sql.executor, "scheduler");
    a = await replica(testDb.url);
    a.schedules.start();
  });

  after(async () => {
    await a?.close();
    await sql?.close();
    await testDb?.drop();
  });

  // Each of these waits for ticks a second apart, on a schedule of its own:
  // they wait side by side.
  describe("on a schedule firing every second", { concurrency: true }, () => {
    it("fires a job every second, each with the schedule's id and its tick's idempotency key, within moments of the tick", async () => {
      const { schedule } = await a.client.createSchedule({ spec: everySecond({ overlap: OverlapPolicy.ALLOW }) });
      const id = schedule!.id;
      assert.ok(schedule!.nextFireTime, "a next fire time from the start");
      const jobs = await eventually(async () => {
        const rows = await jobsOf(id);
        return rows.length >= 2 ? rows : undefined;
      }, 10_000, "two jobs");
      await a.client.pauseSchedule({ id });
      for (const job of jobs) {
        assert.equal(job.scheduleId, id);
        assert.match(job.key, new RegExp(`^schedule:${id}:\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.000Z$`));
      }
      const ticks = jobs.map((j) => tickOf(j.key).getTime());
      assert.equal(new Set(ticks).size, ticks.length, "one job per tick");
      const lateness = jobs.map((j) => j.created.getTime() - tickOf(j.key).getTime());
      // Tens of ms on a quiet machine; a busy two-core one gets slack (later than 1 s would count as missed).
      assert.ok(lateness.every((ms) => ms >= 0 && ms < 1000), `created this late after their ticks (ms): ${lateness}`);
      const { job } = await a.client.getJob({ id: jobs[0]!.id });
      assert.equal(job?.scheduleId, id);
      const got = (await a.client.getSchedule({ id })).schedule!;
      assert.ok(got.fireCount >= 2n);
      assert.equal(got.skipCount, 0n);
      assert.ok(got.lastFireTime);
      assert.ok(jobs.some((j) => j.id === got.lastJobId));
    });

    it("pauses (no next fire time, nothing fired), resumes from now without firing the ticks missed meanwhile, and deletes", async () => {
      const { schedule } = await a.client.createSchedule({ spec: everySecond({ overlap: OverlapPolicy.ALLOW, missed: MissedPolicy.BACKFILL }) });
      const id = schedule!.id;
      await eventually(async () => ((await jobsOf(id)).length >= 1 ? true : undefined), 10_000, "a first job");
      const paused = (await a.client.pauseSchedule({ id: schedule!.spec!.name })).schedule!;
      assert.equal(paused.paused, true);
      assert.equal(paused.nextFireTime, undefined);
      assert.equal((await a.client.pauseSchedule({ id })).schedule!.paused, true, "pausing again is harmless");
      const atPause = (await jobsOf(id)).length;
      await new Promise((r) => setTimeout(r, 1100));
      assert.equal((await jobsOf(id)).length, atPause, "nothing fired while paused");
      const resumedAt = Date.now();
      const resumed = (await a.client.resumeSchedule({ id })).schedule!;
      assert.equal(resumed.paused, false);
      assert.ok(resumed.nextFireTime && timestampDate(resumed.nextFireTime).getTime() > resumedAt - 1000, "next tick from now");
      const after = await eventually(async () => {
        const rows = await jobsOf(id);
        return rows.length > atPause ? rows : undefined;
      }, 10_000, "a job after resuming");
      const newTicks = after.slice(atPause).map((j) => tickOf(j.key).getTime());
      assert.ok(newTicks.every((t) => t >= resumedAt - 1000), "no tick from the paused time was fired (even with BACKFILL)");
      await a.client.deleteSchedule({ id });
      const err = await a.client.getSchedule({ id }).then(() => assert.fail("found"), (e) => ConnectError.from(e));
      assert.equal(err.code, Code.NotFound);
      const gone = await sql.executor.query(`SELECT 1 FROM scheduler.schedules WHERE id = $1::uuid`, [id]);
      assert.equal(gone.length, 0, "no row left for a ticker to claim");
      assert.equal((await a.client.deleteSchedule({ id }).catch((e) => ConnectError.from(e))) instanceof ConnectError, true, "deleting again is NOT_FOUND");
    });

    it("with overlap SKIP fires nothing while the previous job has not ended, and counts each skipped tick with the reason", async () => {
      const { schedule } = await a.client.createSchedule({ spec: everySecond({ overlap: OverlapPolicy.SKIP }) });
      const id = schedule!.id;
      const got = await eventually(async () => {
        const s = (await a.client.getSchedule({ id })).schedule!;
        return s.skipCount >= 1n ? s : undefined;
      }, 10_000, "a skipped tick");
      await a.client.pauseSchedule({ id });
      const jobs = await jobsOf(id);
      assert.equal(jobs.length, 1, "only the first tick fired: no agent ever ends its job");
      assert.equal(jobs[0]!.state, "pending");
      assert.equal(got.fireCount, 1n);
      assert.match(got.lastSkipReason, new RegExp(`job ${jobs[0]!.id} \\(pending\\) is still going \\(overlap policy SKIP\\)`));
    });

    it("with overlap CANCEL_PREVIOUS cancels the previous job, then fires", async () => {
      const { schedule } = await a.client.createSchedule({ spec: everySecond({ overlap: OverlapPolicy.CANCEL_PREVIOUS }) });
      const id = schedule!.id;
      const jobs = await eventually(async () => {
        const rows = await jobsOf(id);
        return rows.length >= 2 ? rows : undefined;
      }, 10_000, "two jobs");
      await a.client.pauseSchedule({ id });
      const [first, second] = jobs;
      assert.equal(first!.state, "cancelled");
      assert.match(first!.endReason!, /cancelled by schedule s\d+: tick .* replaces it \(overlap policy CANCEL_PREVIOUS\)/);
      assert.ok(tickOf(second!.key) > tickOf(first!.key));
      assert.equal((await a.client.getSchedule({ id })).schedule!.skipCount, 0n);
    });

    it("with a run template and overlap CANCEL_PREVIOUS cancels the previous run, still running, then fires the next", async () => {
      const run = { stages: [{ name: "only", job: { exec } }] };
      const { schedule } = await a.client.createSchedule({ spec: everySecond({ template: { case: "run", value: run }, overlap: OverlapPolicy.CANCEL_PREVIOUS }) });
      const id = schedule!.id;
      const runsOf = () => sql.executor.query<{ id: string; key: string; state: string; cancelled: boolean }>(
        `SELECT id::text, idempotency_key AS key, state, cancel_requested_at IS NOT NULL AS cancelled FROM scheduler.runs WHERE schedule_id = $1::uuid ORDER BY idempotency_key`,
        [id],
      );
      const runs = await eventually(async () => {
        const rows = await runsOf();
        return rows.length >= 2 ? rows : undefined;
      }, 10_000, "two runs");
      await a.client.pauseSchedule({ id });
      assert.equal(runs[0]!.cancelled, true, "the first run was asked to stop");
      assert.match(runs[0]!.key, new RegExp(`^schedule:${id}:`));
      await eventually(async () => ((await runsOf())[0]!.state === "cancelled" ? true : undefined), 10_000, "the first run cancelled");
      const got = (await a.client.getSchedule({ id })).schedule!;
      assert.ok([runs[0]!.id, runs[1]!.id, ...(await runsOf()).map((r) => r.id)].includes(got.lastRunId));
      assert.equal(got.lastJobId, "", "a run template fires no job of its own");
    });
  });

  it("refuses a bad cron expression, an unknown time zone, a job with a run mode and an expression that never fires, naming the field, and stores nothing", async () => {
    const before = (await a.client.listSchedules({})).schedules.length;
    assert.match((await invalid(a.client.createSchedule({ spec: everySecond({ cron: "61 * * * *" }) }))).rawMessage, /^spec\.cron: "61 \* \* \* \*": Invalid value for minute: 61/);
    assert.match((await invalid(a.client.createSchedule({ spec: everySecond({ cron: "every day" }) }))).rawMessage, /^spec\.cron: /);
    assert.equal((await invalid(a.client.createSchedule({ spec: everySecond({ timeZone: "Mars/Olympus_Mons" }) }))).rawMessage, 'spec.time_zone: unknown time zone "Mars/Olympus_Mons"');
    assert.match((await invalid(a.client.createSchedule({ spec: everySecond({ cron: "0 0 30 2 *" }) }))).rawMessage, /^spec\.cron: "0 0 30 2 \*" never fires/);
    const runMode = everySecond({ template: { case: "job", value: { exec, runMode: { mode: { case: "forever", value: true } } } } });
    assert.match((await invalid(a.client.createSchedule({ spec: runMode }))).rawMessage, /^spec\.job\.run_mode: /);
    const shell = everySecond({ template: { case: "job", value: { exec: { ...exec, allowShell: true } } } });
    assert.match((await invalid(a.client.createSchedule({ spec: shell }))).rawMessage, /^spec\.job\.exec\.allow_shell: /);
    const cyclic = everySecond({ template: { case: "run", value: { stages: [{ name: "a", requires: ["b"], job: { exec } }, { name: "b", requires: ["a"], job: { exec } }] } } });
    assert.match((await invalid(a.client.createSchedule({ spec: cyclic }))).rawMessage, /^spec\.run\./);
    assert.equal((await a.client.listSchedules({})).schedules.length, before);
  });

  it("refuses a second schedule with a taken name as ALREADY_EXISTS", async () => {
    const spec = everySecond({ cron: "@daily" });
    await a.client.createSchedule({ spec, paused: true });
    const err = await a.client.createSchedule({ spec }).then(() => assert.fail("accepted"), (e) => ConnectError.from(e));
    assert.equal(err.code, Code.AlreadyExists);
    assert.match(err.rawMessage, new RegExp(`"${spec.name}" already exists`));
    await a.client.deleteSchedule({ id: spec.name! });
  });

  it("finds a schedule by id or by name, and lists schedules by name in pages, each with its next fire time", async () => {
    const made: string[] = [];
    for (const n of ["list-c", "list-a", "list-b"]) {
      const { schedule } = await a.client.createSchedule({ spec: { name: n, cron: "0 9 * * MON-FRI", timeZone: "Europe/Berlin", template: { case: "job", value: { exec } } } });
      made.push(schedule!.id);
    }
    const byName = (await a.client.getSchedule({ id: "list-a" })).schedule!;
    assert.equal(byName.id, made[1]);
    assert.equal((await a.client.getSchedule({ id: made[1]!.toUpperCase() })).schedule!.spec?.name, "list-a");
    const next = timestampDate(byName.nextFireTime!);
    // 09:00 in Berlin is 07:00 or 08:00 UTC.
    assert.ok([7, 8].includes(next.getUTCHours()) && next.getUTCMinutes() === 0, next.toISOString());
    const first = await a.client.listSchedules({ pageSize: 2 });
    const second = await a.client.listSchedules({ pageSize: 1000, pageToken: first.nextPageToken });
    const all = [...first.schedules, ...second.schedules].map((s) => s.spec!.name);
    assert.deepEqual(all, [...all].sort(), "by name");
    assert.deepEqual(all.filter((n) => n.startsWith("list-")), ["list-a", "list-b", "list-c"]);
    assert.ok(first.nextPageToken !== "" && second.nextPageToken === "");
    assert.ok([...first.schedules, ...second.schedules].every((s) => s.paused || s.nextFireTime), "every schedule not paused shows its next fire time");
    for (const id of made) await a.client.deleteSchedule({ id });
  });

  describe("after downtime (next_fire_at written days in the past, then found by the ticker)", () => {
    // Daily at 00:00 UTC, due since three days before today's midnight: four
    // missed ticks (D-3 … D), unless the test runs in the first second of a day.
    async function downtime(missed: MissedPolicy, backfillLimit = 0) {
      const { schedule } = await a.client.createSchedule({ spec: { name: `missed-${MissedPolicy[missed]}-${backfillLimit}`, cron: "@daily", template: { case: "job", value: { exec } }, overlap: OverlapPolicy.ALLOW, missed, backfillLimit } });
      const id = schedule!.id;
      const rows = await sql.executor.query<{ today: Date }>(
        `UPDATE scheduler.schedules SET next_fire_at = date_trunc('day', now(), 'UTC') - interval '3 days' WHERE id = $1::uuid
         RETURNING date_trunc('day', now(), 'UTC') AS today`,
        [id],
      );
      a.schedules.wake();
      const today = new Date(rows[0]!.today);
      const got = await eventually(async () => {
        const s = (await a.client.getSchedule({ id })).schedule!;
        return timestampDate(s.nextFireTime!) > today ? s : undefined;
      }, 10_000, "the schedule advanced past today");
      const day = (n: number) => new Date(today.getTime() - n * 86_400_000).toISOString();
      assert.equal(timestampDate(got.nextFireTime!).toISOString(), day(-1), "next: tomorrow's midnight");
      const keys = (await jobsOf(id)).map((j) => j.key.split(":").slice(2).join(":"));
      await a.client.deleteSchedule({ id });
      return { got, keys, day };
    }

    it("with SKIP fires none of the missed ticks and counts them as skipped", async () => {
      const { got, keys, day } = await downtime(MissedPolicy.SKIP);
      assert.deepEqual(keys, []);
      assert.equal(got.skipCount, 4n);
      assert.equal(got.fireCount, 0n);
      assert.match(got.lastSkipReason, new RegExp(`^4 missed ticks skipped \\(missed policy SKIP\\), from ${day(3)}`));
    });

    it("with RUN_ONCE (the default) fires once, for the latest missed tick", async () => {
      const { got, keys, day } = await downtime(MissedPolicy.UNSPECIFIED);
      assert.deepEqual(keys, [day(0)]);
      assert.equal(got.fireCount, 1n);
      assert.equal(got.skipCount, 0n);
      assert.equal(timestampDate(got.lastFireTime!).toISOString(), day(0));
    });

    it("with BACKFILL fires each missed tick, oldest first, up to backfill_limit, and counts the rest as skipped", async () => {
      const all = await downtime(MissedPolicy.BACKFILL);
      assert.deepEqual(all.keys, [all.day(3), all.day(2), all.day(1), all.day(0)]);
      assert.equal(all.got.fireCount, 4n);
      const bounded = await downtime(MissedPolicy.BACKFILL, 2);
      assert.deepEqual(bounded.keys, [bounded.day(1), bounded.day(0)]);
      assert.equal(bounded.got.fireCount, 2n);
      assert.equal(bounded.got.skipCount, 2n);
      assert.match(bounded.got.lastSkipReason, /2 missed ticks beyond the backfill limit of 2 not fired/);
    });
  });

  it("fires each tick exactly once when three tickers on one database race for the same schedules", async () => {
    const b = await replica(testDb.url);
    const c = await replica(testDb.url);
    b.schedules.start();
    c.schedules.start();
    const ids: string[] = [];
    try {
      for (let i = 0; i < 4; i++) ids.push((await a.client.createSchedule({ spec: everySecond({ name: `race-${i}`, overlap: OverlapPolicy.ALLOW, missed: MissedPolicy.BACKFILL }) })).schedule!.id);
      const startedAt = Date.now();
      await new Promise((r) => setTimeout(r, 2000));
      for (const id of ids) await a.client.pauseSchedule({ id });
      const elapsed = Date.now() - startedAt;
      const perKey = await sql.executor.query<{ key: string; n: number }>(
        `SELECT idempotency_key AS key, count(*)::int AS n FROM scheduler.jobs WHERE schedule_id::text = ANY($1::text[]) GROUP BY idempotency_key`,
        [ids],
      );
      assert.ok(perKey.every((r) => r.n === 1), "one job per tick key");
      // Every tick of the window fired (BACKFILL: even one a loaded machine found late), each counted once.
      for (const id of ids) {
        const s = (await a.client.getSchedule({ id })).schedule!;
        const jobs = await jobsOf(id);
        assert.equal(s.fireCount, BigInt(jobs.length), `fire_count of ${s.spec!.name} matches its jobs`);
        assert.ok(jobs.length >= Math.floor(elapsed / 1000) - 1, `${jobs.length} jobs in ${elapsed} ms`);
        const ticks = jobs.map((j) => tickOf(j.key).getTime()).sort((x, y) => x - y);
        for (let i = 1; i < ticks.length; i++) assert.equal(ticks[i]! - ticks[i - 1]!, 1000, "consecutive seconds, none skipped");
      }
      // No tick was even submitted twice: the claims kept the replicas apart.
      const submitted = [...a.submitted, ...b.submitted, ...c.submitted].filter((k) => ids.some((id) => k.includes(id)));
      assert.equal(submitted.length, perKey.length, "every submit made a new job");
      const share = [a, b, c].map((r) => r.submitted.filter((k) => ids.some((id) => k.includes(id))).length);
      log.info({ share }, "ticks fired per replica");
    } finally {
      await b.close();
      await c.close();
    }
  });

  it("fires a tick once when a replica died between firing and advancing: the next replica's submit finds the job by its key", async () => {
    const { schedule } = await a.client.createSchedule({ spec: { name: "crash", cron: "@hourly", template: { case: "job", value: { exec } }, overlap: OverlapPolicy.ALLOW }, paused: true });
    const id = schedule!.id;
    // The tick the dead replica fired: its job exists, the schedule still waits for it.
    const tick = new Date(Math.floor(Date.now() / 1000) * 1000 - 200);
    const key = `schedule:${id}:${tick.toISOString()}`;
    const { job } = await a.client.submitJob({ spec: { exec }, idempotencyKey: key });
    await sql.executor.query(`UPDATE scheduler.schedules SET paused = false, next_fire_at = $2 WHERE id = $1::uuid`, [id, tick.toISOString()]);
    a.schedules.wake();
    const got = await eventually(async () => {
      const s = (await a.client.getSchedule({ id })).schedule!;
      return s.fireCount === 1n ? s : undefined;
    }, 10_000, "the tick fired");
    await a.client.deleteSchedule({ id });
    assert.equal(got.lastJobId, job!.id, "the job the first firing made");
    const rows = await sql.executor.query<{ n: number }>(`SELECT count(*)::int AS n FROM scheduler.jobs WHERE idempotency_key = $1`, [key]);
    assert.equal(rows[0]!.n, 1);
  });
});
