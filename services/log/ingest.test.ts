// Ingestion on both databases Drover runs on, against the real Scheduler
// (its service over an in-memory transport, on the same database) for
// whose attempts are: jobs are submitted, claimed and placed on an agent
// id, and that agent's frames are ingested. The promise under test: no
// acknowledged byte is lost and none is stored twice, whatever duplicates,
// overlaps, gaps and concurrent callers do.

import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, createClient, createRouterTransport, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { LogFrameSchema, LogStream, type LogFrame } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { FleetService } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { IngestLogsRequestSchema } from "../../gen/ts/drover/log/v1/log_service_pb.ts";
import { SchedulerService } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { createMemoryBus } from "../../lib/bus/memory.ts";
import { defaultLogSettings, defaultSchedulingSettings, type LogSettings } from "../../lib/config.ts";
import { openPostgres, type Database } from "../../lib/db/database.ts";
import type { SqlExecutor } from "../../lib/db/executor.ts";
import { migrate } from "../../lib/db/migrate.ts";
import { createTestDatabase, openTempPglite } from "../../lib/db/testing.ts";
import { createLogger } from "../../lib/logger.ts";
import { secretPatterns } from "../../lib/redact.ts";
import { failure } from "../../lib/testing/connect.ts";
import { requirePostgres } from "../../lib/testing/services.ts";
import { createScheduler } from "../scheduler/scheduler.ts";
import { Ingest, MAX_CHUNK_BYTES, planStream, SMALL_CHUNK_BYTES, type PlanInput } from "./ingest.ts";
import type { LivePublisher, StoredPiece } from "./types.ts";

const pgUrl = await requirePostgres();
const logger = createLogger((process.env.DROVER_TEST_LOG_LEVEL as "debug" | undefined) ?? "silent");
const text = (s: string) => new TextEncoder().encode(s);

/** The fields of a frame a test may set besides attempt, offset and data. */
type FrameInit = Partial<Pick<LogFrame, "stream" | "commandIndex" | "sourceLength" | "final" | "time">>;

/** A frame of attemptId's stdout (unless said otherwise). */
function frame(attemptId: string, offset: number, data: string | Uint8Array, more: FrameInit = {}): LogFrame {
  return create(LogFrameSchema, { attemptId, stream: LogStream.STDOUT, offset: BigInt(offset), data: typeof data === "string" ? text(data) : data, ...more });
}

/** Keeps what ingestion hands the live side, as the follow side would receive it. */
class PieceRecorder implements LivePublisher {
  readonly pieces: StoredPiece[] = [];
  publish(pieces: readonly StoredPiece[]): void {
    this.pieces.push(...pieces);
  }
  of(attemptId: string, stream = "stdout"): StoredPiece[] {
    return this.pieces.filter((p) => p.attempt.attemptId === attemptId && p.stream === stream);
  }
}

