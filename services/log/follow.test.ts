// FollowLogs against real databases and real buses: output stored through
// the real Ingest, published by the real BusLivePublisher, followed by a
// LogFollower on another bus connection (another replica).

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";

import { Redis } from "ioredis";

import { create, equals, toJson, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, createRouterTransport, type HandlerContext } from "@connectrpc/connect";

import type { PrismaClient } from "../../gen/prisma/log/client.ts";
import { LogFrameSchema, LogStream } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { FollowFrom, FollowLogsRequestSchema, LogLineSchema, LogService, Stream, type LogLine } from "../../gen/ts/drover/log/v1/log_service_pb.ts";
import { JobState, SchedulerService } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import type { Bus } from "../../lib/bus/bus.ts";
import { createMemoryBus } from "../../lib/bus/memory.ts";
import { createRedisBus } from "../../lib/bus/redis.ts";
import type { DroverClients } from "../../lib/clients.ts";
import { openPglite, openPostgres, type Database } from "../../lib/db/database.ts";
import { migrate } from "../../lib/db/migrate.ts";
import { createTestDatabase, type TestDatabase } from "../../lib/db/testing.ts";
import { createLogger } from "../../lib/logger.ts";
import { requirePostgres, requireRedis } from "../../lib/testing/services.ts";
import { END_CHECK_MS, LOST_GRACE_MS, LogFollower, followDone } from "./follow.ts";
import { Ingest } from "./ingest.ts";
import { BusLivePublisher, jobStream } from "./live.ts";
import { LogReader } from "./read.ts";
import { LogServiceImpl, logRoutes } from "./service.ts";
import { FakeDeploy } from "./testing.ts";

const logger = createLogger("silent");
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const AGENT = "agent-1";
// Only a bound on a hung test, never a measurement.
const PATIENCE_MS = 20_000;

interface AttemptOwner {
  jobId: string;
  runId?: string;
  stageName?: string;
}

/** The Scheduler as far as the Log service asks it: whose attempts are, and whether jobs and runs ended. */
class FakeScheduler {
  readonly attempts = new Map<string, AttemptOwner>();
  readonly endedJobs = new Map<string, number>();
  readonly endedRuns = new Map<string, number>();
  readonly client: DroverClients["scheduler"];

  constructor() {
    const self = this;
    this.client = createClient(
      SchedulerService,
      createRouterTransport((router) =>
        router.service(SchedulerService, {
          describeAttempts(req) {
            return {
              attempts: req.attemptIds
                .filter((id) => self.attempts.has(id))
                .map((id) => {
                  const o = self.attempts.get(id)!;
                  return { attemptId: id, agentId: AGENT, jobId: o.jobId, runId: o.runId ?? "", stageName: o.stageName ?? "", jobEnded: self.endedJobs.has(o.jobId) };
                }),
            };
          },
          getJob(req) {
            const ended = self.endedJobs.get(req.id);
            return { job: { id: req.id, state: ended === undefined ? JobState.RUNNING : JobState.SUCCEEDED, updateTime: timestampFromMs(ended ?? Date.now()) } };
          },
          getRun(req) {
            const ended = self.endedRuns.get(req.id);
            return { run: { id: req.id, endTime: ended === undefined ? undefined : timestampFromMs(ended) } };
          },
        }),
      ),
    );
  }
}

/** Writes frames through Ingest, offsets following on per (attempt, stream). */
class Writer {
  private readonly next = new Map<string, bigint>();
  constructor(
    private readonly scheduler: FakeScheduler,
    readonly ingest: Ingest,
  ) {}

  /** Frames are [stream, text] or [stream, text, epoch ms read] (default: now). */
  async write(attemptId: string, owner: AttemptOwner, frames: Array<[LogStream, string] | [LogStream, string, number]>, final = false): Promise<void> {
    this.scheduler.attempts.set(attemptId, owner);
    const at = (s: LogStream) => `${attemptId}/${s}`;
    const out = frames.map(([stream, text, ms]) => {
      const offset = this.next.get(at(stream)) ?? 0n;
      this.next.set(at(stream), offset + BigInt(enc(text).length));
      return create(LogFrameSchema, { attemptId, stream, offset, data: enc(text), time: timestampFromMs(ms ?? Date.now()) });
    });
    if (final) {
      for (const stream of [LogStream.STDOUT, LogStream.STDERR, LogStream.SYSTEM]) {
        out.push(create(LogFrameSchema, { attemptId, stream, offset: this.next.get(at(stream)) ?? 0n, final: true }));
      }
    }
    await this.ingest.ingestLogs({ agentId: AGENT, frames: out } as never);
  }

