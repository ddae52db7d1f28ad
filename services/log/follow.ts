// FollowLogs: stored output from a starting point, then what every replica
// stores after it, until the followed attempts are complete.
//
// Order of a follow, and why:
//   1. join the live stream (a Tap) — its position is taken before storage
//      is read, so nothing stored in between can fall between the two;
//   2. send stored output from the start (beginning, end, or last N lines
//      per attempt), remembering per (attempt, stream) the next offset sent;
//   3. send live entries: what was sent is skipped, an overlapping piece
//      sends its new part, and a piece that starts past what was sent (the
//      follower lagged and the bounded stream was trimmed, or the publisher
//      dropped one) makes the gap be read from storage first;
//   4. every few seconds, and every POLL_DOWN_MS while the bus is failing,
//      storage is polled too: it finds new attempts, completions and
//      anything the bus lost. Redis down only slows a follow down.
//
// Marks: a Tap keeps its replica marked in its live stream's followers (a
// presence set) while it lives, and a follow waits for the mark before it
// reads storage: publishers on other replicas append only to streams marked
// by a replica not their own, and the publisher on this one hands its Taps
// their pieces directly (LocalTaps), from the moment a Tap is joined
// (live.ts).
//
// Redis connections: a follower never blocks on Redis. Each LogFollower
// keeps one Tap per live stream that any of its follows reads; a Tap reads
// with non-blocking XREADs on the bus's shared command connection when
// woken by the publisher's notification (one shared subscriber connection
// carries all of them) or every TAP_POLL_MS, and fans entries out to its
// follows. A thousand follows on one replica cost no extra connections; the
// Redis bus's blocking reads would cost one connection each.
//
// End (followDone): an attempt when its followed streams are complete; a job
// or run when the Scheduler says it ended and its attempts are complete, or
// it ended more than LOST_GRACE_MS ago and no output came for that long (an
// attempt lost with its agent never completes; one whose output is still on
// its way, behind a busy pipeline, sends more).
//
// A deployment: its replicas' jobs come from the Deploy service, asked again
// every END_CHECK_MS; a new replica (a rollout, a replacement) gets its job's
// live stream joined and storage polled at once. A job no longer listed
// whose attempts are complete is dropped, so a follow that lives through
// many rollouts does not keep a live stream per replica it ever saw. Services
// run until stopped: the follow ends only when the deployment is deleted
// (like a job that ended, with LOST_GRACE_MS for incomplete attempts).

import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";

import type { PrismaClient } from "../../gen/prisma/log/client.ts";
import {
  FollowFrom,
  type FollowLogsRequest,
  type FollowLogsResponseSchema,
  type LogLine,
} from "../../gen/ts/drover/log/v1/log_service_pb.ts";
import { JobState } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import type { Bus, Unsubscribe } from "../../lib/bus/bus.ts";
import type { DroverClients } from "../../lib/clients.ts";
import type { Logger } from "../../lib/logger.ts";
import { splitChunk, sliceChunk, type Line } from "./lines.ts";
import { getReplicas, replicaJobs, resolveDeployment, type ReplicaJobs, type ReplicaRef } from "./deployment.ts";
import { decodeEntry, FOLLOWED_TTL_MS, followersKey, jobStream, runStream, type LiveEntry, type LocalTaps } from "./live.ts";
import {
  ScanBudget,
  compileTextFilter,
  keyOf,
  keyOrder,
  mergeSortedBy,
  passes,
  streamsOf,
  toLogLine,
  type AttemptRow,
  type LineFilter,
  type LogReader,
  type Selector,
  type StreamState,
} from "./read.ts";
import type { StreamName } from "./types.ts";
import { encodedResponse, isBinaryContentType } from "./wire.ts";

