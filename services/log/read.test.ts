// ReadLogs against real databases (PGlite, and PostgreSQL when it runs),
// with output stored through the real Ingest.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, createClient, createRouterTransport } from "@connectrpc/connect";

import type { PrismaClient } from "../../gen/prisma/log/client.ts";
import { LogFrameSchema, LogStream } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { ReadLogsRequestSchema, Stream, type LogLine } from "../../gen/ts/drover/log/v1/log_service_pb.ts";
import { SchedulerService } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { openPglite, openPostgres, type Database } from "../../lib/db/database.ts";
import type { SqlExecutor } from "../../lib/db/executor.ts";
import { migrate } from "../../lib/db/migrate.ts";
import { createTestDatabase, type TestDatabase } from "../../lib/db/testing.ts";
import { createLogger } from "../../lib/logger.ts";
import { failure } from "../../lib/testing/connect.ts";
import { requirePostgres } from "../../lib/testing/services.ts";
import { Ingest } from "./ingest.ts";
import { LogReader } from "./read.ts";
import { FakeDeploy } from "./testing.ts";

const logger = createLogger("silent");
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const AGENT = "agent-1";

interface Owner {
  jobId: string;
  runId?: string;
  stageName?: string;
}

/** Stores frames through the real Ingest; attempts are described by a fake Scheduler. */
class Store {
  readonly owners = new Map<string, Owner>();
  readonly ingest: Ingest;

  constructor(sql: SqlExecutor, maxBytesPerAttempt = 1 << 30) {
    const owners = this.owners;
    const scheduler = createClient(
      SchedulerService,
      createRouterTransport((router) =>
        router.service(SchedulerService, {
          describeAttempts(req) {
            return {
              attempts: req.attemptIds
                .filter((id) => owners.has(id))
                .map((id) => ({ attemptId: id, agentId: AGENT, jobId: owners.get(id)!.jobId, runId: owners.get(id)!.runId ?? "", stageName: owners.get(id)!.stageName ?? "" })),
            };
          },
        }),
      ),
    );
    this.ingest = new Ingest({ sql, clients: { scheduler }, logger, settings: { maxBytesPerAttempt, retentionDays: 7, retentionIntervalMs: 600_000 } });
  }

  /** Stores one frame per [stream, text, ms] in order, offsets following on per stream. */
  async write(attemptId: string, owner: Owner, frames: Array<[LogStream, string, number]>, final = false): Promise<void> {
    this.owners.set(attemptId, owner);
    const next = this.next.get(attemptId) ?? new Map<LogStream, bigint>();
    this.next.set(attemptId, next);
    const out = frames.map(([stream, text, ms]) => {
      const offset = next.get(stream) ?? 0n;
      next.set(stream, offset + BigInt(enc(text).length));
      return create(LogFrameSchema, { attemptId, stream, offset, data: enc(text), time: timestampFromMs(ms) });
    });
    if (final) {
      for (const stream of [LogStream.STDOUT, LogStream.STDERR, LogStream.SYSTEM]) {
        out.push(create(LogFrameSchema, { attemptId, stream, offset: next.get(stream) ?? 0n, final: true }));
      }
    }
    const res = await this.ingest.ingestLogs({ agentId: AGENT, frames: out } as never);
    for (const ack of res.acks) assert.equal(ack.refused ?? "", "", String(ack.refused));
  }

  private readonly next = new Map<string, Map<LogStream, bigint>>();
}

const text = (lines: LogLine[]) => lines.map((l) => dec(l.data));

async function readAll(reader: LogReader, init: MessageInitShape<typeof ReadLogsRequestSchema>): Promise<{ lines: LogLine[]; pages: number }> {
  const lines: LogLine[] = [];
  let pageToken = "";
  let pages = 0;
  do {
    const res = await reader.readLogs(create(ReadLogsRequestSchema, { ...init, pageToken }));
    lines.push(...res.lines);
    pageToken = res.nextPageToken;
    assert.equal(res.truncated, pageToken !== "");
    pages++;
    assert.ok(pages < 10_000, "pagination does not end");
  } while (pageToken !== "");
  return { lines, pages };
}

const pgUrl = await requirePostgres();
const kinds = pgUrl ? (["pglite", "postgres"] as const) : (["pglite"] as const);

