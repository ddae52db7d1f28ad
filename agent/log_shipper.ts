// LogShipper sends the output in the agent's execution bundles to the
// control plane as LogFrames, and keeps sending until the Log service has
// every byte (LogAck).
//
//   an attempt's three streams, each read from its files in the bundle:
//     stdout  cmd-000.stdout.log ++ cmd-001.stdout.log ++ ...   (offsets go on
//     stderr  cmd-000.stderr.log ++ cmd-001.stderr.log ++ ...    from one command
//     system  system.log                                         to the next)
//
//   inotify (fs.watch on the bundle dir) ─┐  a change waits flushDelayMs for
//   stat poll, slower (fallback) ─────────┼▶ company, then the pump reads what
//   JobHandler: track(), ended() ─────────┘  was written, redacts it, and
//                                            queues frames on the LogLink
//   LogAck ─▶ acked offset (persisted in log-acks.json by rename)
//          ─▶ complete for all three streams ─▶ manifest.logsShipped
//
// Files. A command's file is final once a later command's file exists or the
// bundle is closed; its length is frozen when the shipper reads past its end,
// so the offsets of the commands after it never move (bytes a leftover
// grandchild appends to it later are not shipped). A frame never spans two
// commands. Output is held in memory only in the frames waiting in the link
// (≤ 512 KiB, agent_worker.ts): what is not acknowledged is read again from
// the files. The file a stream reads stays open between reads, also once
// its attempt ended (at most MAX_OPEN_FILES, closed after OPEN_FILE_IDLE_MS
// unread or when read to its end).
//
// Reading the file a command is writing is synchronous (readSync): what a
// child has just written sits in the page cache, and a read of it takes
// microseconds, while the thread pool's hand-off cost the main thread ~45 µs
// a read and waited for a pool thread. In the follow benchmark (ten jobs
// printing every 10 ms) the agent's CPU per MiB went from ~24.5 to ~19.5 ms
// and the p99 from a write to the agent's read from ~20 to ~10 ms. Earlier
// bytes (a finished command's file, read again after a reconnect, possibly
// long gone from the cache) are read asynchronously, so a slow disk never
// holds up the agent's heartbeats.
//
// Why inotify with a slow poll: a directory watch costs nothing while
// nothing is written and tells within a millisecond when something is, so a
// line reaches the link about flushDelayMs (5 ms) after the child wrote it;
// polling every file of 200 attempts often enough for that latency would
// cost thousands of stats a second. The poll is the safety net (filesystems
// without inotify, a watch that failed): every pollIntervalMs for bundles
// without a watch, every sweepIntervalMs for the others, a stat per stream.
// Measured with 200 running attempts: 0.07 % of a core idle, a line written
// reaches the link in 5-10 ms.
//
// Flow control. The Log service stores a frame only where the stored stream
// ends, so each stream is sent in order from its last acknowledged offset:
// at most streamWindowBytes ahead of the ack per stream and totalWindowBytes
// for all (the total stays under Fleet's per-agent queue bound, so Fleet
// need not drop frames for memory). The LogLink accepts a frame only while
// few log bytes wait in the stream's queue, so heartbeats and job events
// never wait behind megabytes of output. After every new session and
// whenever a stream's unacknowledged bytes see no ack progress for
// ackTimeoutMs (doubling up to maxAckTimeoutMs while nothing moves: a Fleet
// that never acks gets a bounded trickle, not a loop), the stream is sent
// again from its last ack. Duplicates are harmless (stored by offset).
//
// Redaction. The values of exec.secret_env become [REDACTED] before a byte
// leaves the machine (lib/redact.ts, the Log service's definition too); a
// tail that could start a secret is held back until more bytes come or the
// file is final. A frame whose data changed length says how many file bytes
// it covers (source_length); offsets and acks count file bytes. A closed
// bundle found after an agent restart no longer has the values (assignment.pb
// is removed when it closes): it is shipped unredacted, and the Log service
// redacts it with the values it gets from the Scheduler.

import { readSync, watch, type FSWatcher } from "node:fs";
import { chmod, open, readdir, readFile, rename, writeFile, type FileHandle } from "node:fs/promises";
import { basename, join } from "node:path";

import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";

import { LogStream, type LogAck, type LogFrameSchema, type LogOffsetSchema } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import type { Logger } from "../lib/logger.ts";
import { heldBackLength, redact, secretPatterns } from "../lib/redact.ts";
import { fileSize, logFileName, markLogsShipped, MANIFEST, readManifest } from "./bundle.ts";

export type LogFrameInit = MessageInitShape<typeof LogFrameSchema>;
export type LogOffsetInit = MessageInitShape<typeof LogOffsetSchema>;