  /** Another writer on the same offsets (for frames stored without being published). */
  sharing(ingest: Ingest): Writer {
    const w = new Writer(this.scheduler, ingest);
    (w as unknown as { next: Map<string, bigint> }).next = this.next;
    return w;
  }
}

/** Reads a follow in the background; until() waits for a condition on what came. */
class Follow {
  readonly lines: LogLine[] = [];
  ended = false;
  error: unknown;
  private readonly controller = new AbortController();
  private waiters = new Set<() => void>();
  readonly done: Promise<void>;

  constructor(follower: LogFollower, init: MessageInitShape<typeof FollowLogsRequestSchema>) {
    const iterable = follower.followLogs(create(FollowLogsRequestSchema, init), { signal: this.controller.signal, requestHeader: new Headers() } as HandlerContext);
    this.done = (async () => {
      try {
        for await (const res of iterable) {
          this.lines.push(...(res.lines as LogLine[]));
          for (const w of this.waiters) w();
        }
      } catch (err) {
        this.error = err;
      } finally {
        this.ended = true;
        for (const w of this.waiters) w();
      }
    })();
  }

  get text(): string[] {
    return this.lines.map((l) => dec(l.data));
  }

  async until(what: string, check: (f: Follow) => boolean): Promise<void> {
    const deadline = Date.now() + PATIENCE_MS;
    while (!check(this)) {
      if (this.ended && !check(this)) assert.fail(`the follow ended before ${what}; got ${JSON.stringify(this.text)} ${String(this.error ?? "")}`);
      if (Date.now() > deadline) assert.fail(`gave up waiting for ${what}; got ${JSON.stringify(this.text)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, 200);
        const waiters = this.waiters;
        function done() {
          clearTimeout(timer);
          waiters.delete(done);
          resolve();
        }
        waiters.add(done);
      });
    }
  }

  async ends(): Promise<void> {
    await this.until("the end", (f) => f.ended);
    assert.equal(this.error, undefined);
  }

  async stop(): Promise<void> {
    this.controller.abort();
    await this.done;
  }
}

/** A bus whose stream reads and subscriptions fail while `down` (Redis unreachable for followers). */
function flaky(bus: Bus): Bus & { down: boolean } {
  const f = Object.create(bus) as Bus & { down: boolean };
  f.down = false;
  f.read = (...args) => (f.down ? Promise.reject(new Error("connection refused (test)")) : bus.read(...args));
  f.subscribe = (...args) => (f.down ? Promise.reject(new Error("connection refused (test)")) : bus.subscribe(...args));
  return f;
}

describe("followDone", () => {
  const now = 1_000_000;
  it("ends an attempt's follow once its streams are complete", () => {
    assert.equal(followDone({ kind: "attempt", attemptsComplete: true, endedAtMs: undefined, nowMs: now }), true);
    assert.equal(followDone({ kind: "attempt", attemptsComplete: false, endedAtMs: undefined, nowMs: now }), false);
  });
  it("ends a job's follow only once the job ended and its attempts are complete", () => {
    assert.equal(followDone({ kind: "job", attemptsComplete: true, endedAtMs: undefined, nowMs: now }), false);
    assert.equal(followDone({ kind: "job", attemptsComplete: true, endedAtMs: now - 1, nowMs: now }), true);
    assert.equal(followDone({ kind: "run", attemptsComplete: false, endedAtMs: now - 1, nowMs: now }), false);
  });
  it("stops waiting for an attempt lost with its agent some seconds after the job ended", () => {
    assert.equal(followDone({ kind: "job", attemptsComplete: false, endedAtMs: now - LOST_GRACE_MS - 1, nowMs: now }), true);
    assert.equal(followDone({ kind: "attempt", attemptsComplete: false, endedAtMs: now - LOST_GRACE_MS - 1, nowMs: now }), true);
  });
  it("keeps waiting while output still comes after the job ended (the pipeline is behind), until none came for as long", () => {
    const ended = now - LOST_GRACE_MS - 1;
    assert.equal(followDone({ kind: "job", attemptsComplete: false, endedAtMs: ended, lastOutputMs: now - 1, nowMs: now }), false);
    assert.equal(followDone({ kind: "attempt", attemptsComplete: false, endedAtMs: ended, lastOutputMs: now - 1, nowMs: now }), false);
    assert.equal(followDone({ kind: "job", attemptsComplete: false, endedAtMs: ended, lastOutputMs: now - LOST_GRACE_MS - 1, nowMs: now }), true);
  });
});

interface Stack {
  db: PrismaClient;
  scheduler: FakeScheduler;
  deploy: FakeDeploy;
  writer: Writer;
  /** Stores without publishing: what a dropped or trimmed live entry looks like to followers. */
  silent: Writer;
  follower: LogFollower;
  /** A follower on yet another bus connection. */
  other: LogFollower;
  followerBus: Bus & { down: boolean };
  reader: LogReader;
}

const pgUrl = await requirePostgres();
const redisUrl = await requireRedis();

const setups: Array<{ name: string; open(): Promise<{ database: Database; buses: [Bus, Bus, Bus]; cleanup(): Promise<void> }> }> = [
  {
    name: "PGlite and the memory bus",
    async open() {
      const database = await openPglite("memory://");
      const bus = createMemoryBus();
      return { database, buses: [bus, bus, bus], cleanup: async () => bus.close() };
    },
  },
];
if (pgUrl && redisUrl) {
  setups.push({
    name: "PostgreSQL and Redis, each part on its own connection",
    async open() {
      const testDb: TestDatabase = await createTestDatabase(pgUrl);
      const database = openPostgres(testDb.url);
      const keyPrefix = `drover-test:${randomUUID()}:`;
      const buses = [0, 1, 2].map(() => createRedisBus({ url: redisUrl, keyPrefix })) as [Bus, Bus, Bus];
      return {
        database,
        buses,
        cleanup: async () => {
          await Promise.all(buses.map((b) => b.close()));
          await testDb.drop();
          // The live streams this run wrote.
          const admin = new Redis(redisUrl);
          try {
            for await (const keys of admin.scanStream({ match: `${keyPrefix}*`, count: 500 }) as AsyncIterable<string[]>) {
              if (keys.length > 0) await admin.unlink(...keys);
            }
          } finally {
            await admin.quit();
          }
        },
      };
    },
  });
}

// The setups run side by side, and so do the tests of each: every test
// builds its own stack (followers, publisher, writers, fakes) on the setup's
// database and buses, so what it counts (taps, failing taps, calls to Deploy)
// is its own. Most of a follow is waiting for the follower's timers.
describe("FollowLogs", { concurrency: true }, () => {
  for (const setup of setups) {
    describe(`FollowLogs on ${setup.name}`, { concurrency: true }, () => {
      let database: Database;
      let buses: [Bus, Bus, Bus];
      let cleanup: () => Promise<void>;
      const publishers: BusLivePublisher[] = [];
      const follows: Follow[] = [];
      const follow = (follower: LogFollower, init: MessageInitShape<typeof FollowLogsRequestSchema>) => {
        const f = new Follow(follower, init);
        follows.push(f);
        return f;
      };

      before(async () => {
        const opened = await setup.open();
        database = opened.database;
        buses = opened.buses;
        cleanup = opened.cleanup;
        await migrate(database.executor, "log");
      });

      after(async () => {
        await Promise.all(follows.map((f) => f.stop()));
        await Promise.all(publishers.map((p) => p.close()));
        await database?.close();
        await cleanup?.();
      });

      /** A new stack on the shared database and buses; `oneReplica`: the writer's publisher is the follower's replica's (LocalTaps). */
      function stack(opts: { oneReplica?: boolean } = {}): Stack {
        const db = database.prismaFor("log");
        const scheduler = new FakeScheduler();
        const deploy = new FakeDeploy();
        const clients = { scheduler: scheduler.client, deploy: deploy.client } as DroverClients;
        const settings = { maxBytesPerAttempt: 1 << 30, retentionDays: 7, retentionIntervalMs: 600_000 };
        const [pubBus, followBus, otherBus] = buses;
        const reader = new LogReader({ db, clients, logger });
        const followerBus = flaky(followBus);
        const follower = new LogFollower({ db, bus: followerBus, clients, logger, reader });
        const publisher = new BusLivePublisher({ bus: pubBus, logger, local: opts.oneReplica ? follower : undefined });
        publishers.push(publisher);
        const writer = new Writer(scheduler, new Ingest({ sql: database.executor, clients, logger, settings, live: publisher }));
        const silent = writer.sharing(new Ingest({ sql: database.executor, clients, logger, settings }));
        return {
          db,
          scheduler,
          deploy,
          writer,
          silent,
          followerBus,
          reader,
          follower,
          other: new LogFollower({ db, bus: otherBus, clients, logger, reader }),
        };
      }

      it("sends stored output from the beginning, then live output, and ends when the attempt is complete", async () => {
        const s = stack();
        const a = `attempt-${randomUUID()}`;
        const owner = { jobId: `job-${randomUUID()}` };
        await s.writer.write(a, owner, [[LogStream.STDOUT, "one\n"], [LogStream.STDERR, "two\n"]]);
        const f = follow(s.follower, { attemptId: a });
        await f.until("stored lines", (x) => x.lines.length === 2);
        await s.writer.write(a, owner, [[LogStream.STDOUT, "three\nfo"]]);
        await f.until("live lines", (x) => x.text.includes("fo"));
        await s.writer.write(a, owner, [[LogStream.STDOUT, "ur\n"]], true);
        await f.ends();
        assert.deepEqual(f.text, ["one\n", "two\n", "three\n", "fo", "ur\n"]);
        assert.deepEqual(f.lines.map((l) => l.partial), [false, false, false, true, false]);
        assert.ok(f.lines.every((l) => l.attemptId === a && l.jobId === owner.jobId));
      });

      it("sees output published through another replica's bus connection", async () => {
        const s = stack();
        const a = `attempt-${randomUUID()}`;
        const owner = { jobId: `job-${randomUUID()}` };
        await s.writer.write(a, owner, [[LogStream.STDOUT, "before\n"]]);
        const here = follow(s.follower, { attemptId: a, from: FollowFrom.END });
        const there = follow(s.other, { attemptId: a, from: FollowFrom.END });
        // FROM_END sends nothing stored; wait until both have read where the end is.
        await here.until("positioned", () => s.follower.positioned > 0);
        await there.until("positioned", () => s.other.positioned > 0);
        await s.writer.write(a, owner, [[LogStream.STDOUT, "after\n"]], true);
        await here.ends();
        await there.ends();
        assert.deepEqual(here.text, ["after\n"]);
        assert.deepEqual(there.text, ["after\n"]);
      });

      it("hands a follow on the replica that stores the output its pieces without the bus, and uses the bus once another replica follows", async () => {
        const s = stack({ oneReplica: true });
        const a = `attempt-${randomUUID()}`;
        const owner = { jobId: `job-${randomUUID()}` };
        const onBus = async () => (await buses[0].read(jobStream(owner.jobId), "0")).length;
        await s.writer.write(a, owner, [[LogStream.STDOUT, "stored\n"]]);
        const here = follow(s.follower, { attemptId: a });
        await here.until("the stored line", (x) => x.lines.length === 1);
        await s.writer.write(a, owner, [[LogStream.STDOUT, "local 1\n"]]);
        await s.writer.write(a, owner, [[LogStream.STDOUT, "local 2\n"]]);
        await here.until("the live lines", (x) => x.lines.length === 3);
        assert.equal(s.follower.handed, 2, "the live lines did not come from the publisher");
        assert.equal(await onBus(), 0, "appended to the bus though only this replica follows");

        const there = follow(s.other, { attemptId: a, from: FollowFrom.END });
        await there.until("positioned", () => s.other.positioned > 0);
        await s.writer.write(a, owner, [[LogStream.STDOUT, "both\n"]], true);
        await here.ends();
        await there.ends();
        assert.deepEqual(here.text, ["stored\n", "local 1\n", "local 2\n", "both\n"], "each line once");
        assert.deepEqual(there.text, ["both\n"]);
        assert.ok((await onBus()) > 0, "nothing appended for the other replica's follow");
      });

      it("shares one read of a live stream among every follow of it on a replica", async () => {
        const s = stack();
        const job = `job-${randomUUID()}`;
        const a = `attempt-${randomUUID()}`;
        const before = s.other.tapCount;
        // Known to the Scheduler, no output yet.
        s.scheduler.attempts.set(a, { jobId: job });
        // From the beginning or the tail, not the end: a follow from the end
        // that reads storage after the write rightly skips what it found there.
        const fs = [follow(s.other, { jobId: job }), follow(s.other, { jobId: job, from: FollowFrom.TAIL, tailLines: 10 }), follow(s.other, { attemptId: a })];
        await fs[0]!.until("joined", () => s.other.tapCount === before + 1);
        await s.writer.write(a, { jobId: job }, [[LogStream.STDOUT, "shared\n"]], true);
        s.scheduler.endedJobs.set(job, Date.now());
        for (const f of fs) {
          await f.ends();
          assert.deepEqual(f.text, ["shared\n"]);
        }
        assert.equal(s.other.tapCount, before);
      });

      it("starts from the last N lines with FOLLOW_FROM_TAIL", async () => {
        const s = stack();
        const a = `attempt-${randomUUID()}`;
        const owner = { jobId: `job-${randomUUID()}` };
        await s.writer.write(a, owner, [[LogStream.STDOUT, "1\n2\n3\n4\n"]]);
        const f = follow(s.follower, { attemptId: a, from: FollowFrom.TAIL, tailLines: 2 });
        await f.until("the tail", (x) => x.lines.length === 2);
        await s.writer.write(a, owner, [[LogStream.STDOUT, "5\n"]], true);
        await f.ends();
        assert.deepEqual(f.text, ["3\n", "4\n", "5\n"]);
      });

      it("returns a finished attempt's stored output and ends", async () => {
        const s = stack();
        const a = `attempt-${randomUUID()}`;
        await s.writer.write(a, { jobId: `job-${randomUUID()}` }, [[LogStream.SYSTEM, "done\n"]], true);
        const f = follow(s.follower, { attemptId: a });
        await f.ends();
        assert.deepEqual(f.text, ["done\n"]);
      });

      it("ends at once, with nothing, for an attempt nobody has heard of", async () => {
        const s = stack();
        const f = follow(s.follower, { attemptId: `attempt-${randomUUID()}` });
        await f.ends();
        assert.deepEqual(f.lines, []);
      });

      it("reads from storage what the live stream missed", async () => {
        const s = stack();
        const a = `attempt-${randomUUID()}`;
        const owner = { jobId: `job-${randomUUID()}` };
        await s.writer.write(a, owner, [[LogStream.STDOUT, "a\n"]]);
        const f = follow(s.follower, { attemptId: a, stream: Stream.STDOUT });
        await f.until("stored", (x) => x.lines.length === 1);
        // Stored, never published: the next live entry starts past what was sent.
        await s.silent.write(a, owner, [[LogStream.STDOUT, "b\n"], [LogStream.STDOUT, "c\n"]]);
        await s.writer.write(a, owner, [[LogStream.STDOUT, "d\n"]]);
        await f.until("the gap and the live line", (x) => x.lines.length === 4);
        await s.writer.write(a, owner, [], true);
        await f.ends();
        assert.deepEqual(f.text, ["a\n", "b\n", "c\n", "d\n"]);
      });

      it("polls storage while the bus fails, and goes back to the bus when it recovers", async () => {
        const s = stack();
        const a = `attempt-${randomUUID()}`;
        const owner = { jobId: `job-${randomUUID()}` };
        s.followerBus.down = true;
        try {
          const f = follow(s.follower, { attemptId: a, filter: "line" });
          await s.writer.write(a, owner, [[LogStream.STDOUT, "line 1\n"]]);
          await f.until("a polled line", (x) => x.lines.length === 1);
          await f.until("the bus counted as failing", () => s.follower.failingTaps > 0);
          s.followerBus.down = false;
          await f.until("the bus back", () => s.follower.failingTaps === 0);
          await s.writer.write(a, owner, [[LogStream.STDOUT, "line 2\nskipped\n"]], true);
          await f.ends();
          assert.deepEqual(f.text, ["line 1\n", "line 2\n"]);
        } finally {
          s.followerBus.down = false;
        }
      });

      it("follows every attempt of a job, naming each line's source, until the job ends", async () => {
        const s = stack();
        const job = `job-${randomUUID()}`;
        const first = `attempt-1-${randomUUID()}`;
        const retry = `attempt-2-${randomUUID()}`;
        await s.writer.write(first, { jobId: job }, [[LogStream.STDOUT, "try 1\n"]]);
        const f = follow(s.follower, { jobId: job });
        await f.until("the first attempt", (x) => x.lines.length === 1);
        await s.writer.write(first, { jobId: job }, [[LogStream.STDERR, "failed\n"]], true);
        await s.writer.write(retry, { jobId: job }, [[LogStream.STDOUT, "try 2\n"]]);
        await f.until("the retry", (x) => x.lines.length === 3);
        // Both attempts complete, the job still running: the follow goes on.
        await s.writer.write(retry, { jobId: job }, [], true);
        assert.equal(f.ended, false);
        s.scheduler.endedJobs.set(job, Date.now());
        await f.ends();
        assert.deepEqual(f.lines.map((l) => [l.attemptId, dec(l.data)]), [
          [first, "try 1\n"],
          [first, "failed\n"],
          [retry, "try 2\n"],
        ]);
      });

      it("ends a job's follow moments after the job ends once its attempts are complete, not at the next regular check", async () => {
        const s = stack();
        const job = `job-${randomUUID()}`;
        const attempt = `attempt-${randomUUID()}`;
        const f = follow(s.follower, { jobId: job });
        await f.until("joined", () => s.follower.tapCount > 0);
        await s.writer.write(attempt, { jobId: job }, [[LogStream.STDOUT, "hello\n"]], true);
        await f.until("the line", (x) => x.lines.length === 1);
        // The output complete, the job's end is committed a moment later (the agent sends both together).
        await new Promise((r) => setTimeout(r, 150));
        assert.equal(f.ended, false);
        const endedAt = Date.now();
        s.scheduler.endedJobs.set(job, endedAt);
        await f.done;
        assert.equal(f.error, undefined);
        const took = Date.now() - endedAt;
        assert.ok(took < END_CHECK_MS / 2, `the follow ended ${took} ms after the job`);
        assert.deepEqual(f.text, ["hello\n"]);
      });

      it("follows a run's stages and ends when the run ended, even with an attempt lost long ago", async () => {
        const s = stack();
        const run = `run-${randomUUID()}`;
        const build = `attempt-${randomUUID()}`;
        const lost = `attempt-${randomUUID()}`;
        const f = follow(s.follower, { runId: run });
        await f.until("joined", () => s.follower.tapCount > 0);
        await s.writer.write(build, { jobId: `job-${randomUUID()}`, runId: run, stageName: "build" }, [[LogStream.STDOUT, "built\n"]], true);
        await s.writer.write(lost, { jobId: `job-${randomUUID()}`, runId: run, stageName: "test" }, [[LogStream.STDOUT, "testing\n"]]);
        await f.until("both stages", (x) => x.lines.length === 2);
        s.scheduler.endedRuns.set(run, Date.now() - LOST_GRACE_MS - 1000);
        await f.ends();
        assert.deepEqual(f.lines.map((l) => [l.stageName, dec(l.data)]).sort(), [["build", "built\n"], ["test", "testing\n"]]);
      });

      it("follows a deployment's replicas merged by time, picks up the replica a rollout starts, and ends only once the deployment is deleted", async () => {
        const s = stack();
        const name = `web-${randomUUID().slice(0, 8)}`;
        const [jobA, jobB, jobC] = [`job-a-${randomUUID()}`, `job-b-${randomUUID()}`, `job-c-${randomUUID()}`];
        const [a, b, c] = [`attempt-a-${randomUUID()}`, `attempt-b-${randomUUID()}`, `attempt-c-${randomUUID()}`];
        const rA = { id: randomUUID(), slot: "0", revision: 1, jobId: jobA };
        const rB = { id: randomUUID(), slot: "1", revision: 1, jobId: jobB };
        s.deploy.deployments.set(name, [rA, rB]);
        const t = Date.now() - 10_000;
        await s.writer.write(a, { jobId: jobA }, [[LogStream.STDOUT, "a one\n", t], [LogStream.STDOUT, "a three\n", t + 2]]);
        await s.writer.write(b, { jobId: jobB }, [[LogStream.STDOUT, "b two\n", t + 1]]);
        const f = follow(s.follower, { deployment: name });
        await f.until("the stored lines", (x) => x.lines.length === 3);
        // Stored output of replicas side by side comes merged by time, each line naming its replica.
        assert.deepEqual(f.lines.map((l) => [dec(l.data), l.replicaSlot, l.replicaId, l.revision]), [
          ["a one\n", "0", rA.id, 1],
          ["b two\n", "1", rB.id, 1],
          ["a three\n", "0", rA.id, 1],
        ]);
        await s.writer.write(b, { jobId: jobB }, [[LogStream.STDOUT, "b live\n"]]);
        await f.until("a live line", (x) => x.text.includes("b live\n"));

        // A rollout starts revision 2 in slot 0; it writes before the follow has heard of it.
        const rC = { id: randomUUID(), slot: "0", revision: 2, jobId: jobC };
        await s.writer.write(c, { jobId: jobC }, [[LogStream.STDOUT, "c ready\n"]]);
        s.deploy.deployments.set(name, [rA, rB, rC]);
        await f.until("the new replica's stored line", (x) => x.text.includes("c ready\n"));
        await s.writer.write(c, { jobId: jobC }, [[LogStream.STDOUT, "c serving\n"]]);
        await f.until("the new replica's live line", (x) => x.text.includes("c serving\n"));
        const fromC = f.lines.filter((l) => l.jobId === jobC);
        assert.deepEqual(fromC.map((l) => [dec(l.data), l.replicaSlot, l.replicaId, l.revision]), [
          ["c ready\n", "0", rC.id, 2],
          ["c serving\n", "0", rC.id, 2],
        ]);

        // The old replicas stop and their output is complete: a service's follow goes on.
        await s.writer.write(a, { jobId: jobA }, [], true);
        await s.writer.write(b, { jobId: jobB }, [], true);
        s.deploy.deployments.set(name, [rC]);
        const asked = s.deploy.calls;
        await f.until("Deploy asked twice more", () => s.deploy.calls >= asked + 2);
        assert.equal(f.ended, false);
        await s.writer.write(c, { jobId: jobC }, [[LogStream.STDERR, "c stopping\n"]], true);
        await f.until("the last line", (x) => x.text.includes("c stopping\n"));
        assert.equal(f.ended, false);

        // Deleted: the follow ends.
        s.deploy.deployments.delete(name);
        await f.ends();
        assert.equal(f.lines.length, new Set(f.lines.map((l) => `${l.attemptId} ${l.stream} ${l.offset}`)).size, "no line twice");
      });

      it("starts a deployment's follow from each replica's last lines, merged by time, and narrows to a slot", async () => {
        const s = stack();
        const name = `api-${randomUUID().slice(0, 8)}`;
        const [jobA, jobB] = [`job-a-${randomUUID()}`, `job-b-${randomUUID()}`];
        const [a, b] = [`attempt-a-${randomUUID()}`, `attempt-b-${randomUUID()}`];
        s.deploy.deployments.set(name, [
          { id: randomUUID(), slot: "0", revision: 5, jobId: jobA },
          { id: randomUUID(), slot: "1", revision: 5, jobId: jobB },
        ]);
        const t = Date.now() - 10_000;
        await s.writer.write(a, { jobId: jobA }, [[LogStream.STDOUT, "a0\n", t], [LogStream.STDOUT, "a2\n", t + 2], [LogStream.STDOUT, "a4\n", t + 4]]);
        await s.writer.write(b, { jobId: jobB }, [[LogStream.STDOUT, "b1\n", t + 1], [LogStream.STDOUT, "b3\n", t + 3]]);
        const tail = follow(s.follower, { deployment: name, from: FollowFrom.TAIL, tailLines: 2 });
        const one = follow(s.follower, { deployment: name, replica: "1" });
        await tail.until("the tails", (x) => x.lines.length === 4);
        assert.deepEqual(tail.text, ["b1\n", "a2\n", "b3\n", "a4\n"]);
        await one.until("slot 1's lines", (x) => x.lines.length === 2);
        await s.writer.write(a, { jobId: jobA }, [[LogStream.STDOUT, "a5\n"]]);
        await s.writer.write(b, { jobId: jobB }, [[LogStream.STDOUT, "b6\n"]]);
        await one.until("slot 1's live line", (x) => x.lines.length === 3);
        await tail.until("both live lines", (x) => x.lines.length === 6);
        assert.deepEqual(one.text, ["b1\n", "b3\n", "b6\n"]);
        await tail.stop();
        await one.stop();
      });

      it("fails a follow of an unknown deployment, or replica, with NOT_FOUND naming it", async () => {
        const s = stack();
        const unknown = follow(s.follower, { deployment: "no-such-service" });
        await unknown.until("the end", (x) => x.ended);
        assert.ok(unknown.error instanceof ConnectError);
        assert.equal(unknown.error.code, Code.NotFound);
        assert.match(unknown.error.message, /no-such-service/);
        s.deploy.deployments.set("one-replica", [{ id: randomUUID(), slot: "0", revision: 1, jobId: `job-${randomUUID()}` }]);
        const replica = follow(s.follower, { deployment: "one-replica", replica: "3" });
        await replica.until("the end", (x) => x.ended);
        assert.equal((replica.error as ConnectError).code, Code.NotFound);
        assert.match((replica.error as ConnectError).message, /"3"/);
      });

      it("serves ReadLogs and FollowLogs over Connect", async () => {
        const s = stack();
        const a = `attempt-${randomUUID()}`;
        await s.writer.write(a, { jobId: `job-${randomUUID()}` }, [[LogStream.STDOUT, "over the wire\n"]], true);
        const impl = new LogServiceImpl({ ingest: s.writer.ingest, reader: s.reader, follower: s.follower });
        const client = createClient(LogService, createRouterTransport(logRoutes(impl)));
        const read = await client.readLogs({ attemptId: a });
        assert.deepEqual(read.lines.map((l) => dec(l.data)), ["over the wire\n"]);
        const followed: string[] = [];
        for await (const res of client.followLogs({ attemptId: a })) followed.push(...res.lines.map((l) => dec(l.data)));
        assert.deepEqual(followed, ["over the wire\n"]);
      });

      it("follows the same lines over the binary codec (lines encoded by wire.ts) and over JSON", async () => {
        const s = stack();
        const a = `attempt-${randomUUID()}`;
        await s.writer.write(a, { jobId: `job-${randomUUID()}`, runId: `run-${randomUUID()}`, stageName: "test" }, [[LogStream.STDOUT, "one\ntwo\nthr"], [LogStream.STDERR, "oops\n"]], true);
        const routes = logRoutes(new LogServiceImpl({ ingest: s.writer.ingest, reader: s.reader, follower: s.follower }));
        const followAll = async (useBinaryFormat: boolean) => {
          const client = createClient(LogService, createRouterTransport(routes, { transport: { useBinaryFormat } }));
          const lines: LogLine[] = [];
          for await (const res of client.followLogs({ attemptId: a })) lines.push(...res.lines);
          return lines;
        };
        const binary = await followAll(true);
        const json = await followAll(false);
        assert.deepEqual(binary.map((l) => dec(l.data)), ["one\n", "two\n", "thr", "oops\n"]);
        assert.equal(binary.length, json.length);
        binary.forEach((l, i) => assert.ok(equals(LogLineSchema, l, json[i]!), `line ${i}: ${JSON.stringify(toJson(LogLineSchema, l))} ≠ ${JSON.stringify(toJson(LogLineSchema, json[i]!))}`));
        assert.equal(binary[0]!.attemptId, a);
        assert.equal(binary[0]!.stageName, "test");
      });

      it("stops when the client goes away and frees its live streams", async () => {
        const s = stack();
        const a = `attempt-${randomUUID()}`;
        await s.writer.write(a, { jobId: `job-${randomUUID()}` }, [[LogStream.STDOUT, "x\n"]]);
        const f = follow(s.other, { attemptId: a });
        await f.until("the line", (x) => x.lines.length === 1);
        await f.stop();
        assert.equal(f.ended, true);
        assert.equal(s.other.tapCount, 0);
      });
    });
  }
});
