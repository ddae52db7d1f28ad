// Ingestion: stores the frames agents sent (through Fleet) and says how far
// each stream is stored. The promise to agents: no acknowledged byte is
// lost and no byte is stored twice, whatever duplicates, reorders and
// reconnects happen.
//
//   IngestLogs(agent, frames)
//     │ group by (attempt, stream), order kept
//     │ whose attempts? the cache, else one DescribeAttempts for the rest
//     │   (unknown, or another agent's: refused for good)
//     ▼
//   streams this replica wrote last: planned from what it remembers of
//     │ them (state, tail chunk, the attempt's stored bytes: never ahead of
//     │ storage), then one statement, committed on its own, writes it all
//     │ if every stream is still where the plan found it (else nothing,
//     │ and the streams go the other way)
//   the others: one transaction
//     │ rows of log_attempts and log_streams made to exist, then locked
//     │ FOR UPDATE, attempts then streams, each in sorted order (two
//     │ requests cannot deadlock; a second writer of a stream waits and
//     │ then sees what the first stored), then the same statement
//     │
//     │ planStream() per stream: duplicates skipped, overlaps trimmed,
//     │ a gap stops the stream, secrets redacted again, the per-attempt cap,
//     │ frames packed into chunks (small tails grown in place)
//     ▼ chunks written, next_offset / stored_bytes advanced, committed
//   live.publish(pieces) and one LogAck per (attempt, stream)
//
// Why two ways: the transaction is eight round trips to PostgreSQL (BEGIN,
// five reads and locks, the write, COMMIT), and an agent's streams are
// written by the same replica call after call. From what it remembers, one
// round trip does: IngestLogs p50 15-17 → 7.4-8.6 ms at 10 MiB/s followed
// (bench/logs), and an attempt's row is locked for one statement instead
// of a whole transaction.
//
// A stream's offset counts bytes of the agent's files. A chunk covers
// [start_offset, end_offset) of them; its data may be shorter when a secret
// was replaced by [REDACTED] (by the agent, or here).

import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { LogStream, type LogAck, type LogFrame } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import type { IngestLogsRequest } from "../../gen/ts/drover/log/v1/log_service_pb.ts";
import type { DroverClients } from "../../lib/clients.ts";
import type { LogSettings } from "../../lib/config.ts";
import type { SqlExecutor, SqlQueryable } from "../../lib/db/executor.ts";
import type { Logger } from "../../lib/logger.ts";
import { redact, secretPatterns } from "../../lib/redact.ts";
import type { AttemptOwner, LivePublisher, StoredPiece, StreamName } from "./types.ts";

/** A chunk is closed once it holds this many bytes (a frame bigger than this is cut, unless redacted). */
export const MAX_CHUNK_BYTES = 256 << 10;
/** A stream's last chunk smaller than this is grown by the next contiguous bytes rather than followed by a new one. */
export const SMALL_CHUNK_BYTES = 32 << 10;
/** Attempts whose owner and secret values are kept in memory. */
const ATTEMPT_CACHE_SIZE = 10_000;
/** Streams whose state a replica remembers from its own writes. */
const STREAM_CACHE_SIZE = 30_000;
/** DescribeAttempts takes at most this many ids per call. */
const DESCRIBE_BATCH = 1000;
/** A transaction that found an attempt's rows deleted under it (retention) is run again this many times. */
const TRANSACTION_TRIES = 3;

const STREAM_NAMES: Partial<Record<LogStream, StreamName>> = {
  [LogStream.STDOUT]: "stdout",
  [LogStream.STDERR]: "stderr",
  [LogStream.SYSTEM]: "system",
};

/** A LogAck with every field set (assignable to the message's init shape). */
export type IngestAck = Pick<LogAck, "attemptId" | "stream" | "offset" | "complete" | "refused">;

export interface IngestDeps {
  /**
   * Raw SQL on the Log service's database (node-postgres or PGlite), not
   * Prisma: Prisma passes every byte of a bytea parameter through base64 in
   * JavaScript both ways, which cost more CPU than everything else of
   * ingestion together; node-postgres sends a Buffer as a binary parameter.
   */
  sql: SqlExecutor;
  /** The Scheduler, which says whose attempts are (DescribeAttempts). */
  clients: Pick<DroverClients, "scheduler">;
  logger: Logger;
  settings: LogSettings;
  /** Told what was stored after each commit; none in tests that do not follow. */
  live?: LivePublisher;
}

/** What ingestion knows of an attempt: whose it is and what to redact (secret values live only in memory). */
interface AttemptInfo {
  owner: AttemptOwner;
  patterns: Uint8Array[];
}

// ---- The pure core: one stream's frames against its stored state ---------------------

/** A stream as locked in log_streams. */
export interface StreamState {
  /** Every byte before it is stored (or dropped past the cap). */
  next: bigint;
  complete: boolean;
  truncatedAt: bigint | null;
}

/** A stream's last stored chunk, which new bytes may be appended to. */
export interface TailChunk {
  id: bigint;
  commandIndex: number;
  endOffset: bigint;
  /** Bytes of data. */
  size: number;
}

