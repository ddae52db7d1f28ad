// The live side of ingestion: what each commit stored goes to the followers
// on this replica at once, and onto bounded bus streams that followers on
// the other replicas read (follow.ts).
//
//   Ingest ──publish(pieces)──▶ this replica's Taps (LocalTaps: no bus, no copy)
//                          └──▶ queue ──drain──▶ bus.append("log:job:<jobId>")
//                                         └────▶ bus.append("log:run:<runId>")   (run stages)
//                                         └────▶ bus.publish(same names)        (a wake-up, no payload)
//
// Never in ingestion's way: publish() only queues; one drain loop appends
// what is queued in one batch, in order (so a follower sees a stream's pieces
// in offset order), then wakes each stream's followers once; a full queue or
// a bus error drops pieces, counted and logged at most every few seconds.
// Followers notice a dropped piece as a gap and read it from storage.
//
// Only what another replica follows. Every Tap (follow.ts) marks its
// replica in a presence set for its live stream (followersKey) while it
// lives; the publisher appends only to streams some *other* replica's Tap
// marked, and hands its own replica's Taps their pieces directly. Most output
// is never followed, and with one Log replica, or a follow on the replica
// that stores its output, nothing goes through the bus at all: each appended
// byte cost the Log service and Redis CPU (the append, the wake-up, the
// Tap's read and decoding it back: ~16 % of the Log's CPU while followed at
// 10 MiB/s), and Redis memory (LIVE_MAX_LEN entries of up to MAX_ENTRY_DATA
// per job). Nothing is lost or reordered by it: a "followed" answer is
// trusted for FOLLOWED_RECHECK_MS (appending too much is harmless), a "not
// followed" one is asked again for every batch. A follow joins its Tap
// (local from then on) and marks its stream, then reads storage: a piece
// whose publisher saw no mark was committed before that look at the set, so
// before the mark and the read, and the read has it; every piece committed
// after the read is appended. (Trusting "not followed" for 250 ms made each
// follow wait that long before its first read, and every follow's first
// lines with it.) A follow that gets a piece both ways sends it once
// (follow.ts skips what it sent).
//
// Entry encoding (encodeEntry/decodeEntry): a 4-byte big-endian header
// length, a UTF-8 JSON header, then the stored bytes. Pieces larger than
// MAX_ENTRY_DATA are sent without their bytes (header.x = true): followers
// read that range from storage, which keeps the bounded streams small.

import type { Bus } from "../../lib/bus/bus.ts";
import type { Logger } from "../../lib/logger.ts";
import type { AttemptOwner, LivePublisher, StoredPiece, StreamName } from "./types.ts";

/** Entries each live stream keeps (about: Redis trims approximately). */
export const LIVE_MAX_LEN = 1000;
/** Pieces with more bytes than this go out without them. */
export const MAX_ENTRY_DATA = 256 * 1024;
// Pieces waiting for the bus; more are dropped.
const MAX_QUEUED = 10_000;
// Most pieces appended in one go.
const MAX_BATCH = 500;
// At most one warning per this long about dropped pieces.
const WARN_EVERY_MS = 10_000;
// After a bus error, pieces are dropped for this long instead of each waiting on a bus that is down.
const BACKOFF_MS = 1_000;
// How long close() waits for queued pieces to reach the bus.
const CLOSE_WAIT_MS = 2_000;

/** The presence set in which each replica following a live stream marks itself (its replica id). */
export function followersKey(stream: string): string {
  return `${stream}:followers`;
}

/** How long a follower's mark (followersKey) lasts unless set again; Taps set it again every third of this. */
export const FOLLOWED_TTL_MS = 15_000;
// How long the publisher trusts a "followed" answer ("not followed" is asked again every batch).
const FOLLOWED_RECHECK_MS = 2_000;
// Answers remembered, at most (expired ones go first).
const MAX_REMEMBERED = 10_000;

/** The live stream (and wake-up channel) of a job's output. */
export function jobStream(jobId: string): string {
  return `log:job:${jobId}`;
}