/** How long after its job (or run) ended an incomplete attempt stops being waited for. */
export const LOST_GRACE_MS = 5_000;
/** How often storage is polled while the bus fails. */
export const POLL_DOWN_MS = 500;
/** How often storage is polled anyway, for what the bus lost. */
export const POLL_UP_MS = 5_000;
/** How often a Tap reads its stream without a wake-up. */
export const TAP_POLL_MS = 1_000;
// How long a Tap's read may take before the bus counts as failing.
const TAP_READ_TIMEOUT_MS = 2_000;
// How far back a new Tap starts (clock skew between replicas and Redis); what it reads twice is dropped by offset.
const TAP_LOOKBACK_MS = 2_000;
// Entries a follow holds before it drops them (and reads the gap from storage).
const MAX_PENDING = 5_000;
// How often the Scheduler is asked whether a followed job or run ended (and Deploy for a deployment's replicas).
export const END_CHECK_MS = 2_000;
// Once every followed attempt of a job or run is complete, its end is
// usually moments away (the agent sends the last output and the attempt's
// end together): the Scheduler is asked at once, then after 50, 100, 200 ...
// ms, up to END_CHECK_MS. `drover run -f` waits for this before it exits.
const SETTLING_CHECK_MS = 50;
// Most lines / bytes per FollowLogsResponse.
const BATCH_LINES = 500;
const BATCH_BYTES = 1024 * 1024;

type FollowKind = "attempt" | "job" | "run" | "deployment";

/** What decides whether a follow is over. */
export interface EndView {
  kind: FollowKind;
  /** Every followed attempt's followed streams are complete (true when there are none). */
  attemptsComplete: boolean;
  /** When the Scheduler says the job or run (for an attempt: its job) ended, or Deploy that the deployment is gone, epoch ms; undefined while it has not, or nobody knows. */
  endedAtMs: number | undefined;
  /** When the follow last sent a line, epoch ms (0: never). */
  lastOutputMs?: number;
  nowMs: number;
}

/** Whether a follow is over; see the top of this file. */
export function followDone(v: EndView): boolean {
  const lost = v.endedAtMs !== undefined && v.nowMs - Math.max(v.endedAtMs, v.lastOutputMs ?? 0) > LOST_GRACE_MS;
  if (v.kind === "attempt") return v.attemptsComplete || lost;
  return v.endedAtMs !== undefined && (v.attemptsComplete || lost);
}

const ENDED_JOB_STATES = new Set([JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT, JobState.DEAD]);

/** One follow's view of a Tap: entries after the point it joined. */
interface TapSubscriber {
  entries: LiveEntry[];
  /** Entries were dropped because the follow fell too far behind. */
  overflowed: boolean;
  wake(): void;
}

/** One live stream read on behalf of every follow of it on this replica. */
class Tap {
  readonly subscribers = new Set<TapSubscriber>();
  /** The last read failed (or is overdue): follows poll storage. */
  failing = false;
  /** Settles once the stream is first marked followed (what is committed from then on is appended live), or marking failed. */
  readonly marked: Promise<void>;
  private markedAtMs = 0;
  private marking: Promise<void> | undefined;
  private lastId = `${Date.now() - TAP_LOOKBACK_MS}-0`;
  private inflight: Promise<{ id: string; data: Uint8Array }[]> | undefined;
  private stopped = false;
  private kick: (() => void) | undefined;
  // A wake-up came while no pause was waiting for one (a read was in flight): the next pause does not wait.
  private woken = false;
  private unsubscribe: Unsubscribe | undefined;

  constructor(
    private readonly bus: Bus,
    readonly key: string,
    private readonly replicaId: string,
    private readonly logger: Logger,
  ) {
    this.marked = this.mark();
    void this.listen();
    void this.loop();
  }

  // Tells publishers on the other replicas that this one follows the stream
  // (live.ts appends only to streams another replica follows). A failure
  // leaves it unmarked until the next try: the follows then get the other
  // replicas' output from storage.
  private mark(): Promise<void> {
    this.marking ??= (async () => {
      try {
        await this.bus.setPresenceMember(followersKey(this.key), this.replicaId, FOLLOWED_TTL_MS);
        this.markedAtMs = Date.now();
      } catch (err) {
        this.logger.debug({ err, key: this.key }, "cannot mark the live stream followed; retrying");
      }
    })().finally(() => (this.marking = undefined));
    return this.marking;
  }

