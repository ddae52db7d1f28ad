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
import { migrate } from "../../lib/db/migrate.ts";
import { createTestDatabase, type TestDatabase } from "../../lib/db/testing.ts";
import { createLogger } from "../../lib/logger.ts";
import { failure } from "../../lib/testing/connect.ts";
import { requirePostgres } from "../../lib/testing/services.ts";
import { Ingest } from "./ingest.ts";
import { LogReader } from "./read.ts";

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

  constructor(db: PrismaClient, maxBytesPerAttempt = 1 << 30) {
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
    this.ingest = new Ingest({ db, clients: { scheduler }, logger, settings: { maxBytesPerAttempt, retentionDays: 7, retentionIntervalMs: 600_000 } });
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
      store = new Store(db);
      reader = new LogReader({ db, logger });
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
      const small = new Store(db, 1024);
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