/** The bundle file where the shipper keeps the acknowledged offsets. */
export const LOG_ACKS = "log-acks.json";
/** The agent's own lines about an attempt (docker pull progress). */
export const SYSTEM_LOG = "system.log";

/** Where frames go: the stream of the session that is up. It promises to deliver frames in the order sent. */
export interface LogLink {
  /** Whether a frame may be sent now; when false the shipper waits for LogShipper.writable(). */
  ready(): boolean;
  /** Queues a frame on the stream. */
  send(frame: LogFrameInit): void;
}

export interface LogShipperOptions {
  logger: Logger;
  /** Most bytes of data in one frame. Default 256 KiB. */
  maxFrameBytes?: number;
  /** How long a change waits for more writes before it is read, ms. Default 5. */
  flushDelayMs?: number;
  /** Most bytes sent ahead of the last ack, per stream. Default 4 MiB. */
  streamWindowBytes?: number;
  /** Most bytes sent ahead of the last acks, all streams together. Default 12 MiB. */
  totalWindowBytes?: number;
  /** Unacknowledged bytes without ack progress this long are sent again, ms. Default 10 000. */
  ackTimeoutMs?: number;
  /** The timeout doubles while no ack comes, up to this, ms. Default 120 000. */
  maxAckTimeoutMs?: number;
  /** Bundles without a directory watch are looked at this often, ms. Default 1 000. */
  pollIntervalMs?: number;
  /** Bundles with a watch are looked at this often anyway (a missed event, a lost watch), ms. Default 30 000. */
  sweepIntervalMs?: number;
  /** Acked offsets are written to the bundle at most this long after they change, ms. Default 5 000: a crash resends at most that much again, and 200 busy attempts cost 40 small writes a second. */
  persistDelayMs?: number;
  /** Use fs.watch; false leaves only the poll (tests of the fallback). Default true. */
  watch?: boolean;
  /** The clock, ms. Default Date.now. */
  now?: () => number;
}

/** What track() needs to know about a bundle. */
export interface TrackedBundle {
  /** The bundle's directory. */
  dir: string;
  /** The attempt; default: the manifest's. */
  attemptId?: string;
  /** Values to redact (the spec's secret_env values); none for a bundle recovered closed. */
  secrets?: readonly string[];
}

type Kind = "stdout" | "stderr" | "system";
const KINDS: readonly Kind[] = ["stdout", "stderr", "system"];
const STREAM_OF: Record<Kind, LogStream> = { stdout: LogStream.STDOUT, stderr: LogStream.STDERR, system: LogStream.SYSTEM };
const COMMAND_FILE = /^cmd-(\d{3,})\.(stdout|stderr)\.log$/;
const REDACTED_LENGTH = 10; // "[REDACTED]"
/** Files kept open between reads, at most (an open, a read and a close per frame cost three times one read). */
const MAX_OPEN_FILES = 128;
/** A kept file unread this long is closed, ms. */
const OPEN_FILE_IDLE_MS = 5_000;

/** A file whose length is fixed: its bytes are stream bytes [base, base + length). */
interface Segment {
  index: number;
  base: number;
  length: number;
}

interface StreamState {
  bundle: Bundle;
  kind: Kind;
  stream: LogStream;
  /** Files whose length is frozen, in order, covering [0, frozenEnd). */
  segments: Segment[];
  frozenEnd: number;
  /** The file after the frozen ones (command index; 0 for system). */
  openIndex: number;
  /** Bytes of the open file last seen. */
  openSize: number;
  /** All bytes before this are stored. */
  acked: number;
  /** The next byte to send. */
  sent: number;
  finalSent: boolean;
  complete: boolean;
  /** Why the Log service refuses the stream; "" while it does not. */
  refused: string;
  /** Something may be there to send (and the stream is in LogShipper.dirty). */
  dirty: boolean;
  /** Counts changes, so a change seen during a read keeps the stream dirty. */
  changes: number;
  /** Bumped by every rewind: a frame read before one is stale. */
  epoch: number;
  /** The last read reached the end of a file that may still grow: no need to read again before the next change. */
  caughtUp: boolean;
  /** When unacknowledged data last saw progress (a send from idle, an ack). */
  progressAt: number;
  timeoutMs: number;
}

interface Bundle {
  attemptId: string;
  dir: string;
  patterns: Uint8Array[];
  /** Most source bytes read per frame, so redacted data stays within maxFrameBytes. */
  readBytes: number;
  closed: boolean;
  /** Highest command index with a log file. */
  maxSeen: number;
  /** When closed: the last command index of the stdout and stderr streams. */
  lastIndex: number;
  streams: StreamState[];
  watcher?: FSWatcher;
  flushTimer?: NodeJS.Timeout;
  lastLookMs: number;
  persistTimer?: NodeJS.Timeout;
  persistDirty: boolean;
  persisting: Promise<void>;
  gone: boolean;
}