/** The live stream (and wake-up channel) of a run's output. */
export function runStream(runId: string): string {
  return `log:run:${runId}`;
}

/** The live streams a piece goes to: its job's, and its run's for a stage. */
function liveStreamsOf(piece: StoredPiece): string[] {
  return piece.attempt.runId ? [jobStream(piece.attempt.jobId), runStream(piece.attempt.runId)] : [jobStream(piece.attempt.jobId)];
}

/** One entry of a live stream: a piece, possibly without its bytes. */
export interface LiveEntry {
  attempt: AttemptOwner;
  stream: StreamName;
  commandIndex: number;
  offset: bigint;
  endOffset: bigint;
  /** Undefined when the piece was too large to send: read [offset, endOffset) from storage. */
  data: Uint8Array | undefined;
  times: Array<[number, number]>;
  complete: boolean;
}

interface Header {
  a: string;
  j: string;
  g: string;
  r: string;
  s: string;
  st: StreamName;
  c: number;
  o: string;
  e: string;
  t: Array<[number, number]>;
  f?: true;
  x?: true;
}

/** The bytes of a live entry for a piece. */
export function encodeEntry(piece: StoredPiece): Uint8Array {
  const omit = piece.data.length > MAX_ENTRY_DATA;
  const header: Header = {
    a: piece.attempt.attemptId,
    j: piece.attempt.jobId,
    g: piece.attempt.agentId,
    r: piece.attempt.runId,
    s: piece.attempt.stageName,
    st: piece.stream,
    c: piece.commandIndex,
    o: piece.offset.toString(),
    e: piece.endOffset.toString(),
    t: omit ? [] : piece.times,
    ...(piece.complete ? { f: true as const } : {}),
    ...(omit ? { x: true as const } : {}),
  };
  const head = Buffer.from(JSON.stringify(header), "utf8");
  const out = Buffer.allocUnsafe(4 + head.length + (omit ? 0 : piece.data.length));
  out.writeUInt32BE(head.length, 0);
  head.copy(out, 4);
  if (!omit) out.set(piece.data, 4 + head.length);
  return out;
}

/** The entry encoded in bytes, or undefined when they are not one. */
export function decodeEntry(bytes: Uint8Array): LiveEntry | undefined {
  try {
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const len = buf.readUInt32BE(0);
    const h = JSON.parse(buf.subarray(4, 4 + len).toString("utf8")) as Header;
    return {
      attempt: { attemptId: h.a, jobId: h.j, agentId: h.g, runId: h.r, stageName: h.s },
      stream: h.st,
      commandIndex: h.c,
      offset: BigInt(h.o),
      endOffset: BigInt(h.e),
      data: h.x ? undefined : new Uint8Array(buf.subarray(4 + len)),
      times: h.t,
      complete: h.f === true,
    };
  } catch {
    return undefined;
  }
}

/** This replica's follows, as the publisher hands them pieces (follow.ts's LogFollower). */
export interface LocalTaps {
  /** The replica's id, as its Taps mark the streams they follow. */
  readonly replicaId: string;
  /** Hands an entry to this replica's Tap of the live stream, if it has one; never throws. */
  deliver(stream: string, entry: LiveEntry): void;
}

/** Publishes stored pieces to this replica's follows and, on the bus, to other replicas'; see the top of this file. */
export class BusLivePublisher implements LivePublisher {
  private readonly bus: Bus;
  private readonly logger: Logger;
  private readonly local: LocalTaps | undefined;
  private readonly queue: StoredPiece[] = [];
  private draining: Promise<void> | undefined;
  private closed = false;
  private dropped = 0;
  private lastWarnMs = 0;
  private backoffUntilMs = 0;
  /** Live streams another replica follows, and until when that answer holds (epoch ms). */
  private readonly followed = new Map<string, { untilMs: number }>();

  /** `local`: this replica's follows (without it, every follower counts as another replica's). */
  constructor(deps: { bus: Bus; logger: Logger; local?: LocalTaps }) {
    this.bus = deps.bus;
    this.logger = deps.logger;
    this.local = deps.local;
  }

