// Fleet's log sink: the log frames agents send go to the Log service
// (IngestLogs), and the LogAcks it answers go back to the agents.
//
//   hub.read ── logFrame ──▶ the agent's queue     (returns at once; bounded)
//                                 │ one IngestLogs of this agent at a time,
//                                 │ up to 4096 frames / 8 MiB, a few ms after
//                                 │ the first frame; `concurrency` calls in
//                                 ▼ flight for all agents together
//                        LogService.IngestLogs ── LogAcks ──▶ hub.reply ──▶ the agent's stream
//
// Order. The Log service stores a frame only if it starts where the stream's
// stored bytes end (a frame past a gap stores nothing). An agent's streams
// are spread over a few lanes by (attempt, stream); frames of a lane are
// sent in the order they were read, one batch in flight per lane, so frames
// of one (attempt, stream) arrive in order while an agent's other streams
// travel beside them (one call at a time per agent left the pipeline waiting
// on each call). IngestLogsRequest names one agent, so a call carries one
// lane's frames; under load each call carries what gathered while the
// previous one was in flight.
//
// Never waiting. The hub awaits logFrame before reading the agent's next
// message, so logFrame never waits on the Log service: a slow or absent Log
// service must not make heartbeats late. Past the memory bound, or when
// IngestLogs keeps failing, frames are dropped. Nothing is lost by that: the
// agent keeps its output on disk and resends what was not acknowledged
// (after a reconnect, or when acks stop making progress). After a drop, the
// frames of that stream that follow would only be refused as past a gap, so
// they are dropped here too until the agent goes back to resend.
//
// Connect. Hello.log_offsets lists the streams the agent holds; for each,
// an empty frame asks the Log service how far it is stored, and the answer
// goes to the agent as a LogAck, so it resends from there.

import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ConnectResponseSchema, LogFrameSchema, type Hello, type LogAck, type LogFrame } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import type { DroverClients } from "../../lib/clients.ts";
import type { Logger } from "../../lib/logger.ts";
import { sleep } from "../../lib/timers.ts";
import type { AgentMessageSink, AgentReplies } from "./sink.ts";

/** How the sink batches and bounds; the defaults suit a real fleet, tests shrink them. */
export interface LogSinkOptions {
  /** Most frames in one IngestLogs call (the proto's limit is 4096). */
  maxFrames: number;
  /** Most bytes of frame data in one call, give or take one frame. */
  maxBatchBytes: number;
  /** How long the first frame of a batch waits for company, ms, from its arrival (one that came during the lane's previous call may go when that call is answered). */
  delayMs: number;
  /** Most bytes one agent may have queued or in flight; past it its frames are dropped. */
  maxQueuedBytesPerAgent: number;
  /** Most bytes all agents together may have queued or in flight. */
  maxQueuedBytes: number;
  /** IngestLogs calls in flight at once, all agents together. */
  concurrency: number;
  /** Lanes per agent: its streams are spread over them by (attempt, stream), one call in flight per lane. */
  lanesPerAgent: number;
  /** Pauses before each retry of a transient failure, ms; after the last, the batch is dropped. */
  retryDelaysMs: readonly number[];
  /** Deadline of one IngestLogs call, ms. */
  callTimeoutMs: number;
}

// delayMs and lanesPerAgent: each IngestLogs call costs Fleet and the Log
// service CPU besides its bytes (Connect's call machinery and GC, eight
// statements; about 1 ms, from the CPU that halving the calls saved). With 10 streams printing every 10 ms, 5 ms and 4 lanes
// made ~100 calls a second and kept the machine ~90 % busy; 10 ms and 2
// lanes halved the calls, and follow latency with them (bench/logs: p50
// 60-106 → 44-51 ms, p99 283-379 → 198-226 ms), while ingestion stayed at
// ~50 MiB/s. One lane did as well, but one slow stream would hold up all of
// an agent's others.
export function defaultLogSinkOptions(): LogSinkOptions {
  return {
    maxFrames: 4096,
    maxBatchBytes: 8 << 20,
    delayMs: 10,
    maxQueuedBytesPerAgent: 16 << 20,
    maxQueuedBytes: 512 << 20,
    concurrency: 16,
    lanesPerAgent: 2,
    retryDelaysMs: [100, 500, 2000],
    callTimeoutMs: 30_000,
  };
}