interface AckFile {
  version: 1;
  streams: Partial<Record<Kind, { acked: number; complete?: boolean; refused?: string }>>;
}

/** Ships the log streams of the bundles it tracks until the Log service has them; see the top of the file. */
export class LogShipper {
  private readonly o: Required<Omit<LogShipperOptions, "logger">>;
  private readonly log: Logger;
  private readonly bundles = new Map<string, Bundle>();
  private readonly tracking = new Map<string, Promise<void>>();
  /** Bundles being marked shipped (shipped()): writes into bundles no longer tracked. */
  private readonly marking = new Set<Promise<void>>();
  /** The streams that may have something to send, the only ones the pump looks at (oldest first, for fairness). */
  private readonly dirty = new Set<StreamState>();
  private link: LogLink | undefined;
  private unacked = 0;
  private pumping = false;
  private pumpAgain = false;
  private pumpQueued = false;
  private tick: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Reads go through one buffer: the pump reads one chunk at a time. */
  private scratch: Buffer;
  /** The growing files of running attempts, kept open, least recently read first. */
  private readonly openFiles = new Map<string, { handle: FileHandle; usedMs: number }>();

  constructor(options: LogShipperOptions) {
    this.o = {
      maxFrameBytes: 256 * 1024,
      flushDelayMs: 5,
      streamWindowBytes: 4 * 1024 * 1024,
      totalWindowBytes: 12 * 1024 * 1024,
      ackTimeoutMs: 10_000,
      maxAckTimeoutMs: 120_000,
      pollIntervalMs: 1_000,
      sweepIntervalMs: 30_000,
      persistDelayMs: 5_000,
      watch: true,
      now: Date.now,
      ...options,
    };
    this.log = options.logger.child({ component: "log_shipper" });
    this.scratch = Buffer.allocUnsafe(this.o.maxFrameBytes);
    const tickMs = Math.max(5, Math.min(this.o.pollIntervalMs, this.o.ackTimeoutMs, 1_000));
    this.tick = setInterval(() => this.onTick(), tickMs);
    this.tick.unref();
  }

  /** Attempts whose logs are being shipped. */
  get tracked(): string[] {
    return [...this.bundles.keys()];
  }

  /** Bytes sent and not yet acknowledged, all streams together. */
  get unacknowledgedBytes(): number {
    return this.unacked;
  }

  /**
   * Starts shipping a bundle's logs: an attempt that is starting (its
   * directory exists), one resumed after a restart, or a closed one whose
   * logs are not shipped yet. Resolves once its state is loaded, so that
   * Hello.log_offsets lists it. A bundle already tracked or shipped is left
   * as it is.
   */
  track(input: TrackedBundle): Promise<void> {
    if (this.stopped) return Promise.resolve();
    const known = this.tracking.get(input.dir);
    if (known) return known;
    const loading = this.load(input)
      .catch((err: unknown) => this.log.warn({ err, dir: input.dir }, "could not start shipping a bundle's logs"))
      .finally(() => this.tracking.delete(input.dir));
    this.tracking.set(input.dir, loading);
    return loading;
  }

  /** The attempt ended: its bundle is (being) closed; the files are final and the streams can end. */
  async ended(attemptId: string): Promise<void> {
    await Promise.all(this.tracking.values());
    const b = this.bundles.get(attemptId);
    if (b) await this.lookAtManifest(b);
  }

  /** A session is up: every stream goes again from its last ack. */
  connect(link: LogLink): void {
    this.link = link;
    const now = this.o.now();
    for (const b of this.bundles.values()) for (const s of b.streams) this.rewind(s, now, true);
    this.schedulePump();
  }

  /** The session ended: nothing is sent until the next connect(). */
  disconnect(): void {
    this.link = undefined;
  }

  /** The link has room again. */
  writable(): void {
    if (this.link) this.schedulePump();
  }

  /** For Hello.log_offsets: how many bytes the agent holds of every stream not yet shipped. */
  offsets(): LogOffsetInit[] {
    const out: LogOffsetInit[] = [];
    for (const b of this.bundles.values()) {
      for (const s of b.streams) {
        if (s.complete || s.refused) continue;
        out.push({ attemptId: b.attemptId, stream: s.stream, offset: BigInt(Math.max(s.sent, s.acked, s.frozenEnd + s.openSize)) });
      }
    }
    return out;
  }