/** Bytes to write to one chunk: a new one, or appended to the stream's tail chunk. */
export interface ChunkWrite {
  /** The tail chunk's id when appending; undefined for a new chunk. */
  appendTo?: bigint;
  /** Bytes the tail chunk held before (0 for a new chunk). */
  baseSize: number;
  commandIndex: number;
  /** Where the new bytes start in the stream. */
  offset: bigint;
  /** Where they end (offset + file bytes covered). */
  endOffset: bigint;
  /** The new bytes, as stored (redacted). */
  parts: Uint8Array[];
  size: number;
  /** [offset within the chunk's data (base included), epoch ms] per frame written. */
  times: Array<[number, number]>;
}

/** What planStream decided for one stream. */
export interface StreamPlan {
  state: StreamState;
  writes: ChunkWrite[];
  /** Bytes of data stored (counted against the attempt's cap). */
  storedBytes: number;
  /** Set when a frame started past the stored end: nothing after it was looked at. */
  gap?: { expected: bigint; got: bigint };
  /** Set when a frame the agent redacted overlapped stored bytes: skipped, and the rest after it. */
  redactedOverlap?: { at: bigint; next: bigint };
  /** The stream reached the cap in this request (at state.truncatedAt). */
  truncated: boolean;
}

export interface PlanInput {
  state: StreamState;
  tail: TailChunk | null;
  /** The stream's frames in the order they came. */
  frames: readonly Pick<LogFrame, "commandIndex" | "offset" | "data" | "sourceLength" | "final" | "time">[];
  /** Secret values to redact (secretPatterns). */
  patterns: readonly Uint8Array[];
  /** Bytes the attempt may still store. */
  capLeft: number;
  /** Time for frames that carry none. */
  nowMs: number;
}

/**
 * Decides what to store of one stream's frames: each frame is a duplicate
 * (ends at or before the stored end: skipped), overlaps it (the new part is
 * stored, unless the agent redacted the frame: its bytes cannot be cut at a
 * file offset, so it is skipped and the agent resends from the stored end),
 * starts past it (a gap: nothing more of the stream is stored now), or
 * starts exactly there (stored). Past the cap, offsets advance without
 * storing. A final frame completes the stream when it ends exactly at the
 * stored end.
 */
export function planStream(input: PlanInput): StreamPlan {
  const state = { ...input.state };
  let capLeft = input.capLeft;
  let storedBytes = 0;
  let truncated = false;
  let gap: StreamPlan["gap"];
  let redactedOverlap: StreamPlan["redactedOverlap"];
  const stored: StoredFrame[] = [];

  for (const f of input.frames) {
    // After the final frame the stream is closed: anything else is stale.
    if (state.complete) break;
    const covered = f.sourceLength > 0n ? f.sourceLength : BigInt(f.data.length);
    const end = f.offset + covered;
    if (covered === 0n) {
      // An empty frame asks how far the stream is (or, final, closes it).
      if (f.final && f.offset === state.next) state.complete = true;
      continue;
    }
    if (f.offset > state.next) {
      gap = { expected: state.next, got: f.offset };
      break;
    }
    if (end > state.next) {
      const agentRedacted = f.sourceLength > 0n && f.sourceLength !== BigInt(f.data.length);
      let from = f.offset;
      let data = f.data;
      if (f.offset < state.next) {
        if (agentRedacted) {
          redactedOverlap = { at: f.offset, next: state.next };
          break;
        }
        data = data.subarray(Number(state.next - f.offset));
        from = state.next;
      }
      const timeMs = f.time ? timestampMs(f.time) : input.nowMs;
      if (state.truncatedAt === null) {
        const clean = redact(data, input.patterns);
        // Bytes map one to one onto the file only when no one redacted them.
        const plain = !agentRedacted && clean === data;
        if (clean.length <= capLeft) {
          stored.push({ commandIndex: f.commandIndex, from, end, data: clean, plain, timeMs });
          capLeft -= clean.length;
          storedBytes += clean.length;
        } else {
          // The cap: store what fits when the bytes can be cut at a file
          // offset, then nothing more of this stream.
          const keep = plain ? capLeft : 0;
          if (keep > 0) {
            stored.push({ commandIndex: f.commandIndex, from, end: from + BigInt(keep), data: data.subarray(0, keep), plain, timeMs });
            capLeft -= keep;
            storedBytes += keep;
          }
          state.truncatedAt = from + BigInt(keep);
          truncated = true;
        }
      }
      state.next = end;
    }
    if (f.final && end === state.next) state.complete = true;
  }

  return { state, writes: pack(stored, input.tail), storedBytes, gap, redactedOverlap, truncated };
}

/** A frame's bytes that planStream decided to store. */
interface StoredFrame {
  commandIndex: number;
  /** The file bytes it covers. */
  from: bigint;
  end: bigint;
  /** As stored (redacted). */
  data: Uint8Array;
  /** data maps one to one onto [from, end): it may be cut anywhere. */
  plain: boolean;
  timeMs: number;
}

