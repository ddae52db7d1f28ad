// Two Scheduler and two Bid replicas (and two Fleet replicas) in split mode,
// each its own process, on one PostgreSQL database and one Redis, with
// simulated agents (integration/simulated_agent.ts: the real AgentWorker
// around a runner that only waits) that record every Assignment they get.
//
// The wiring pairs the replicas, so each one's traffic is its own:
//
//   agents ─▶ fleet-a ─▶ scheduler-a ◀── bid-a      (and the same for b;
//   agents ─▶ fleet-b ─▶ scheduler-b ◀── bid-b       schedulers and bids
//                                                     call their own fleet)
//
// What is proven: background work claimed in Postgres is done once however
// many replicas race for it; a replica killed with SIGKILL mid-load loses no
// accepted job and runs none twice; a job whose agent dies runs again
// elsewhere once its lease lapses. Every check at the end is exact: each job
// succeeded, exactly one attempt of it succeeded, the attempts of a job never
// overlapped, and what the agents received matches what was recorded.
//
// DROVER_TEST_LOG_DIR=<dir> keeps every process's log lines there.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { BidService } from "../gen/ts/drover/bid/v1/bid_service_pb.ts";
import { AgentStatus, FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { AttemptState, JobState, SchedulerService, type Job } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { bearer } from "../lib/clients.ts";
import { requirePostgres, requireRedis } from "../lib/testing/services.ts";
import { eventually } from "../services/fleet/testing.ts";
import { createTestDatabase, freePort, randomToken, startSplit, type DroverProcess, type SplitEnv } from "./harness.ts";
import { Ledger, SimulatedAgent } from "./simulated_agent.ts";

const postgresUrl = await requirePostgres();
const redisUrl = await requireRedis();

// Short timers so that deaths are noticed within seconds, yet loose enough
// that a busy two-core machine does not make healthy agents look dead: an
// agent is offline after 5 s without a heartbeat, a claim lapses after 5 s,
// an assignment must be confirmed running within 8 s.
const FAST = {
  DROVER_HEARTBEAT_INTERVAL_MS: "250",
  DROVER_STALE_AFTER_MS: "2000",
  DROVER_OFFLINE_AFTER_MS: "5000",
  DROVER_MONITOR_INTERVAL_MS: "100",
  DROVER_SWEEP_INTERVAL_MS: "250",
  DROVER_PRESENCE_REFRESH_MS: "500",
  DROVER_SNAPSHOT_INTERVAL_MS: "1000",
  DROVER_SCHEDULER_SWEEP_MS: "100",
  DROVER_LEASE_MS: "1000",
  DROVER_CONFIRM_MS: "8000",
  DROVER_CLAIM_MS: "5000",
  DROVER_WAIT_RETRY_MS: "300",
  DROVER_BID_WINDOW_MS: "500",
  DROVER_SHUTDOWN_GRACE_MS: "200",
};

const FINAL_STATES = ["succeeded", "failed", "cancelled", "timed_out", "dead"];

type Behaviour = "ok" | "fail-once" | "hang-first";

/**
 * A simulated job (see simulated_agent.ts) needing a tenth of a core, for
 * the agents of one Fleet replica ("a" or "b": placement packs jobs onto few
 * agents, and each half of the cluster must see work). Up to 3 retries, 50
 * ms apart at first.
 */
function simJob(name: string, behaviour: Behaviour, ms: number, side: "a" | "b") {
  return {
    name,
    exec: { commands: [{ argv: ["sim", behaviour, String(ms)] }] },
    resources: { cpuMillis: 100, memoryBytes: 64n << 20n },
    constraints: { labels: { side } },
    retry: { maxRetries: 3, initialBackoff: { nanos: 50_000_000 } },
  };
}

/** One replica of a service; it keeps the processes of its earlier lives, for their logs. */
class Replica {
  proc!: DroverProcess;
  readonly lives: DroverProcess[] = [];

  constructor(
    readonly service: "fleet" | "scheduler" | "bid",
    private readonly env: () => SplitEnv,
    private readonly extra: Record<string, string>,
  ) {}

  async start(): Promise<void> {
    this.proc = await startSplit(this.service, this.env(), { ...FAST, ...this.extra });
    this.lives.push(this.proc);
  }

  /** SIGKILL: no clean-up at all. Resolves once the process is gone. */
  async kill(): Promise<void> {
    await this.proc.stop("SIGKILL");
  }

  /** Every log line of every life. */
  logs(): Record<string, unknown>[] {
    return this.lives.flatMap((p) => p.logs);
  }

  /** Calls of `method` this replica's servers answered OK (logged at debug). */
  callsOk(method: string): number {
    return this.logs().filter((l) => l.msg === "call ok" && l.method === method).length;
  }
}

describe("two Scheduler and two Bid replicas on one PostgreSQL and Redis", { skip: postgresUrl === null || redisUrl === null ? "needs PostgreSQL and Redis" : false }, () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let env: SplitEnv;
  let sql: pg.Pool;
  const replicas: Replica[] = [];
  let fleetA: Replica, fleetB: Replica, schedA: Replica, schedB: Replica, bidA: Replica, bidB: Replica;
  let schedulers: [Client<typeof SchedulerService>, Client<typeof SchedulerService>];
  let fleet: Client<typeof FleetService>;
  const ledger = new Ledger();
  const agents: SimulatedAgent[] = [];
  // Keys are unique per run, so a rerun against a kept database never collides.
  const run = randomBytes(4).toString("hex");

  before(async () => {
    db = await createTestDatabase(postgresUrl!);
    env = { databaseUrl: db.url, redisUrl: redisUrl!, adminToken: randomToken(), redisPrefix: `drover-it-sched-${process.pid}:` };
    sql = new pg.Pool({ connectionString: db.url, max: 4 });
    // Fixed ports: a killed Scheduler comes back where Fleet and Bid call it.
    const [pfa, pfb, psa, psb] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const url = (port: number) => `http://127.0.0.1:${port}`;
    const e = () => env;
    fleetA = new Replica("fleet", e, { DROVER_GRPC_PORT: String(pfa), DROVER_SCHEDULER_URL: url(psa) });
    fleetB = new Replica("fleet", e, { DROVER_GRPC_PORT: String(pfb), DROVER_SCHEDULER_URL: url(psb) });
    // Debug level: the logging interceptor writes one "call ok" line per call, which shows who served what.
    schedA = new Replica("scheduler", e, { DROVER_GRPC_PORT: String(psa), DROVER_FLEET_URL: url(pfa), DROVER_LOG_LEVEL: "debug" });
    schedB = new Replica("scheduler", e, { DROVER_GRPC_PORT: String(psb), DROVER_FLEET_URL: url(pfb), DROVER_LOG_LEVEL: "debug" });
    bidA = new Replica("bid", e, { DROVER_FLEET_URL: url(pfa), DROVER_SCHEDULER_URL: url(psa) });
    bidB = new Replica("bid", e, { DROVER_FLEET_URL: url(pfb), DROVER_SCHEDULER_URL: url(psb) });
    replicas.push(fleetA, fleetB, schedA, schedB, bidA, bidB);
    // Fleets first: every process checks callers' tokens with Fleet, and migrations serialise anyway.
    await Promise.all([fleetA.start(), fleetB.start()]);
    await Promise.all([schedA.start(), schedB.start(), bidA.start(), bidB.start()]);

    const client = (port: number) => createGrpcTransport({ baseUrl: url(port), interceptors: [bearer(env.adminToken)] });
    schedulers = [createClient(SchedulerService, client(psa)), createClient(SchedulerService, client(psb))];
    fleet = createClient(FleetService, client(pfa));
    const { secret } = await fleet.createAgentToken({ name: "scheduling replicas" });
    // Three agents on each Fleet replica.
    agents.push(
      ...(await Promise.all(
        [fleetA, fleetA, fleetA, fleetB, fleetB, fleetB].map((f, i) =>
          SimulatedAgent.start({ fleetUrl: f.proc.grpcUrl, registrationToken: secret, ledger, name: `sim-${i}`, labels: { side: i < 3 ? "a" : "b" } }),
        ),
      )),
    );
    await eventually(async () => ((await fleet.listAgents({ status: AgentStatus.ONLINE })).agents.length === 6 ? true : undefined), 15_000, "six agents online");
    // A first job through each Scheduler, so that no test pays for cold processes (a first auction can take seconds).
    const { ids } = await submit([simJob("warm-up-0", "ok", 10, "a"), simJob("warm-up-1", "ok", 10, "b")], { perTick: 2, tickMs: 0 });
    await allEnded(ids, 60_000);
  });

  after(async () => {
    const logDir = process.env.DROVER_TEST_LOG_DIR;
    if (logDir) {
      for (const [i, r] of replicas.entries()) {
        r.lives.forEach((p, life) => writeFileSync(join(logDir, `${i}-${r.service}-${life}.log`), `${p.logs.map((l) => JSON.stringify(l)).join("\n")}\n${p.stderr()}`));
      }
    }
    await Promise.all(agents.map((a) => a.stop()));
    await Promise.all(replicas.map((r) => r.proc?.stop("SIGKILL")));
    await sql?.end();
    await db?.drop();
  });

  /**
   * Submits jobs, alternating between the two Schedulers, `perTick` every
   * `tickMs`, at most 16 at a time. A submit that fails is sent again to the
   * other one with the same idempotency key, as a client would, so every job
   * is accepted exactly once. Resolves the job ids in order and how many
   * submits had to be sent again.
   */
  async function submit(specs: ReturnType<typeof simJob>[], pace: { perTick: number; tickMs: number }): Promise<{ ids: string[]; resent: number }> {
    let resent = 0;
    let inFlight = 0;
    const slotFreed: (() => void)[] = [];
    const one = async (spec: ReturnType<typeof simJob>, i: number): Promise<string> => {
      const idempotencyKey = `${run}:${spec.name}`;
      try {
        for (let attempt = 0; ; attempt++) {
          try {
            const { job } = await schedulers[(i + attempt) % 2]!.submitJob({ spec, idempotencyKey }, { timeoutMs: 10_000 });
            return job!.id;
          } catch (err) {
            if (attempt >= 30) throw err;
            resent++;
            await new Promise((resolve) => setTimeout(resolve, 250));
          }
        }
      } finally {
        inFlight--;
        slotFreed.shift()?.();
      }
    };
    const pending: Promise<string>[] = [];
    for (let i = 0; i < specs.length; i++) {
      while (inFlight >= 16) await new Promise<void>((resolve) => slotFreed.push(resolve));
      inFlight++;
      pending.push(one(specs[i]!, i));
      if ((i + 1) % pace.perTick === 0) await new Promise((resolve) => setTimeout(resolve, pace.tickMs));
    }
    return { ids: await Promise.all(pending), resent };
  }

  /** Resolves once every job has ended; on timeout, says how many are in which state. */
  async function allEnded(ids: string[], timeoutMs: number): Promise<void> {
    let states = "";
    try {
      await eventually(
        async () => {
          const { rows } = await sql.query<{ state: string; n: number }>(
            `SELECT state, count(*)::int AS n FROM scheduler.jobs WHERE id = ANY($1::uuid[]) GROUP BY state ORDER BY state`,
            [ids],
          );
          states = rows.map((r) => `${r.state}=${r.n}`).join(" ");
          const ended = rows.filter((r) => FINAL_STATES.includes(r.state)).reduce((n, r) => n + r.n, 0);
          return ended === ids.length ? true : undefined;
        },
        timeoutMs,
        `${ids.length} jobs ended`,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}; states: ${states}`);
    }
  }

  /** Every job as the API shows it, read through both Schedulers. */
  async function jobsOf(ids: string[]): Promise<Job[]> {
    const out: Job[] = [];
    for (let i = 0; i < ids.length; i += 20) {
      out.push(...(await Promise.all(ids.slice(i, i + 20).map(async (id, j) => (await schedulers[(i + j) % 2]!.getJob({ id })).job!))));
    }
    return out;
  }

  /**
   * The exact end state after a run: every job succeeded with exactly one
   * succeeded attempt; a job's attempts never overlapped in the Scheduler's
   * record; each attempt the agents received is recorded, on the agent that
   * received it, handed over once; each attempt that was not lost reached
   * its agent; and, among the attempts the Scheduler did not declare lost,
   * the agents ran exactly one of each job to success and never two at once.
   * Resolves the jobs and how many attempts were lost.
   */
  async function verify(ids: string[]): Promise<{ jobs: Job[]; lost: number }> {
    assert.equal(new Set(ids).size, ids.length, "every submit has its own job");
    const jobs = await jobsOf(ids);
    const problems: string[] = [];
    let lost = 0;
    for (const job of jobs) {
      const say = (what: string) => problems.push(`job ${job.id} (${job.spec?.name}): ${what}`);
      if (job.state !== JobState.SUCCEEDED) say(`ended ${JobState[job.state]}: ${job.endReason}`);
      const attempts = [...job.attempts].sort((a, b) => a.number - b.number);
      const byId = new Map(attempts.map((a) => [a.id, a]));
      const succeeded = attempts.filter((a) => a.state === AttemptState.SUCCEEDED);
      if (succeeded.length !== 1) say(`${succeeded.length} succeeded attempts`);
      lost += attempts.filter((a) => a.state === AttemptState.LOST).length;
      for (let i = 1; i < attempts.length; i++) {
        const [prev, next] = [attempts[i - 1]!, attempts[i]!];
        if (!prev.endTime || timestampMs(next.createTime!) < timestampMs(prev.endTime)) {
          say(`attempt ${next.number} was created while attempt ${prev.number} (${AttemptState[prev.state]}) still held the job`);
        }
      }
      const received = ledger.ofJob(job.id);
      for (const r of received) {
        const a = byId.get(r.attemptId);
        if (!a) say(`agent ${r.agentId} received attempt ${r.attemptId}, which the Scheduler does not know`);
        else if (a.agentId !== r.agentId) say(`attempt ${a.number} is recorded on ${a.agentId} but agent ${r.agentId} received it`);
        if (r.handed !== 1) say(`attempt ${r.attemptId} was handed to its runner ${r.handed} times`);
      }
      for (const a of attempts) {
        if (a.state !== AttemptState.LOST && !received.some((r) => r.attemptId === a.id)) say(`attempt ${a.number} (${AttemptState[a.state]}) never reached agent ${a.agentId}`);
      }
      // What the agents did, leaving out attempts the Scheduler gave up on (their agents may well have run them).
      const kept = received.filter((r) => byId.get(r.attemptId)?.state !== AttemptState.LOST);
      const ranToSuccess = kept.filter((r) => r.outcome === "succeeded");
      if (ranToSuccess.length !== 1 || ranToSuccess[0]!.attemptId !== succeeded[0]?.id) {
        say(`agents ran ${ranToSuccess.length} attempts to success outside lost ones (${ranToSuccess.map((r) => r.attemptId).join(", ")})`);
      }
      for (let i = 1; i < kept.length; i++) {
        const [prev, next] = [kept[i - 1]!, kept[i]!];
        if (prev.endedAt === undefined || next.receivedAt < prev.endedAt) say(`agent ${next.agentId} got attempt ${next.attemptId} while ${prev.agentId} still ran ${prev.attemptId}`);
      }
    }
    assert.deepEqual(problems, []);
    return { jobs, lost };
  }

  /** Names of the Bid replicas (their `bidder`) that won auctions for the attempts that succeeded, with counts. */
  async function winningBidders(ids: string[]): Promise<Map<string, number>> {
    const { rows } = await sql.query<{ bidder: string; n: number }>(
      `SELECT au.explanation->>'bidder' AS bidder, count(*)::int AS n
         FROM scheduler.attempts a JOIN bid.auctions au ON au.id = a.auction_id
        WHERE a.job_id = ANY($1::uuid[]) AND a.state = 'succeeded'
        GROUP BY 1`,
      [ids],
    );
    return new Map(rows.map((r) => [r.bidder, r.n]));
  }

  /** How many of `bidders`' auctions a Bid process ran: its bidder name carries its pid. */
  const ranBy = (bidders: Map<string, number>, proc: DroverProcess) =>
    [...bidders].filter(([name]) => name?.split(":")[1] === String(proc.child.pid)).reduce((n, [, count]) => n + count, 0);

  it("runs 200 jobs, a fifth failing once, to exactly one success each, with both Bid and both Scheduler replicas at work", async (t) => {
    const specs = Array.from({ length: 200 }, (_, i) => simJob(`load-${i}`, i % 5 === 0 ? "fail-once" : "ok", 20 + (i % 7) * 15, i % 2 ? "b" : "a"));
    const started = Date.now();
    const { ids } = await submit(specs, { perTick: 50, tickMs: 20 });
    await allEnded(ids, 45_000);
    const { jobs, lost } = await verify(ids);
    t.diagnostic(`200 jobs in ${Date.now() - started} ms; ${lost} attempts lost`);

    // Nothing was killed: an attempt lost here would be a healthy agent given up on (as when Fleet read its
    // heartbeats only after its job events). Each job went exactly as scripted, one Assignment per attempt.
    assert.equal(lost, 0);
    for (const [i, job] of jobs.entries()) {
      const expected = i % 5 === 0 ? [["FAILED", 1], ["SUCCEEDED", 0]] : [["SUCCEEDED", 0]];
      assert.deepEqual(job.attempts.map((a) => [AttemptState[a.state], a.exitCode]), expected, `job ${job.spec?.name}`);
      assert.equal(ledger.ofJob(job.id).length, job.attempts.length, `job ${job.spec?.name}: Assignments received`);
    }

    const perAgent = agents.map((a) => [...ledger.attempts.values()].filter((r) => r.agentId === a.id && ids.includes(r.jobId)).length);
    t.diagnostic(`attempts per agent (a a a b b b): ${perAgent.join(" ")}`);
    // Both auctioneers placed jobs that then succeeded...
    const bidders = await winningBidders(ids);
    t.diagnostic(`winning auctions per bidder: ${JSON.stringify([...bidders])}`);
    assert.ok(ranBy(bidders, bidA.proc) > 0, "bid-a placed some of the jobs");
    assert.ok(ranBy(bidders, bidB.proc) > 0, "bid-b placed some of the jobs");
    // ...through their own Scheduler, which also took the job events from its own Fleet.
    for (const [name, s] of [["scheduler-a", schedA], ["scheduler-b", schedB]] as const) {
      for (const method of ["ClaimPlaceableJobs", "RecordPlacements", "ReportJobEvents", "SubmitJob"]) {
        assert.ok(s.callsOk(method) > 0, `${name} answered ${method}`);
      }
    }
  });

  it("loses no accepted job and runs none twice when a Scheduler is killed with SIGKILL mid-load and restarted", async (t) => {
    const specs = Array.from({ length: 120 }, (_, i) => simJob(`kill-scheduler-${i}`, i % 5 === 0 ? "fail-once" : "ok", 50 + (i % 5) * 50, i % 2 ? "b" : "a"));
    const before = ledger.size;
    const submitting = submit(specs, { perTick: 5, tickMs: 100 });
    // Mid-load: a quarter of the jobs have reached agents, the rest are still being submitted, placed or run.
    await eventually(() => (ledger.size - before >= 30 ? true : undefined), 30_000, "30 assignments");
    const killed = Date.now();
    await schedA.kill();
    await schedA.start();
    t.diagnostic(`scheduler-a back ${Date.now() - killed} ms after the kill`);
    const { ids, resent } = await submitting;
    await allEnded(ids, 40_000);
    const { lost } = await verify(ids);
    t.diagnostic(`${resent} submits resent to the other Scheduler; ${lost} attempts lost`);

    // Submits resent after a failure did not create second jobs.
    const { rows } = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM scheduler.jobs WHERE spec->>'name' LIKE 'kill-scheduler-%'`);
    assert.equal(rows[0]!.n, 120);
    // The new process is back in its place: bid-a polls it for work again.
    await eventually(() => (schedA.proc.logs.some((l) => l.msg === "call ok" && l.method === "ClaimPlaceableJobs") ? true : undefined), 15_000, "bid-a claiming from the restarted scheduler-a");
  });

  it("re-auctions the jobs a Bid replica had claimed when it is killed with SIGKILL mid-auction, and runs each once", async (t) => {
    // Pause bid-b, so that bid-a runs every auction and the kill surely lands in one.
    bidB.proc.child.kill("SIGSTOP");
    let resumed = false;
    const resume = () => {
      if (!resumed) bidB.proc.child.kill("SIGCONT");
      resumed = true;
    };
    try {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const specs = Array.from({ length: 100 }, (_, i) => simJob(`kill-bid-${i}`, i % 5 === 0 ? "fail-once" : "ok", 50 + (i % 5) * 30, i % 2 ? "b" : "a"));
      const before = ledger.size;
      const submitting = submit(specs, { perTick: 10, tickMs: 50 });
      await eventually(() => (ledger.size - before >= 30 ? true : undefined), 30_000, "30 assignments");

      // The next offer an agent gets is bid-a's, and bid-a is waiting for its answer: kill it right there.
      const killedPid = bidA.proc.child.pid;
      const inHand = await new Promise<{ jobId: string; at: number }>((resolve) => {
        ledger.onOffer = (offer) => {
          ledger.onOffer = undefined;
          bidA.proc.child.kill("SIGKILL");
          resolve({ jobId: offer.jobId, at: Date.now() });
        };
      });
      // bid-b wakes after the claims it may have held when paused have lapsed (5 s): it must not place those jobs.
      await new Promise((resolve) => setTimeout(resolve, 5500));
      resume();
      await bidA.kill();
      await bidA.start();
      const { ids } = await submitting;
      await allEnded(ids, 40_000);
      const { jobs, lost } = await verify(ids);
      t.diagnostic(`${lost} attempts lost`);

      // The job whose auction died with bid-a: its claim lapsed, and it was auctioned again and ran.
      assert.ok(ids.includes(inHand.jobId), "the offer in hand was for one of this test's jobs");
      const lapsed = [schedA, schedB].flatMap((s) => s.logs()).filter((l) => l.msg === "claims lapsed; jobs are placeable again" && Number(l.time) >= inHand.at);
      assert.ok(lapsed.length > 0, "a scheduler released lapsed claims after the kill");
      const job = jobs.find((j) => j.id === inHand.jobId)!;
      const succeeded = job.attempts.find((a) => a.state === AttemptState.SUCCEEDED)!;
      const { auctions } = await createClient(BidService, createGrpcTransport({ baseUrl: bidB.proc.grpcUrl, interceptors: [bearer(env.adminToken)] })).listAuctions({ jobId: inHand.jobId });
      const won = auctions.find((a) => a.id === succeeded.auctionId);
      assert.ok(won && timestampMs(won.createTime!) >= inHand.at, "the attempt that succeeded was auctioned after the kill");
      assert.equal(won.winnerAgentId, succeeded.agentId);
      const { rows } = await sql.query<{ bidder: string }>(`SELECT explanation->>'bidder' AS bidder FROM bid.auctions WHERE id = $1::uuid`, [won.id]);
      assert.notEqual(rows[0]?.bidder.split(":")[1], String(killedPid), "by a live Bid replica");
    } finally {
      resume();
    }
  });

  it("runs a job again on another agent once the lease of its killed agent lapses, and records the first attempt lost", async () => {
    const { ids } = await submit([simJob("kill-agent", "hang-first", 50, "a")], { perTick: 1, tickMs: 0 });
    const id = ids[0]!;
    const running = await eventually(
      async () => {
        const { job } = await schedulers[0].getJob({ id });
        return job?.state === JobState.RUNNING ? job : undefined;
      },
      15_000,
      "the job running",
    );
    const victim = agents.find((a) => a.id === running.attempts[0]!.agentId)!;
    const killed = Date.now();
    await victim.kill();

    await allEnded(ids, 20_000);
    await verify(ids);
    const { job: done } = await schedulers[1].getJob({ id });
    assert.deepEqual(done!.attempts.map((a) => [AttemptState[a.state], a.agentId === victim.id]), [["LOST", true], ["SUCCEEDED", false]]);
    assert.match(done!.attempts[0]!.reason, /offline|gone/);
    // Not before Fleet had given up on the agent: 5 s of silence.
    assert.ok(timestampMs(done!.attempts[1]!.createTime!) - killed >= 4000, "placed again only after the agent was declared offline");
    assert.deepEqual(ledger.ofJob(id).map((r) => [r.agentId === victim.id, r.outcome]), [[true, undefined], [false, "succeeded"]]);
    assert.equal((await fleet.getAgent({ id: victim.id })).agent?.status, AgentStatus.OFFLINE);
  });
});