  /** The Log service says how far a stream is stored, that it is complete, or that it refuses it. */
  logAck(ack: LogAck): void {
    const b = this.bundles.get(ack.attemptId);
    const s = b?.streams.find((x) => x.stream === ack.stream);
    if (!b || !s) {
      this.log.debug({ attemptId: ack.attemptId, stream: ack.stream, offset: ack.offset.toString() }, "LogAck for a stream this agent is not shipping");
      return;
    }
    if (s.complete || s.refused) return;
    const now = this.o.now();
    const offset = Number(ack.offset);
    if (ack.refused) {
      this.log.warn({ attemptId: b.attemptId, stream: s.kind, reason: ack.refused }, "the Log service refuses this log stream; no longer sending it");
      s.refused = ack.refused;
      this.settle(b, s);
      return;
    }
    if (ack.complete) {
      s.complete = true;
      this.settle(b, s, offset);
      return;
    }
    if (offset > s.acked) {
      this.setAcked(s, offset);
      if (s.sent < offset) this.setSent(s, offset);
      s.progressAt = now;
      s.timeoutMs = this.o.ackTimeoutMs;
      this.setDirty(s, true);
      this.persistSoon(b);
    } else if (offset < s.acked) {
      // The server has less than it said before (the answer to Hello's
      // offsets, after it lost data): what it lacks is sent again.
      this.log.info({ attemptId: b.attemptId, stream: s.kind, offset, acked: s.acked }, "the Log service has less of a stream than it acknowledged; sending again from its offset");
      this.setAcked(s, offset);
      this.rewind(s, now, false);
      this.persistSoon(b);
    }
    this.schedulePump();
  }