  publish(pieces: readonly StoredPiece[]): void {
    if (this.closed) return;
    for (const piece of pieces) {
      // A stored piece is a live entry as it is (with its bytes).
      if (this.local) for (const name of liveStreamsOf(piece)) this.local.deliver(name, piece);
      if (this.queue.length >= MAX_QUEUED || Date.now() < this.backoffUntilMs) this.drop(1, undefined);
      else this.queue.push(piece);
    }
    this.kick();
  }

  /** Stops taking pieces and publishes what is queued, waiting at most CLOSE_WAIT_MS for the bus. */
  async close(): Promise<void> {
    this.closed = true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_WAIT_MS)));
    const flushed = (async () => {
      while (this.draining) await this.draining;
    })();
    await Promise.race([flushed, timeout]).finally(() => clearTimeout(timer));
  }

  private kick(): void {
    if (this.draining || this.queue.length === 0) return;
    this.draining = this.drain().finally(() => {
      this.draining = undefined;
      this.kick();
    });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      // Everything queued goes at once: the appends are issued together (one
      // round trip for the batch, where awaiting two per piece made the
      // queue's wait grow with the number of pieces), then one wake-up per
      // live stream.
      const batch = this.queue.splice(0, MAX_BATCH);
      if (Date.now() < this.backoffUntilMs) {
        this.drop(batch.length, undefined);
        continue;
      }
      const followed = await this.followedOf(new Set(batch.flatMap(liveStreamsOf)));
      const names = new Set<string>();
      const appends: Promise<string>[] = [];
      for (const piece of batch) {
        const to = liveStreamsOf(piece).filter((name) => followed.has(name));
        if (to.length === 0) continue;
        const bytes = encodeEntry(piece);
        for (const name of to) {
          names.add(name);
          appends.push(this.bus.append(name, bytes, { maxLen: LIVE_MAX_LEN }));
        }
      }
      const failed = (await Promise.allSettled(appends)).filter((r) => r.status === "rejected");
      // A wake-up for followers' taps (follow.ts); losing one only delays them.
      const wakeups = await Promise.allSettled([...names].map((name) => this.bus.publish(name, EMPTY)));
      const err = failed[0]?.reason ?? wakeups.find((r) => r.status === "rejected")?.reason;
      if (failed.length > 0) this.drop(failed.length, err);
      if (err !== undefined) this.backoffUntilMs = Date.now() + BACKOFF_MS;
    }
  }

  /** Which of the live streams another replica follows: remembered answers, one presence read for all the others. */
  private async followedOf(names: Set<string>): Promise<Set<string>> {
    const now = Date.now();
    const out = new Set<string>();
    const ask: string[] = [];
    for (const name of names) {
      const known = this.followed.get(name);
      if (known && known.untilMs > now) out.add(name);
      else ask.push(name);
    }
    // One read for all of them. A bus that cannot answer counts as followed: the appends then fail or succeed on their own.
    const self = this.local?.replicaId;
    const answers = await this.bus.getPresenceMembers(ask.map(followersKey)).then(
      (sets) => sets.map((replicas) => replicas.some((r) => r !== self)),
      () => ask.map(() => true),
    );
    ask.forEach((name, i) => {
      if (!answers[i]) return;
      out.add(name);
      this.followed.delete(name); // re-inserted last: the map stays in expiry order, roughly
      this.followed.set(name, { untilMs: now + FOLLOWED_RECHECK_MS });
    });
    for (const [name, known] of this.followed) {
      if (this.followed.size <= MAX_REMEMBERED && known.untilMs > now) break;
      this.followed.delete(name);
    }
    return out;
  }

  private drop(n: number, err: unknown): void {
    this.dropped += n;
    const now = Date.now();
    if (now - this.lastWarnMs < WARN_EVERY_MS) return;
    this.lastWarnMs = now;
    this.logger.warn({ err, dropped: this.dropped }, "live log pieces dropped (followers read them from storage)");
    this.dropped = 0;
  }
}

const EMPTY = new Uint8Array(0);