  stop(): void {
    this.stopped = true;
    this.wake();
    void this.unsubscribe?.().catch(() => {});
  }

  // Wake-ups from the publisher; retried while the bus fails (a lost one only delays until TAP_POLL_MS).
  private async listen(): Promise<void> {
    while (!this.stopped) {
      try {
        const unsubscribe = await this.bus.subscribe(this.key, () => this.wake());
        if (this.stopped) await unsubscribe();
        else this.unsubscribe = unsubscribe;
        return;
      } catch (err) {
        this.logger.debug({ err, key: this.key }, "live wake-ups unavailable; retrying");
        await sleep(jitter(2_000));
      }
    }
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      let more = false;
      if (Date.now() - this.markedAtMs >= FOLLOWED_TTL_MS / 3) void this.mark();
      try {
        this.inflight ??= this.bus.read(this.key, this.lastId, { count: 256 });
        const entries = await withTimeout(this.inflight, TAP_READ_TIMEOUT_MS);
        this.inflight = undefined;
        if (this.failing) this.setFailing(false);
        if (entries.length > 0) {
          this.lastId = entries[entries.length - 1]!.id;
          this.deliver(entries.map((e) => decodeEntry(e.data)).filter((e): e is LiveEntry => e !== undefined));
          more = entries.length === 256;
        }
      } catch (err) {
        // A timed-out read stays in flight and is awaited again next time, so reads never pile up.
        if (err !== TIMEOUT) this.inflight = undefined;
        if (!this.failing) {
          this.logger.warn({ err, key: this.key }, "live log stream unreadable; follows poll storage");
          this.setFailing(true);
        }
      }
      if (!more && !this.stopped) await this.pause(this.failing ? jitter(POLL_DOWN_MS) : TAP_POLL_MS);
    }
  }

  /** Hands entries to every follow of the stream: read from the bus, or from this replica's publisher. */
  deliver(entries: LiveEntry[]): void {
    for (const s of this.subscribers) {
      if (s.entries.length + entries.length > MAX_PENDING) s.overflowed = true;
      else s.entries.push(...entries);
      s.wake();
    }
  }

  private setFailing(failing: boolean): void {
    this.failing = failing;
    for (const s of this.subscribers) s.wake();
  }

  // A wake-up that comes during a read may be for entries appended after
  // the read was answered: it is kept for the next pause, which then does
  // not wait (dropped, the entries waited for the next wake-up or TAP_POLL_MS).
  private wake(): void {
    if (this.kick) this.kick();
    else this.woken = true;
  }

  private pause(ms: number): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.kick = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.kick = done;
    });
  }
}

/** A follow's attempt: what was sent of each stream and which are complete. */
interface Followed {
  row: AttemptRow;
  sent: Record<StreamName, bigint>;
  complete: Set<StreamName>;
}

/** Serves FollowLogs; one per Log replica, sharing its Taps among follows. Its replica's publisher hands it pieces (LocalTaps). */
export class LogFollower implements LocalTaps {
  readonly replicaId: string;
  private readonly db: PrismaClient;
  private readonly bus: Bus;
  private readonly clients: DroverClients;
  private readonly logger: Logger;
  private readonly reader: LogReader;
  private readonly taps = new Map<string, Tap>();

  /** `replicaId`: how this replica's Taps mark the streams they follow (default: a new random id). */
  constructor(deps: { db: PrismaClient; bus: Bus; clients: DroverClients; logger: Logger; reader: LogReader; replicaId?: string }) {
    this.replicaId = deps.replicaId ?? randomUUID();
    this.db = deps.db;
    this.bus = deps.bus;
    this.clients = deps.clients;
    this.logger = deps.logger;
    this.reader = deps.reader;
  }

  /** Entries this replica's publisher handed to its Taps (for tests). */
  handed = 0;