function contract(name: string, open: () => Promise<Database>) {
  describe(`ingestion on ${name}`, () => {
    let db: Database;
    let scheduler: ReturnType<typeof createScheduler>;
    let schedulerClient: Client<typeof SchedulerService>;
    const live = new PieceRecorder();

    before(async () => {
      db = await open();
      await migrate(db.executor, "scheduler");
      await migrate(db.executor, "log");
      // Fleet is absent: assignments are not delivered (the Scheduler logs
      // that), which these tests do not need; the attempts exist all the same.
      const noFleet = createClient(FleetService, createRouterTransport(() => {}));
      scheduler = createScheduler({ db: db.prismaFor("scheduler"), bus: createMemoryBus(), clients: { fleet: noFleet }, settings: defaultSchedulingSettings(), logger });
      schedulerClient = createClient(SchedulerService, createRouterTransport(scheduler.routes));
    });

    after(async () => {
      await scheduler?.stop();
      await db?.close();
    });

    function ingestWith(settings: Partial<LogSettings> = {}): Ingest {
      return new Ingest({ sql: db.executor, clients: { scheduler: schedulerClient }, logger, settings: { ...defaultLogSettings(), ...settings }, live });
    }

    /** A new attempt placed on agentId, of a job whose env holds the given secrets. */
    async function attempt(agentId: string, secrets: Record<string, string> = {}): Promise<string> {
      const exec = { commands: [{ argv: ["true"] }], env: secrets, secretEnv: Object.keys(secrets) };
      const { job } = await schedulerClient.submitJob({ spec: { exec } });
      const { jobs } = await schedulerClient.claimPlaceableJobs({ bidder: "test", maxJobs: 100 });
      const claimed = jobs.find((j) => j.jobId === job!.id);
      assert.ok(claimed, "the job was claimed");
      const { results } = await schedulerClient.recordPlacements({ placements: [{ jobId: claimed.jobId, claimId: claimed.claimId, agentId }] });
      assert.ok(results[0]!.attemptId);
      return results[0]!.attemptId;
    }

    /** The stream as stored: its chunks' data in order, each starting where the one before ended. */
    async function stored(attemptId: string, stream = "stdout"): Promise<{ data: Buffer; chunks: { startOffset: bigint; endOffset: bigint; commandIndex: number; data: Uint8Array; times: unknown }[] }> {
      const chunks = await db.prismaFor("log").logChunk.findMany({ where: { attemptId, stream }, orderBy: { startOffset: "asc" } });
      for (let i = 1; i < chunks.length; i++) assert.equal(chunks[i]!.startOffset, chunks[i - 1]!.endOffset, "chunks are contiguous");
      return { data: Buffer.concat(chunks.map((c) => c.data)), chunks };
    }

    async function streamRow(attemptId: string, stream = "stdout") {
      return db.prismaFor("log").logStream.findUnique({ where: { attemptId_stream: { attemptId, stream } } });
    }

    it("stores bytes sent twice once, and acknowledges how far the stream is stored", async () => {
      const ingest = ingestWith();
      const a = await attempt("ag_dup");
      const first = await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_dup", frames: [frame(a, 0, "hello\n"), frame(a, 6, "world\n")] }));
      assert.deepEqual(first.acks.map((k) => [k.attemptId, k.stream, k.offset, k.complete, k.refused]), [[a, LogStream.STDOUT, 12n, false, ""]]);
      // A reconnect resends everything, one frame twice in the same request.
      const again = await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_dup", frames: [frame(a, 0, "hello\n"), frame(a, 6, "world\n"), frame(a, 6, "world\n"), frame(a, 12, "!\n")] }));
      assert.equal(again.acks[0]!.offset, 14n);
      assert.equal((await stored(a)).data.toString(), "hello\nworld\n!\n");
      const row = await db.prismaFor("log").logAttempt.findUnique({ where: { attemptId: a } });
      assert.equal(row?.agentId, "ag_dup");
      assert.equal(row?.storedBytes, 14n);
    });

    it("stores only the new part of a frame that overlaps stored bytes", async () => {
      const ingest = ingestWith();
      const a = await attempt("ag_overlap");
      await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_overlap", frames: [frame(a, 0, "abcdef")] }));
      const res = await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_overlap", frames: [frame(a, 3, "defghi")] }));
      assert.equal(res.acks[0]!.offset, 9n);
      assert.equal((await stored(a)).data.toString(), "abcdefghi");
      assert.deepEqual(live.of(a).map((p) => [p.offset, p.endOffset, Buffer.from(p.data).toString()]), [[0n, 6n, "abcdef"], [6n, 9n, "ghi"]]);
    });

    it("stores nothing past a gap, acknowledges the stored end, and takes the bytes once the gap is filled", async () => {
      const ingest = ingestWith();
      const a = await attempt("ag_gap");
      // "bbb" at 3 is missing: "aaa" is stored, nothing after the gap (not even frames that would fill it later in the request).
      const res = await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_gap", frames: [frame(a, 0, "aaa"), frame(a, 6, "ccc"), frame(a, 3, "bbb")] }));
      assert.equal(res.acks[0]!.offset, 3n);
      assert.equal((await stored(a)).data.toString(), "aaa");
      const alone = await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_gap", frames: [frame(a, 6, "ccc")] }));
      assert.equal(alone.acks[0]!.offset, 3n, "a frame past the gap alone stores nothing either");
      // The agent resends from the ack.
      const filled = await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_gap", frames: [frame(a, 3, "bbb"), frame(a, 6, "ccc")] }));
      assert.equal(filled.acks[0]!.offset, 9n);
      assert.equal((await stored(a)).data.toString(), "aaabbbccc");
    });

    it("skips a redacted frame that overlaps stored bytes, and stores a redacted frame that starts at the stored end with the length it covers", async () => {
      const ingest = ingestWith();
      const a = await attempt("ag_redacted");
      await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_redacted", frames: [frame(a, 0, "abc")] }));
      // Covers 0..12 of the file ("abc" + a 9-byte secret), so it cannot be cut at 3.
      const skipped = await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_redacted", frames: [frame(a, 0, "abc[REDACTED]", { sourceLength: 12n })] }));
      assert.equal(skipped.acks[0]!.offset, 3n);
      assert.equal((await stored(a)).data.toString(), "abc");
      const res = await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_redacted", frames: [frame(a, 3, "[REDACTED]", { sourceLength: 9n }), frame(a, 12, "\n")] }));
      assert.equal(res.acks[0]!.offset, 13n);
      const { data, chunks } = await stored(a);
      assert.equal(data.toString(), "abc[REDACTED]\n");
      assert.equal(chunks.at(-1)!.endOffset, 13n, "the chunk ends where the file bytes it covers end");
    });

    it("redacts the job's secret values again before storing, keeping the offsets of the file", async () => {
      const ingest = ingestWith();
      const a = await attempt("ag_secret", { TOKEN: "s3cr3t-value", OTHER: "hunter22" });
      const line = "token=s3cr3t-value other=hunter22\n";
      const res = await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_secret", frames: [frame(a, 0, line)] }));
      assert.equal(res.acks[0]!.offset, BigInt(line.length));
      const { data, chunks } = await stored(a);
      assert.equal(data.toString(), "token=[REDACTED] other=[REDACTED]\n");
      assert.equal(chunks[0]!.endOffset - chunks[0]!.startOffset, BigInt(line.length));
      assert.ok(!live.pieces.some((p) => Buffer.from(p.data).includes("s3cr3t")), "the live side never sees the value");
    });

    it("stores each byte once when two callers ingest the same stream at the same time with different frame cuts", async () => {
      const a = await attempt("ag_race");
      const source = randomBytes(300_000);
      // The redactor has nothing to find in random bytes unless a secret is set; none is.
      const cuts = (size: number) => {
        const frames: LogFrame[] = [];
        for (let at = 0; at < source.length; at += size) frames.push(frame(a, at, source.subarray(at, at + size), { commandIndex: at < 150_000 ? 0 : 1 }));
        return frames;
      };
      // Each caller plays an agent resending from its last ack, in batches, as fast as it can.
      const caller = async (ingest: Ingest, frames: LogFrame[], batch: number) => {
        let acked = 0n;
        for (let round = 0; acked < BigInt(source.length); round++) {
          assert.ok(round < 1000, "makes progress");
          const todo = frames.filter((f) => f.offset + BigInt(f.data.length) > acked).slice(0, batch);
          const res = await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_race", frames: todo }));
          acked = res.acks[0]!.offset;
        }
      };
      const liveBefore = live.of(a).length;
      await Promise.all([caller(ingestWith(), cuts(1000), 7), caller(ingestWith(), cuts(1536), 5), caller(ingestWith(), cuts(4096), 3)]);
      const { data, chunks } = await stored(a);
      assert.equal(Buffer.compare(data, source), 0, "the stored bytes are the source, exactly");
      assert.equal(chunks[0]!.startOffset, 0n);
      assert.equal(chunks.at(-1)!.endOffset, BigInt(source.length));
      assert.ok(chunks.every((c) => c.data.length <= MAX_CHUNK_BYTES));
      assert.ok(chunks.every((c) => (c.startOffset < 150_000n ? c.commandIndex === 0 : c.commandIndex === 1)), "a chunk holds one command's bytes");
      // What was published, put in order, is the source too: no piece twice.
      const pieces = live.of(a).slice(liveBefore).sort((x, y) => Number(x.offset - y.offset));
      for (let i = 1; i < pieces.length; i++) assert.equal(pieces[i]!.offset, pieces[i - 1]!.endOffset);
      assert.equal(Buffer.compare(Buffer.concat(pieces.map((p) => p.data)), source), 0);
      assert.equal((await db.prismaFor("log").logAttempt.findUnique({ where: { attemptId: a } }))?.storedBytes, BigInt(source.length));
    });

    it("stores up to the attempt's cap across its streams, marks where each stream stopped, and still advances the acks", async () => {
      const ingest = ingestWith({ maxBytesPerAttempt: 100 });
      const a = await attempt("ag_cap");
      const sixty = "x".repeat(59) + "\n";
      const res = await ingest.ingestLogs(create(IngestLogsRequestSchema, {
        agentId: "ag_cap",
        frames: [frame(a, 0, sixty), frame(a, 0, sixty, { stream: LogStream.STDERR })],
      }));
      assert.deepEqual(res.acks.map((k) => k.offset), [60n, 60n], "both streams are acknowledged in full");
      assert.equal((await stored(a)).data.length, 60);
      assert.equal((await stored(a, "stderr")).data.toString(), "x".repeat(40), "stderr is stored up to the cap");
      assert.equal((await streamRow(a, "stderr"))?.truncatedAt, 40n);
      assert.equal((await streamRow(a))?.truncatedAt, null);
      const more = await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_cap", frames: [frame(a, 60, "more\n"), frame(a, 60, "more\n", { stream: LogStream.STDERR })] }));
      assert.deepEqual(more.acks.map((k) => k.offset), [65n, 65n]);
      assert.equal((await stored(a)).data.length, 60, "nothing more is stored");
      assert.equal((await streamRow(a))?.truncatedAt, 60n);
      assert.equal((await streamRow(a, "stderr"))?.truncatedAt, 40n, "a stream is marked where it first stopped");
      assert.equal((await db.prismaFor("log").logAttempt.findUnique({ where: { attemptId: a } }))?.storedBytes, 100n);
    });

    it("refuses frames of an attempt the Scheduler does not know and of another agent's attempt, and stores the rest of the request", async () => {
      const ingest = ingestWith();
      const mine = await attempt("ag_owner");
      const theirs = await attempt("ag_someone_else");
      const unknown = randomUUID();
      const res = await ingest.ingestLogs(create(IngestLogsRequestSchema, {
        agentId: "ag_owner",
        frames: [frame(unknown, 0, "who?\n"), frame(theirs, 0, "not mine\n"), frame("not-a-uuid", 0, "x"), frame(mine, 0, "mine\n")],
      }));
      assert.deepEqual(res.acks.map((k) => [k.attemptId, k.offset, k.refused]), [
        [unknown, 0n, `unknown attempt ${unknown}`],
        [theirs, 0n, `attempt ${theirs} belongs to another agent`],
        ["not-a-uuid", 0n, "unknown attempt not-a-uuid"],
        [mine, 5n, ""],
      ]);
      const log = db.prismaFor("log");
      assert.equal(await log.logAttempt.count({ where: { attemptId: { in: [unknown, theirs, "not-a-uuid"] } } }), 0);
      assert.equal(await log.logChunk.count({ where: { attemptId: { in: [unknown, theirs, "not-a-uuid"] } } }), 0);
      assert.equal((await stored(mine)).data.toString(), "mine\n");
    });

    it("marks a stream complete on a final frame that ends at the stored end, and stores nothing after it", async () => {
      const ingest = ingestWith();
      const a = await attempt("ag_final");
      // A final frame past a gap completes nothing.
      const early = await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_final", frames: [frame(a, 4, "end\n", { final: true }), frame(a, 3, "", { stream: LogStream.STDERR, final: true })] }));
      assert.deepEqual(early.acks.map((k) => [k.offset, k.complete]), [[0n, false], [0n, false]]);
      const res = await ingest.ingestLogs(create(IngestLogsRequestSchema, {
        agentId: "ag_final",
        frames: [frame(a, 0, "one\n"), frame(a, 4, "end\n", { final: true }), frame(a, 8, "late\n"), frame(a, 0, "", { stream: LogStream.STDERR, final: true })],
      }));
      assert.deepEqual(res.acks.map((k) => [k.stream, k.offset, k.complete]), [[LogStream.STDOUT, 8n, true], [LogStream.STDERR, 0n, true]]);
      assert.equal((await stored(a)).data.toString(), "one\nend\n");
      assert.equal((await streamRow(a))?.complete, true);
      const again = await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_final", frames: [frame(a, 4, "end\n", { final: true })] }));
      assert.deepEqual([again.acks[0]!.offset, again.acks[0]!.complete], [8n, true], "a resent final frame is answered complete");
      assert.deepEqual(live.of(a).map((p) => [Buffer.from(p.data).toString(), p.complete]), [["one\nend\n", true]]);
      assert.deepEqual(live.of(a, "stderr").map((p) => [p.offset, p.data.length, p.complete]), [[0n, 0, true]], "an empty piece says the stream completed");
    });

    it("answers empty frames with how far the stream is, storing nothing", async () => {
      const ingest = ingestWith();
      const a = await attempt("ag_ask");
      await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_ask", frames: [frame(a, 0, "12345")] }));
      const res = await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_ask", frames: [frame(a, 0, ""), frame(a, 0, "", { stream: LogStream.SYSTEM })] }));
      assert.deepEqual(res.acks.map((k) => [k.stream, k.offset]), [[LogStream.STDOUT, 5n], [LogStream.SYSTEM, 0n]]);
      assert.equal(await streamRow(a, "system"), null, "a stream only asked about gets no row");
    });

    it("packs output that trickles in a line at a time into one chunk, with a time per frame, and starts new chunks for another command or past the small size", async () => {
      const ingest = ingestWith();
      const a = await attempt("ag_pack");
      const t0 = 1_900_000_000_000;
      let offset = 0;
      for (let i = 0; i < 20; i++) {
        const line = `line ${i}\n`;
        await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_pack", frames: [frame(a, offset, line, { time: timestampFromMs(t0 + i) })] }));
        offset += line.length;
      }
      let { chunks } = await stored(a);
      assert.equal(chunks.length, 1, "twenty requests, one chunk");
      const times = chunks[0]!.times as [number, number][];
      assert.equal(times.length, 20);
      assert.deepEqual(times.slice(0, 3), [[0, t0], [7, t0 + 1], [14, t0 + 2]]);
      assert.equal((await db.prismaFor("log").logChunk.findFirst({ where: { attemptId: a } }))?.lastTime?.getTime(), t0 + 19);

      // Another command's bytes start a chunk of their own.
      const big = "y".repeat(SMALL_CHUNK_BYTES);
      await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_pack", frames: [frame(a, offset, "cmd 1\n", { commandIndex: 1 }), frame(a, offset + 6, big, { commandIndex: 1 })] }));
      offset += 6 + big.length;
      // That chunk is no longer small: the next line starts a new one.
      await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_pack", frames: [frame(a, offset, "after\n", { commandIndex: 1 })] }));
      offset += 6;
      // A frame bigger than a chunk is cut.
      const huge = "z".repeat(MAX_CHUNK_BYTES + 10);
      await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_pack", frames: [frame(a, offset, huge, { commandIndex: 1 })] }));
      ({ chunks } = await stored(a));
      assert.deepEqual(chunks.map((c) => [c.commandIndex, c.data.length]), [
        [0, 150],
        [1, 6 + SMALL_CHUNK_BYTES],
        [1, 6 + MAX_CHUNK_BYTES - 6],
        [1, 16],
      ]);
      assert.equal((await stored(a)).data.length, offset + huge.length);
    });

    it("stores a stream it wrote before in one statement, outside a transaction", async () => {
      // Counts what ingestion asks of the database.
      const seen = { statements: 0, transactions: 0 };
      const counted: SqlExecutor = {
        query: (sql, params) => (seen.statements++, db.executor.query(sql, params)),
        exec: (script) => db.executor.exec(script),
        transaction: (fn) => (seen.transactions++, db.executor.transaction(fn)),
        session: (fn) => db.executor.session(fn),
      };
      const ingest = new Ingest({ sql: counted, clients: { scheduler: schedulerClient }, logger, settings: defaultLogSettings(), live });
      const a = await attempt("ag_fast");
      await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_fast", frames: [frame(a, 0, "one\n")] }));
      assert.deepEqual(seen, { statements: 0, transactions: 1 }, "the first write locks and reads the stream");
      const res = await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_fast", frames: [frame(a, 4, "two\n"), frame(a, 8, "three\n")] }));
      assert.deepEqual(seen, { statements: 1, transactions: 1 }, "the next is one statement");
      assert.equal(res.acks[0]!.offset, 14n);
      assert.equal((await stored(a)).data.toString(), "one\ntwo\nthree\n");
      assert.equal((await streamRow(a))?.nextOffset, 14n);
      assert.equal((await db.prismaFor("log").logAttempt.findUnique({ where: { attemptId: a } }))?.storedBytes, 14n);
      // Bytes sent again are answered from what it remembers, with no statement at all.
      const again = await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_fast", frames: [frame(a, 4, "two\n")] }));
      assert.deepEqual([again.acks[0]!.offset, seen.statements, seen.transactions], [14n, 1, 1]);
    });

    it("stores each byte once when another replica wrote the stream after this one last did", async () => {
      const one = ingestWith();
      const two = ingestWith();
      const a = await attempt("ag_replicas");
      const source = Buffer.from("0123456789abcdefghijklmnopqrstuvwxyz");
      // From 10 on, a second command: its bytes start a chunk of their own, so only the stream's state tells what was stored.
      const send = (ingest: Ingest, from: number, to: number) =>
        ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_replicas", frames: [frame(a, from, source.subarray(from, to), { commandIndex: from < 10 ? 0 : 1 })] }));
      await send(one, 0, 10);
      await send(two, 0, 20); // two has not written it: it locks, and stores 10..20
      // One remembers the stream at 10: its guard fails, it locks, and stores only 20..30.
      assert.equal((await send(one, 10, 30)).acks[0]!.offset, 30n);
      // And two, which remembers 20, finds 30 stored and takes only what is new.
      assert.equal((await send(two, 20, 33)).acks[0]!.offset, 33n);
      // A frame past what one remembers (33, where two stopped) is not a gap: storage says where the stream is.
      assert.equal((await send(one, 33, 36)).acks[0]!.offset, 36n);
      assert.equal((await stored(a)).data.toString(), source.toString());
      assert.equal((await db.prismaFor("log").logAttempt.findUnique({ where: { attemptId: a } }))?.storedBytes, 36n);
      const pieces = live.of(a).map((p) => [p.offset, p.endOffset]);
      assert.deepEqual(pieces, [[0n, 10n], [10n, 20n], [20n, 30n], [30n, 33n], [33n, 36n]], "each byte is published once");
    });

    it("keeps the cap when another replica stored bytes of the attempt's other stream since", async () => {
      const one = ingestWith({ maxBytesPerAttempt: 100 });
      const two = ingestWith({ maxBytesPerAttempt: 100 });
      const a = await attempt("ag_cap_replicas");
      await one.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_cap_replicas", frames: [frame(a, 0, "x".repeat(50))] }));
      await two.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_cap_replicas", frames: [frame(a, 0, "e".repeat(40), { stream: LogStream.STDERR })] }));
      // One remembers 50 bytes stored: 30 more would fit by that count, not by storage's (90).
      const res = await one.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_cap_replicas", frames: [frame(a, 50, "y".repeat(30))] }));
      assert.equal(res.acks[0]!.offset, 80n);
      assert.equal((await stored(a)).data.toString(), "x".repeat(50) + "y".repeat(10));
      assert.equal((await streamRow(a))?.truncatedAt, 60n);
      assert.equal((await db.prismaFor("log").logAttempt.findUnique({ where: { attemptId: a } }))?.storedBytes, 100n);
    });

    it("counts an attempt's bytes exactly when two replicas write its two streams at the same time", async () => {
      const one = ingestWith();
      const two = ingestWith();
      const a = await attempt("ag_two_streams");
      const rounds = 40;
      const write = async (ingest: Ingest, stream: LogStream, letter: string) => {
        for (let i = 0; i < rounds; i++) {
          const res = await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_two_streams", frames: [frame(a, i * 10, letter.repeat(9) + "\n", { stream })] }));
          assert.equal(res.acks[0]!.offset, BigInt((i + 1) * 10));
        }
      };
      await Promise.all([write(one, LogStream.STDOUT, "o"), write(two, LogStream.STDERR, "e")]);
      assert.equal((await stored(a)).data.toString(), ("o".repeat(9) + "\n").repeat(rounds));
      assert.equal((await stored(a, "stderr")).data.toString(), ("e".repeat(9) + "\n").repeat(rounds));
      assert.equal((await db.prismaFor("log").logAttempt.findUnique({ where: { attemptId: a } }))?.storedBytes, BigInt(2 * 10 * rounds));
    });

    it("stores nothing of a remembered stream whose rows retention deleted, and answers where storage is", async () => {
      const ingest = ingestWith();
      const a = await attempt("ag_gone");
      await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_gone", frames: [frame(a, 0, "kept\n")] }));
      for (const table of ["log_chunks", "log_streams", "log_attempts"]) await db.executor.query(`DELETE FROM "log"."${table}" WHERE attempt_id = $1`, [a]);
      const res = await ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_gone", frames: [frame(a, 5, "more\n")] }));
      assert.equal(res.acks[0]!.offset, 0n, "a gap from the start: the agent resends from 0");
      assert.equal((await stored(a)).data.length, 0);
      assert.equal((await streamRow(a))?.nextOffset, 0n);
    });

    it("answers UNAVAILABLE and stores nothing when the Scheduler cannot be reached", async () => {
      // A port nothing listens on.
      const unreachable = createClient(SchedulerService, createGrpcTransport({ baseUrl: "http://127.0.0.1:1" }));
      const ingest = new Ingest({ sql: db.executor, clients: { scheduler: unreachable }, logger, settings: defaultLogSettings() });
      const a = randomUUID();
      const err = await failure(ingest.ingestLogs(create(IngestLogsRequestSchema, { agentId: "ag_x", frames: [frame(a, 0, "lost?\n")] })));
      assert.equal(err.code, Code.Unavailable);
      assert.equal(await db.prismaFor("log").logChunk.count({ where: { attemptId: a } }), 0);
    });
  });
}

