// Scheduling end to end in one process: the dev-mode control plane (all
// five services, PGlite, the in-process bus) on real ports, and simulated
// agents on real gRPC streams that bid for offers and report attempts the
// way drover-agent does. Submit → auction → Assignment → events → a final
// state, with retries, waits for capacity, lost leases and cancels.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { rmSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { createClient, Code, ConnectError } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { BidService, Candidate_Outcome } from "../gen/ts/drover/bid/v1/bid_service_pb.ts";
import { AttemptState as Reported, type Assignment, type Cancel, type Offer } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { toJson } from "@bufbuild/protobuf";
import { HealthState } from "../gen/ts/drover/common/v1/service_pb.ts";
import { AttemptState, JobSchema, JobState, SchedulerService, type Job } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { bearer } from "../lib/clients.ts";
import { readDevConfig } from "../lib/config.ts";
import { createLogger } from "../lib/logger.ts";
import { preparedDataDir } from "../lib/testing/dev_data.ts";
import { startDev, type DevPlane } from "./dev/dev.ts";
import { eventually, TestAgent } from "./fleet/testing.ts";

let dir: string;
let plane: DevPlane;
let scheduler: ReturnType<typeof createClient<typeof SchedulerService>>;
let bid: ReturnType<typeof createClient<typeof BidService>>;
let fleet: ReturnType<typeof createClient<typeof FleetService>>;
let token: string;

before(async () => {
  // Its database already created and migrated: these tests are not about a first start.
  dir = await preparedDataDir("drover-scheduling-");
  const config = readDevConfig({
    DROVER_DATA_DIR: dir,
    DROVER_GRPC_PORT: "0",
    DROVER_HTTP_PORT: "0",
    DROVER_HEARTBEAT_INTERVAL_MS: "100",
    DROVER_STALE_AFTER_MS: "300",
    DROVER_OFFLINE_AFTER_MS: "600",
    DROVER_MONITOR_INTERVAL_MS: "50",
    DROVER_SWEEP_INTERVAL_MS: "100",
    DROVER_SCHEDULER_SWEEP_MS: "100",
    DROVER_CONFIRM_MS: "2000",
    DROVER_LEASE_MS: "1000",
  });
  plane = await startDev(config, createLogger((process.env.DROVER_TEST_LOG_LEVEL as "debug" | undefined) ?? "silent"));
  const transport = createGrpcTransport({ baseUrl: plane.server.grpcUrl, interceptors: [bearer(plane.adminToken)] });
  scheduler = createClient(SchedulerService, transport);
  bid = createClient(BidService, transport);
  fleet = createClient(FleetService, transport);
  ({ secret: token } = await fleet.createAgentToken({ name: "scheduling tests" }));
});