  deliver(stream: string, entry: LiveEntry): void {
    const tap = this.taps.get(stream);
    if (!tap) return;
    this.handed++;
    tap.deliver([entry]);
  }

  /** How many live streams this replica reads (for tests and metrics). */
  get tapCount(): number {
    return this.taps.size;
  }

  /** Follows that have read storage: anything committed after it reaches them live (for tests). */
  positioned = 0;

  /** How many of them cannot be read from the bus right now (follows poll storage). */
  get failingTaps(): number {
    return [...this.taps.values()].filter((t) => t.failing).length;
  }

  followLogs(req: FollowLogsRequest, ctx: HandlerContext): AsyncIterable<MessageInitShape<typeof FollowLogsResponseSchema>> {
    // Checked before the stream starts, so a bad filter is the call's error.
    const text = compileTextFilter(req.filter, req.regex);
    if (req.replica !== "" && req.deployment === "") throw new ConnectError("replica: only with deployment", Code.InvalidArgument);
    return new Follow(this, req, { text }, ctx.signal, isBinaryContentType(ctx.requestHeader.get("content-type"))).run();
  }

  /** @internal */
  join(key: string, sub: TapSubscriber): Tap {
    let tap = this.taps.get(key);
    if (!tap) {
      tap = new Tap(this.bus, key, this.replicaId, this.logger);
      this.taps.set(key, tap);
    }
    tap.subscribers.add(sub);
    return tap;
  }

  /** @internal */
  leave(tap: Tap, sub: TapSubscriber): void {
    tap.subscribers.delete(sub);
    if (tap.subscribers.size === 0 && this.taps.get(tap.key) === tap) {
      this.taps.delete(tap.key);
      tap.stop();
    }
  }

  /** @internal */
  get deps() {
    return { db: this.db, clients: this.clients, logger: this.logger, reader: this.reader };
  }
}

/** One FollowLogs call. */
class Follow {
  private readonly kind: FollowKind;
  private readonly selector: Selector;
  private readonly streams: readonly StreamName[];
  private readonly attempts = new Map<string, Followed>();
  private readonly sub: TapSubscriber;
  // Live streams joined, by key.
  private readonly taps = new Map<string, Tap>();
  // A deployment's replica jobs (the selector reads this map as it changes).
  private readonly jobs: ReplicaJobs = new Map();
  private waker: (() => void) | undefined;
  private endedAtMs: number | undefined;
  private lastOutputMs = 0;
  private nextEndCheck = 0;
  // Every followed attempt complete, the job or run not known to have ended: how many quick checks were made.
  private settlingChecks: number | undefined;
  private nextPoll = 0;

  constructor(
    private readonly owner: LogFollower,
    private readonly req: FollowLogsRequest,
    private readonly filter: LineFilter,
    private readonly signal: AbortSignal,
    /** The client reads protobuf (not JSON): responses carry their lines encoded by wire.ts. */
    private readonly binary: boolean,
  ) {
    this.kind = req.attemptId ? "attempt" : req.jobId ? "job" : req.runId ? "run" : "deployment";
    this.selector =
      this.kind === "deployment" ? { jobs: this.jobs } : { attemptId: req.attemptId, jobId: req.jobId, runId: req.runId, stageName: req.stageName };
    this.streams = streamsOf(req.stream);
    this.sub = { entries: [], overflowed: false, wake: () => this.waker?.() };
  }