  /** Stops watching and sending; writes the acked offsets not yet written. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.link = undefined;
    clearInterval(this.tick);
    await Promise.all(this.tracking.values());
    const writes: Promise<void>[] = [...this.marking];
    for (const b of this.bundles.values()) {
      this.unwatch(b);
      clearTimeout(b.flushTimer);
      clearTimeout(b.persistTimer);
      writes.push(this.persist(b));
    }
    for (const path of [...this.openFiles.keys()]) this.closeFile(path);
    await Promise.all(writes);
  }

  // ---- Loading ------------------------------------------------------------

  private async load(input: TrackedBundle): Promise<void> {
    const manifest = await readManifest(input.dir);
    if (manifest?.logsShipped) return;
    const attemptId = input.attemptId ?? manifest?.attemptId ?? basename(input.dir);
    if (this.bundles.has(attemptId)) return;
    const patterns = secretPatterns([...(input.secrets ?? [])]);
    const shortest = patterns.length === 0 ? Infinity : Math.min(...patterns.map((p) => p.length));
    const b: Bundle = {
      attemptId,
      dir: input.dir,
      patterns,
      // Each secret of n ≥ 3 bytes becomes 10: read little enough that the redacted frame still fits.
      readBytes: shortest >= REDACTED_LENGTH ? this.o.maxFrameBytes : Math.max(1, Math.floor((this.o.maxFrameBytes * shortest) / REDACTED_LENGTH)),
      closed: manifest?.closed === true,
      maxSeen: -1,
      lastIndex: 0,
      streams: [],
      lastLookMs: this.o.now(),
      persistDirty: false,
      persisting: Promise.resolve(),
      gone: false,
    };
    for (const name of await readdir(input.dir).catch(() => [] as string[])) this.noteFile(b, name);
    if (b.closed) b.lastIndex = Math.max((manifest?.commands.length ?? 1) - 1, b.maxSeen, 0);
    const saved = await readAcks(input.dir);
    const now = this.o.now();
    for (const kind of KINDS) {
      const s: StreamState = {
        bundle: b,
        kind,
        stream: STREAM_OF[kind],
        segments: [],
        frozenEnd: 0,
        openIndex: 0,
        openSize: 0,
        acked: 0,
        sent: 0,
        finalSent: false,
        complete: saved?.streams[kind]?.complete === true,
        refused: saved?.streams[kind]?.refused ?? "",
        dirty: false,
        changes: 0,
        epoch: 0,
        caughtUp: false,
        progressAt: now,
        timeoutMs: this.o.ackTimeoutMs,
      };
      // Files known final get their lengths now, so a resume from a saved offset finds its file.
      const lastFinal = kind === "system" ? (b.closed ? 0 : -1) : b.closed ? b.lastIndex : b.maxSeen - 1;
      for (let index = 0; index <= lastFinal; index++) this.freeze(s, await fileSize(join(b.dir, fileOf(kind, index))));
      if (!b.closed) s.openSize = await fileSize(join(b.dir, fileOf(kind, s.openIndex)));
      const acked = saved?.streams[kind]?.acked ?? 0;
      if (Number.isSafeInteger(acked) && acked > 0) {
        s.acked = acked;
        s.sent = acked;
      }
      b.streams.push(s);
    }
    if (this.stopped) return;
    this.bundles.set(attemptId, b);
    if (!b.closed) this.watchBundle(b);
    for (const s of b.streams) if (!s.complete && !s.refused) this.touch(s);
    this.log.debug({ attemptId, dir: b.dir, closed: b.closed, redacting: patterns.length }, "shipping a bundle's logs");
    if (b.streams.every((s) => s.complete || s.refused)) await this.shipped(b);
    else this.schedulePump();
  }

  private noteFile(b: Bundle, name: string): void {
    const m = COMMAND_FILE.exec(name);
    if (m) b.maxSeen = Math.max(b.maxSeen, Number(m[1]));
  }

  // ---- Watching -----------------------------------------------------------

  private watchBundle(b: Bundle): void {
    if (!this.o.watch || b.watcher || b.closed) return;
    try {
      b.watcher = watch(b.dir, { persistent: false }, (_event, filename) => this.changed(b, filename === null ? undefined : String(filename)));
      b.watcher.on("error", (err) => {
        this.log.debug({ err, dir: b.dir }, "bundle watch failed; polling it");
        this.unwatch(b);
      });
    } catch (err) {
      this.log.debug({ err, dir: b.dir }, "cannot watch the bundle; polling it");
      b.watcher = undefined;
    }
  }

  private unwatch(b: Bundle): void {
    b.watcher?.close();
    b.watcher = undefined;
  }

  private changed(b: Bundle, name: string | undefined): void {
    if (name === MANIFEST) {
      // Rewritten as commands end, and once more when the bundle closes.
      void this.lookAtManifest(b);
      return;
    }
    if (name !== undefined && (name.startsWith(".") || name === LOG_ACKS)) return;
    const m = name === undefined ? null : COMMAND_FILE.exec(name);
    const before = b.maxSeen;
    if (m) this.noteFile(b, name!);
    // A later command's file makes the earlier files of both streams final.
    const newCommand = b.maxSeen > before;
    let touched = false;
    for (const s of b.streams) {
      const mine = s.kind === "system" ? name === SYSTEM_LOG : (m !== null && m[2] === s.kind) || newCommand;
      if (name === undefined || mine) {
        this.touch(s);
        touched = true;
      }
    }
    if (touched && !b.flushTimer) {
      b.flushTimer = setTimeout(() => {
        b.flushTimer = undefined;
        this.schedulePump();
      }, this.o.flushDelayMs);
    }
  }

  private touch(s: StreamState): void {
    this.setDirty(s, true);
    s.changes += 1;
  }

  private setDirty(s: StreamState, dirty: boolean): void {
    s.dirty = dirty;
    if (dirty) this.dirty.add(s);
    else this.dirty.delete(s);
  }

  /** The poll: bundles without a watch every pollIntervalMs, the others every sweepIntervalMs; and the ack timeouts. */
  private onTick(): void {
    const now = this.o.now();
    for (const [path, f] of this.openFiles) if (now - f.usedMs >= OPEN_FILE_IDLE_MS) this.closeFile(path);
    for (const b of this.bundles.values()) {
      if (!b.closed && now - b.lastLookMs >= (b.watcher ? this.o.sweepIntervalMs : this.o.pollIntervalMs)) {
        b.lastLookMs = now;
        void this.look(b);
      }
      if (!this.link) continue;
      for (const s of b.streams) {
        const waiting = s.sent > s.acked || (s.finalSent && !s.complete);
        if (!waiting || s.complete || s.refused || now - s.progressAt < s.timeoutMs) continue;
        this.log.info({ attemptId: b.attemptId, stream: s.kind, acked: s.acked, sent: s.sent, waitedMs: now - s.progressAt }, "no LogAck progress; sending the stream again from the last acknowledged offset");
        this.rewind(s, now, false);
        s.timeoutMs = Math.min(s.timeoutMs * 2, this.o.maxAckTimeoutMs);
        this.schedulePump();
      }
    }
  }

  private async look(b: Bundle): Promise<void> {
    try {
      for (const name of await readdir(b.dir)) this.noteFile(b, name);
    } catch (err) {
      if (isGone(err)) return this.gone(b);
      throw err;
    }
    this.watchBundle(b);
    // A stat per stream rather than a read: only a file with unsent bytes (or a later command's file) is worth reading.
    for (const s of b.streams) {
      const later = s.kind !== "system" && b.maxSeen > s.openIndex;
      const size = later ? 0 : await fileSize(join(b.dir, fileOf(s.kind, s.openIndex)));
      if (later || size > Math.max(0, s.sent - s.frozenEnd)) this.touch(s);
    }
    await this.lookAtManifest(b);
    this.schedulePump();
  }

