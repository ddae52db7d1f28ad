// ReadLogs: stored output, line by line, from PostgreSQL.
//
// Order: attempts oldest first; within an attempt the streams' lines are
// merged by time like a terminal showed them (ties: stdout, stderr, system),
// each stream staying in offset order. Every stream is read forward from a
// position by a StreamCursor that loads a few chunks at a time, so a page
// never loads more than it returns plus a bounded scan (SCAN_BUDGET_BYTES).
//
// tail_lines reads each stream backward in growing windows until the last N
// merged lines are certain, then pages forward from there.
//
// A page token is base64url JSON: a hash of the request (minus page_token
// and limit_bytes), the attempt the page stopped in, and per stream the
// offset of the first line not yet returned. Later attempts start from the
// beginning; earlier ones are done.
//
// A deployment is read differently: its replicas run side by side, so the
// lines of all their attempts are merged by time (ties: stream, attempt id,
// offset: a LineKey). Its page token holds one LineKey instead of offsets
// per stream of every attempt (which would not fit in a token for a large
// deployment): the next page returns the lines after it, skipping chunks
// that end before its time. That relies on a stream's lines not going back
// in time, which holds for the agent's frames.

import { createHash } from "node:crypto";

import { create } from "@bufbuild/protobuf";
import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";

import type { PrismaClient } from "../../gen/prisma/log/client.ts";
import {
  ReadLogsResponseSchema,
  Stream,
  type LogLine,
  type ReadLogsRequest,
  type ReadLogsResponse,
} from "../../gen/ts/drover/log/v1/log_service_pb.ts";
import type { DroverClients } from "../../lib/clients.ts";
import type { Logger } from "../../lib/logger.ts";
import { ENDED_REPLICAS, resolveDeployment, type ReplicaRef } from "./deployment.ts";
import { LineSplitter, sliceChunk, type ChunkInput, type Line } from "./lines.ts";
import type { StreamName } from "./types.ts";

/** Streams in the order ties are broken. */
export const STREAMS: readonly StreamName[] = ["stdout", "stderr", "system"];
const STREAM_ENUM: Record<StreamName, Stream> = { stdout: Stream.STDOUT, stderr: Stream.STDERR, system: Stream.SYSTEM };

/** Default page size in bytes of line data. */
export const DEFAULT_LIMIT_BYTES = 1024 * 1024;
/** Most stored bytes one request scans (lines a filter drops included) before it returns what it has with a token. */
export const SCAN_BUDGET_BYTES = 64 * 1024 * 1024;
// Chunks loaded per query while reading forward.
const CHUNK_BATCH = 16;
// The same when many streams are merged (a deployment's): each holds a batch in memory.
const MANY_CHUNK_BATCH = 4;

/** The stream names a request's Stream asks for. */
export function streamsOf(stream: Stream): readonly StreamName[] {
  switch (stream) {
    case Stream.STDOUT:
      return ["stdout"];
    case Stream.STDERR:
      return ["stderr"];
    case Stream.SYSTEM:
      return ["system"];
    default:
      return STREAMS;
  }
}

/** Whose output to read: exactly one of attemptId, jobId, runId, jobs. */
export interface Selector {
  attemptId?: string;
  jobId?: string;
  runId?: string;
  stageName?: string;
  /** A deployment's replica jobs (deployment.ts); read when it is given, even empty. */
  jobs?: ReadonlyMap<string, ReplicaRef>;
}

/** An attempt whose output the Log service holds. */
export interface AttemptRow {
  attemptId: string;
  jobId: string;
  runId: string;
  stageName: string;
  storedBytes: bigint;
  /** The deployment replica its job runs, when a deployment is read. */
  replica?: ReplicaRef;
}

/** How far one stream is stored (log_streams). */
export interface StreamState {
  nextOffset: bigint;
  truncatedAt: bigint | null;
  complete: boolean;
}

/** Which lines pass: text filter and time window (markers pass the text filter). */
export interface LineFilter {
  text?: (data: Uint8Array) => boolean;
  sinceMs?: number;
  untilMs?: number;
}

/** Compiles filter (substring, or a JavaScript RegExp with regex); an invalid one is INVALID_ARGUMENT naming `filter`. */
export function compileTextFilter(filter: string, regex: boolean): ((data: Uint8Array) => boolean) | undefined {
  if (filter === "") return undefined;
  if (regex) {
    let re: RegExp;
    try {
      re = new RegExp(filter);
    } catch (err) {
      throw new ConnectError(`filter: not a valid regular expression: ${(err as Error).message}`, Code.InvalidArgument);
    }
    // The line without its "\n", so that `$` matches at its end.
    return (data) => {
      const end = data.length > 0 && data[data.length - 1] === 0x0a ? data.length - 1 : data.length;
      return re.test(Buffer.from(data.buffer, data.byteOffset, end).toString("utf8"));
    };
  }
  const needle = Buffer.from(filter, "utf8");
  return (data) => Buffer.from(data.buffer, data.byteOffset, data.byteLength).indexOf(needle) !== -1;
}