  async *run(): AsyncGenerator<MessageInitShape<typeof FollowLogsResponseSchema>> {
    const { reader, clients, logger } = this.owner.deps;
    try {
      // 1. The live position first.
      if (this.kind === "deployment") {
        const jobs = await resolveDeployment(clients.deploy, this.req.deployment, this.req.replica, { signal: this.signal });
        for (const [jobId, replica] of jobs) this.addJob(jobId, replica);
        this.nextEndCheck = Date.now() + END_CHECK_MS;
      } else {
        const key = await this.liveKey();
        if (key === null) return; // nobody has heard of the attempt
        if (key !== undefined) this.taps.set(key, this.owner.join(key, this.sub));
      }

      // The publishers must know the stream is followed before storage is
      // read: what is committed after the read then goes live, in order
      // behind what the read returns (a bus that does not answer in time
      // leaves it to the storage polls).
      await withTimeout(Promise.all([...this.taps.values()].map((t) => t.marked)), TAP_READ_TIMEOUT_MS).catch(() => {});

      // 2. Stored output from the start.
      const rows = await reader.attempts(this.selector);
      const states = await reader.streamStates(rows.map((r) => r.attemptId));
      this.owner.positioned += 1;
      const followed = rows.map((row) => {
        const f = this.add(row);
        this.noteStates(f, states.get(row.attemptId));
        return f;
      });
      if (this.req.from === FollowFrom.END || (this.req.from === FollowFrom.TAIL && this.req.tailLines === 0)) {
        // FOLLOW_FROM_TAIL with no tail_lines sends nothing stored, like FOLLOW_FROM_END.
        for (const f of followed) for (const s of this.streams) f.sent[s] = states.get(f.row.attemptId)?.get(s)?.nextOffset ?? 0n;
      } else if (this.req.from === FollowFrom.TAIL) {
        // Each attempt's last lines: one after another, or for a deployment's replicas (side by side) merged by time.
        const tails: LogLineWithKey[][] = [];
        for (const f of followed) {
          const t = await reader.tail(f.row, this.streams, states.get(f.row.attemptId), this.req.tailLines, { filter: this.filter });
          for (const s of this.streams) f.sent[s] = t.ends[s] ?? 0n;
          tails.push(t.lines.map((l) => ({ key: keyOf(f.row.attemptId, l), line: toLogLine(f.row, l) })));
        }
        const merged = this.kind === "deployment" ? mergeSortedBy(tails, (a, b) => keyOrder(a.key, b.key)) : tails.flat();
        yield* batches(this.binary, merged.map((x) => x.line));
      } else if (this.kind === "deployment") {
        yield* this.respond(this.catchUp(followed, states));
      } else {
        for (const f of followed) yield* this.respond(this.catchUp([f], states));
      }
      this.nextPoll = Date.now() + POLL_UP_MS;

      // 3 and 4, until done.
      for (;;) {
        if (this.signal.aborted) return;
        const out: LogLine[] = [];
        while (this.sub.entries.length > 0) {
          const entry = this.sub.entries.shift()!;
          for await (const lines of this.apply(entry)) out.push(...lines);
          if (out.length >= BATCH_LINES) yield* batches(this.binary, out.splice(0));
        }
        if (out.length > 0) this.lastOutputMs = Date.now();
        yield* batches(this.binary, out);
        // A deployment with no replica running has nothing live to read: not a failing bus.
        const taps = [...this.taps.values()];
        const failing = (taps.length === 0 && this.kind !== "deployment") || taps.some((t) => t.failing) || this.sub.overflowed;
        if (failing || Date.now() >= this.nextPoll) {
          this.sub.overflowed = false;
          yield* this.respond(this.poll());
          this.nextPoll = Date.now() + (failing ? POLL_DOWN_MS : POLL_UP_MS);
        }
        if (await this.done()) {
          // What was stored just before the end still goes out.
          yield* this.respond(this.poll());
          return;
        }
        await this.wait(Math.max(0, Math.min(this.nextPoll, this.nextEndCheck) - Date.now()));
      }
    } catch (err) {
      if (this.signal.aborted) return;
      if (err instanceof ConnectError) throw err;
      logger.error({ err }, "follow failed");
      throw new ConnectError("following the logs failed", Code.Internal);
    } finally {
      for (const tap of this.taps.values()) this.owner.leave(tap, this.sub);
    }
  }

  /** Responses of the lines a source finds (lines stay LogLine messages until here, encoded for a binary codec). */
  private async *respond(source: AsyncIterable<LogLine[]>): AsyncGenerator<MessageInitShape<typeof FollowLogsResponseSchema>> {
    for await (const lines of source) {
      if (lines.length > 0) this.lastOutputMs = Date.now();
      yield* batches(this.binary, lines);
    }
  }