/**
 * Packs contiguous stored frames of one command into chunks of up to
 * MAX_CHUNK_BYTES, cutting plain frames where a chunk fills (a redacted
 * frame cannot be cut at a file offset, so it goes whole into the next
 * chunk). The first may grow the stream's small tail chunk, so output that
 * trickles in a line at a time still ends up in few chunks.
 */
function pack(frames: readonly StoredFrame[], tail: TailChunk | null): ChunkWrite[] {
  const writes: ChunkWrite[] = [];
  let open: ChunkWrite | undefined;
  if (tail && tail.size < SMALL_CHUNK_BYTES) {
    open = { appendTo: tail.id, baseSize: tail.size, commandIndex: tail.commandIndex, offset: tail.endOffset, endOffset: tail.endOffset, parts: [], size: 0, times: [] };
  }
  const add = (w: ChunkWrite, data: Uint8Array, end: bigint, timeMs: number) => {
    if (w.parts.length === 0) writes.push(w);
    w.times.push([w.baseSize + w.size, timeMs]);
    w.parts.push(data);
    w.size += data.length;
    w.endOffset = end;
  };
  for (const f of frames) {
    let from = f.from;
    let data = f.data;
    for (;;) {
      const room = open && open.endOffset === from && open.commandIndex === f.commandIndex ? MAX_CHUNK_BYTES - open.baseSize - open.size : 0;
      if (open && room >= data.length) {
        add(open, data, f.end, f.timeMs);
        break;
      }
      if (f.plain && room > 0) {
        add(open!, data.subarray(0, room), from + BigInt(room), f.timeMs);
        from += BigInt(room);
        data = data.subarray(room);
      }
      open = { baseSize: 0, commandIndex: f.commandIndex, offset: from, endOffset: from, parts: [], size: 0, times: [] };
      // A redacted frame goes whole into a chunk of its own (it may exceed
      // the size); plain bytes larger than a chunk go round again.
      if (!f.plain || data.length <= MAX_CHUNK_BYTES) {
        add(open, data, f.end, f.timeMs);
        break;
      }
    }
  }
  return writes;
}

// ---- The shell: ownership, the transaction, acks ---------------------------------

/** One (attempt, stream) of a request. */
interface StreamGroup {
  attemptId: string;
  stream: LogStream;
  name: StreamName;
  frames: LogFrame[];
  /** Some frame has data or is final: the stream is written (else only asked about). */
  writes: boolean;
}

/** A stream's outcome, for its ack. */
interface StreamResult {
  next: bigint;
  complete: boolean;
  refused?: string;
}

/** Stores agents' frames; promises that an acknowledged byte is stored exactly once. */
export class Ingest {
  private readonly attempts = new Map<string, AttemptInfo>();
  /** Per (attempt, stream) this replica wrote: its state and tail chunk as last written here (storage may be ahead, never behind). */
  private readonly streams = new Map<string, { state: StreamState; tail: TailChunk | null }>();
  /** Per attempt this replica wrote: its stored bytes as last written here. */
  private readonly storedBytes = new Map<string, number>();

  constructor(private readonly deps: IngestDeps) {}

  async ingestLogs(req: IngestLogsRequest): Promise<{ acks: IngestAck[] }> {
    const groups = groupFrames(req.frames);
    const infos = await this.describe([...new Set(groups.map((g) => g.attemptId))]);
    const results = new Map<StreamGroup, StreamResult>();
    const refusedAttempts = new Map<string, string>();
    const accepted: StreamGroup[] = [];
    for (const g of groups) {
      const info = infos.get(g.attemptId);
      const refused = !info ? `unknown attempt ${g.attemptId}` : info.owner.agentId !== req.agentId ? `attempt ${g.attemptId} belongs to another agent` : undefined;
      if (refused) {
        refusedAttempts.set(g.attemptId, refused);
        results.set(g, { next: 0n, complete: false, refused });
      } else {
        accepted.push(g);
      }
    }
    for (const [attemptId, reason] of refusedAttempts) {
      this.deps.logger.warn({ attemptId, agentId: req.agentId, reason }, "log frames refused");
    }

    const written = accepted.filter((g) => g.writes);
    const asked = accepted.filter((g) => !g.writes);
    if (written.length > 0) {
      const { streams, pieces } = await this.store(written, infos);
      for (const [g, r] of streams) results.set(g, r);
      if (pieces.length > 0) this.deps.live?.publish(pieces);
    }
    if (asked.length > 0) for (const [g, r] of await this.positions(asked)) results.set(g, r);

    return {
      acks: groups.map((g) => {
        const r = results.get(g)!;
        return { attemptId: g.attemptId, stream: g.stream, offset: r.next, complete: r.complete, refused: r.refused ?? "" };
      }),
    };
  }