  private async lookAtManifest(b: Bundle): Promise<void> {
    if (b.closed) return;
    const manifest = await readManifest(b.dir);
    if (!manifest?.closed || b.closed) return;
    for (const name of await readdir(b.dir).catch(() => [] as string[])) this.noteFile(b, name);
    b.closed = true;
    b.lastIndex = Math.max(manifest.commands.length - 1, b.maxSeen, 0);
    this.unwatch(b);
    for (const s of b.streams) this.touch(s);
    this.persistSoon(b);
    if (b.streams.every((s) => s.complete || s.refused)) void this.shipped(b);
    else this.schedulePump();
  }

  private gone(b: Bundle): void {
    if (b.gone) return;
    b.gone = true;
    this.log.warn({ attemptId: b.attemptId, dir: b.dir }, "the bundle went away before its logs were shipped");
    this.untrack(b);
  }

  private untrack(b: Bundle): void {
    this.closeFiles(b);
    this.unwatch(b);
    clearTimeout(b.flushTimer);
    for (const s of b.streams) {
      this.unacked -= Math.max(0, s.sent - s.acked);
      this.setDirty(s, false);
    }
    if (this.bundles.get(b.attemptId) === b) this.bundles.delete(b.attemptId);
  }

  // ---- Sending ------------------------------------------------------------

  private schedulePump(): void {
    if (this.pumpQueued || this.stopped) return;
    this.pumpQueued = true;
    setImmediate(() => {
      this.pumpQueued = false;
      void this.pump();
    });
  }