  /** Follows a deployment replica's job: its attempts (found by polling storage) and its live stream. */
  private addJob(jobId: string, replica: ReplicaRef): void {
    this.jobs.set(jobId, replica);
    const key = jobStream(jobId);
    if (!this.taps.has(key)) this.taps.set(key, this.owner.join(key, this.sub));
  }

  /** Stops following a job no longer listed whose attempts are all complete. */
  private dropJob(jobId: string): void {
    this.jobs.delete(jobId);
    for (const [id, f] of this.attempts) if (f.row.jobId === jobId) this.attempts.delete(id);
    const key = jobStream(jobId);
    const tap = this.taps.get(key);
    if (tap) {
      this.taps.delete(key);
      this.owner.leave(tap, this.sub);
    }
  }

  // Asks Deploy for the deployment's replicas again: joins new ones' jobs,
  // drops finished ones'. When the deployment is deleted, now (epoch ms);
  // undefined while it exists or Deploy cannot say.
  private async refreshDeployment(): Promise<number | undefined> {
    const { clients, logger } = this.owner.deps;
    let replicas;
    try {
      replicas = await getReplicas(clients.deploy, this.req.deployment, this.signal);
    } catch (err) {
      logger.debug({ err, deployment: this.req.deployment }, "cannot ask the Deploy service for the deployment's replicas; following those known");
      return undefined;
    }
    if (replicas === null) return Date.now();
    const { jobs } = replicaJobs(replicas, this.req.replica);
    let added = false;
    for (const [jobId, replica] of jobs) {
      if (this.jobs.has(jobId)) continue;
      this.addJob(jobId, replica);
      added = true;
    }
    for (const jobId of [...this.jobs.keys()]) {
      if (jobs.has(jobId)) continue;
      const fs = [...this.attempts.values()].filter((f) => f.row.jobId === jobId);
      if (fs.length > 0 && fs.every((f) => this.isComplete(f))) this.dropJob(jobId);
    }
    // Output a new replica stored before its live stream was joined is in storage.
    if (added) this.nextPoll = 0;
    return undefined;
  }

  // The bus stream carrying the followed output; null when the attempt is
  // unknown everywhere, undefined when it cannot be known yet (storage is polled instead).
  private async liveKey(): Promise<string | null | undefined> {
    if (this.kind === "job") return jobStream(this.req.jobId);
    if (this.kind === "run") return runStream(this.req.runId);
    const { reader, clients, logger } = this.owner.deps;
    const [row] = await reader.attempts(this.selector);
    if (row) return jobStream(row.jobId);
    try {
      const res = await clients.scheduler.describeAttempts({ attemptIds: [this.req.attemptId] }, { signal: this.signal });
      const info = res.attempts[0];
      return info ? jobStream(info.jobId) : null;
    } catch (err) {
      logger.warn({ err, attemptId: this.req.attemptId }, "cannot ask the Scheduler whose attempt this is; polling storage");
      return undefined;
    }
  }

  private add(row: AttemptRow): Followed {
    let f = this.attempts.get(row.attemptId);
    if (!f) {
      if (this.kind === "deployment" && !row.replica) row = { ...row, replica: this.jobs.get(row.jobId) };
      f = { row, sent: { stdout: 0n, stderr: 0n, system: 0n }, complete: new Set() };
      this.attempts.set(row.attemptId, f);
    }
    return f;
  }

  private noteStates(f: Followed, st: Map<StreamName, StreamState> | undefined): void {
    for (const [s, state] of st ?? []) if (state.complete) f.complete.add(s);
  }

  private wanted(owner: { attemptId: string; jobId: string; runId: string; stageName: string }): boolean {
    if (this.kind === "attempt") return owner.attemptId === this.req.attemptId;
    if (this.kind === "deployment") return this.jobs.has(owner.jobId);
    if (this.kind === "run" && this.req.stageName) return owner.stageName === this.req.stageName;
    return true;
  }