/** Whether a line passes the filter. */
export function passes(filter: LineFilter, line: Line): boolean {
  if (filter.sinceMs !== undefined && line.timeMs < filter.sinceMs) return false;
  if (filter.untilMs !== undefined && line.timeMs >= filter.untilMs) return false;
  if (line.marker) return true;
  return filter.text === undefined || filter.text(line.data);
}

/** Merge order: time, then stream (stdout, stderr, system), then offset. */
export function lineOrder(a: Line, b: Line): number {
  if (a.timeMs !== b.timeMs) return a.timeMs - b.timeMs;
  const s = STREAMS.indexOf(a.stream) - STREAMS.indexOf(b.stream);
  if (s !== 0) return s;
  return a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0;
}

/** Where a line sits when several attempts' lines are merged: time, stream, attempt, offset. */
export interface LineKey {
  timeMs: number;
  stream: StreamName;
  attemptId: string;
  offset: bigint;
}

/** Merge order across attempts; for lines of one attempt the same as lineOrder. */
export function keyOrder(a: LineKey, b: LineKey): number {
  if (a.timeMs !== b.timeMs) return a.timeMs - b.timeMs;
  const s = STREAMS.indexOf(a.stream) - STREAMS.indexOf(b.stream);
  if (s !== 0) return s;
  if (a.attemptId !== b.attemptId) return a.attemptId < b.attemptId ? -1 : 1;
  return a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0;
}

export function keyOf(attemptId: string, line: Line): LineKey {
  return { timeMs: line.timeMs, stream: line.stream, attemptId, offset: line.offset };
}

/**
 * The LogLine for a line of an attempt, built whole rather than through
 * create(): a follow makes one per line, up to 100 000 a second, and
 * create() walks the schema for each (create() hands a built message back
 * as it is).
 */
export function toLogLine(attempt: AttemptRow, line: Line): LogLine {
  return {
    $typeName: "drover.log.v1.LogLine",
    attemptId: attempt.attemptId,
    jobId: attempt.jobId,
    stageName: attempt.stageName,
    replicaId: attempt.replica?.replicaId ?? "",
    replicaSlot: attempt.replica?.slot ?? "",
    revision: attempt.replica?.revision ?? 0,
    commandIndex: line.commandIndex,
    stream: STREAM_ENUM[line.stream],
    offset: line.offset,
    time: timestampOfMs(line.timeMs),
    data: line.data,
    partial: line.partial,
    marker: line.marker ?? "",
  };
}

/** timestampFromMs() without create(). */
function timestampOfMs(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  return { $typeName: "google.protobuf.Timestamp", seconds: BigInt(seconds), nanos: Math.round((ms - seconds * 1000) * 1_000_000) };
}

/** The words of the truncation marker. */
export function truncationText(storedBytes: bigint): string {
  return `[drover] output past the per-attempt limit was not stored (${formatBytes(Number(storedBytes))} stored)\n`;
}