/** What the sink did, for tests and load logs. */
export interface LogSinkStats {
  /** Frames waiting or in flight. */
  queuedFrames: number;
  /** Their bytes (as counted against the bounds). */
  queuedBytes: number;
  /** IngestLogs calls in flight. */
  calls: number;
  /** Frames IngestLogs answered. */
  forwarded: number;
  /** Frames dropped: over a bound, after a failed call, or after a gap. */
  dropped: number;
  /** LogAcks queued on an agent's stream. */
  acksSent: number;
  /** LogAcks for agents whose stream this replica no longer holds. */
  acksDropped: number;
}

// Refusals remembered per agent, so a runaway list cannot grow without end.
const MAX_REFUSED_PER_AGENT = 1024;
// At most one warning per kind of drop this often; the others are counted into it.
const WARN_EVERY_MS = 10_000;

type IngestClient = Pick<DroverClients["log"], "ingestLogs">;

/** Frames of some of one agent's streams (a lane) on their way to the Log service. */
interface AgentQueue {
  agentId: string;
  lane: number;
  frames: LogFrame[];
  /** Bytes of `frames` and of the batch in flight. */
  bytes: number;
  /** A batch of it is in flight or waiting for a call slot: nothing else of it may go. */
  busy: boolean;
  timer: NodeJS.Timeout | undefined;
  /** When the oldest frame waiting came (performance.now()); its batch goes delayMs after. */
  firstAt: number;
  /** Per stream (streamKey): offset of the first frame dropped; later frames are dropped until the agent resends from at most there. */
  gaps: Map<string, bigint>;
  /** Streams the Log service refused for good: their frames are dropped here. */
  refused: Set<string>;
}

/** Forwards agents' log frames to the Log service in order and their LogAcks back; promises never to make an agent's stream wait on it. */
export class LogSink implements AgentMessageSink {
  private readonly options: LogSinkOptions;
  private readonly queues = new Map<string, AgentQueue>();
  // Bytes queued or in flight per agent, all its lanes together (the per-agent bound).
  private readonly agentBytes = new Map<string, number>();
  // Agents with a batch ready, waiting for a call slot, in turn.
  private readonly ready: AgentQueue[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private agents: AgentReplies | undefined;
  private closed = false;
  private readonly closing = new AbortController();
  private readonly counts = { queuedFrames: 0, queuedBytes: 0, forwarded: 0, dropped: 0, acksSent: 0, acksDropped: 0 };
  private readonly warnings = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly log: IngestClient,
    private readonly logger: Logger,
    options: Partial<LogSinkOptions> = {},
  ) {
    this.options = { ...defaultLogSinkOptions(), ...options };
  }

  bind(agents: AgentReplies): void {
    this.agents = agents;
  }

  stats(): LogSinkStats {
    return { ...this.counts, calls: this.inFlight.size };
  }

  connected(agentId: string, hello: Hello): void {
    // A new stream: the agent resends from its last acknowledged offsets, and
    // streams refused before may be worth asking about again.
    for (let lane = 0; lane < this.options.lanesPerAgent; lane++) {
      const queue = this.queues.get(queueKey(agentId, lane));
      queue?.gaps.clear();
      queue?.refused.clear();
    }
    const touched = new Set<AgentQueue>();
    for (const held of hello.logOffsets) {
      if (held.attemptId === "" || held.stream === 0) continue; // IngestLogs would reject the whole call
      const queue = this.queueOf(agentId, this.laneOf(held));
      // Not counted against the bounds: a few bytes each, once per connect.
      if (queue.frames.length === 0) queue.firstAt = performance.now();
      queue.frames.push(create(LogFrameSchema, { attemptId: held.attemptId, stream: held.stream, offset: 0n }));
      this.counts.queuedFrames++;
      touched.add(queue);
    }
    for (const queue of touched) this.schedule(queue);
  }

  jobEvent(): void {
    // Not the Log service's: SchedulerSink takes them (WorkSink in sink.ts puts the two together).
  }

  logFrame(agentId: string, frame: LogFrame): void {
    if (this.closed) return;
    const queue = this.queueOf(agentId, this.laneOf(frame));
    if (!this.admit(queue, frame)) return;
    const size = sizeOf(frame);
    const agentBytes = this.agentBytes.get(agentId) ?? 0;
    if (agentBytes + size > this.options.maxQueuedBytesPerAgent || this.counts.queuedBytes + size > this.options.maxQueuedBytes) {
      this.dropFrames(queue, [frame], "memory", "dropped log frames: too many bytes waiting for the Log service; the agent resends them");
      return;
    }
    if (queue.frames.length === 0) queue.firstAt = performance.now();
    queue.frames.push(frame);
    queue.bytes += size;
    this.agentBytes.set(agentId, agentBytes + size);
    this.counts.queuedBytes += size;
    this.counts.queuedFrames++;
    this.schedule(queue);
  }