  /** Reads attempts' stored output from what was sent on, merged by time (one attempt: its streams). */
  private async *catchUp(fs: Followed[], states?: Map<string, Map<StreamName, StreamState>>): AsyncGenerator<LogLine[]> {
    const { reader } = this.owner.deps;
    states ??= await reader.streamStates(fs.map((f) => f.row.attemptId));
    for (const f of fs) this.noteStates(f, states.get(f.row.attemptId));
    const byId = new Map(fs.map((f) => [f.row.attemptId, f]));
    const merge = reader.mergeMany(
      fs.map((f) => ({ attempt: f.row, states: states.get(f.row.attemptId), positions: { ...f.sent } })),
      this.streams,
      { filter: this.filter, budget: new ScanBudget(Infinity) },
    );
    let out: LogLine[] = [];
    for (;;) {
      const next = await merge.nextWithSource();
      if (!next) break;
      out.push(toLogLine(byId.get(next.cursor.attemptId)!.row, next.line));
      if (out.length >= BATCH_LINES) {
        yield out;
        out = [];
      }
    }
    if (out.length > 0) yield out;
    for (const c of merge.cursors) {
      const f = byId.get(c.attemptId)!;
      let to = c.readTo;
      // Past the cap offsets go on without bytes: all of it counts as sent.
      const st = states.get(c.attemptId)?.get(c.stream);
      if (st?.truncatedAt != null && to > st.truncatedAt && st.nextOffset > to) to = st.nextOffset;
      if (to > f.sent[c.stream]) f.sent[c.stream] = to;
    }
  }

  /** New attempts, completions and anything the bus did not bring, from storage. */
  private async *poll(): AsyncGenerator<LogLine[]> {
    const { reader } = this.owner.deps;
    const rows = await reader.attempts(this.selector);
    for (const row of rows) if (!this.attempts.has(row.attemptId)) this.add(row);
    const open = [...this.attempts.values()].filter((f) => !this.isComplete(f));
    const states = await reader.streamStates(open.map((f) => f.row.attemptId));
    for (const f of open) {
      const st = states.get(f.row.attemptId);
      const behind = this.streams.some((s) => {
        const state = st?.get(s);
        return state !== undefined && (state.nextOffset > f.sent[s] || (state.complete && !f.complete.has(s)));
      });
      if (behind) yield* this.catchUp([f], states);
      else this.noteStates(f, st);
    }
  }

  /** The lines a live entry adds. */
  private async *apply(e: LiveEntry): AsyncGenerator<LogLine[]> {
    if (!this.wanted(e.attempt) || !this.streams.includes(e.stream)) return;
    const f = this.attempts.get(e.attempt.attemptId) ?? this.add({ ...e.attempt, storedBytes: 0n });
    if (e.offset > f.sent[e.stream] || (e.data === undefined && e.endOffset > f.sent[e.stream])) {
      // A gap (or bytes the entry left out): storage has them, committed before the entry was published.
      yield* this.catchUp([f]);
    }
    const sent = f.sent[e.stream];
    if (e.data !== undefined && e.endOffset > sent) {
      const chunk = { startOffset: e.offset, endOffset: e.endOffset, data: e.data, commandIndex: e.commandIndex, times: e.times };
      const fresh = sent > e.offset ? sliceChunk(chunk, Number(sent - e.offset)) : chunk;
      const lines = splitChunk(e.stream, fresh, !e.complete).filter((l: Line) => passes(this.filter, l));
      f.sent[e.stream] = e.endOffset;
      yield lines.map((l) => toLogLine(f.row, l));
    }
    if (e.complete && !f.complete.has(e.stream)) {
      // Complete: storage may still hold a truncation marker to show.
      yield* this.catchUp([f]);
      f.complete.add(e.stream);
    }
  }

  private isComplete(f: Followed): boolean {
    return this.streams.every((s) => f.complete.has(s));
  }