  /** Whose the attempts are, from the cache or the Scheduler; unknown ones are missing. */
  private async describe(ids: readonly string[]): Promise<Map<string, AttemptInfo>> {
    const out = new Map<string, AttemptInfo>();
    const missing: string[] = [];
    for (const id of ids) {
      const info = this.attempts.get(id);
      if (info) {
        // Most recently used last: the first in the map is the first to go.
        this.attempts.delete(id);
        this.attempts.set(id, info);
        out.set(id, info);
      } else {
        missing.push(id);
      }
    }
    for (let i = 0; i < missing.length; i += DESCRIBE_BATCH) {
      let described;
      try {
        described = await this.deps.clients.scheduler.describeAttempts({ attemptIds: missing.slice(i, i + DESCRIBE_BATCH) }, { timeoutMs: 10_000 });
      } catch (err) {
        // Nothing is acknowledged: Fleet retries, the agent resends.
        const cause = ConnectError.from(err);
        throw new ConnectError(`cannot check whose the attempts are: the scheduler answered ${Code[cause.code]}`, Code.Unavailable);
      }
      for (const a of described.attempts) {
        const info: AttemptInfo = {
          owner: { attemptId: a.attemptId, jobId: a.jobId, agentId: a.agentId, runId: a.runId, stageName: a.stageName },
          patterns: secretPatterns(a.secretValues),
        };
        this.attempts.set(a.attemptId, info);
        out.set(a.attemptId, info);
      }
    }
    while (this.attempts.size > ATTEMPT_CACHE_SIZE) this.attempts.delete(this.attempts.keys().next().value!);
    return out;
  }

  /** Where streams that were only asked about are stored up to (no row: nothing yet). */
  private async positions(groups: readonly StreamGroup[]): Promise<Map<StreamGroup, StreamResult>> {
    const rows = await this.deps.sql.query<{ attempt_id: string; stream: string; next: string; complete: boolean }>(
      `SELECT s.attempt_id, s.stream, s.next_offset::text AS next, s.complete
         FROM "log"."log_streams" s
         JOIN jsonb_to_recordset($1::jsonb) AS k(attempt_id text, stream text) ON s.attempt_id = k.attempt_id AND s.stream = k.stream`,
      [JSON.stringify(groups.map((g) => ({ attempt_id: g.attemptId, stream: g.name })))],
    );
    const found = new Map(rows.map((r) => [key(r.attempt_id, r.stream), r]));
    return new Map(groups.map((g) => {
      const r = found.get(key(g.attemptId, g.name));
      return [g, { next: r ? BigInt(r.next) : 0n, complete: r?.complete ?? false }];
    }));
  }

  /**
   * Stores the written streams' frames; resolves each stream's outcome and
   * what to publish. Streams this replica wrote before are planned from what
   * it remembers of them and written by one guarded statement (fast); the
   * others, and any whose guard fails, in a transaction that locks and reads
   * them first.
   */
  private async store(groups: readonly StreamGroup[], infos: ReadonlyMap<string, AttemptInfo>): Promise<Stored> {
    const remembered = this.rememberedPlan(groups, infos);
    if (remembered) {
      let written: Map<string, bigint> | undefined;
      try {
        written = await this.write(this.deps.sql, remembered);
      } catch (err) {
        // Nothing was written (one statement); the transaction below says what holds.
        this.deps.logger.debug({ err }, "storing from remembered stream state failed; locking the streams");
      }
      if (written) {
        this.remember(remembered, written);
        return remembered;
      }
      // Another writer (a replica, retention) changed a stream since: ask storage.
      this.forget(groups);
    }
    for (let attempt = 1; ; attempt++) {
      try {
        // Remembered only once committed: what a replica remembers is never ahead of storage.
        const { planned, written } = await this.deps.sql.transaction((tx) => this.storeIn(tx, groups, infos));
        this.remember(planned, written);
        return planned;
      } catch (err) {
        this.forget(groups);
        if (!(err instanceof VanishedError)) throw err;
        if (attempt >= TRANSACTION_TRIES) throw new ConnectError(err.message, Code.Unavailable);
      }
    }
  }

  /** Drops what this replica remembers of the groups' streams: the next call reads them under locks. */
  private forget(groups: readonly StreamGroup[]): void {
    for (const g of groups) this.streams.delete(key(g.attemptId, g.name));
  }

  /**
   * The plan from what this replica remembers of every stream and attempt of
   * the request (what it stored last, so never ahead of storage); undefined
   * when it does not remember one, a stream reaches the cap (decided under
   * locks only), or a frame does not fit what it remembers.
   */
  private rememberedPlan(groups: readonly StreamGroup[], infos: ReadonlyMap<string, AttemptInfo>): Planned | undefined {
    const states = new Map<string, StreamState>();
    const tails = new Map<string, TailChunk>();
    const stored = new Map<string, number>();
    for (const g of groups) {
      const k = key(g.attemptId, g.name);
      const known = this.streams.get(k);
      const bytes = this.storedBytes.get(g.attemptId);
      if (!known || bytes === undefined || known.state.truncatedAt !== null) return undefined;
      states.set(k, known.state);
      if (known.tail) tails.set(k, known.tail);
      stored.set(g.attemptId, bytes);
    }
    const planned = this.plan(groups, infos, states, tails, stored);
    // A frame past the remembered end says another writer went on since:
    // storage knows, and the ack must not go back to what this one saw.
    return planned.truncated || planned.stale ? undefined : planned;
  }