  private async pump(): Promise<void> {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        await this.pass();
      } while (this.pumpAgain && this.link && !this.stopped);
    } catch (err) {
      this.log.error({ err }, "shipping logs failed");
    } finally {
      this.pumping = false;
    }
  }

  /** Round-robin over the streams, one frame each per round, until nothing moves, the link is full or a window is. */
  private async pass(): Promise<void> {
    for (let progressed = true; progressed; ) {
      progressed = false;
      for (const s of [...this.dirty]) {
        const b = s.bundle;
        const link = this.link;
        if (!link || this.stopped || !link.ready() || this.unacked >= this.o.totalWindowBytes) return;
        if (b.gone || s.complete || s.refused) {
          this.setDirty(s, false);
          continue;
        }
        // Waits for an ack, which makes it dirty again.
        if (!s.dirty || s.sent - s.acked >= this.o.streamWindowBytes) continue;
        const { changes, epoch, sent } = s;
        let frame: LogFrameInit | undefined;
        try {
          frame = await this.next(b, s);
        } catch (err) {
          // Retention may have removed the bundle (it does, last, under the size cap).
          if (!(await exists(b.dir))) this.gone(b);
          else this.log.warn({ err, attemptId: b.attemptId, stream: s.kind }, "could not read a log file; trying again later");
          this.setDirty(s, false);
          continue;
        }
        if (s.epoch !== epoch || s.sent !== sent || this.link !== link || b.gone) continue; // rewound, or the session changed, meanwhile
        // A change seen during the read keeps the stream dirty.
        if (!frame) {
          if (s.changes === changes) this.setDirty(s, false);
          continue;
        }
        if (s.sent <= s.acked && !s.finalSent) s.progressAt = this.o.now();
        link.send(frame);
        if (s.caughtUp && s.changes === changes) this.setDirty(s, false);
        if (frame.final) s.finalSent = true;
        else this.setSent(s, Number(frame.offset) + (frame.sourceLength ? Number(frame.sourceLength) : frame.data!.length));
        progressed = true;
      }
    }
  }

  /** The stream's next frame from s.sent, or undefined when there is nothing to send now. */
  private async next(b: Bundle, s: StreamState): Promise<LogFrameInit | undefined> {
    s.caughtUp = false;
    for (;;) {
      const at = s.sent;
      if (at < s.frozenEnd) {
        const seg = s.segments.find((g) => at >= g.base && at < g.base + g.length)!;
        const data = await this.read(join(b.dir, fileOf(s.kind, seg.index)), at - seg.base, Math.min(b.readBytes, seg.base + seg.length - at), false);
        if (data.length === 0) throw Object.assign(new Error(`${fileOf(s.kind, seg.index)} is shorter than it was`), { code: "ESHRUNK" });
        return this.frame(b, s, seg.index, at, data, at + data.length === seg.base + seg.length);
      }
      if (this.streamEnded(b, s)) {
        if (s.finalSent) return undefined;
        return { attemptId: b.attemptId, commandIndex: s.kind === "system" ? 0 : b.lastIndex, stream: s.stream, offset: BigInt(s.frozenEnd), time: timestampFromDate(new Date(this.o.now())), final: true };
      }
      // Sampled before the read: a file known final then has all its bytes in it.
      const final = b.closed || (s.kind !== "system" && b.maxSeen > s.openIndex);
      const inFile = at - s.frozenEnd;
      const data = await this.read(join(b.dir, fileOf(s.kind, s.openIndex)), inFile, b.readBytes, true);
      s.openSize = Math.max(s.openSize, inFile + data.length);
      const endOfFile = final && data.length < b.readBytes;
      if (endOfFile && data.length === 0) {
        this.closeFile(join(b.dir, fileOf(s.kind, s.openIndex)));
        this.freeze(s, inFile);
        continue;
      }
      if (data.length === 0) return undefined;
      s.caughtUp = !final && data.length < b.readBytes;
      return this.frame(b, s, s.openIndex, at, data, endOfFile);
    }
  }

  private streamEnded(b: Bundle, s: StreamState): boolean {
    return b.closed && s.openIndex > (s.kind === "system" ? 0 : b.lastIndex);
  }

  /** Fixes the open file's length and moves on to the next file. */
  private freeze(s: StreamState, length: number): void {
    s.segments.push({ index: s.openIndex, base: s.frozenEnd, length });
    s.frozenEnd += length;
    s.openIndex += 1;
    s.openSize = 0;
  }

  /** A frame of data read at stream offset `at`, redacted; undefined when all of it is held back. */
  private frame(b: Bundle, s: StreamState, index: number, at: number, data: Buffer, endOfFile: boolean): LogFrameInit | undefined {
    let covered = data.length;
    let out: Uint8Array = data;
    if (b.patterns.length > 0) {
      covered = redactableLength(data, b.patterns, endOfFile ? data.length : data.length - heldBackLength(data, b.patterns));
      out = redact(data.subarray(0, covered), b.patterns);
    }
    if (covered === 0) return undefined;
    return {
      attemptId: b.attemptId,
      commandIndex: index,
      stream: s.stream,
      offset: BigInt(at),
      data: out,
      time: timestampFromDate(new Date(this.o.now())),
      sourceLength: out.length === covered ? 0n : BigInt(covered),
    };
  }

  /**
   * Up to length bytes of path from position, copied out of the scratch
   * buffer; empty when the file does not exist. The file stays open for the
   * next read (a stream reads its file front to back, after its attempt
   * ended too: an open and a close per frame cost the agent as much as the
   * reads) until it is read to its end, idle for OPEN_FILE_IDLE_MS, pushed
   * out by MAX_OPEN_FILES others, or its bundle is untracked. `fresh`: bytes
   * just written (the open file's tail), read synchronously (see the top of
   * this file).
   */
  private async read(path: string, position: number, length: number, fresh: boolean): Promise<Buffer> {
    let handle = this.openFiles.get(path)?.handle;
    if (handle) {
      this.openFiles.delete(path); // re-inserted last: the least recently read go first
      this.openFiles.set(path, { handle, usedMs: this.o.now() });
    } else {
      try {
        handle = await open(path, "r");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return Buffer.alloc(0);
        throw err;
      }
      if (this.openFiles.size >= MAX_OPEN_FILES) this.closeFile(this.openFiles.keys().next().value!);
      this.openFiles.set(path, { handle, usedMs: this.o.now() });
    }
    try {
      if (this.scratch.length < length) this.scratch = Buffer.allocUnsafe(length);
      const bytesRead = fresh ? readSync(handle.fd, this.scratch, 0, length, position) : (await handle.read(this.scratch, 0, length, position)).bytesRead;
      return Buffer.from(this.scratch.subarray(0, bytesRead));
    } finally {
      if (!this.openFiles.has(path)) await handle.close().catch(() => undefined);
    }
  }

  /** Closes a kept file (a pending read on it finishes first). */
  private closeFile(path: string): void {
    const f = this.openFiles.get(path);
    if (!f) return;
    this.openFiles.delete(path);
    void f.handle.close().catch(() => undefined);
  }

  private closeFiles(b: Bundle): void {
    for (const path of [...this.openFiles.keys()]) if (path.startsWith(b.dir + "/")) this.closeFile(path);
  }

  /** Sends the stream again from its last ack. */
  private rewind(s: StreamState, now: number, resetTimeout: boolean): void {
    if (s.complete || s.refused) return;
    this.setSent(s, s.acked);
    s.finalSent = false;
    s.epoch += 1;
    s.progressAt = now;
    if (resetTimeout) s.timeoutMs = this.o.ackTimeoutMs;
    this.touch(s);
  }

  private setSent(s: StreamState, sent: number): void {
    this.unacked += Math.max(0, sent - s.acked) - Math.max(0, s.sent - s.acked);
    s.sent = sent;
  }

  private setAcked(s: StreamState, acked: number): void {
    this.unacked += Math.max(0, s.sent - acked) - Math.max(0, s.sent - s.acked);
    s.acked = acked;
  }

  // ---- Settling and persistence -------------------------------------------

  /** The stream is complete or refused: nothing more to send; the bundle may be shipped. */
  private settle(b: Bundle, s: StreamState, offset?: number): void {
    if (offset !== undefined && offset > s.acked) this.setAcked(s, offset);
    this.setSent(s, s.acked);
    this.setDirty(s, false);
    this.persistSoon(b, true);
    if (b.streams.every((x) => x.complete || x.refused)) {
      // stop() waits for it: it writes into the bundle after the bundle is untracked.
      const marking: Promise<void> = this.shipped(b).finally(() => this.marking.delete(marking));
      this.marking.add(marking);
    } else this.schedulePump();
  }

  /** Every stream is complete (or refused) and the bundle is closed: marks the manifest and forgets the bundle. */
  private async shipped(b: Bundle): Promise<void> {
    if (!b.closed) await this.lookAtManifest(b);
    if (!b.closed || b.gone) return;
    this.untrack(b);
    clearTimeout(b.persistTimer);
    b.persistDirty = true;
    try {
      await this.persist(b);
      const manifest = await readManifest(b.dir);
      if (manifest && !manifest.logsShipped) await markLogsShipped(b.dir, manifest);
      const refused = b.streams.filter((s) => s.refused).map((s) => s.kind);
      this.log.info({ attemptId: b.attemptId, ...(refused.length ? { refused } : {}) }, "the attempt's logs are shipped");
    } catch (err) {
      this.log.warn({ err, attemptId: b.attemptId }, "could not mark the bundle's logs shipped");
    }
  }

  private persistSoon(b: Bundle, now = false): void {
    b.persistDirty = true;
    if (now) {
      clearTimeout(b.persistTimer);
      b.persistTimer = undefined;
      void this.persist(b);
      return;
    }
    if (b.persistTimer) return;
    b.persistTimer = setTimeout(() => {
      b.persistTimer = undefined;
      void this.persist(b);
    }, this.o.persistDelayMs);
    b.persistTimer.unref();
  }

  /**
   * Writes log-acks.json (a temporary file, then rename), one write at a
   * time per bundle. In a closed bundle the file is made read-only like the
   * rest, and replaced the same way markReported replaces the manifest: the
   * directory stays writable.
   */
  private persist(b: Bundle): Promise<void> {
    b.persisting = b.persisting.then(async () => {
      if (!b.persistDirty || b.gone) return;
      b.persistDirty = false;
      const file: AckFile = { version: 1, streams: {} };
      for (const s of b.streams) file.streams[s.kind] = { acked: s.acked, ...(s.complete ? { complete: true } : {}), ...(s.refused ? { refused: s.refused } : {}) };
      const tmp = join(b.dir, `.${LOG_ACKS}.${process.pid}.tmp`);
      try {
        await writeFile(tmp, JSON.stringify(file) + "\n", { mode: 0o644 });
        await rename(tmp, join(b.dir, LOG_ACKS));
        if (b.closed) await chmod(join(b.dir, LOG_ACKS), 0o444).catch(() => undefined);
      } catch (err) {
        if (isGone(err)) return;
        this.log.warn({ err, dir: b.dir }, "could not save the acknowledged log offsets");
      }
    });
    return b.persisting;
  }
}