  /** Drops what waits, stops retrying and waits for the calls in flight. Frames that come later are dropped. */
  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort();
    for (const queue of this.queues.values()) {
      clearTimeout(queue.timer);
      queue.timer = undefined;
      this.release(queue, queue.frames);
      queue.frames = [];
    }
    this.ready.length = 0;
    await Promise.allSettled([...this.inFlight]);
  }

  // ---- Queues -------------------------------------------------------------

  private queueOf(agentId: string, lane: number): AgentQueue {
    const key = queueKey(agentId, lane);
    let queue = this.queues.get(key);
    if (!queue) {
      queue = { agentId, lane, frames: [], bytes: 0, busy: false, timer: undefined, firstAt: 0, gaps: new Map(), refused: new Set() };
      this.queues.set(key, queue);
    }
    return queue;
  }

  /** The lane of a stream: a hash of (attempt, stream), the same for every frame of it. */
  private laneOf(s: { attemptId: string; stream: number }): number {
    const key = streamKey(s);
    let h = 2166136261;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619);
    return (h >>> 0) % this.options.lanesPerAgent;
  }

  /**
   * Whether a frame is worth sending: not of a refused stream, and not past
   * a gap this sink made. A frame at or before the gap is the agent going
   * back to resend: the stream is whole again from there.
   */
  private admit(queue: AgentQueue, frame: LogFrame): boolean {
    if (isQuery(frame)) return true;
    const key = streamKey(frame);
    if (queue.refused.has(key)) {
      this.dropFrames(queue, [frame], "refused", "dropped log frames of a stream the Log service refused");
      return false;
    }
    const gap = queue.gaps.get(key);
    if (gap === undefined) return true;
    if (frame.offset > gap) {
      // Counted, not warned about: the drop that made the gap was.
      this.counts.dropped++;
      return false;
    }
    queue.gaps.delete(key);
    return true;
  }

  private schedule(queue: AgentQueue): void {
    if (queue.busy || queue.frames.length === 0 || this.closed) {
      this.forgetIfIdle(queue);
      return;
    }
    if (queue.frames.length >= this.options.maxFrames || queue.bytes >= this.options.maxBatchBytes) {
      clearTimeout(queue.timer);
      queue.timer = undefined;
      this.markReady(queue);
      return;
    }
    if (queue.timer) return;
    // Frames that came while the previous batch was in flight have waited
    // for company already: they go at once, not delayMs after it.
    const wait = queue.firstAt + this.options.delayMs - performance.now();
    if (wait <= 0) {
      this.markReady(queue);
      return;
    }
    queue.timer = setTimeout(() => {
      queue.timer = undefined;
      if (!queue.busy && queue.frames.length > 0 && !this.closed) this.markReady(queue);
    }, wait);
    queue.timer.unref();
  }

  private markReady(queue: AgentQueue): void {
    queue.busy = true;
    this.ready.push(queue);
    this.pump();
  }

  private pump(): void {
    while (this.inFlight.size < this.options.concurrency && this.ready.length > 0) {
      const queue = this.ready.shift()!;
      const call: Promise<void> = this.send(queue).finally(() => {
        this.inFlight.delete(call);
        queue.busy = false;
        this.schedule(queue);
        this.pump();
      });
      this.inFlight.add(call);
    }
  }

  private forgetIfIdle(queue: AgentQueue): void {
    if (queue.busy || queue.timer || queue.frames.length > 0 || queue.gaps.size > 0 || queue.refused.size > 0) return;
    const key = queueKey(queue.agentId, queue.lane);
    if (this.queues.get(key) === queue) this.queues.delete(key);
  }

  /** Takes the next batch off the queue: whole frames, in order, up to the limits (at least one). */
  private take(queue: AgentQueue): LogFrame[] {
    const batch: LogFrame[] = [];
    let bytes = 0;
    let i = 0;
    for (; i < queue.frames.length && batch.length < this.options.maxFrames; i++) {
      const frame = queue.frames[i]!;
      if (batch.length > 0 && bytes + frame.data.length > this.options.maxBatchBytes) break;
      // A drop after the frame was queued may have made a gap before it.
      if (!this.admit(queue, frame)) {
        this.release(queue, [frame]);
        continue;
      }
      batch.push(frame);
      bytes += frame.data.length;
    }
    queue.frames = queue.frames.slice(i);
    return batch;
  }

  private release(queue: AgentQueue, frames: readonly LogFrame[]): void {
    for (const frame of frames) {
      this.counts.queuedFrames--;
      if (isQuery(frame)) continue;
      const size = sizeOf(frame);
      queue.bytes -= size;
      this.counts.queuedBytes -= size;
      const left = (this.agentBytes.get(queue.agentId) ?? 0) - size;
      if (left > 0) this.agentBytes.set(queue.agentId, left);
      else this.agentBytes.delete(queue.agentId);
    }
  }

  // ---- Calls ----------------------------------------------------------------

  /** Sends one batch of the agent's, retrying transient failures a little, and hands the acks back. Never throws. */
  private async send(queue: AgentQueue): Promise<void> {
    const batch = this.take(queue);
    if (batch.length === 0) return;
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          const res = await this.log.ingestLogs({ agentId: queue.agentId, frames: batch }, { timeoutMs: this.options.callTimeoutMs, signal: this.closing.signal });
          this.counts.forwarded += batch.length;
          this.acknowledge(queue, res.acks);
          return;
        } catch (err) {
          const error = ConnectError.from(err);
          const delay = this.options.retryDelaysMs[attempt];
          if (delay !== undefined && isTransient(error.code) && !this.closed) {
            // Jittered, so agents that failed together do not retry together.
            await sleep(delay * (0.75 + Math.random() * 0.5), this.closing.signal);
            continue;
          }
          this.dropFrames(queue, batch, `call:${Code[error.code]}`, "dropped log frames: the Log service did not take them; the agent resends them", error);
          return;
        }
      }
    } finally {
      this.release(queue, batch);
    }
  }

  private acknowledge(queue: AgentQueue, acks: readonly LogAck[]): void {
    for (const ack of acks) {
      if (ack.refused !== "") {
        if (queue.refused.size >= MAX_REFUSED_PER_AGENT) queue.refused.clear();
        queue.refused.add(streamKey(ack));
        this.logger.info({ agentId: queue.agentId, attemptId: ack.attemptId, stream: ack.stream, reason: ack.refused }, "the Log service refused a log stream");
      }
      const message = create(ConnectResponseSchema, { message: { case: "logAck", value: ack } });
      if (this.agents?.reply(queue.agentId, message)) this.counts.acksSent++;
      else this.counts.acksDropped++;
    }
  }

  /** Drops frames, remembering a gap in each stream they were of, and warns (at most every WARN_EVERY_MS per kind). */
  private dropFrames(queue: AgentQueue, frames: readonly LogFrame[], kind: string, message: string, err?: ConnectError): void {
    let bytes = 0;
    for (const frame of frames) {
      if (isQuery(frame)) continue;
      this.counts.dropped++;
      bytes += frame.data.length;
      const key = streamKey(frame);
      if (!queue.gaps.has(key)) queue.gaps.set(key, frame.offset);
    }
    const now = Date.now();
    const warned = this.warnings.get(kind);
    if (warned && now - warned.at < WARN_EVERY_MS) {
      warned.suppressed += frames.length;
      return;
    }
    this.warnings.set(kind, { at: now, suppressed: 0 });
    this.logger.warn(
      { agentId: queue.agentId, frames: frames.length, bytes, alsoDroppedSinceLastWarning: warned?.suppressed ?? 0, err: err ? `${Code[err.code]}: ${err.rawMessage}` : undefined },
      message,
    );
  }
}

/** An empty, non-final frame: it asks how far its stream is stored. */
function isQuery(frame: LogFrame): boolean {
  return frame.data.length === 0 && !frame.final;
}

/**
 * What a frame counts against the bounds: its data. The agent keeps its
 * unacknowledged bytes (data) under 12 MiB, below the per-agent bound, so a
 * healthy agent is never dropped for memory; the message around the data is
 * small next to the frames agents send (lines gathered for a few ms).
 */
function sizeOf(frame: LogFrame): number {
  return frame.data.length;
}

function queueKey(agentId: string, lane: number): string {
  return `${agentId}\u0000${lane}`;
}

function streamKey(s: { attemptId: string; stream: number }): string {
  return `${s.attemptId}\u0000${s.stream}`;
}

/** Failures worth a retry: the Log service (or its database) is away or busy for a moment. */
function isTransient(code: Code): boolean {
  return (
    code === Code.Unavailable ||
    code === Code.DeadlineExceeded ||
    code === Code.ResourceExhausted ||
    code === Code.Aborted ||
    code === Code.Internal ||
    code === Code.Unknown
  );
}