  private async storeIn(tx: SqlQueryable, groups: readonly StreamGroup[], infos: ReadonlyMap<string, AttemptInfo>): Promise<{ planned: Planned; written: Map<string, bigint> }> {
    const attemptIds = [...new Set(groups.map((g) => g.attemptId))];
    const streamKeys = groups.map((g) => ({ attempt_id: g.attemptId, stream: g.name }));
    const streamKeysJson = JSON.stringify(streamKeys);

    // Every statement below that takes row locks does so in ORDER BY order
    // (attempts, then streams, each sorted), the same in every transaction,
    // so two requests wait for each other but never deadlock. The rows
    // exist first (ON CONFLICT waits for a concurrent inserter to commit),
    // so that the locks find every one of them; a second writer of a stream
    // gets its lock once the first has committed, and reads what it stored.
    await tx.query(
      `INSERT INTO "log"."log_attempts" (attempt_id, job_id, agent_id, run_id, stage_name)
       SELECT attempt_id, job_id, agent_id, NULLIF(run_id, ''), NULLIF(stage_name, '')
         FROM jsonb_to_recordset($1::jsonb) AS t(attempt_id text, job_id text, agent_id text, run_id text, stage_name text)
        ORDER BY attempt_id
       ON CONFLICT (attempt_id) DO NOTHING`,
      [JSON.stringify(attemptIds.map((id) => {
        const o = infos.get(id)!.owner;
        return { attempt_id: id, job_id: o.jobId, agent_id: o.agentId, run_id: o.runId, stage_name: o.stageName };
      }))],
    );
    await tx.query(
      `INSERT INTO "log"."log_streams" (attempt_id, stream)
       SELECT attempt_id, stream FROM jsonb_to_recordset($1::jsonb) AS t(attempt_id text, stream text)
        ORDER BY attempt_id, stream
       ON CONFLICT (attempt_id, stream) DO NOTHING`,
      [streamKeysJson],
    );
    const attemptRows = await tx.query<{ attempt_id: string; stored: string }>(
      `SELECT attempt_id, stored_bytes::text AS stored FROM "log"."log_attempts"
        WHERE attempt_id IN (SELECT jsonb_array_elements_text($1::jsonb))
        ORDER BY attempt_id FOR UPDATE`,
      [JSON.stringify(attemptIds)],
    );
    const streamRows = await tx.query<{ attempt_id: string; stream: string; next: string; truncated: string | null; complete: boolean }>(
      `SELECT s.attempt_id, s.stream, s.next_offset::text AS next, s.truncated_at::text AS truncated, s.complete
         FROM "log"."log_streams" s
        WHERE (s.attempt_id, s.stream) IN (SELECT attempt_id, stream FROM jsonb_to_recordset($1::jsonb) AS k(attempt_id text, stream text))
        ORDER BY s.attempt_id, s.stream FOR UPDATE`,
      [streamKeysJson],
    );
    // Retention may have deleted an idle attempt between the inserts and the locks.
    if (attemptRows.length !== attemptIds.length || streamRows.length !== streamKeys.length) {
      throw new VanishedError("an attempt's log was deleted while storing; try again");
    }
    const stored = new Map(attemptRows.map((r) => [r.attempt_id, Number(r.stored)]));
    const states = new Map(streamRows.map((r) => [key(r.attempt_id, r.stream), {
      next: BigInt(r.next),
      complete: r.complete,
      truncatedAt: r.truncated === null ? null : BigInt(r.truncated),
    } satisfies StreamState]));

    // Read after the locks: a writer we waited for has committed its chunks.
    const tailRows = await tx.query<{ attempt_id: string; stream: string; id: string; command_index: number; end_offset: string; size: number }>(
      `SELECT k.attempt_id, k.stream, c.id::text AS id, c.command_index, c.end_offset::text AS end_offset, c.size
         FROM jsonb_to_recordset($1::jsonb) AS k(attempt_id text, stream text)
         CROSS JOIN LATERAL (
           SELECT id, command_index, end_offset, octet_length(data) AS size
             FROM "log"."log_chunks" c
            WHERE c.attempt_id = k.attempt_id AND c.stream = k.stream
            ORDER BY c.start_offset DESC LIMIT 1) c`,
      [JSON.stringify(streamKeys.filter((k) => states.get(key(k.attempt_id, k.stream))!.next > 0n))],
    );
    const tails = new Map(tailRows.map((r) => [key(r.attempt_id, r.stream), {
      id: BigInt(r.id),
      commandIndex: Number(r.command_index),
      endOffset: BigInt(r.end_offset),
      size: Number(r.size),
    } satisfies TailChunk]));

    const planned = this.plan(groups, infos, states, tails, stored);
    const written = await this.write(tx, planned);
    // Under the locks every guard holds; if one does not, something deleted rows under them.
    if (!written) throw new VanishedError("an attempt's log changed under its locks; try again");
    return { planned, written };
  }