/** The file of a stream's index-th command (system.log for the system stream). */
function fileOf(kind: Kind, index: number): string {
  return kind === "system" ? SYSTEM_LOG : logFileName(index, kind);
}

/**
 * How many bytes of data can be redacted and sent now: `limit`, extended to
 * the end of a secret that starts before it (redact() replaces matches
 * greedily from the left, and one that crosses the limit must go whole).
 */
function redactableLength(data: Uint8Array, patterns: readonly Uint8Array[], limit: number): number {
  for (let i = 0; i < limit; ) {
    const hit = patterns.find((p) => startsWith(data, i, p));
    if (hit) {
      i += hit.length;
      if (i >= limit) return i;
    } else i++;
  }
  return limit;
}

function startsWith(data: Uint8Array, at: number, p: Uint8Array): boolean {
  if (at + p.length > data.length) return false;
  for (let k = 0; k < p.length; k++) if (data[at + k] !== p[k]) return false;
  return true;
}

async function readAcks(dir: string): Promise<AckFile | undefined> {
  try {
    const file = JSON.parse(await readFile(join(dir, LOG_ACKS), "utf8")) as AckFile;
    return file?.version === 1 && typeof file.streams === "object" ? file : undefined;
  } catch {
    return undefined;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await readdir(path);
    return true;
  } catch {
    return false;
  }
}

function isGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENOTDIR";
}