function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${n.toFixed(1)} ${units[u]}`;
}

/** Bytes a request may still scan. */
export class ScanBudget {
  constructor(public remaining: number) {}
  get exhausted(): boolean {
    return this.remaining <= 0;
  }
}

interface ChunkRow {
  startOffset: bigint;
  endOffset: bigint;
  data: Uint8Array;
  commandIndex: number;
  times: unknown;
  firstTime: Date | null;
  lastTime: Date | null;
}

function toChunk(row: ChunkRow): ChunkInput {
  const times = Array.isArray(row.times) ? (row.times as Array<[number, number]>) : [];
  // Chunks stored before per-frame times existed have none: their row time stands in.
  const fallback = row.firstTime?.getTime() ?? 0;
  return {
    startOffset: row.startOffset,
    endOffset: row.endOffset,
    data: row.data,
    commandIndex: row.commandIndex,
    times: times.length > 0 ? times : [[0, fallback]],
  };
}

/** Bounds and filters one stream read obeys. */
export interface StreamReadOptions {
  /** Stop before this stream offset. */
  end?: bigint;
  filter: LineFilter;
  /** The stream as stored (truncation, completeness); undefined when nothing is recorded. */
  state: StreamState | undefined;
  /** For the marker's words. */
  storedBytes: bigint;
  budget: ScanBudget;
  /** Only lines after this key (a deployment's page token). */
  after?: LineKey;
  /** Chunks per query; CHUNK_BATCH by default. */
  batch?: number;
}

/**
 * Reads one stream of one attempt forward from a position, lazily: peek()
 * loads chunks only when its queue is empty. position says where to resume
 * so that nothing taken is returned again.
 */
export class StreamCursor {
  // Lines loaded and not taken: queue[head..]. An index, not shift(): a
  // batch of chunks of short lines is hundreds of thousands of lines, and
  // shift() on an array that long copies it every time.
  private queue: Line[] = [];
  private head = 0;
  private readonly splitter: LineSplitter;
  private next: bigint;
  private done = false;
  private lastTimeMs: number | undefined;
  // The time of the last line read, filtered out or not.
  private seenTimeMs: number | undefined;
  /** The scan budget ran out before the next line was found. */
  stalled = false;

  constructor(
    private readonly db: PrismaClient,
    readonly attemptId: string,
    readonly stream: StreamName,
    from: bigint,
    private readonly opts: StreamReadOptions,
  ) {
    this.splitter = new LineSplitter(stream);
    this.next = from;
  }

  /** Where the first line not taken starts (or where reading goes on). */
  get position(): bigint {
    return this.queue[this.head]?.offset ?? this.splitter.pendingOffset ?? this.next;
  }

  /** Where reading got to in the stream: the end of the last chunk read. */
  get readTo(): bigint {
    return this.next;
  }

  /** The next line if it is loaded (or the stream is done: undefined); null when peek() must load. */
  peekLoaded(): Line | undefined | null {
    if (this.head < this.queue.length) return this.queue[this.head];
    return this.done ? undefined : null;
  }

  async peek(): Promise<Line | undefined> {
    while (this.head >= this.queue.length && !this.done) {
      if (this.opts.budget.exhausted) {
        this.stalled = true;
        return undefined;
      }
      await this.load();
    }
    return this.queue[this.head];
  }

  /**
   * A key below every line this cursor has not given out yet (undefined
   * once it is done): its next line's, or where it read to.
   */
  lowerBound(): LineKey | undefined {
    const head = this.queue[this.head];
    if (head) return { ...keyOf(this.attemptId, head), offset: head.offset - 1n };
    if (this.done) return undefined;
    const timeMs = this.seenTimeMs ?? this.opts.after?.timeMs ?? this.opts.filter.sinceMs ?? 0;
    return { timeMs, stream: this.stream, attemptId: this.attemptId, offset: this.position - 1n };
  }

  take(): Line {
    const line = this.queue[this.head++]!;
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    }
    return line;
  }

  private async load(): Promise<void> {
    const { end, filter } = this.opts;
    const rows: ChunkRow[] = await this.db.logChunk.findMany({
      where: {
        attemptId: this.attemptId,
        stream: this.stream,
        endOffset: { gt: this.next },
        ...(end !== undefined ? { startOffset: { lt: end } } : {}),
        AND: [
          filter.sinceMs !== undefined ? { OR: [{ lastTime: null }, { lastTime: { gte: new Date(filter.sinceMs) } }] } : {},
          filter.untilMs !== undefined ? { OR: [{ firstTime: null }, { firstTime: { lt: new Date(filter.untilMs) } }] } : {},
        ],
      },
      orderBy: { startOffset: "asc" },
      take: this.opts.batch ?? CHUNK_BATCH,
      select: { startOffset: true, endOffset: true, data: true, commandIndex: true, times: true, firstTime: true, lastTime: true },
    });
    for (const row of rows) {
      let chunk = toChunk(row);
      this.opts.budget.remaining -= chunk.data.length;
      // Chunks the time window skipped leave a gap; a line that began in
      // them began before `since`, so its rest here is not returned.
      let dropFirst = false;
      if (chunk.startOffset > this.next && filter.sinceMs !== undefined) {
        dropFirst = !(await this.lineStartsAt(chunk.startOffset));
      }
      if (chunk.startOffset < this.next) chunk = sliceChunk(chunk, Number(this.next - chunk.startOffset));
      if (end !== undefined && chunk.endOffset > end) chunk = sliceChunk(chunk, 0, Number(end - chunk.startOffset));
      let lines = this.splitter.push(chunk);
      if (dropFirst && lines[0]?.offset === chunk.startOffset) lines = lines.slice(1);
      this.accept(lines);
      this.next = chunk.endOffset;
      this.lastTimeMs = row.lastTime?.getTime() ?? this.lastTimeMs;
    }
    if (rows.length < (this.opts.batch ?? CHUNK_BATCH)) this.finish();
  }

  private finish(): void {
    const { end, state } = this.opts;
    const mayContinue = end !== undefined ? this.next < end || !state?.complete : !state?.complete;
    this.accept(this.splitter.flush(mayContinue));
    const t = state?.truncatedAt;
    if (t !== null && t !== undefined && this.next <= t && (end === undefined || end > t)) {
      this.accept([
        {
          stream: this.stream,
          offset: t,
          timeMs: this.lastTimeMs ?? 0,
          data: new TextEncoder().encode(truncationText(this.opts.storedBytes)),
          partial: false,
          commandIndex: 0,
          marker: "truncated",
        },
      ]);
      // The marker takes the offset it names; reading resumes past it.
      this.next = t + 1n;
    }
    this.done = true;
  }

  private accept(lines: Line[]): void {
    const after = this.opts.after;
    for (const line of lines) {
      this.seenTimeMs = line.timeMs;
      if (after && keyOrder(keyOf(this.attemptId, line), after) <= 0) continue;
      if (passes(this.opts.filter, line)) this.queue.push(line);
    }
  }

  // Whether the byte before `offset` ends a line (or there is none).
  private async lineStartsAt(offset: bigint): Promise<boolean> {
    const prev = await this.db.logChunk.findFirst({
      where: { attemptId: this.attemptId, stream: this.stream, startOffset: { lt: offset } },
      orderBy: { startOffset: "desc" },
      select: { data: true },
    });
    if (!prev || prev.data.length === 0) return true;
    return prev.data[prev.data.length - 1] === 0x0a;
  }
}

/** Merges stream cursors by time: an attempt's, or (for a deployment) several attempts'. */
export class AttemptMerge {
  constructor(readonly cursors: StreamCursor[]) {}

  /** The next line in merge order; undefined when every stream is done or the budget ran out (see stalled). */
  async next(): Promise<Line | undefined> {
    return (await this.nextWithSource())?.line;
  }

  /** The same, with the cursor (so the attempt) it came from. */
  async nextWithSource(): Promise<{ line: Line; cursor: StreamCursor } | undefined> {
    // Loaded heads need no await: most lines come from chunks already read.
    let heads = this.cursors.map((c) => c.peekLoaded());
    if (heads.includes(null)) heads = await Promise.all(this.cursors.map((c) => c.peek()));
    let best = -1;
    for (let i = 0; i < heads.length; i++) {
      const h = heads[i];
      if (!h) continue;
      if (best === -1) best = i;
      else {
        const b = this.cursors[best]!;
        const c = this.cursors[i]!;
        const order = c.attemptId === b.attemptId ? lineOrder(h, heads[best]!) : keyOrder(keyOf(c.attemptId, h), keyOf(b.attemptId, heads[best]!));
        if (order < 0) best = i;
      }
    }
    if (best === -1) return undefined;
    const cursor = this.cursors[best]!;
    return { line: cursor.take(), cursor };
  }

  get stalled(): boolean {
    return this.cursors.some((c) => c.stalled);
  }

  /** A key below every line not given out yet; undefined when every stream is done. */
  lowerBound(): LineKey | undefined {
    let low: LineKey | undefined;
    for (const c of this.cursors) {
      const k = c.lowerBound();
      if (k && (!low || keyOrder(k, low) < 0)) low = k;
    }
    return low;
  }

  positions(): Partial<Record<StreamName, bigint>> {
    return Object.fromEntries(this.cursors.map((c) => [c.stream, c.position]));
  }
}

interface PageToken {
  /** Hash of the request it continues. */
  h: string;
  /** The attempt the page stopped in. */
  a: string;
  /** Per stream: offset of the first line not returned. */
  p: Partial<Record<StreamName, string>>;
  /** A deployment's: the page goes on after this key (time, stream, attempt, offset). */
  k?: [number, StreamName, string, string];
}

/** Reads stored output for ReadLogs, and for the follower. */
export class LogReader {
  private readonly db: PrismaClient;
  private readonly clients: Pick<DroverClients, "deploy">;
  private readonly logger: Logger;
  private readonly scanBudgetBytes: number;

  constructor(deps: {
    db: PrismaClient;
    /** Deploy, for a deployment's replicas. */
    clients: Pick<DroverClients, "deploy">;
    logger: Logger;
    /** Most stored bytes one forward read scans; SCAN_BUDGET_BYTES unless a test makes it small. */
    scanBudgetBytes?: number;
  }) {
    this.db = deps.db;
    this.clients = deps.clients;
    this.logger = deps.logger;
    this.scanBudgetBytes = deps.scanBudgetBytes ?? SCAN_BUDGET_BYTES;
  }

  /** The attempts a selector names, oldest first; none when nothing is stored. */
  async attempts(sel: Selector): Promise<AttemptRow[]> {
    const where = sel.jobs
      ? { jobId: { in: [...sel.jobs.keys()] } }
      : sel.attemptId
        ? { attemptId: sel.attemptId }
        : sel.jobId
          ? { jobId: sel.jobId }
          : sel.runId
            ? { runId: sel.runId, ...(sel.stageName ? { stageName: sel.stageName } : {}) }
            : undefined;
    if (!where || sel.jobs?.size === 0) return [];
    const rows = await this.db.logAttempt.findMany({ where, orderBy: [{ createdAt: "asc" }, { attemptId: "asc" }] });
    return rows.map((r) => ({
      attemptId: r.attemptId,
      jobId: r.jobId,
      runId: r.runId ?? "",
      stageName: r.stageName ?? "",
      storedBytes: r.storedBytes,
      ...(sel.jobs ? { replica: sel.jobs.get(r.jobId) } : {}),
    }));
  }

  /** How far each stream of these attempts is stored, by attempt then stream. */
  async streamStates(attemptIds: string[]): Promise<Map<string, Map<StreamName, StreamState>>> {
    const out = new Map<string, Map<StreamName, StreamState>>();
    if (attemptIds.length === 0) return out;
    const rows = await this.db.logStream.findMany({ where: { attemptId: { in: attemptIds } } });
    for (const r of rows) {
      let m = out.get(r.attemptId);
      if (!m) out.set(r.attemptId, (m = new Map()));
      m.set(r.stream as StreamName, { nextOffset: r.nextOffset, truncatedAt: r.truncatedAt, complete: r.complete });
    }
    return out;
  }

  /** A merge reading an attempt's streams forward from the given positions. */
  merge(
    attempt: AttemptRow,
    streams: readonly StreamName[],
    states: Map<StreamName, StreamState> | undefined,
    from: Partial<Record<StreamName, bigint>>,
    opts: { end?: bigint; filter: LineFilter; budget: ScanBudget },
  ): AttemptMerge {
    return new AttemptMerge(this.cursors(attempt, streams, states, from, opts));
  }

  /** A merge by time of several attempts' streams (a deployment's), each from its own positions. */
  mergeMany(
    from: Array<{ attempt: AttemptRow; states: Map<StreamName, StreamState> | undefined; positions: Partial<Record<StreamName, bigint>> }>,
    streams: readonly StreamName[],
    opts: { filter: LineFilter; budget: ScanBudget; after?: LineKey },
  ): AttemptMerge {
    const batch = from.length > 1 ? MANY_CHUNK_BATCH : CHUNK_BATCH;
    return new AttemptMerge(from.flatMap((f) => this.cursors(f.attempt, streams, f.states, f.positions, { ...opts, batch })));
  }

  private cursors(
    attempt: AttemptRow,
    streams: readonly StreamName[],
    states: Map<StreamName, StreamState> | undefined,
    from: Partial<Record<StreamName, bigint>>,
    opts: { end?: bigint; filter: LineFilter; budget: ScanBudget; after?: LineKey; batch?: number },
  ): StreamCursor[] {
    return streams.map(
      (s) =>
        new StreamCursor(this.db, attempt.attemptId, s, from[s] ?? 0n, {
          end: opts.end,
          filter: opts.filter,
          state: states?.get(s),
          storedBytes: attempt.storedBytes,
          budget: opts.budget,
          after: opts.after,
          batch: opts.batch,
        }),
    );
  }

  /**
   * The last n lines of an attempt (after filters) in merge order, and per
   * stream where what follows them starts: the first of them in that stream,
   * or where reading ended.
   */
  async tail(
    attempt: AttemptRow,
    streams: readonly StreamName[],
    states: Map<StreamName, StreamState> | undefined,
    n: number,
    opts: { start?: bigint; end?: bigint; filter: LineFilter },
  ): Promise<{ lines: Line[]; positions: Partial<Record<StreamName, bigint>>; ends: Partial<Record<StreamName, bigint>> }> {
    if (n <= 0) throw new RangeError("tail needs n > 0");
    const windows = streams.map((s) => new TailWindow(this.db, attempt, s, states?.get(s), opts));
    let want = 8;
    for (;;) {
      await Promise.all(windows.map((w) => (w.sufficient ? undefined : w.grow(want))));
      // Bounded memory: past SCAN_BUDGET_BYTES of windows (a filter that
      // matches little), the tail is taken from what was read.
      const capped = windows.reduce((n, w) => n + w.bytes, 0) > SCAN_BUDGET_BYTES;
      const merged = mergeSorted(windows.map((w) => w.lines));
      const picked = merged.slice(Math.max(0, merged.length - n));
      const first = picked[0];
      // Certain when every stream that could hold earlier lines has shown
      // one at or before the first picked line (unloaded lines come earlier).
      let certain = true;
      for (const w of windows) {
        w.sufficient = w.atStart || capped || (first !== undefined && merged.length >= n && w.lines.length > 0 && lineOrder(w.lines[0]!, first) <= 0);
        if (!w.sufficient) certain = false;
      }
      if (certain) {
        const positions: Partial<Record<StreamName, bigint>> = {};
        const ends: Partial<Record<StreamName, bigint>> = {};
        for (const w of windows) {
          positions[w.stream] = picked.find((l) => l.stream === w.stream)?.offset ?? w.end;
          ends[w.stream] = w.end;
        }
        return { lines: picked, positions, ends };
      }
      want *= 2;
    }
  }

  async readLogs(req: ReadLogsRequest): Promise<ReadLogsResponse> {
    const text = compileTextFilter(req.filter, req.regex);
    const filter: LineFilter = {
      text,
      sinceMs: req.since ? timestampMs(req.since) : undefined,
      untilMs: req.until ? timestampMs(req.until) : undefined,
    };
    const streams = streamsOf(req.stream);
    if (req.replica !== "" && req.deployment === "") throw new ConnectError("replica: only with deployment", Code.InvalidArgument);
    if (req.deployment !== "") return this.readDeployment(req, filter, streams);
    const single = req.attemptId !== "";
    const start = single ? req.offset : 0n;
    const end = single && req.endOffset > 0n ? req.endOffset : undefined;
    const limit = req.limitBytes > 0 ? req.limitBytes : DEFAULT_LIMIT_BYTES;
    const hash = requestHash(req);

    const attempts = await this.attempts({ attemptId: req.attemptId, jobId: req.jobId, runId: req.runId, stageName: req.stageName });
    const token = req.pageToken ? decodeToken(req.pageToken, hash) : undefined;
    const states = await this.streamStates(attempts.map((a) => a.attemptId));

    const lines: LogLine[] = [];
    let bytes = 0;
    const fits = (line: Line) => lines.length === 0 || bytes + line.data.length <= limit;
    const respond = (more: { attempt: AttemptRow; positions: Partial<Record<StreamName, bigint>> } | undefined) =>
      create(ReadLogsResponseSchema, {
        lines,
        truncated: more !== undefined,
        nextPageToken: more ? encodeToken({ h: hash, a: more.attempt.attemptId, p: stringify(more.positions) }) : "",
      });
    const push = (attempt: AttemptRow, line: Line) => {
      lines.push(toLogLine(attempt, line));
      bytes += line.data.length;
    };

    let first = 0;
    let from: Partial<Record<StreamName, bigint>> = {};
    if (token) {
      first = attempts.findIndex((a) => a.attemptId === token.a);
      if (first === -1) throw new ConnectError("page_token: does not match this request", Code.InvalidArgument);
      from = parsePositions(token.p);
    } else if (req.tailLines > 0) {
      // Last attempts first until tail_lines are found; earlier attempts are skipped.
      const picked: { attempt: AttemptRow; lines: Line[]; positions: Partial<Record<StreamName, bigint>>; ends: Partial<Record<StreamName, bigint>> }[] = [];
      let need = req.tailLines;
      for (let i = attempts.length - 1; i >= 0 && need > 0; i--) {
        const a = attempts[i]!;
        const t = await this.tail(a, streams, states.get(a.attemptId), need, { start: single ? start : undefined, end, filter });
        picked.unshift({ attempt: a, ...t });
        need -= t.lines.length;
      }
      for (let i = 0; i < picked.length; i++) {
        const p = picked[i]!;
        for (let j = 0; j < p.lines.length; j++) {
          const line = p.lines[j]!;
          if (!fits(line)) {
            // Resume in this attempt: per stream at its first line not returned, or past its end.
            const rest = p.lines.slice(j);
            const positions: Partial<Record<StreamName, bigint>> = {};
            for (const s of streams) positions[s] = rest.find((l) => l.stream === s)?.offset ?? p.ends[s] ?? 0n;
            return respond({ attempt: p.attempt, positions });
          }
          push(p.attempt, line);
        }
      }
      return respond(undefined);
    } else {
      from = Object.fromEntries(streams.map((s) => [s, start]));
    }

    const budget = new ScanBudget(this.scanBudgetBytes);
    for (let i = first; i < attempts.length; i++) {
      const attempt = attempts[i]!;
      const startAt = i === first ? from : Object.fromEntries(streams.map((s) => [s, start]));
      const merge = this.merge(attempt, streams, states.get(attempt.attemptId), startAt, { end, filter, budget });
      for (;;) {
        const positions = merge.positions();
        const line = await merge.next();
        if (!line) {
          if (merge.stalled) return respond({ attempt, positions: merge.positions() });
          break;
        }
        if (!fits(line)) return respond({ attempt, positions });
        push(attempt, line);
      }
    }
    return respond(undefined);
  }

  // A deployment's replicas' attempts, merged by time; see the top of this file.
  private async readDeployment(req: ReadLogsRequest, filter: LineFilter, streams: readonly StreamName[]): Promise<ReadLogsResponse> {
    const limit = req.limitBytes > 0 ? req.limitBytes : DEFAULT_LIMIT_BYTES;
    const hash = requestHash(req);
    const token = req.pageToken ? decodeToken(req.pageToken, hash) : undefined;
    if (token && !token.k) throw new ConnectError("page_token: does not match this request", Code.InvalidArgument);
    const jobs = await resolveDeployment(this.clients.deploy, req.deployment, req.replica, { ended: ENDED_REPLICAS });
    const attempts = await this.attempts({ jobs });
    const byId = new Map(attempts.map((a) => [a.attemptId, a]));
    const states = await this.streamStates(attempts.map((a) => a.attemptId));

    const lines: LogLine[] = [];
    let bytes = 0;
    let last: LineKey | undefined;
    const fits = (line: Line) => lines.length === 0 || bytes + line.data.length <= limit;
    const push = (attempt: AttemptRow, line: Line) => {
      lines.push(toLogLine(attempt, line));
      bytes += line.data.length;
      last = keyOf(attempt.attemptId, line);
    };
    const respond = (after: LineKey | undefined) =>
      create(ReadLogsResponseSchema, {
        lines,
        truncated: after !== undefined,
        nextPageToken: after ? encodeToken({ h: hash, a: "", p: {}, k: [after.timeMs, after.stream, after.attemptId, after.offset.toString()] }) : "",
      });

    if (!token && req.tailLines > 0) {
      // The last N of all attempts' lines: each attempt's last N, merged, cut to N.
      const tails: { attempt: AttemptRow; line: Line }[][] = [];
      for (const a of attempts) {
        const t = await this.tail(a, streams, states.get(a.attemptId), req.tailLines, { filter });
        tails.push(t.lines.map((line) => ({ attempt: a, line })));
      }
      const merged = mergeSortedBy(tails, (x, y) => keyOrder(keyOf(x.attempt.attemptId, x.line), keyOf(y.attempt.attemptId, y.line)));
      for (const { attempt, line } of merged.slice(Math.max(0, merged.length - req.tailLines))) {
        // The rest of the tail is what comes after the last line returned.
        if (!fits(line)) return respond(last);
        push(attempt, line);
      }
      return respond(undefined);
    }

    const after = token?.k ? { timeMs: token.k[0], stream: token.k[1], attemptId: token.k[2], offset: BigInt(token.k[3]) } : undefined;
    // Chunks that end before the key's time hold nothing after it.
    const scan: LineFilter = after ? { ...filter, sinceMs: Math.max(filter.sinceMs ?? after.timeMs, after.timeMs) } : filter;
    const budget = new ScanBudget(this.scanBudgetBytes);
    const merge = this.mergeMany(
      attempts.map((attempt) => ({ attempt, states: states.get(attempt.attemptId), positions: {} })),
      streams,
      { filter: scan, budget, after },
    );
    for (;;) {
      const next = await merge.nextWithSource();
      if (merge.stalled) {
        // A stream stalled on the scan budget may hold lines before `next`:
        // `next` goes out only if it comes before all that stream can hold.
        // Otherwise the page ends, and the next one starts below every line
        // not given out (`next` included) but past what the streams scanned,
        // so a filter that matches little still moves on; never before the
        // last line returned or the key this page began at.
        let low = merge.lowerBound();
        if (next && low && keyOrder(keyOf(next.cursor.attemptId, next.line), low) < 0 && fits(next.line)) {
          push(byId.get(next.cursor.attemptId)!, next.line);
          continue;
        }
        if (next) {
          const k = { ...keyOf(next.cursor.attemptId, next.line), offset: next.line.offset - 1n };
          if (!low || keyOrder(k, low) < 0) low = k;
        }
        return respond([after, last, low].reduce<LineKey | undefined>((m, k) => (k && (!m || keyOrder(k, m) > 0) ? k : m), undefined));
      }
      if (!next) return respond(undefined);
      if (!fits(next.line)) return respond(last);
      push(byId.get(next.cursor.attemptId)!, next.line);
    }
  }
}

/**
 * One stream of an attempt read backward: chunks from the end, more each
 * grow(); lines holds the window's lines (after filters) in offset order,
 * without the first when the window may start mid-line.
 */
class TailWindow {
  chunks: ChunkInput[] = [];
  lines: Line[] = [];
  /** Bytes of data the window holds. */
  bytes = 0;
  atStart = false;
  sufficient = false;
  /** Where reading stopped at the end (past a marker, if any). */
  end: bigint;
  private lastTimeMs: number | undefined;

  constructor(
    private readonly db: PrismaClient,
    private readonly attempt: AttemptRow,
    readonly stream: StreamName,
    private readonly state: StreamState | undefined,
    private readonly opts: { start?: bigint; end?: bigint; filter: LineFilter },
  ) {
    this.end = opts.start ?? 0n;
  }

  async grow(want: number): Promise<void> {
    if (this.atStart) return;
    const { start, end, filter } = this.opts;
    const lowest = this.chunks[0]?.startOffset;
    const rows: ChunkRow[] = await this.db.logChunk.findMany({
      where: {
        attemptId: this.attempt.attemptId,
        stream: this.stream,
        AND: [
          lowest !== undefined ? { startOffset: { lt: lowest } } : {},
          end !== undefined ? { startOffset: { lt: end } } : {},
          start !== undefined ? { endOffset: { gt: start } } : {},
          filter.untilMs !== undefined ? { OR: [{ firstTime: null }, { firstTime: { lt: new Date(filter.untilMs) } }] } : {},
        ],
      },
      orderBy: { startOffset: "desc" },
      take: want,
      select: { startOffset: true, endOffset: true, data: true, commandIndex: true, times: true, firstTime: true, lastTime: true },
    });
    if (rows.length < want) this.atStart = true;
    const older: ChunkInput[] = [];
    for (const row of rows) {
      if (this.lastTimeMs === undefined && lowest === undefined) this.lastTimeMs = row.lastTime?.getTime();
      // Everything before a chunk that ended before `since` is older still.
      if (filter.sinceMs !== undefined && row.lastTime !== null && row.lastTime.getTime() < filter.sinceMs) {
        this.atStart = true;
        break;
      }
      let chunk = toChunk(row);
      if (start !== undefined && chunk.startOffset < start) chunk = sliceChunk(chunk, Number(start - chunk.startOffset));
      if (end !== undefined && chunk.endOffset > end) chunk = sliceChunk(chunk, 0, Number(end - chunk.startOffset));
      older.unshift(chunk);
      this.bytes += chunk.data.length;
    }
    this.chunks = [...older, ...this.chunks];
    this.relines();
  }

  private relines(): void {
    const { end, filter } = this.opts;
    const splitter = new LineSplitter(this.stream);
    const all: Line[] = [];
    for (const c of this.chunks) all.push(...splitter.push(c));
    const last = this.chunks[this.chunks.length - 1];
    this.end = last?.endOffset ?? this.opts.start ?? 0n;
    const mayContinue = end !== undefined ? this.end < end || !this.state?.complete : !this.state?.complete;
    all.push(...splitter.flush(mayContinue));
    const t = this.state?.truncatedAt;
    if (t !== null && t !== undefined && this.end <= t && (end === undefined || end > t)) {
      all.push({
        stream: this.stream,
        offset: t,
        timeMs: this.lastTimeMs ?? 0,
        data: new TextEncoder().encode(truncationText(this.attempt.storedBytes)),
        partial: false,
        commandIndex: 0,
        marker: "truncated",
      });
      this.end = t + 1n;
    }
    // The window's first line may be the rest of an older one: not counted until the window reaches further.
    const first = this.chunks[0];
    const startsClean = this.atStart || first === undefined;
    const lines = startsClean ? all : all.filter((l) => l.offset !== first.startOffset);
    this.lines = lines.filter((l) => passes(filter, l));
  }
}

function mergeSorted(lists: Line[][]): Line[] {
  return mergeSortedBy(lists, lineOrder);
}

/** Merges lists each sorted by `order` into one. */
export function mergeSortedBy<T>(lists: T[][], order: (a: T, b: T) => number): T[] {
  const at = lists.map(() => 0);
  const out: T[] = [];
  for (;;) {
    let best = -1;
    for (let i = 0; i < lists.length; i++) {
      const h = lists[i]![at[i]!];
      if (h !== undefined && (best === -1 || order(h, lists[best]![at[best]!]!) < 0)) best = i;
    }
    if (best === -1) return out;
    out.push(lists[best]![at[best]!++]!);
  }
}

/** A hash of what must stay the same between pages. */
function requestHash(req: ReadLogsRequest): string {
  const key = JSON.stringify([
    req.attemptId,
    req.jobId,
    req.runId,
    req.stageName,
    req.stream,
    req.offset.toString(),
    req.endOffset.toString(),
    req.since ? timestampMs(req.since) : null,
    req.until ? timestampMs(req.until) : null,
    req.tailLines,
    req.filter,
    req.regex,
    req.deployment,
    req.replica,
  ]);
  return createHash("sha256").update(key).digest("base64url").slice(0, 16);
}

function encodeToken(t: PageToken): string {
  return Buffer.from(JSON.stringify(t)).toString("base64url");
}

function decodeToken(s: string, hash: string): PageToken {
  let t: PageToken;
  try {
    t = JSON.parse(Buffer.from(s, "base64url").toString("utf8")) as PageToken;
  } catch {
    throw new ConnectError("page_token: not a token this service issued", Code.InvalidArgument);
  }
  if (!t || typeof t !== "object" || t.h !== hash || typeof t.a !== "string" || typeof t.p !== "object" || t.p === null) {
    throw new ConnectError("page_token: does not match this request", Code.InvalidArgument);
  }
  const k = t.k;
  if (
    k !== undefined &&
    !(Array.isArray(k) && k.length === 4 && Number.isSafeInteger(k[0]) && STREAMS.includes(k[1]) && typeof k[2] === "string" && typeof k[3] === "string" && /^-?\d{1,20}$/.test(k[3]))
  ) {
    throw new ConnectError("page_token: not a token this service issued", Code.InvalidArgument);
  }
  for (const [k, v] of Object.entries(t.p)) {
    if (!STREAMS.includes(k as StreamName) || typeof v !== "string" || !/^\d{1,20}$/.test(v)) {
      throw new ConnectError("page_token: not a token this service issued", Code.InvalidArgument);
    }
  }
  return t;
}

function stringify(p: Partial<Record<StreamName, bigint>>): Partial<Record<StreamName, string>> {
  return Object.fromEntries(Object.entries(p).map(([k, v]) => [k, v.toString()]));
}

function parsePositions(p: Partial<Record<StreamName, string>>): Partial<Record<StreamName, bigint>> {
  return Object.fromEntries(Object.entries(p).map(([k, v]) => [k, BigInt(v)]));
}