  /** Plans every stream of the request against the given stored state (locked, or remembered). */
  private plan(
    groups: readonly StreamGroup[],
    infos: ReadonlyMap<string, AttemptInfo>,
    states: ReadonlyMap<string, StreamState>,
    tails: ReadonlyMap<string, TailChunk>,
    storedBefore: ReadonlyMap<string, number>,
  ): Planned {
    const { maxBytesPerAttempt } = this.deps.settings;
    const nowMs = Date.now();
    const stored = new Map(storedBefore);
    const planned: Planned = { streams: new Map(), pieces: [], inserts: [], appends: [], changedStreams: [], deltas: new Map(), after: [], storedAfter: stored, notes: [], truncated: false, stale: false };
    for (const g of groups) {
      const info = infos.get(g.attemptId)!;
      const k = key(g.attemptId, g.name);
      const before = states.get(k)!;
      const tail = tails.get(k) ?? null;
      const plan = planStream({
        state: before,
        tail,
        frames: g.frames,
        patterns: info.patterns,
        capLeft: Math.max(0, maxBytesPerAttempt - stored.get(g.attemptId)!),
        nowMs,
      });
      const log = { attemptId: g.attemptId, stream: g.name };
      const { logger } = this.deps;
      if (plan.gap) {
        planned.stale = true;
        const { expected, got } = plan.gap;
        planned.notes.push(() => logger.warn({ ...log, expected: expected.toString(), got: got.toString() }, "log frame past a gap; storing nothing more of the stream until the agent resends"));
      }
      if (plan.redactedOverlap) {
        planned.stale = true;
        const { at, next } = plan.redactedOverlap;
        planned.notes.push(() => logger.info({ ...log, at: at.toString(), next: next.toString() }, "redacted log frame overlaps stored bytes; skipped, the agent resends from the stored end"));
      }
      if (plan.truncated) {
        planned.truncated = true;
        const at = plan.state.truncatedAt!.toString();
        planned.notes.push(() => logger.warn({ ...log, truncatedAt: at, maxBytesPerAttempt }, "attempt reached its log size cap; output past it is not stored"));
      }
      stored.set(g.attemptId, stored.get(g.attemptId)! + plan.storedBytes);
      planned.streams.set(g, { next: plan.state.next, complete: plan.state.complete });
      planned.after.push({ key: k, attemptId: g.attemptId, stream: g.name, state: plan.state, tail, writes: plan.writes });

      const s = plan.state;
      if (s.next !== before.next || s.complete !== before.complete || s.truncatedAt !== before.truncatedAt) {
        planned.changedStreams.push({
          attempt_id: g.attemptId,
          stream: g.name,
          expect: before.next.toString(),
          expect_truncated: before.truncatedAt?.toString() ?? null,
          next: s.next.toString(),
          truncated: s.truncatedAt?.toString() ?? null,
          complete: s.complete,
        });
        planned.deltas.set(g.attemptId, (planned.deltas.get(g.attemptId) ?? 0) + plan.storedBytes);
      }
      for (const w of plan.writes) {
        const data = w.parts.length === 1 ? w.parts[0]! : Buffer.concat(w.parts);
        const row: ChunkRow = {
          id: w.appendTo?.toString() ?? null,
          expect_end: w.appendTo === undefined ? null : w.offset.toString(),
          attempt_id: g.attemptId,
          stream: g.name,
          start_offset: w.offset.toString(),
          end_offset: w.endOffset.toString(),
          command_index: w.commandIndex,
          data: Buffer.from(data.buffer, data.byteOffset, data.byteLength),
          times: w.times,
          first_ms: w.times[0]![1],
          last_ms: w.times.at(-1)![1],
        };
        (w.appendTo === undefined ? planned.inserts : planned.appends).push(row);
        planned.pieces.push({
          attempt: info.owner,
          stream: g.name,
          commandIndex: w.commandIndex,
          offset: w.offset,
          endOffset: w.endOffset,
          data,
          times: w.times.map(([at, ms]) => [at - w.baseSize, ms]),
          complete: false,
        });
      }
      if (s.complete && !before.complete) {
        const last = planned.pieces.at(-1);
        if (plan.writes.length > 0 && last) last.complete = true;
        else planned.pieces.push({ attempt: info.owner, stream: g.name, commandIndex: g.frames.at(-1)!.commandIndex, offset: s.next, endOffset: s.next, data: new Uint8Array(), times: [], complete: true });
      }
    }
    return planned;
  }