for (const kind of kinds) {
  describe(`LogReader on ${kind}`, () => {
    let database: Database;
    let testDb: TestDatabase | undefined;
    let db: PrismaClient;
    let store: Store;
    let reader: LogReader;
    const deploy = new FakeDeploy();
    const read = (init: MessageInitShape<typeof ReadLogsRequestSchema>) => reader.readLogs(create(ReadLogsRequestSchema, init));

    // One attempt with all three streams, at known times.
    const job = `job-${randomUUID()}`;
    const attempt = `attempt-${randomUUID()}`;

    before(async () => {
      if (kind === "postgres") {
        testDb = await createTestDatabase(pgUrl!);
        database = openPostgres(testDb.url);
      } else {
        database = await openPglite("memory://");
      }
      await migrate(database.executor, "log");
      db = database.prismaFor("log");
      store = new Store(database.executor);
      reader = new LogReader({ db, clients: { deploy: deploy.client }, logger });
      await store.write(attempt, { jobId: job }, [
        [LogStream.SYSTEM, "started\n", 500],
        [LogStream.STDOUT, "hello\n", 1000],
        [LogStream.STDERR, "warn\n", 1500],
        [LogStream.STDOUT, "wor", 2000],
        [LogStream.STDOUT, "ld\n", 3000],
        [LogStream.STDOUT, "bye\n", 3000],
      ]);
    });

    after(async () => {
      await database?.close();
      await testDb?.drop();
    });

    it("merges an attempt's streams by time, like a terminal, each line naming its source", async () => {
      const res = await read({ attemptId: attempt });
      assert.deepEqual(text(res.lines), ["started\n", "hello\n", "warn\n", "world\n", "bye\n"]);
      assert.deepEqual(
        res.lines.map((l) => [l.stream, l.offset, timestampMs(l.time!), l.attemptId, l.jobId, l.partial]),
        [
          [Stream.SYSTEM, 0n, 500, attempt, job, false],
          [Stream.STDOUT, 0n, 1000, attempt, job, false],
          [Stream.STDERR, 0n, 1500, attempt, job, false],
          [Stream.STDOUT, 6n, 2000, attempt, job, false],
          [Stream.STDOUT, 12n, 3000, attempt, job, false],
        ],
      );
      assert.equal(res.truncated, false);
      assert.equal(res.nextPageToken, "");
    });

    it("breaks ties in time by stream: stdout, stderr, system", async () => {
      const a = `attempt-${randomUUID()}`;
      await store.write(a, { jobId: `job-${randomUUID()}` }, [
        [LogStream.SYSTEM, "s\n", 7],
        [LogStream.STDERR, "e\n", 7],
        [LogStream.STDOUT, "o\n", 7],
      ]);
      assert.deepEqual(text((await read({ attemptId: a })).lines), ["o\n", "e\n", "s\n"]);
    });

    it("reads one stream only", async () => {
      assert.deepEqual(text((await read({ attemptId: attempt, stream: Stream.STDOUT })).lines), ["hello\n", "world\n", "bye\n"]);
    });

    it("reads a byte range, the first and last lines cut where the range cuts them", async () => {
      const res = await read({ attemptId: attempt, stream: Stream.STDOUT, offset: 3n, endOffset: 9n });
      assert.deepEqual(
        res.lines.map((l) => [dec(l.data), l.offset, l.partial]),
        [
          ["lo\n", 3n, false],
          ["wor", 6n, true],
        ],
      );
    });

    it("reads only lines written in [since, until)", async () => {
      const res = await read({ attemptId: attempt, since: timestampFromMs(1000), until: timestampFromMs(3000) });
      assert.deepEqual(text(res.lines), ["hello\n", "warn\n", "world\n"]);
    });

    it("filters by substring and by regular expression", async () => {
      assert.deepEqual(text((await read({ attemptId: attempt, filter: "or" })).lines), ["world\n"]);
      assert.deepEqual(text((await read({ attemptId: attempt, filter: "^(h|b).*o$", regex: true })).lines), ["hello\n"]);
      assert.deepEqual(text((await read({ attemptId: attempt, filter: "e$", regex: true })).lines), ["bye\n"]);
    });

    it("answers an invalid regular expression with INVALID_ARGUMENT naming filter", async () => {
      const err = await failure(read({ attemptId: attempt, filter: "(", regex: true }));
      assert.equal(err.code, Code.InvalidArgument);
      assert.match(err.message, /filter/);
    });

    it("returns nothing, without an error, for whose output nothing is stored", async () => {
      for (const init of [{ attemptId: "never-heard-of" }, { jobId: "nope" }, { runId: "nope" }]) {
        const res = await read(init);
        assert.deepEqual(res.lines, []);
        assert.equal(res.truncated, false);
      }
    });

    it("marks a trailing line without a newline partial while the stream may continue, and not once it is complete", async () => {
      const a = `attempt-${randomUUID()}`;
      const owner = { jobId: `job-${randomUUID()}` };
      await store.write(a, owner, [[LogStream.STDOUT, "no newline yet", 1]]);
      assert.deepEqual((await read({ attemptId: a })).lines.map((l) => l.partial), [true]);
      await store.write(a, owner, [], true);
      assert.deepEqual((await read({ attemptId: a })).lines.map((l) => l.partial), [false]);
    });

    it("reads every attempt of a job oldest first, and a run's stage", async () => {
      const j = `job-${randomUUID()}`;
      const run = `run-${randomUUID()}`;
      const first = `attempt-1-${randomUUID()}`;
      const second = `attempt-2-${randomUUID()}`;
      await store.write(first, { jobId: j, runId: run, stageName: "build" }, [[LogStream.STDOUT, "first try\n", 50]]);
      await store.write(second, { jobId: j, runId: run, stageName: "build" }, [[LogStream.STDOUT, "second try\n", 10]]);
      await store.write(`attempt-${randomUUID()}`, { jobId: `job-${randomUUID()}`, runId: run, stageName: "test" }, [[LogStream.STDOUT, "tests\n", 60]]);
      const res = await read({ jobId: j });
      assert.deepEqual(res.lines.map((l) => [l.attemptId, dec(l.data), l.stageName]), [
        [first, "first try\n", "build"],
        [second, "second try\n", "build"],
      ]);
      assert.deepEqual(text((await read({ runId: run })).lines), ["first try\n", "second try\n", "tests\n"]);
      assert.deepEqual(text((await read({ runId: run, stageName: "test" })).lines), ["tests\n"]);
    });

    describe("a deployment", () => {
      // Two replicas side by side (slot 0 retried once), and a replica
      // stopped since (no longer listed by Deploy): its output is not read.
      const name = `web-${kind}`;
      const [jobA, jobB, jobOld] = [`job-a-${randomUUID()}`, `job-b-${randomUUID()}`, `job-old-${randomUUID()}`];
      const [a1, a2, b1] = [`attempt-a1-${randomUUID()}`, `attempt-a2-${randomUUID()}`, `attempt-b1-${randomUUID()}`];
      const r0 = { id: randomUUID(), slot: "0", revision: 3, jobId: jobA };
      const r1 = { id: randomUUID(), slot: "1", revision: 4, jobId: jobB };

      before(async () => {
        deploy.deployments.set(name, [r0, r1, { id: randomUUID(), slot: "2", revision: 4, jobId: "" }]);
        await store.write(a1, { jobId: jobA }, [
          [LogStream.STDOUT, "a1 first\n", 100],
          [LogStream.STDERR, "a1 crashed\n", 300],
        ]);
        await store.write(b1, { jobId: jobB }, [
          [LogStream.STDOUT, "b1 first\n", 200],
          [LogStream.STDOUT, "b1 tie\n", 300],
          [LogStream.STDOUT, "b1 later\n", 600],
        ]);
        await store.write(a2, { jobId: jobA }, [
          [LogStream.STDOUT, "a2 first\n", 400],
          [LogStream.SYSTEM, "a2 health\n", 500],
          [LogStream.STDOUT, "a2 later\n", 700],
        ]);
        await store.write(`attempt-${randomUUID()}`, { jobId: jobOld }, [[LogStream.STDOUT, "stopped replica\n", 250]]);
      });

      it("merges the lines of every replica's attempts by time, each naming its replica", async () => {
        const res = await read({ deployment: name });
        assert.deepEqual(
          res.lines.map((l) => [dec(l.data), l.replicaSlot, l.revision, l.replicaId, l.jobId]),
          [
            ["a1 first\n", "0", 3, r0.id, jobA],
            ["b1 first\n", "1", 4, r1.id, jobB],
            // Same time: stdout before stderr.
            ["b1 tie\n", "1", 4, r1.id, jobB],
            ["a1 crashed\n", "0", 3, r0.id, jobA],
            ["a2 first\n", "0", 3, r0.id, jobA],
            ["a2 health\n", "0", 3, r0.id, jobA],
            ["b1 later\n", "1", 4, r1.id, jobB],
            ["a2 later\n", "0", 3, r0.id, jobA],
          ],
        );
        assert.equal(res.truncated, false);
        // Lines of other reads say nothing of replicas.
        assert.ok((await read({ jobId: jobA })).lines.every((l) => l.replicaSlot === "" && l.replicaId === "" && l.revision === 0));
      });

      it("narrows to one replica by slot or by id", async () => {
        assert.deepEqual(text((await read({ deployment: name, replica: "1" })).lines), ["b1 first\n", "b1 tie\n", "b1 later\n"]);
        assert.deepEqual(text((await read({ deployment: name, replica: r0.id, stream: Stream.STDOUT })).lines), ["a1 first\n", "a2 first\n", "a2 later\n"]);
        // A pending replica (no job yet) exists and has no output.
        assert.deepEqual((await read({ deployment: name, replica: "2" })).lines, []);
      });

      it("pages through the merge exactly once, with filters, time windows and tails", async () => {
        const whole = text((await read({ deployment: name })).lines);
        for (const limitBytes of [1, 12, 20]) {
          const { lines, pages } = await readAll(reader, { deployment: name, limitBytes });
          assert.deepEqual(text(lines), whole, `limit ${limitBytes}`);
          assert.ok(pages > 1);
        }
        const filtered = await readAll(reader, { deployment: name, filter: "first", limitBytes: 1 });
        assert.deepEqual(text(filtered.lines), ["a1 first\n", "b1 first\n", "a2 first\n"]);
        const window = await readAll(reader, { deployment: name, since: timestampFromMs(300), until: timestampFromMs(600), limitBytes: 1 });
        assert.deepEqual(text(window.lines), ["b1 tie\n", "a1 crashed\n", "a2 first\n", "a2 health\n"]);
        // The last 3 lines of all replicas together, then paged.
        assert.deepEqual(text((await read({ deployment: name, tailLines: 3 })).lines), ["a2 health\n", "b1 later\n", "a2 later\n"]);
        assert.deepEqual(text((await readAll(reader, { deployment: name, tailLines: 4, limitBytes: 1 })).lines), ["a2 first\n", "a2 health\n", "b1 later\n", "a2 later\n"]);
      });

      it("moves on page by page when a filter matches little and the scan budget runs out", async () => {
        // Each replica writes many frames, one chunk each; few lines match.
        const scanName = `scan-${kind}`;
        const [jobX, jobY] = [`job-x-${randomUUID()}`, `job-y-${randomUUID()}`];
        deploy.deployments.set(scanName, [
          { id: randomUUID(), slot: "0", revision: 1, jobId: jobX },
          { id: randomUUID(), slot: "1", revision: 1, jobId: jobY },
        ]);
        const [x, y] = [`attempt-x-${randomUUID()}`, `attempt-y-${randomUUID()}`];
        const want: string[] = [];
        for (let i = 0; i < 40; i++) {
          const [attemptId, jobId] = i % 2 === 0 ? [x, jobX] : [y, jobY];
          const line = i % 7 === 0 ? `match ${i}\n` : `noise ${i} ${"z".repeat(40_000)}\n`;
          if (i % 7 === 0) want.push(line);
          // Over 32 KiB, so no frame is appended to the chunk before it.
          await store.write(attemptId, { jobId }, [[i % 3 === 0 ? LogStream.STDERR : LogStream.STDOUT, line, 1000 + i]]);
        }
        const small = new LogReader({ db, clients: { deploy: deploy.client }, logger, scanBudgetBytes: 100_000 });
        const { lines, pages } = await readAll(small, { deployment: scanName, filter: "match" });
        assert.deepEqual(text(lines), want);
        assert.ok(pages > 3, `expected the budget to cut pages, got ${pages}`);
      });

      it("answers an unknown deployment or replica with NOT_FOUND naming it, and replica without deployment with INVALID_ARGUMENT", async () => {
        const unknown = await failure(read({ deployment: "no-such-service" }));
        assert.equal(unknown.code, Code.NotFound);
        assert.match(unknown.message, /no-such-service/);
        const replica = await failure(read({ deployment: name, replica: "7" }));
        assert.equal(replica.code, Code.NotFound);
        assert.match(replica.message, /"7"/);
        const alone = await failure(read({ jobId: jobA, replica: "0" }));
        assert.equal(alone.code, Code.InvalidArgument);
        assert.match(alone.message, /replica/);
      });

      it("answers another request's page token with INVALID_ARGUMENT naming page_token", async () => {
        const first = await read({ deployment: name, limitBytes: 1 });
        assert.ok(first.nextPageToken);
        for (const init of [
          { deployment: name, replica: "1", pageToken: first.nextPageToken },
          { jobId: jobA, pageToken: first.nextPageToken },
        ]) {
          const err = await failure(read(init));
          assert.equal(err.code, Code.InvalidArgument);
          assert.match(err.message, /page_token/);
        }
      });
    });

    describe("a large attempt", () => {
      const big = `attempt-big-${randomUUID()}`;
      const bigJob = `job-${randomUUID()}`;
      const LINES = 6000;
      const line = (i: number) => `line ${String(i).padStart(5, "0")} ${"x".repeat(80)}\n`;

      before(async () => {
        // 40 KiB frames make separate chunks; stderr gets every 100th line's twin.
        let frames: Array<[LogStream, string, number]> = [];
        let buf = "";
        for (let i = 0; i < LINES; i++) {
          buf += line(i);
          if (i % 100 === 0) frames.push([LogStream.STDERR, `err ${i}\n`, 10_000 + i]);
          if (buf.length >= 40_000 || i === LINES - 1) {
            frames.push([LogStream.STDOUT, buf, 10_000 + i - (buf.match(/\n/g)!.length - 1)]);
            buf = "";
          }
          // One stdout frame per request, so that each makes its own chunk.
          if (frames.some((f) => f[0] === LogStream.STDOUT)) {
            await store.write(big, { jobId: bigJob }, frames);
            frames = [];
          }
        }
        if (frames.length > 0) await store.write(big, { jobId: bigJob }, frames);
        const chunks = await db.logChunk.count({ where: { attemptId: big, stream: "stdout" } });
        assert.ok(chunks > 10, `expected many chunks, got ${chunks}`);
      });

      it("pages through everything exactly once, each page within limit_bytes", async () => {
        const whole = await read({ attemptId: big, limitBytes: 16 << 20 });
        assert.equal(whole.truncated, false);
        assert.equal(whole.lines.length, LINES + LINES / 100);
        const { lines, pages } = await readAll(reader, { attemptId: big, limitBytes: 10_000 });
        assert.ok(pages > 50);
        assert.deepEqual(text(lines), text(whole.lines));
        assert.deepEqual(lines.map((l) => [l.stream, l.offset]), whole.lines.map((l) => [l.stream, l.offset]));
      });

      it("pages a filtered read exactly once", async () => {
        const { lines } = await readAll(reader, { jobId: bigJob, filter: "^line 0[01]", regex: true, limitBytes: 3000 });
        assert.equal(lines.length, 2000);
        assert.equal(new Set(text(lines)).size, 2000);
      });

      it("returns the last N lines, merged across streams, and pages on from there", async () => {
        const whole = await read({ attemptId: big, limitBytes: 16 << 20 });
        for (const n of [1, 3, 102, 1000]) {
          const res = await read({ attemptId: big, tailLines: n, limitBytes: 16 << 20 });
          assert.deepEqual(res.lines.map((l) => [l.stream, l.offset]), whole.lines.slice(-n).map((l) => [l.stream, l.offset]), `tail ${n}`);
        }
        // Stderr's lines carry later times than the stdout frames around them: some end up in the tail.
        const tail = await read({ attemptId: big, tailLines: 102 });
        assert.ok(text(tail.lines).includes("err 5900\n"));
        const paged = await readAll(reader, { attemptId: big, tailLines: 102, limitBytes: 500 });
        assert.deepEqual(text(paged.lines), text(tail.lines));
      });

      it("merges a large replica with another by time across many chunks, paged and tailed", async () => {
        const name = `big-${kind}`;
        deploy.deployments.set(name, [
          { id: randomUUID(), slot: "0", revision: 1, jobId: bigJob },
          { id: randomUUID(), slot: "1", revision: 1, jobId: job },
        ]);
        const streamRank = [Stream.STDOUT, Stream.STDERR, Stream.SYSTEM];
        const expected = [...(await read({ jobId: bigJob, limitBytes: 16 << 20 })).lines, ...(await read({ jobId: job })).lines].sort(
          (x, y) =>
            timestampMs(x.time!) - timestampMs(y.time!) ||
            streamRank.indexOf(x.stream) - streamRank.indexOf(y.stream) ||
            (x.attemptId < y.attemptId ? -1 : x.attemptId > y.attemptId ? 1 : 0) ||
            Number(x.offset - y.offset),
        );
        const key = (l: LogLine) => `${l.attemptId} ${l.stream} ${l.offset}`;
        const whole = await read({ deployment: name, limitBytes: 16 << 20 });
        assert.equal(whole.lines.length, LINES + LINES / 100 + 5);
        assert.deepEqual(whole.lines.map(key), expected.map(key));
        const paged = await readAll(reader, { deployment: name, limitBytes: 10_000 });
        assert.deepEqual(paged.lines.map(key), expected.map(key));
        const tail = await readAll(reader, { deployment: name, tailLines: 1000, limitBytes: 7_000 });
        assert.deepEqual(tail.lines.map(key), expected.slice(-1000).map(key));
      });

      it("applies filters before counting the tail", async () => {
        const res = await read({ jobId: bigJob, tailLines: 2, filter: "err" });
        assert.deepEqual(text(res.lines), ["err 5800\n", "err 5900\n"]);
        const lines = await read({ jobId: bigJob, tailLines: 2, filter: "^line", regex: true });
        assert.deepEqual(text(lines.lines), [line(LINES - 2), line(LINES - 1)]);
      });

      it("answers a page token from another request, or garbage, with INVALID_ARGUMENT naming page_token", async () => {
        const first = await read({ attemptId: big, limitBytes: 1000 });
        assert.ok(first.nextPageToken);
        for (const init of [
          { attemptId: big, filter: "other", pageToken: first.nextPageToken },
          { attemptId: big, pageToken: "!!garbage" },
          { attemptId: attempt, pageToken: first.nextPageToken },
        ]) {
          const err = await failure(read(init));
          assert.equal(err.code, Code.InvalidArgument);
          assert.match(err.message, /page_token/);
        }
        // A different limit on the next page is fine.
        const next = await read({ attemptId: big, limitBytes: 5000, pageToken: first.nextPageToken });
        assert.ok(next.lines.length > 0);
      });
    });

    it("ends a stream that hit the per-attempt cap with a truncated marker", async () => {
      const small = new Store(database.executor, 1024);
      const a = `attempt-${randomUUID()}`;
      const owner = { jobId: `job-${randomUUID()}` };
      const frames: Array<[LogStream, string, number]> = [];
      for (let i = 0; i < 30; i++) frames.push([LogStream.STDOUT, `${"y".repeat(99)}\n`, 100 + i]);
      await small.write(a, owner, frames);
      const res = await read({ attemptId: a });
      const last = res.lines.at(-1)!;
      assert.equal(last.marker, "truncated");
      assert.match(dec(last.data), /^\[drover\] output past the per-attempt limit was not stored/);
      assert.equal(res.lines.filter((l) => l.marker === "").length, 11); // 10 lines and a cut one
      // Paging reaches the marker exactly once too.
      const paged = await readAll(reader, { attemptId: a, limitBytes: 250 });
      assert.equal(paged.lines.filter((l) => l.marker === "truncated").length, 1);
      // And the tail ends with it.
      assert.equal((await read({ attemptId: a, tailLines: 1 })).lines[0]!.marker, "truncated");
    });

    it("joins a line stored across two chunks and skips chunks outside the time window", async () => {
      const a = `attempt-${randomUUID()}`;
      await db.logAttempt.create({ data: { attemptId: a, jobId: "j", agentId: AGENT } });
      const rows: Array<[number, string, number]> = [
        [0, "early\nstart of a ", 100],
        [17, "long line\nlater\n", 200],
        [33, "much later\n", 300],
      ];
      for (const [start, t, ms] of rows) {
        const data = enc(t);
        await db.logChunk.create({
          data: { attemptId: a, stream: "stdout", startOffset: BigInt(start), endOffset: BigInt(start + data.length), data, times: [[0, ms]], firstTime: new Date(ms), lastTime: new Date(ms) },
        });
      }
      assert.deepEqual(text((await read({ attemptId: a })).lines), ["early\n", "start of a long line\n", "later\n", "much later\n"]);
      // The chunk at 200 is read, the one at 100 skipped: the line begun there is not returned.
      assert.deepEqual(text((await read({ attemptId: a, since: timestampFromMs(150) })).lines), ["later\n", "much later\n"]);
      assert.deepEqual(text((await read({ attemptId: a, tailLines: 3 })).lines), ["start of a long line\n", "later\n", "much later\n"]);
    });
  });
}