describe("planStream, the decisions without a database", () => {
  const plan = (frames: PlanInput["frames"], more: Partial<PlanInput> = {}) =>
    planStream({ state: { next: 0n, complete: false, truncatedAt: null }, tail: null, frames, patterns: [], capLeft: 1 << 30, nowMs: 5, ...more });
  const written = (p: ReturnType<typeof planStream>) => p.writes.map((w) => [w.offset, w.endOffset, Buffer.concat(w.parts).toString(), w.times]);

  it("packs contiguous frames of one command into one chunk, with a time per frame", () => {
    const p = plan([frame("a", 0, "ab", { time: timestampFromMs(1) }), frame("a", 2, "cd"), frame("a", 4, "ef", { commandIndex: 1 })]);
    assert.deepEqual(written(p), [[0n, 4n, "abcd", [[0, 1], [2, 5]]], [4n, 6n, "ef", [[0, 5]]]]);
    assert.equal(p.state.next, 6n);
  });

  it("grows a small tail chunk of the same command that ends where the bytes start, and not another command's", () => {
    const tail = { id: 7n, commandIndex: 0, endOffset: 10n, size: 10 };
    const grown = plan([frame("a", 10, "xy")], { state: { next: 10n, complete: false, truncatedAt: null }, tail });
    assert.deepEqual(grown.writes.map((w) => [w.appendTo, w.baseSize, w.times]), [[7n, 10, [[10, 5]]]]);
    const other = plan([frame("a", 10, "xy", { commandIndex: 1 })], { state: { next: 10n, complete: false, truncatedAt: null }, tail });
    assert.deepEqual(other.writes.map((w) => w.appendTo), [undefined]);
  });

  it("keeps a redacted frame bigger than a chunk whole, and cuts a plain one", () => {
    const big = "s".repeat(MAX_CHUNK_BYTES) + "tail";
    const redacted = plan([frame("a", 0, big, { sourceLength: BigInt(big.length + 3) })]);
    assert.deepEqual(redacted.writes.map((w) => [w.offset, w.endOffset, w.size]), [[0n, BigInt(big.length + 3), big.length]]);
    const plain = plan([frame("a", 0, big)]);
    assert.deepEqual(plain.writes.map((w) => [w.offset, w.endOffset, w.size]), [[0n, BigInt(MAX_CHUNK_BYTES), MAX_CHUNK_BYTES], [BigInt(MAX_CHUNK_BYTES), BigInt(big.length), 4]]);
  });

  it("stores nothing of a frame that would pass the cap when a secret in it makes it impossible to cut, and advances all the same", () => {
    const p = plan([frame("a", 0, "12345"), frame("a", 5, "the secret-value is here")], { capLeft: 10, patterns: secretPatterns(["secret-value"]) });
    assert.deepEqual(written(p).map((w) => w[2]), ["12345"]);
    assert.deepEqual([p.state.next, p.state.truncatedAt, p.storedBytes, p.truncated], [29n, 5n, 5, true]);
  });

  it("cuts a plain frame at the cap", () => {
    const p = plan([frame("a", 0, "0123456789")], { capLeft: 4 });
    assert.deepEqual(written(p).map((w) => [w[0], w[1], w[2]]), [[0n, 4n, "0123"]]);
    assert.deepEqual([p.state.next, p.state.truncatedAt], [10n, 4n]);
  });

  it("redacts a secret in the new part of an overlapping frame", () => {
    const p = plan([frame("a", 2, "abtoken-123\n")], { state: { next: 4n, complete: false, truncatedAt: null }, patterns: secretPatterns(["token-123"]) });
    assert.deepEqual(written(p).map((w) => [w[0], w[1], w[2]]), [[4n, 14n, "[REDACTED]\n"]]);
  });
});

contract("PGlite", openTempPglite);

describe("ingestion on PostgreSQL", () => {
  if (pgUrl === null) {
    it("needs PostgreSQL", async (t) => {
      await requirePostgres(t);
    });
    return;
  }
  contract("PostgreSQL", async () => {
    const testDb = await createTestDatabase(pgUrl);
    const db = openPostgres(testDb.url, { max: 8 });
    return { ...db, close: () => db.close().finally(() => testDb.drop()) };
  });
});