  /**
   * Writes a plan in one statement: chunks inserted and grown, streams and
   * attempts advanced, all or nothing. Its guards: every changed stream is
   * still where the plan found it, every grown chunk still ends where it
   * did, and no attempt passes its cap; the rows are locked (FOR UPDATE
   * re-reads a row another writer changed meanwhile) before anything is
   * written. Resolves the new chunks' ids, or undefined when a guard failed
   * and nothing was written. Outside a transaction the statement commits on
   * its own.
   *
   * The rows' small fields travel as JSON parameters, their bytes as bytea
   * parameters of their own (binary on the wire, no parsing): inserted
   * chunk i's in $(6 + i), then the appended ones'.
   */
  private async write(q: SqlQueryable, p: Planned): Promise<Map<string, bigint> | undefined> {
    if (p.inserts.length + p.appends.length + p.changedStreams.length === 0) return new Map();
    const first = 6;
    const meta = (rows: ChunkRow[], from: number) => JSON.stringify(rows.map(({ data: _data, ...row }, i) => ({ ...row, param: from + i })));
    const bytes = (rows: ChunkRow[], from: number) => (rows.length === 0 ? "NULL::bytea" : `(ARRAY[${rows.map((_, i) => `$${from + i}::bytea`).join(", ")}])[t.param - ${from - 1}]`);
    const firstAppend = first + p.inserts.length;
    const attempts = [...p.deltas].map(([attempt_id, delta]) => ({ attempt_id, delta }));
    const [row] = await q.query<{ ok: boolean; ids: [string, string, string, string][] }>(
      `WITH s_in AS (
         SELECT * FROM jsonb_to_recordset($3::jsonb) AS t(attempt_id text, stream text, expect text, expect_truncated text, next text, truncated text, complete boolean)
       ), a_in AS (
         SELECT * FROM jsonb_to_recordset($4::jsonb) AS t(attempt_id text, delta bigint)
       ), c_in AS (
         SELECT * FROM jsonb_to_recordset($2::jsonb) AS t(id text, expect_end text, end_offset text, times jsonb, first_ms float8, last_ms float8, param int)
       ), s_ok AS MATERIALIZED (
         SELECT s.attempt_id FROM "log"."log_streams" s JOIN s_in t ON s.attempt_id = t.attempt_id AND s.stream = t.stream
          WHERE s.next_offset = t.expect::bigint AND NOT s.complete AND s.truncated_at IS NOT DISTINCT FROM t.expect_truncated::bigint
          ORDER BY s.attempt_id, s.stream FOR UPDATE OF s
       ), a_ok AS MATERIALIZED (
         SELECT a.attempt_id FROM "log"."log_attempts" a JOIN a_in t ON a.attempt_id = t.attempt_id
          WHERE t.delta = 0 OR a.stored_bytes + t.delta <= $5::bigint
          ORDER BY a.attempt_id FOR UPDATE OF a
       ), c_ok AS MATERIALIZED (
         SELECT c.id FROM "log"."log_chunks" c JOIN c_in t ON c.id = t.id::bigint
          WHERE c.end_offset = t.expect_end::bigint
          FOR UPDATE OF c
       ), ok AS MATERIALIZED (
         -- Evaluated in this order, so rows are locked in the transaction's
         -- order (attempts, then streams, each sorted): no deadlock with it.
         SELECT (SELECT count(*) FROM a_ok) = (SELECT count(*) FROM a_in)
            AND (SELECT count(*) FROM s_ok) = (SELECT count(*) FROM s_in)
            AND (SELECT count(*) FROM c_ok) = (SELECT count(*) FROM c_in) AS ok
       ), inserted AS (
         INSERT INTO "log"."log_chunks" (attempt_id, stream, start_offset, end_offset, command_index, data, times, first_time, last_time)
         SELECT attempt_id, stream, start_offset::bigint, end_offset::bigint, command_index, ${bytes(p.inserts, first)}, times,
                to_timestamp(first_ms / 1000.0), to_timestamp(last_ms / 1000.0)
           FROM jsonb_to_recordset($1::jsonb) AS t(attempt_id text, stream text, start_offset text, end_offset text,
                command_index int, times jsonb, first_ms float8, last_ms float8, param int)
          WHERE (SELECT ok FROM ok)
         RETURNING id, attempt_id, stream, start_offset
       ), appended AS (
         UPDATE "log"."log_chunks" AS c
            SET data = c.data || ${bytes(p.appends, firstAppend)}, end_offset = t.end_offset::bigint, times = c.times || t.times,
                first_time = COALESCE(c.first_time, to_timestamp(t.first_ms / 1000.0)), last_time = to_timestamp(t.last_ms / 1000.0)
           FROM c_in t
          WHERE c.id = t.id::bigint AND (SELECT ok FROM ok)
       ), streams AS (
         UPDATE "log"."log_streams" AS s
            SET next_offset = t.next::bigint, truncated_at = t.truncated::bigint, complete = t.complete, updated_at = now()
           FROM s_in t
          WHERE s.attempt_id = t.attempt_id AND s.stream = t.stream AND (SELECT ok FROM ok)
       ), attempts AS (
         UPDATE "log"."log_attempts" AS a SET stored_bytes = a.stored_bytes + t.delta, updated_at = now()
           FROM a_in t
          WHERE a.attempt_id = t.attempt_id AND (SELECT ok FROM ok)
       )
       SELECT (SELECT ok FROM ok) AS ok,
              (SELECT coalesce(jsonb_agg(jsonb_build_array(attempt_id, stream, start_offset::text, id::text)), '[]'::jsonb) FROM inserted) AS ids`,
      [
        meta(p.inserts, first),
        meta(p.appends, firstAppend),
        JSON.stringify(p.changedStreams),
        JSON.stringify(attempts),
        String(this.deps.settings.maxBytesPerAttempt),
        ...p.inserts.map((r) => r.data),
        ...p.appends.map((r) => r.data),
      ],
    );
    if (!row?.ok) return undefined;
    return new Map(row.ids.map(([attemptId, stream, start, id]) => [`${key(attemptId, stream)}\u0000${start}`, BigInt(id)]));
  }