after(async () => {
  await plane?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/**
 * A simulated agent that bids on every offer (or declines with `decline`),
 * acknowledges what needs it, and reports attempts as told by `run`.
 */
class BiddingAgent {
  /** Every agent not yet vanished: the suite's after() vanishes them, so that no heartbeat timer holds the file open, even after a failure. */
  static readonly live = new Set<BiddingAgent>();
  readonly assignments: Assignment[] = [];
  readonly cancels: Cancel[] = [];
  /** Event ids the server said are recorded (EventAck). */
  readonly eventsAcked = new Set<string>();
  private seq = 0;
  private stopped = false;
  private readonly loop: Promise<void>;
  private beat?: NodeJS.Timeout;

  private constructor(
    readonly stream: TestAgent,
    private readonly opts: { decline?: string; run?: (a: Assignment, agent: BiddingAgent) => void; silent?: (offer: Offer) => boolean },
  ) {
    this.beat = setInterval(() => stream.heartbeat(++this.seq), 50);
    this.loop = this.serve();
    BiddingAgent.live.add(this);
  }

  static async start(labels: Record<string, string> = {}, opts: BiddingAgent["opts"] = {}): Promise<BiddingAgent> {
    const stream = await TestAgent.register(plane.server.grpcUrl, token, { hostname: "sim", labels, drivers: ["process"], total: { cpuMillis: 4000, memoryBytes: 8n << 30n }, free: { cpuMillis: 4000, memoryBytes: 8n << 30n } });
    return new BiddingAgent(stream, opts);
  }

  get id(): string {
    return this.stream.agentId;
  }

  report(attemptId: string, state: Reported, exitCode = 0): void {
    this.stream.send({ message: { case: "jobEvent", value: { eventId: `${attemptId}:${state}`, attemptId, state, exitCode, message: state === Reported.FAILED ? `exited with code ${exitCode}` : "" } } });
  }

  private async serve(): Promise<void> {
    while (!this.stopped) {
      let m;
      try {
        m = await this.stream.next(60_000);
      } catch {
        return;
      }
      if (m.messageId) this.stream.ack(m.messageId);
      switch (m.message.case) {
        case "offer":
          if (this.opts.silent?.(m.message.value)) break;
          if (this.opts.decline) this.stream.send({ message: { case: "decline", value: { offerId: m.message.value.offerId, reason: this.opts.decline } } });
          else this.stream.send({ message: { case: "bid", value: { offerId: m.message.value.offerId, score: 0.5 } } });
          break;
        case "assignment":
          this.assignments.push(m.message.value);
          (this.opts.run ?? succeed)(m.message.value, this);
          break;
        case "cancel":
          this.cancels.push(m.message.value);
          this.report(m.message.value.attemptId, Reported.CANCELLED);
          break;
        case "eventAck":
          for (const id of m.message.value.eventIds) this.eventsAcked.add(id);
          break;
      }
    }
  }

  /** Vanishes: no more heartbeats, the stream is cut. */
  async vanish(): Promise<void> {
    if (!BiddingAgent.live.delete(this)) return;
    this.stopped = true;
    clearInterval(this.beat);
    await this.stream.cancel();
    await this.loop;
  }
}

const succeed = (a: Assignment, agent: BiddingAgent) => {
  agent.report(a.attemptId, Reported.RUNNING);
  agent.report(a.attemptId, Reported.SUCCEEDED);
};

const exec = { commands: [{ argv: ["echo", "hi"] }] };

async function until(id: string, states: JobState[], timeoutMs = 10_000): Promise<Job> {
  return eventually(async () => {
    const { job } = await scheduler.getJob({ id });
    return job && states.includes(job.state) ? job : undefined;
  }, timeoutMs, `job ${id} in ${states.map((s) => JobState[s]).join("|")}`);
}

describe("scheduling", () => {
  after(async () => {
    for (const a of BiddingAgent.live) await a.vanish();
  });

  it("runs a submitted job on the agent that bid, records the attempt and explains the placement", async () => {
    const a = await BiddingAgent.start({ pool: "one" });
    const { job } = await scheduler.submitJob({ spec: { name: "hello", exec, constraints: { labels: { pool: "one" } } } });
    const done = await until(job!.id, [JobState.SUCCEEDED]);
    assert.equal(done.attemptCount, 1);
    assert.equal(done.attempts.length, 1);
    const attempt = done.attempts[0]!;
    assert.equal(attempt.agentId, a.id);
    assert.equal(attempt.state, AttemptState.SUCCEEDED);
    assert.ok(attempt.startTime && attempt.endTime);
    assert.deepEqual(a.assignments.map((x) => x.jobId), [job!.id]);
    assert.deepEqual(a.assignments[0]!.exec?.commands[0]?.argv, ["echo", "hi"]);
    assert.deepEqual([a.assignments[0]!.runId, a.assignments[0]!.stageName], ["", ""], "a plain job is no run's stage");
    const explained = await bid.explainPlacement({ jobId: job!.id });
    assert.match(explained.explanation, new RegExp(`placed on agent ${a.id}`));
    assert.equal(explained.auctions[0]?.candidates.find((c) => c.agentId === a.id)?.outcome, Candidate_Outcome.WON);
  });

  it("retries a failed attempt after a backoff and succeeds on the second", async () => {
    let calls = 0;
    const a = await BiddingAgent.start({ pool: "retry" }, {
      run: (x, agent) => {
        agent.report(x.attemptId, Reported.RUNNING);
        agent.report(x.attemptId, ++calls === 1 ? Reported.FAILED : Reported.SUCCEEDED, calls === 1 ? 1 : 0);
      },
    });
    const { job } = await scheduler.submitJob({
      spec: { exec, constraints: { labels: { pool: "retry" } }, retry: { maxRetries: 2, initialBackoff: { nanos: 50_000_000 } } },
    });
    const done = await until(job!.id, [JobState.SUCCEEDED]);
    assert.deepEqual(done.attempts.map((x) => AttemptState[x.state]), ["FAILED", "SUCCEEDED"]);
    assert.equal(done.attempts[0]!.exitCode, 1);
  });

  it("fails at once on a non-retryable exit code, and dead-letters a job out of retries", async () => {
    const a = await BiddingAgent.start({ pool: "fail" }, {
      run: (x, agent) => {
        agent.report(x.attemptId, Reported.RUNNING);
        agent.report(x.attemptId, Reported.FAILED, 2);
      },
    });
    const nonRetryable = await scheduler.submitJob({ spec: { exec, constraints: { labels: { pool: "fail" } }, retry: { maxRetries: 3, nonRetryableExitCodes: [2] } } });
    const failed = await until(nonRetryable.job!.id, [JobState.FAILED, JobState.DEAD]);
    assert.equal(failed.state, JobState.FAILED);
    assert.equal(failed.attempts.length, 1);
    assert.match(failed.endReason, /non-retryable/);

    const outOfRetries = await scheduler.submitJob({ spec: { exec, constraints: { labels: { pool: "fail" } }, retry: { maxRetries: 1, initialBackoff: { nanos: 10_000_000 } } } });
    const dead = await until(outOfRetries.job!.id, [JobState.DEAD, JobState.FAILED]);
    assert.equal(dead.state, JobState.DEAD);
    assert.equal(dead.attempts.length, 2);
    const { jobs } = await scheduler.listJobs({ state: JobState.DEAD });
    assert.ok(jobs.some((j) => j.id === dead.id), "listed in the dead-letter queue");
    const again = await scheduler.resubmitJob({ id: dead.id });
    assert.notEqual(again.job?.id, dead.id);
    assert.equal(again.created, true);
  });

  it("keeps a job no agent can take waiting with the reason, and places it when a fitting agent connects", async () => {
    const { job } = await scheduler.submitJob({ spec: { exec, constraints: { labels: { zone: "mars" } } } });
    const waiting = await eventually(async () => {
      const { job: j } = await scheduler.getJob({ id: job!.id });
      return j && /no eligible agent/.test(j.waitReason) ? j : undefined;
    }, 10_000, "a wait reason");
    assert.equal(waiting.state, JobState.PENDING);
    assert.match(waiting.waitReason, /zone=mars/);
    const a = await BiddingAgent.start({ zone: "mars" });
    const done = await until(job!.id, [JobState.SUCCEEDED], 5000);
    assert.equal(done.attempts[0]!.agentId, a.id);
  });

  it("places a job elsewhere when its agent vanishes mid-run, and the first attempt is recorded as lost", async () => {
    const first = await BiddingAgent.start({ pool: "lost" }, { run: (x, agent) => agent.report(x.attemptId, Reported.RUNNING) });
    const { job } = await scheduler.submitJob({ spec: { exec, constraints: { labels: { pool: "lost" } } } });
    await until(job!.id, [JobState.RUNNING]);
    await first.vanish();
    const second = await BiddingAgent.start({ pool: "lost" });
    const done = await until(job!.id, [JobState.SUCCEEDED], 15_000);
    assert.deepEqual(done.attempts.map((x) => [AttemptState[x.state], x.agentId]), [["LOST", first.id], ["SUCCEEDED", second.id]]);
    assert.match(done.attempts[0]!.reason, /offline|gone/);
  });

  it("runs at most concurrency_limit jobs of a key at a time, fleet-wide, and says why the others wait", async () => {
    // Two agents that keep each job running until the test ends it.
    const holding: Assignment[] = [];
    const hold = (x: Assignment, agent: BiddingAgent) => {
      agent.report(x.attemptId, Reported.RUNNING);
      holding.push(x);
    };
    const [a, b] = [await BiddingAgent.start({ pool: "keyed" }, { run: hold }), await BiddingAgent.start({ pool: "keyed" }, { run: hold })];
    const spec = { exec, constraints: { labels: { pool: "keyed" } }, concurrencyKey: "deploy-prod", concurrencyLimit: 2 };
    const ids = await Promise.all(Array.from({ length: 5 }, async () => (await scheduler.submitJob({ spec })).job!.id));
    const finishOne = () => {
      const x = holding.shift()!;
      const agent = a.assignments.includes(x) ? a : b;
      agent.report(x.attemptId, Reported.SUCCEEDED);
    };
    let most = 0;
    for (let done = 0; done < 5; done++) {
      await eventually(() => (holding.length > 0 ? true : undefined), 10_000, "a job of the key running");
      // Give the auctioneer every chance to overrun the limit before looking.
      await new Promise((r) => setTimeout(r, 300));
      const { jobs } = await scheduler.listJobs({ pageSize: 100 });
      const mine = jobs.filter((j) => ids.includes(j.id));
      const live = mine.filter((j) => [JobState.OFFERED, JobState.ASSIGNED, JobState.RUNNING].includes(j.state)).length;
      most = Math.max(most, live, holding.length);
      assert.ok(live <= 2, `${live} jobs of the key hold a slot`);
      const waiting = mine.find((j) => j.state === JobState.PENDING);
      if (waiting && live === 2) assert.match(waiting.waitReason, /waiting for a concurrency slot: 2 of 2 jobs with key "deploy-prod" hold one/);
      finishOne();
    }
    for (const id of ids) await until(id, [JobState.SUCCEEDED]);
    assert.equal(most, 2, "two ran at once: the limit, not one at a time");
    assert.equal(a.assignments.length + b.assignments.length, 5);
  });

  it("keeps a job's place while its offered agent does not answer: a job of its key submitted after it does not go first", async () => {
    const started: { jobId: string; attemptId: string }[] = [];
    const hold = (x: Assignment, agent: BiddingAgent) => {
      started.push({ jobId: x.jobId, attemptId: x.attemptId });
      agent.report(x.attemptId, Reported.RUNNING);
    };
    const key = { concurrencyKey: "in-order", concurrencyLimit: 1, constraints: { labels: { pool: "in-order" } } };
    // The two jobs differ in size only, so that the agent can tell their offers apart.
    const firstSpec = { exec, ...key, resources: { cpuMillis: 100 } };
    const secondSpec = { exec, ...key, resources: { cpuMillis: 200 } };
    let silences = 2; // the first job's first two offers go unanswered
    let second: Promise<string> | undefined;
    const agent = await BiddingAgent.start({ pool: "in-order" }, {
      run: hold,
      silent: (offer) => {
        if (offer.resources?.cpuMillis !== 100 || silences <= 0) return false;
        silences--;
        // The second job of the key arrives while the first is being auctioned.
        second ??= scheduler.submitJob({ spec: secondSpec }).then((r) => r.job!.id);
        return true;
      },
    });
    await eventually(async () => ((await fleet.listAgents({ labelSelector: { pool: "in-order" } })).agents.length === 1 ? true : undefined), 5_000, "the agent listed");
    await new Promise((r) => setTimeout(r, 200)); // Bid's view follows Fleet's by a few ms
    const first = (await scheduler.submitJob({ spec: firstSpec })).job!.id;
    await eventually(() => (started.length > 0 ? true : undefined), 15_000, "a job of the key started");
    const secondId = await second!;
    assert.deepEqual(started.map((s) => s.jobId), [first], `the first job (${first}) ran first, not the second (${secondId})`);
    assert.equal(silences, 0, "both of the first job's silent auctions happened");
    await until(first, [JobState.RUNNING]);
    const waiting = (await scheduler.getJob({ id: secondId })).job!;
    assert.equal(waiting.state, JobState.PENDING);
    assert.match(waiting.waitReason, /waiting for a concurrency slot/);
    const { auctions } = await bid.explainPlacement({ jobId: first });
    // On a loaded machine the dev process can stall past this file's 300 ms
    // DROVER_STALE_AFTER_MS, and an auction then finds the agent stale (CI saw
    // one): the agent is the only one of its pool, so such an auction offers
    // the job to no one and places it nowhere.
    const offered = auctions.filter((a) => a.candidates.some((c) => c.agentId === agent.id));
    for (const a of auctions.filter((x) => !offered.includes(x))) {
      assert.deepEqual([a.candidates.length, a.winnerAgentId], [0, ""], `an auction without the agent offered and placed nothing: ${a.explanation}`);
    }
    const outcomes = offered.map((a) => a.candidates.find((c) => c.agentId === agent.id)!.outcome);
    assert.deepEqual(outcomes, [Candidate_Outcome.WON, Candidate_Outcome.NO_ANSWER, Candidate_Outcome.NO_ANSWER], "newest first: unanswered twice, then placed");

    agent.report(started[0]!.attemptId, Reported.SUCCEEDED);
    await until(secondId, [JobState.RUNNING]);
    assert.deepEqual(started.map((s) => s.jobId), [first, secondId]);
    agent.report(started[1]!.attemptId, Reported.SUCCEEDED);
    await until(secondId, [JobState.SUCCEEDED]);
  });

  it("holds on to a job of a key whose silent agent stops being eligible, so that the key's next job cannot take its slot", async () => {
    const started: string[] = [];
    let silent = true;
    let cordoning: Promise<unknown> | undefined;
    const agent = await BiddingAgent.start({ pool: "held-on" }, {
      run: (x, a) => {
        started.push(x.jobId);
        a.report(x.attemptId, Reported.RUNNING);
      },
      silent: () => {
        // Its first offer goes unanswered; then an operator cordons the agent.
        cordoning ??= fleet.cordonAgent({ id: agent.id });
        return silent;
      },
    });
    await eventually(async () => ((await fleet.listAgents({ labelSelector: { pool: "held-on" } })).agents.length === 1 ? true : undefined), 5_000, "the agent listed");
    await new Promise((r) => setTimeout(r, 200)); // Bid's view follows Fleet's by a few ms
    const key = { concurrencyKey: "held-on", concurrencyLimit: 1, constraints: { labels: { pool: "held-on" } } };
    const first = (await scheduler.submitJob({ spec: { exec, ...key } })).job!.id;
    // Auctioned again while the agent is cordoned: no candidate at all.
    await eventually(async () => ((await bid.explainPlacement({ jobId: first })).auctions.some((a) => a.candidates.length === 0) ? true : undefined), 10_000, "an auction with no candidate");
    await cordoning;
    assert.equal((await scheduler.getJob({ id: first })).job!.state, JobState.OFFERED, "still held by Bid, its slot kept");
    const second = (await scheduler.submitJob({ spec: { exec, ...key } })).job!.id;
    await new Promise((r) => setTimeout(r, 300)); // time for a claim of the second, were the slot free
    const waiting = (await scheduler.getJob({ id: second })).job!;
    assert.equal(waiting.state, JobState.PENDING);
    assert.match(waiting.waitReason, /waiting for a concurrency slot/);

    silent = false;
    await fleet.uncordonAgent({ id: agent.id });
    await until(first, [JobState.RUNNING]);
    assert.deepEqual(started, [first]);
  });

  it("cancels a running job: the agent gets a Cancel with the grace period and the job ends cancelled", async () => {
    const a = await BiddingAgent.start({ pool: "cancel" }, { run: (x, agent) => agent.report(x.attemptId, Reported.RUNNING) });
    const { job } = await scheduler.submitJob({ spec: { exec, constraints: { labels: { pool: "cancel" } } } });
    await until(job!.id, [JobState.RUNNING]);
    await scheduler.cancelJob({ id: job!.id, gracePeriod: { seconds: 3n }, reason: "not needed" });
    const done = await until(job!.id, [JobState.CANCELLED]);
    assert.equal(done.endReason, "not needed");
    assert.equal(a.cancels[0]?.gracePeriod?.seconds, 3n);
    // Cancelling again is harmless; a pending job cancels at once.
    await scheduler.cancelJob({ id: job!.id });
    const pending = await scheduler.submitJob({ spec: { exec, constraints: { labels: { zone: "nowhere" } } } });
    const cancelled = await scheduler.cancelJob({ id: pending.job!.id });
    assert.equal(cancelled.job?.state, JobState.CANCELLED);
  });

  it("cancels many jobs in one CancelJobs: running ones get their Cancel, pending ones end at once, ended ones are left as they are", async () => {
    const a = await BiddingAgent.start({ pool: "cancel-many" }, { run: (x, agent) => agent.report(x.attemptId, Reported.RUNNING) });
    const running = [];
    for (let i = 0; i < 3; i++) running.push((await scheduler.submitJob({ spec: { exec, constraints: { labels: { pool: "cancel-many" } } } })).job!.id);
    for (const id of running) await until(id, [JobState.RUNNING]);
    const pending = (await scheduler.submitJob({ spec: { exec, constraints: { labels: { zone: "nowhere" } } } })).job!.id;
    const ended = (await scheduler.submitJob({ spec: { exec, constraints: { labels: { zone: "nowhere" } } } })).job!.id;
    await scheduler.cancelJob({ id: ended, reason: "first" });

    // An unknown id refuses the whole call, naming it, and cancels nothing.
    const unknown = randomUUID();
    const err = await scheduler
      .cancelJobs({ jobs: [{ id: pending }, { id: unknown }] })
      .then(() => assert.fail("accepted"), (e) => ConnectError.from(e));
    assert.equal(err.code, Code.NotFound);
    assert.match(err.rawMessage, new RegExp(`jobs\\[1\\]\\.id: job ${unknown} not found`));
    assert.equal((await scheduler.getJob({ id: pending })).job?.state, JobState.PENDING);

    const { jobs } = await scheduler.cancelJobs({
      jobs: [...running.map((id) => ({ id, reason: "scaled down", gracePeriod: { seconds: 2n } })), { id: pending.toUpperCase(), reason: "not needed" }, { id: ended, reason: "again" }],
    });
    assert.deepEqual(jobs.map((j) => j.id), [...running, pending, ended], "one job per request, in order");
    assert.equal(jobs[3]!.state, JobState.CANCELLED);
    assert.equal(jobs[3]!.endReason, "not needed");
    assert.equal(jobs[4]!.endReason, "first", "an ended job is left as it was");
    await eventually(() => (a.cancels.length >= 3 ? true : undefined), 10_000, "the agent's three Cancels");
    assert.deepEqual(new Set(a.cancels.map((c) => c.attemptId)), new Set(jobs.slice(0, 3).map((j) => j.attempts.at(-1)!.id)));
    assert.ok(a.cancels.every((c) => c.gracePeriod?.seconds === 2n && c.reason === "scaled down"));
    for (const id of running) assert.equal((await until(id, [JobState.CANCELLED])).endReason, "scaled down");

    const invalid = await scheduler.cancelJobs({ jobs: [] }).then(() => assert.fail("accepted"), (e) => ConnectError.from(e));
    assert.equal(invalid.code, Code.InvalidArgument);
    assert.match(invalid.rawMessage, /jobs/);
  });

  it("refuses a shell job when the server does not allow shells, naming the field, and stores nothing", async () => {
    const before = (await scheduler.listJobs({ pageSize: 1000 })).jobs.length;
    const err = await scheduler
      .submitJob({ spec: { exec: { ...exec, allowShell: true } } })
      .then(() => assert.fail("accepted"), (e) => ConnectError.from(e));
    assert.equal(err.code, Code.InvalidArgument);
    assert.match(err.rawMessage, /spec\.exec\.allow_shell/);
    assert.equal((await scheduler.listJobs({ pageSize: 1000 })).jobs.length, before);
  });

  it("submits many jobs in one SubmitJobs call, in order, idempotent per key, all or none", async () => {
    const agent = await BiddingAgent.start({ pool: "bulk" });
    const spec = { exec, constraints: { labels: { pool: "bulk" } } };
    const key = `bulk-${randomUUID()}`;
    const refused = async (jobs: { spec?: object; idempotencyKey?: string }[], message: RegExp) => {
      const before = (await scheduler.listJobs({ pageSize: 1000 })).jobs.length;
      const err = await scheduler.submitJobs({ jobs }).then(() => assert.fail("accepted"), (e) => ConnectError.from(e));
      assert.equal(err.code, Code.InvalidArgument);
      assert.match(err.rawMessage, message);
      assert.equal((await scheduler.listJobs({ pageSize: 1000 })).jobs.length, before, "nothing stored");
    };
    // One bad job refuses the call, the good ones before it included: the policy check and the schema's.
    await refused([{ spec, idempotencyKey: key }, { spec }, { spec: { exec: { ...exec, allowShell: true } } }], /^jobs\[2\]\.spec\.exec\.allow_shell: /);
    await refused([{ spec, idempotencyKey: key }, {}], /jobs\[1\]\.spec/);

    const { jobs } = await scheduler.submitJobs({ jobs: [{ spec, idempotencyKey: key }, { spec: { ...spec, name: "second" } }, { spec, idempotencyKey: key }] });
    assert.deepEqual(jobs.map((j) => j.created), [true, true, false], "the key's first job is created once, in the same call");
    assert.equal(jobs[2]!.job!.id, jobs[0]!.job!.id);
    assert.equal(jobs[1]!.job!.spec?.name, "second", "answers in the request's order");
    for (const id of [jobs[0]!.job!.id, jobs[1]!.job!.id]) await until(id, [JobState.SUCCEEDED], 15_000);
    const again = await scheduler.submitJobs({ jobs: [{ spec, idempotencyKey: key }] });
    assert.deepEqual([again.jobs[0]!.created, again.jobs[0]!.job!.id], [false, jobs[0]!.job!.id]);
  });

  it("refuses what no agent could run as asked, naming the field under SubmitJob, SubmitRun and CreateSchedule, and stores nothing", async () => {
    const counts = async () => [
      (await scheduler.listJobs({ pageSize: 1000 })).jobs.length,
      (await scheduler.listRuns({ pageSize: 1000 })).runs.length,
      (await scheduler.listSchedules({ pageSize: 1000 })).schedules.length,
    ];
    const before = await counts();
    const refused = async (p: Promise<unknown>, message: string) => {
      const err = await p.then(() => assert.fail(`accepted; expected ${message}`), (e) => ConnectError.from(e));
      assert.equal(err.code, Code.InvalidArgument, err.message);
      assert.equal(err.rawMessage, message);
    };
    const job = (spec: Record<string, unknown>) => scheduler.submitJob({ spec: { exec, ...spec } });
    await refused(job({ exec: { commands: [{ argv: ["true"] }, { argv: ["echo", "a\0b"] }] } }), "spec.exec.commands[1].argv[1]: contains a NUL byte");
    await refused(job({ exec: { commands: [{ argv: ["true"], cwd: "work\0dir" }] } }), "spec.exec.commands[0].cwd: contains a NUL byte");
    await refused(job({ exec: { ...exec, env: { GREETING: "hi\0there" } } }), 'spec.exec.env["GREETING"]: contains a NUL byte');
    await refused(job({ exec: { commands: [{ argv: ["true"], env: { MODE: "\0" } }] } }), 'spec.exec.commands[0].env["MODE"]: contains a NUL byte');
    await refused(job({ driver: "docker" }), "spec.exec.image: required by the docker driver");
    await refused(job({ exec: { ...exec, image: "alpine:3.20" } }), "spec.exec.image: only the docker driver runs images");
    await refused(job({ driver: "process", exec: { ...exec, image: "alpine:3.20" } }), "spec.exec.image: only the docker driver runs images");
    await refused(
      job({ exec: { commands: [{ argv: ["deploy"], env: { TOKEN: "t" } }], env: { KEY: "k" }, secretEnv: ["TOKEN", "KEY", "PASSWORD"] } }),
      'spec.exec.secret_env[2]: "PASSWORD" is not set in exec.env or any command\'s env',
    );
    // The same checks, under each place a job spec is given.
    await refused(
      scheduler.submitRun({ spec: { stages: [{ name: "ok", job: { exec } }, { name: "img", job: { driver: "docker", exec } }] } }),
      "spec.stages[1].job.exec.image: required by the docker driver",
    );
    await refused(
      scheduler.createSchedule({ spec: { name: "nul", cron: "@daily", template: { case: "job", value: { exec: { commands: [{ argv: ["a\0"] }] } } } } }),
      "spec.job.exec.commands[0].argv[0]: contains a NUL byte",
    );
    await refused(
      scheduler.createSchedule({ spec: { name: "secret", cron: "@daily", template: { case: "run", value: { stages: [{ name: "s", job: { exec: { ...exec, secretEnv: ["X"] } } }] } } } }),
      'spec.run.stages[0].job.exec.secret_env[0]: "X" is not set in exec.env or any command\'s env',
    );
    assert.deepEqual(await counts(), before);
    // What is right is taken: docker with an image, secrets that name variables.
    const ok = await job({ driver: "docker", constraints: { labels: { zone: "nowhere" } }, exec: { ...exec, image: "alpine:3.20", env: { TOKEN: "t" }, secretEnv: ["TOKEN"] } });
    await scheduler.cancelJob({ id: ok.job!.id });
  });

  it("refuses a service job that could end by itself, be a stage or a tick, or whose health could not be checked, naming the field, and stores nothing", async () => {
    const counts = async () => [
      (await scheduler.listJobs({ pageSize: 1000 })).jobs.length,
      (await scheduler.listRuns({ pageSize: 1000 })).runs.length,
      (await scheduler.listSchedules({ pageSize: 1000 })).schedules.length,
    ];
    const before = await counts();
    const refused = async (p: Promise<unknown>, message: string) => {
      const err = await p.then(() => assert.fail(`accepted; expected ${message}`), (e) => ConnectError.from(e));
      assert.equal(err.code, Code.InvalidArgument, err.message);
      assert.equal(err.rawMessage, message);
    };
    const service = { deployment: "web", revision: 1, replicaId: randomUUID() };
    const job = (spec: Record<string, unknown>) => scheduler.submitJob({ spec: { exec, service, ...spec } });
    const check = (c: Record<string, unknown>) => ({ ...service, healthCheck: { check: c } });
    await refused(job({ runMode: { mode: { case: "nTimes", value: 3 } } }), "spec.service: a service job cannot have run_mode");
    await refused(job({ runMode: { mode: { case: "forever", value: true } } }), "spec.service: a service job cannot have run_mode");
    await refused(job({ timeout: { seconds: 60n } }), "spec.service: a service job cannot have timeout");
    await refused(job({ service: check({ case: "tcp", value: { port: 0 } }) }), "spec.service.health_check.tcp.port: a port is required (or set assign_port to check the replica's own port)");
    await refused(job({ service: check({ case: "http", value: { port: 0, path: "/healthz" } }) }), "spec.service.health_check.http.port: a port is required (or set assign_port to check the replica's own port)");
    await refused(
      job({ driver: "docker", exec: { ...exec, image: "nginx:1.27" }, service: check({ case: "http", value: { port: 80 } }) }),
      "spec.service.health_check.http.port: a docker replica is checked on its assigned port: set 0 with assign_port (the container listens on $PORT, published on the host)",
    );
    await refused(job({ service: check({ case: "command", value: { argv: ["curl", "-f", "localhost\0:80"] } }) }), "spec.service.health_check.command.argv[2]: contains a NUL byte");
    // A service is no run stage and no schedule's tick.
    await refused(
      scheduler.submitRun({ spec: { stages: [{ name: "ok", job: { exec } }, { name: "web", job: { exec, service } }] } }),
      "spec.stages[1].job.service: a stage runs once; a service job runs until cancelled and cannot be a stage",
    );
    await refused(
      scheduler.createSchedule({ spec: { name: "svc", cron: "@daily", template: { case: "job", value: { exec, service } } } }),
      "spec.job.service: a schedule's job runs once per tick; a service job runs until cancelled",
    );
    await refused(
      scheduler.createSchedule({ spec: { name: "svc-run", cron: "@daily", template: { case: "run", value: { stages: [{ name: "web", job: { exec, service } }] } } } }),
      "spec.run.stages[0].job.service: a stage runs once; a service job runs until cancelled and cannot be a stage",
    );
    assert.deepEqual(await counts(), before);
    // What is right is taken: a check on the assigned port, a check on a fixed one, a command check.
    for (const svc of [
      { ...check({ case: "tcp", value: { port: 0 } }), assignPort: true },
      check({ case: "http", value: { port: 8080, path: "/healthz" } }),
      check({ case: "command", value: { argv: ["true"] } }),
    ]) {
      const ok = await job({ service: svc, constraints: { labels: { zone: "nowhere" } } });
      await scheduler.cancelJob({ id: ok.job!.id });
    }
  });

  it("never shows a secret_env value back (GetJob, SubmitRun, GetSchedule), while the agent gets the real one", async () => {
    const a = await BiddingAgent.start({ pool: "secrets" });
    const secretExec = { commands: [{ argv: ["echo", "hi"], env: { PASSWORD: "hunter2" } }], env: { TOKEN: "s3cr3t", PLAIN: "shown" }, secretEnv: ["TOKEN", "PASSWORD"] };
    const { job } = await scheduler.submitJob({ spec: { exec: secretExec, constraints: { labels: { pool: "secrets" } } } });
    assert.deepEqual(job!.spec?.exec?.env, { TOKEN: "[REDACTED]", PLAIN: "shown" });
    await until(job!.id, [JobState.SUCCEEDED]);
    const got = await scheduler.getJob({ id: job!.id });
    assert.ok(!JSON.stringify(toJson(JobSchema, got.job!)).includes("s3cr3t"), "GetJob shows no secret");
    assert.equal(got.job!.spec?.exec?.commands[0]?.env.PASSWORD, "[REDACTED]");
    assert.equal(a.assignments[0]!.exec?.env.TOKEN, "s3cr3t", "the agent needs the value itself");
    assert.equal(a.assignments[0]!.exec?.commands[0]?.env.PASSWORD, "hunter2");
    const { run } = await scheduler.submitRun({ spec: { stages: [{ name: "s", job: { exec: secretExec, constraints: { labels: { zone: "nowhere" } } } }] } });
    assert.equal(run!.spec?.stages[0]?.job?.exec?.env.TOKEN, "[REDACTED]");
    await scheduler.cancelRun({ id: run!.id });
    const { schedule } = await scheduler.createSchedule({ spec: { name: "secrets", cron: "@yearly", template: { case: "job", value: { exec: secretExec } } } });
    const shown = await scheduler.getSchedule({ id: schedule!.id });
    assert.equal(shown.schedule!.spec?.template.case === "job" && shown.schedule!.spec.template.value.exec?.env.TOKEN, "[REDACTED]");
    await scheduler.deleteSchedule({ id: schedule!.id });
  });

  it("describes attempts to the Log service: job, agent, run stage, the secret values and whether the job ended; unknown ids are left out", async () => {
    const a = await BiddingAgent.start({ pool: "describe" });
    // Holds its attempt without reporting, until the test cancels the job.
    const holding = await BiddingAgent.start({ pool: "describe-hold" }, { run: () => {} });
    const secretExec = { commands: [{ argv: ["echo", "hi"], env: { PASSWORD: "hunter2" } }], env: { TOKEN: "s3cr3t", PLAIN: "shown" }, secretEnv: ["TOKEN", "PASSWORD"] };
    const { run } = await scheduler.submitRun({ spec: { stages: [{ name: "build", job: { exec: secretExec, constraints: { labels: { pool: "describe" } } } }] } });
    const ended = await eventually(async () => a.assignments[0], 10_000, "the stage's assignment");
    await until(ended.jobId, [JobState.SUCCEEDED]);
    const { job } = await scheduler.submitJob({ spec: { exec, constraints: { labels: { pool: "describe-hold" } } } });
    const running = await eventually(async () => holding.assignments[0], 10_000, "the held job's assignment");

    const { attempts } = await scheduler.describeAttempts({ attemptIds: [ended.attemptId, randomUUID(), "not-a-uuid", running.attemptId] });
    const described = attempts.map((x) => ({ ...x, secretValues: [...x.secretValues].sort() })).sort((x, y) => (x.jobId === ended.jobId ? -1 : y.jobId === ended.jobId ? 1 : 0));
    assert.deepEqual(described.map(({ attemptId, jobId, agentId, runId, stageName, secretValues, jobEnded }) => ({ attemptId, jobId, agentId, runId, stageName, secretValues, jobEnded })), [
      { attemptId: ended.attemptId, jobId: ended.jobId, agentId: a.id, runId: run!.id, stageName: "build", secretValues: ["hunter2", "s3cr3t"], jobEnded: true },
      { attemptId: running.attemptId, jobId: job!.id, agentId: holding.id, runId: "", stageName: "", secretValues: [], jobEnded: false },
    ]);
    await scheduler.cancelJob({ id: job!.id });
  });

  it("gives a run's stage to the agent with its run id and stage name", async () => {
    const a = await BiddingAgent.start({ pool: "stages" });
    const { run } = await scheduler.submitRun({ spec: { name: "bundle", stages: [{ name: "build", job: { exec, constraints: { labels: { pool: "stages" } } } }] } });
    const assignment = await eventually(async () => a.assignments[0], 10_000, "the stage's assignment");
    assert.equal(assignment.runId, run!.id);
    assert.equal(assignment.stageName, "build");
    await until(assignment.jobId, [JobState.SUCCEEDED]);
  });

  it("records how each command ended, once per command, and shows it with GetJob and WatchJob; a late event moves nothing back", async () => {
    const result = (index: number, exitCode: number, message = "") => ({ index, exitCode, startTime: { seconds: 1_900_000_000n + BigInt(index) }, duration: { seconds: 2n }, peakRssBytes: 5n << 20n, message });
    const a = await BiddingAgent.start({ pool: "commands" }, {
      run: (x, agent) => {
        const send = (eventId: string, sequence: number, state: Reported, command?: ReturnType<typeof result>, exitCode = 0) =>
          agent.stream.send({ message: { case: "jobEvent", value: { eventId, attemptId: x.attemptId, state, sequence, exitCode, command } } });
        send("e1", 1, Reported.RUNNING);
        send("e2", 2, Reported.RUNNING, result(0, 0));
        send("e2", 2, Reported.RUNNING, result(0, 0)); // resent
        send("e3", 3, Reported.RUNNING, result(1, 0));
        send("e4", 4, Reported.SUCCEEDED, result(2, 0));
      },
    });
    const { job } = await scheduler.submitJob({ spec: { exec: { commands: [{ argv: ["make"] }, { argv: ["make", "test"] }, { argv: ["true"] }] }, constraints: { labels: { pool: "commands" } } } });
    const watched: Job[] = [];
    for await (const res of scheduler.watchJob({ id: job!.id }, { timeoutMs: 10_000 })) watched.push(res.job!);
    const last = watched.at(-1)!;
    assert.equal(last.state, JobState.SUCCEEDED);
    assert.deepEqual(last.attempts[0]!.commands.map((c) => [c.index, c.exitCode, c.peakRssBytes, c.duration?.seconds]), [[0, 0, 5n << 20n, 2n], [1, 0, 5n << 20n, 2n], [2, 0, 5n << 20n, 2n]]);

    // An event the agent produced earlier (sequence 2) arrives last, with another account of command 0.
    const attemptId = last.attempts[0]!.id;
    a.stream.send({ message: { case: "jobEvent", value: { eventId: "late", attemptId, state: Reported.RUNNING, sequence: 2, command: result(0, 7, "rewritten") } } });
    await eventually(async () => (a.eventsAcked.has("late") ? true : undefined), 10_000, "the late event recorded");
    const { job: after } = await scheduler.getJob({ id: job!.id });
    assert.equal(after!.state, JobState.SUCCEEDED);
    assert.equal(after!.attempts[0]!.state, AttemptState.SUCCEEDED);
    assert.deepEqual(after!.attempts[0]!.commands, last.attempts[0]!.commands, "command 0 is kept as first reported");
    assert.deepEqual(a.cancels, [], "the attempt was not told to stop");
  });

  it("streams a job's changes with WatchJob until it ends", async () => {
    const a = await BiddingAgent.start({ pool: "watch" });
    const { job } = await scheduler.submitJob({ spec: { exec, constraints: { labels: { pool: "watch" } } } });
    const seen: JobState[] = [];
    for await (const res of scheduler.watchJob({ id: job!.id }, { timeoutMs: 10_000 })) seen.push(res.job!.state);
    assert.equal(seen[seen.length - 1], JobState.SUCCEEDED);
    assert.ok(seen.length >= 2, `saw ${seen.map((s) => JobState[s])}`);
  });

  it("runs a service replica: its spec and Assignment carry the service, it stays running through restarts, and its health is the latest the agent reported", async () => {
    const result = (index: number, exitCode: number) => ({ index, exitCode, message: `exited with code ${exitCode}` });
    const health = (state: HealthState, restarts: number, message = "") => ({ state, restarts, message, port: 31_000 });
    const a = await BiddingAgent.start({ pool: "service" }, { run: (x, agent) => agent.report(x.attemptId, Reported.RUNNING) });
    const service = {
      deployment: "web",
      revision: 3,
      replicaId: randomUUID(),
      assignPort: true,
      healthCheck: { check: { case: "http" as const, value: { port: 0, path: "/healthz" } }, healthyThreshold: 2 },
      restart: { initialDelay: { nanos: 100_000_000 } },
    };
    const key = `deploy:web:3:${service.replicaId}`;
    const spec = { exec, service, constraints: { labels: { pool: "service" } }, retry: { maxRetries: 1, initialBackoff: { nanos: 10_000_000 } } };
    const { job, created } = await scheduler.submitJob({ spec, idempotencyKey: key });
    assert.equal(created, true);
    const again = await scheduler.submitJob({ spec, idempotencyKey: key });
    assert.deepEqual([again.job!.id, again.created], [job!.id, false], "the Deploy service's retried submission makes no second replica");

    // A job auctioned before Bid saw a just-connected agent waits up to DROVER_WAIT_RETRY_MS (10 s).
    const running = await until(job!.id, [JobState.RUNNING], 15_000);
    assert.equal(running.spec?.service?.replicaId, service.replicaId, "the service is stored with the spec");
    assert.equal(running.spec?.service?.healthCheck?.check.case, "http");
    assert.equal(running.spec?.service?.assignPort, true);
    const assignment = a.assignments.find((x) => x.jobId === job!.id)!;
    assert.equal(assignment.service?.deployment, "web");
    assert.equal(assignment.service?.revision, 3);
    assert.equal(assignment.service?.replicaId, service.replicaId);
    assert.equal(assignment.service?.healthCheck?.check.case === "http" && assignment.service.healthCheck.check.value.path, "/healthz");
    assert.equal(assignment.service?.restart?.initialDelay?.nanos, 100_000_000);
    assert.equal(assignment.timeout, undefined);

    const send = (eventId: string, sequence: number, extra: Record<string, unknown>) =>
      a.stream.send({ message: { case: "jobEvent", value: { eventId, attemptId: assignment.attemptId, state: Reported.RUNNING, sequence, ...extra } } });
    const healthSeen = async (want: (j: Job) => boolean, what: string) =>
      eventually(async () => {
        const { job: j } = await scheduler.getJob({ id: job!.id });
        return j && want(j) ? j : undefined;
      }, 10_000, what);

    // A watcher sees the health change like any other change of the job.
    const watched: Job[] = [];
    const watching = (async () => {
      for await (const res of scheduler.watchJob({ id: job!.id }, { timeoutMs: 30_000 })) watched.push(res.job!);
    })().catch(() => {});
    await eventually(async () => (watched.length > 0 ? true : undefined), 5000, "the watch's first message");

    // The process exits and restarts three times, more than the spec's one command; health comes out of order and twice.
    send("h-4", 4, { health: health(HealthState.HEALTHY, 1) });
    send("c-2", 2, { command: result(0, 1) });
    send("h-3", 3, { health: health(HealthState.UNHEALTHY, 1, "exited with code 1") });
    send("c-5", 5, { command: result(1, 1) });
    send("c-6", 6, { command: result(2, 137) });
    send("h-4", 4, { health: health(HealthState.HEALTHY, 1) });
    const healthy = await healthSeen((j) => j.attempts[0]?.commands.length === 3 && j.attempts[0]?.health?.state === HealthState.HEALTHY, "three results and the health of sequence 4");
    await new Promise((r) => setTimeout(r, 200)); // the late sequence 3 would have landed by now
    const { job: settled } = await scheduler.getJob({ id: job!.id });
    assert.equal(settled!.state, JobState.RUNNING, "a restart is not the end of a service's attempt");
    assert.equal(settled!.attempts[0]!.state, AttemptState.RUNNING);
    assert.deepEqual(settled!.attempts[0]!.commands.map((c) => [c.index, c.exitCode]), [[0, 1], [1, 1], [2, 137]]);
    assert.deepEqual([settled!.attempts[0]!.health?.state, settled!.attempts[0]!.health?.restarts, settled!.attempts[0]!.health?.port], [HealthState.HEALTHY, 1, 31_000]);
    assert.deepEqual(healthy.attempts[0]!.health, settled!.attempts[0]!.health);
    await eventually(async () => (watched.some((j) => j.attempts[0]?.health?.state === HealthState.HEALTHY) ? true : undefined), 5000, "the watcher seeing the health");

    // Health-only news: the watcher sees it, the state stays.
    const seenBefore = watched.length;
    send("h-7", 7, { health: health(HealthState.UNHEALTHY, 2, "GET /healthz: 503") });
    await eventually(async () => (watched.slice(seenBefore).some((j) => j.attempts[0]?.health?.state === HealthState.UNHEALTHY) ? true : undefined), 5000, "the watcher seeing the unhealthy replica");
    assert.equal(watched.at(-1)!.state, JobState.RUNNING);
    assert.equal(watched.at(-1)!.attempts[0]!.health?.message, "GET /healthz: 503");

    // The Deploy service's view: ListJobs by id, with each replica's latest attempt and its health.
    const { jobs: listed } = await scheduler.listJobs({ ids: [job!.id] });
    assert.deepEqual(listed.map((j) => [j.id, j.state, j.attempts.length, j.attempts[0]?.health?.state]), [[job!.id, JobState.RUNNING, 1, HealthState.UNHEALTHY]]);

    // The agent cannot keep it up: a failed attempt retries per policy, elsewhere or here.
    a.report(assignment.attemptId, Reported.FAILED, 1);
    const retried = await healthSeen((j) => j.attempts.length === 2 && j.state === JobState.RUNNING, "the second attempt running");
    assert.deepEqual(retried.attempts.map((x) => AttemptState[x.state]), ["FAILED", "RUNNING"]);
    assert.equal(retried.attempts[1]!.health, undefined, "a new attempt starts with no health");
    const second = a.assignments.find((x) => x.jobId === job!.id && x.attemptId !== assignment.attemptId)!;
    assert.equal(second.service?.replicaId, service.replicaId);
    // A health report from the failed attempt changes nothing now.
    send("h-8", 8, { health: health(HealthState.HEALTHY, 3) });
    await eventually(async () => (a.eventsAcked.has("h-8") ? true : undefined), 10_000, "the late health event applied");

    // Stopping a replica is CancelJob.
    await scheduler.cancelJob({ id: job!.id, reason: "scaled down" });
    const cancelled = await until(job!.id, [JobState.CANCELLED]);
    assert.equal(cancelled.endReason, "scaled down");
    assert.equal(cancelled.attempts[0]!.health?.state, HealthState.UNHEALTHY, "the ended attempt keeps the last health it had while live");
    assert.ok(a.cancels.some((c) => c.attemptId === second.attemptId));
    await watching;
    assert.equal(watched.at(-1)!.state, JobState.CANCELLED);
  });

  it("places a service replica elsewhere when its agent vanishes, and honours the job's pinned and avoided agents", async () => {
    const service = { deployment: "api", revision: 1, replicaId: randomUUID() };
    const hold = (x: Assignment, agent: BiddingAgent) => agent.report(x.attemptId, Reported.RUNNING);
    const first = await BiddingAgent.start({ pool: "svc-lost" }, { run: hold });
    const { job } = await scheduler.submitJob({ spec: { exec, service, constraints: { labels: { pool: "svc-lost" } } } });
    // A job auctioned before Bid saw a just-connected agent waits up to DROVER_WAIT_RETRY_MS (10 s).
    await until(job!.id, [JobState.RUNNING], 15_000);
    await first.vanish();
    const second = await BiddingAgent.start({ pool: "svc-lost" }, { run: hold });
    const moved = await eventually(async () => {
      const { job: j } = await scheduler.getJob({ id: job!.id });
      return j?.state === JobState.RUNNING && j.attempts.length === 2 ? j : undefined;
    }, 20_000, "the replica running on the second agent");
    assert.deepEqual(moved.attempts.map((x) => [AttemptState[x.state], x.agentId]), [["LOST", first.id], ["RUNNING", second.id]]);
    await scheduler.cancelJob({ id: job!.id });
    await until(job!.id, [JobState.CANCELLED]);

    // Pinned to one agent of three able to run it; then avoiding two of three.
    const pool = [await BiddingAgent.start({ pool: "pins" }), await BiddingAgent.start({ pool: "pins" }), await BiddingAgent.start({ pool: "pins" })];
    const pinned = await scheduler.submitJob({ spec: { exec, constraints: { labels: { pool: "pins" }, agentIds: [pool[1]!.id] } } });
    assert.equal((await until(pinned.job!.id, [JobState.SUCCEEDED], 15_000)).attempts[0]!.agentId, pool[1]!.id);
    const explained = await bid.explainPlacement({ jobId: pinned.job!.id });
    assert.match(explained.explanation, /not one of the agents the job is pinned to/);
    const avoiding = await scheduler.submitJob({ spec: { exec, constraints: { labels: { pool: "pins" }, avoidAgentIds: [pool[0]!.id, pool[2]!.id] } } });
    assert.equal((await until(avoiding.job!.id, [JobState.SUCCEEDED], 15_000)).attempts[0]!.agentId, pool[1]!.id);
    assert.match((await bid.explainPlacement({ jobId: avoiding.job!.id })).explanation, /2 avoided by the job/);
    // Pinned to an agent that is gone: it waits, and says why.
    const gone = await scheduler.submitJob({ spec: { exec, constraints: { agentIds: [first.id] } } });
    const waiting = await eventually(async () => {
      const { job: j } = await scheduler.getJob({ id: gone.job!.id });
      return j && /no eligible agent/.test(j.waitReason) ? j : undefined;
    }, 10_000, "a wait reason");
    assert.match(waiting.waitReason, /not one of the agents the job is pinned to/);
    assert.match(waiting.waitReason, /1 (offline|pinned by the job but not registered)/);
    await scheduler.cancelJob({ id: gone.job!.id });
  });

  it("spreads a deployment's replicas over agents, within one auction round and across rounds, where plain jobs would pack", async () => {
    const hold = (x: Assignment, agent: BiddingAgent) => agent.report(x.attemptId, Reported.RUNNING);
    const pool = [await BiddingAgent.start({ pool: "spread" }, { run: hold }), await BiddingAgent.start({ pool: "spread" }, { run: hold }), await BiddingAgent.start({ pool: "spread" }, { run: hold })];
    await eventually(async () => ((await fleet.listAgents({ labelSelector: { pool: "spread" } })).agents.length === 3 ? true : undefined), 5_000, "three agents listed");
    await new Promise((r) => setTimeout(r, 200)); // Bid's view follows Fleet's by a few ms
    const replica = () => ({ exec, service: { deployment: "spread-web", revision: 1, replicaId: randomUUID() }, constraints: { labels: { pool: "spread" } } });
    const placed = async (ids: string[]) => Promise.all(ids.map(async (id) => (await until(id, [JobState.RUNNING], 15_000)).attempts.at(-1)!.agentId));
    const perAgent = (agentIds: string[]) => pool.map((a) => agentIds.filter((x) => x === a.id).length);
    // Three submitted together are claimed in one round, or in overlapping ones that count each other's: one per agent.
    const firstRound = await Promise.all([1, 2, 3].map(async () => (await scheduler.submitJob({ spec: replica() })).job!.id));
    assert.deepEqual(perAgent(await placed(firstRound)), [1, 1, 1]);
    // Three more, one at a time: each sees where the running ones are (PlaceableJob.sibling_agent_ids).
    const later: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { job } = await scheduler.submitJob({ spec: replica() });
      await until(job!.id, [JobState.RUNNING], 15_000);
      later.push(job!.id);
    }
    assert.deepEqual(perAgent(await placed([...firstRound, ...later])), [2, 2, 2]);
    const explained = await bid.explainPlacement({ jobId: later[0]! });
    assert.match(explained.explanation, /replicas? of the service, .*replicas are spread|placed on agent/);
    await Promise.all([...firstRound, ...later].map((id) => scheduler.cancelJob({ id })));
  });

  it("auctions a replica again rather than beside its sibling while an agent running none has not answered, a few times at most", async () => {
    const hold = (x: Assignment, agent: BiddingAgent) => agent.report(x.attemptId, Reported.RUNNING);
    let silences = 0; // offers of service replicas the second agent leaves unanswered from now on
    const busy = await BiddingAgent.start({ pool: "patient" }, { run: hold });
    const quiet = await BiddingAgent.start({ pool: "patient" }, { run: hold, silent: (offer) => offer.service && silences-- > 0 });
    await eventually(async () => ((await fleet.listAgents({ labelSelector: { pool: "patient" } })).agents.length === 2 ? true : undefined), 5_000, "two agents listed");
    await new Promise((r) => setTimeout(r, 200)); // Bid's view follows Fleet's by a few ms
    const replica = (deployment: string, agentIds: string[] = []) => ({ exec, service: { deployment, revision: 1, replicaId: randomUUID() }, constraints: { labels: { pool: "patient" }, agentIds } });
    const run = async (spec: ReturnType<typeof replica>) => (await until((await scheduler.submitJob({ spec })).job!.id, [JobState.RUNNING], 15_000));

    // One replica on the busy agent; the quiet one misses its next offer.
    const first = await run(replica("patient-a", [busy.id]));
    silences = 1;
    const second = await run(replica("patient-a"));
    assert.equal(second.attempts.at(-1)!.agentId, quiet.id, "the replica waited for the agent running none");
    const { auctions } = await bid.explainPlacement({ jobId: second.id }); // newest first
    const deferred = auctions.find((a) => a.candidates.some((c) => c.outcome === Candidate_Outcome.DEFERRED));
    assert.ok(deferred, "an auction deferred the busy agent's bid");
    assert.equal(deferred.winnerAgentId, "");
    assert.match(deferred.explanation, new RegExp(`^not placed yet: ${busy.id} runs 1 replica of the service; ${quiet.id} runs 0 and did not answer in time`));
    assert.equal(auctions[0]!.winnerAgentId, quiet.id);

    // An agent that never answers is waited for only so long: then the replica goes beside its sibling.
    silences = Infinity;
    const pinned = await run(replica("patient-b", [busy.id]));
    const patient = await run(replica("patient-b"));
    assert.equal(patient.attempts.at(-1)!.agentId, busy.id);
    const outcomes = (await bid.explainPlacement({ jobId: patient.id })).auctions.map((a) => a.candidates.find((c) => c.agentId === busy.id)?.outcome);
    assert.deepEqual(outcomes, [Candidate_Outcome.WON, Candidate_Outcome.DEFERRED, Candidate_Outcome.DEFERRED], "newest first: deferred twice, then placed");
    silences = 0;
    await Promise.all([first, second, pinned, patient].map((j) => scheduler.cancelJob({ id: j.id })));
  });

  it("lists jobs by id: all of them in one page whatever the page size, only those, in a stable order", async () => {
    const spec = { exec, constraints: { labels: { zone: "nowhere" } } };
    const ids = await Promise.all(Array.from({ length: 150 }, async () => (await scheduler.submitJob({ spec })).job!.id));
    const asked = [...ids, randomUUID(), ids[0]!];
    for (const pageSize of [0, 10, 1000]) {
      const { jobs, nextPageToken } = await scheduler.listJobs({ ids: asked, pageSize });
      assert.equal(nextPageToken, "", `page_size ${pageSize}: one page`);
      assert.deepEqual(jobs.map((j) => j.id).sort(), [...ids].sort(), `page_size ${pageSize}: the 150 jobs, each once; the unknown id is missing`);
    }
    const one = await scheduler.listJobs({ ids: asked });
    const two = await scheduler.listJobs({ ids: [...asked].reverse() });
    assert.deepEqual(one.jobs.map((j) => j.id), two.jobs.map((j) => j.id), "the order does not depend on the request's");
    assert.deepEqual((await scheduler.listJobs({ ids: asked, state: JobState.RUNNING })).jobs, [], "with the state filter too");
    const err = await scheduler.listJobs({ ids: ["not-a-uuid"] }).then(() => assert.fail("accepted"), (e) => ConnectError.from(e));
    assert.equal(err.code, Code.InvalidArgument);
    await Promise.all(ids.map((id) => scheduler.cancelJob({ id })));
  });
});