  private async done(): Promise<boolean> {
    const attemptsComplete = this.attempts.size > 0 && [...this.attempts.values()].every((f) => this.isComplete(f));
    if (this.kind === "attempt" && attemptsComplete) return true;
    let now = Date.now();
    const settling = this.kind !== "deployment" && attemptsComplete && this.endedAtMs === undefined;
    if (!settling) this.settlingChecks = undefined;
    else if (this.settlingChecks === undefined) {
      this.settlingChecks = 0;
      this.nextEndCheck = now;
    }
    if (now >= this.nextEndCheck) {
      this.endedAtMs ??= await this.askEnded();
      now = Date.now();
      this.nextEndCheck = now + (this.settlingChecks === undefined ? END_CHECK_MS : Math.min(END_CHECK_MS, SETTLING_CHECK_MS * 2 ** this.settlingChecks++));
    }
    return followDone({ kind: this.kind, attemptsComplete, endedAtMs: this.endedAtMs, lastOutputMs: this.lastOutputMs, nowMs: now })
      || (this.kind !== "attempt" && this.endedAtMs !== undefined && this.attempts.size === 0);
  }

  // When the Scheduler says the followed job, run or attempt's job ended (or
  // Deploy that the deployment is gone); undefined while it runs or cannot be asked.
  private async askEnded(): Promise<number | undefined> {
    const { clients, logger } = this.owner.deps;
    if (this.kind === "deployment") return this.refreshDeployment();
    try {
      if (this.kind === "job") {
        const { job } = await clients.scheduler.getJob({ id: this.req.jobId }, { signal: this.signal });
        if (!job || !ENDED_JOB_STATES.has(job.state)) return undefined;
        return job.updateTime ? timestampMs(job.updateTime) : Date.now();
      }
      if (this.kind === "run") {
        const { run } = await clients.scheduler.getRun({ id: this.req.runId }, { signal: this.signal });
        return run?.endTime ? timestampMs(run.endTime) : undefined;
      }
      const res = await clients.scheduler.describeAttempts({ attemptIds: [this.req.attemptId] }, { signal: this.signal });
      const info = res.attempts[0];
      // Unknown to the Scheduler: nothing more will come.
      if (!info) return 0;
      return info.jobEnded ? Date.now() : undefined;
    } catch (err) {
      // A job or run the Scheduler does not know has nothing more to come.
      if (err instanceof ConnectError && (err.code === Code.NotFound || err.code === Code.InvalidArgument)) return 0;
      logger.debug({ err }, "cannot ask the Scheduler whether the followed work ended");
      return undefined;
    }
  }

  private wait(ms: number): Promise<void> {
    if (this.sub.entries.length > 0 || this.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        this.signal.removeEventListener("abort", finish);
        this.waker = undefined;
        resolve();
      };
      const timer = setTimeout(finish, ms);
      this.signal.addEventListener("abort", finish, { once: true });
      this.waker = finish;
    });
  }
}

/** A line to send and where it sits in a merge of several attempts. */
interface LogLineWithKey {
  key: ReturnType<typeof keyOf>;
  line: LogLine;
}

/** Lines in responses of at most BATCH_LINES lines and about BATCH_BYTES; for a binary codec, encoded here (wire.ts). */
function* batches(binary: boolean, lines: LogLine[]): Generator<MessageInitShape<typeof FollowLogsResponseSchema>> {
  const response = (part: LogLine[]) => (binary ? encodedResponse(part) : { lines: part });
  let start = 0;
  let bytes = 0;
  for (let i = 0; i < lines.length; i++) {
    bytes += lines[i]!.data.length;
    if (i + 1 - start >= BATCH_LINES || bytes >= BATCH_BYTES) {
      yield response(lines.slice(start, i + 1));
      start = i + 1;
      bytes = 0;
    }
  }
  if (start < lines.length) yield response(lines.slice(start));
}

const TIMEOUT = Symbol("timeout");

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(TIMEOUT), ms)));
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Spreads retries so that many follows do not hit storage or Redis in step.
function jitter(ms: number): number {
  return ms * (0.75 + Math.random() * 0.5);
}