  /** After a write: what each stream and attempt now holds, for the next request's plan; and the plan's log lines. */
  private remember(p: Planned, inserted: ReadonlyMap<string, bigint>): void {
    for (const a of p.after) {
      let tail = a.tail;
      const last = a.writes.at(-1);
      if (last) {
        const id = last.appendTo ?? inserted.get(`${a.key}\u0000${last.offset}`);
        if (id === undefined) {
          // Not returned (cannot happen once written): forget the stream rather than guess.
          this.streams.delete(a.key);
          continue;
        }
        tail = { id, commandIndex: last.commandIndex, endOffset: last.endOffset, size: last.baseSize + last.size };
      }
      // Re-inserted last: the first in the map is the least recently written.
      this.streams.delete(a.key);
      this.streams.set(a.key, { state: a.state, tail });
    }
    for (const [attemptId, bytes] of p.storedAfter) {
      this.storedBytes.delete(attemptId);
      this.storedBytes.set(attemptId, bytes);
    }
    while (this.streams.size > STREAM_CACHE_SIZE) this.streams.delete(this.streams.keys().next().value!);
    while (this.storedBytes.size > ATTEMPT_CACHE_SIZE) this.storedBytes.delete(this.storedBytes.keys().next().value!);
    for (const note of p.notes) note();
  }
}

/** What store() resolves: each stream's outcome and what to publish. */
interface Stored {
  streams: Map<StreamGroup, StreamResult>;
  pieces: StoredPiece[];
}

/** A request's plan: what to write, what to publish, and what the streams hold once written. */
interface Planned extends Stored {
  inserts: ChunkRow[];
  appends: ChunkRow[];
  /** Streams whose state changes, with the state the plan found (the write's guard). */
  changedStreams: { attempt_id: string; stream: string; expect: string; expect_truncated: string | null; next: string; truncated: string | null; complete: boolean }[];
  /** Bytes each attempt of a changed stream stores (0 for one that only advanced). */
  deltas: Map<string, number>;
  /** Per stream: its state after, the tail it had and the writes (the new tail is the last). */
  after: { key: string; attemptId: string; stream: string; state: StreamState; tail: TailChunk | null; writes: ChunkWrite[] }[];
  /** Bytes stored per attempt of the request once written. */
  storedAfter: Map<string, number>;
  /** Log lines to write once the plan is stored (not for a plan that is thrown away). */
  notes: (() => void)[];
  /** Some stream reaches the cap. */
  truncated: boolean;
  /** Some frame starts past the state planned against (a gap), or a redacted one overlaps it. */
  stale: boolean;
}

/** A chunk to insert or append to, as the write statements' JSON input names it. */
interface ChunkRow {
  id: string | null;
  /** For an append: where the chunk ends before it (the write's guard). */
  expect_end: string | null;
  attempt_id: string;
  stream: StreamName;
  start_offset: string;
  end_offset: string;
  command_index: number;
  /** Sent as a bytea parameter of its own (binary on the wire), not in the JSON. */
  data: Buffer;
  times: Array<[number, number]>;
  first_ms: number;
  last_ms: number;
}

/** An attempt's rows disappeared inside the transaction (retention deleted them): run it again. */
class VanishedError extends Error {}

function key(attemptId: string, stream: string): string {
  return `${attemptId}\u0000${stream}`;
}

/** The request's frames by (attempt, stream), in order of first appearance, each group in request order. */
function groupFrames(frames: readonly LogFrame[]): StreamGroup[] {
  const groups = new Map<string, StreamGroup>();
  for (const f of frames) {
    const name = STREAM_NAMES[f.stream];
    if (!name) throw new ConnectError(`frames: stream ${f.stream} is not a log stream`, Code.InvalidArgument);
    if (f.attemptId === "") throw new ConnectError("frames: attempt_id is required", Code.InvalidArgument);
    const k = key(f.attemptId, name);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { attemptId: f.attemptId, stream: f.stream, name, frames: [], writes: false }));
    g.frames.push(f);
    if (f.data.length > 0 || f.sourceLength > 0n || f.final) g.writes = true;
  }
  return [...groups.values()];
}
