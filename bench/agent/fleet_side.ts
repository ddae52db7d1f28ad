// Fleet's side of one drover-agent stream for the agent benchmark: sends
// Assignments and Cancels on a FakeFleet stream, confirms every JobEvent at
// once with an EventAck (as Fleet does once it has recorded it, so the
// agent's outbox stays empty), and wakes whoever waits for an attempt's
// state the moment its event arrives.
//
// FakeStream keeps what it receives in an array that its own helpers poll
// every 5 ms; that would add up to 5 ms to every measurement and keep this
// process waking up, so the session wraps the stream's receive() instead.

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampMs } from "@bufbuild/protobuf/wkt";

import { ExecSpecSchema, type ExecSpec } from "../../gen/ts/drover/common/v1/exec_pb.ts";
import { AttemptState, type ConnectRequest } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import type { FakeStream } from "../../agent/testing/fake_fleet.ts";

/** Wall-clock time in ms with sub-millisecond precision (comparable to the agent's Date-based JobEvent.time). */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

/** A JobEvent as it arrived here. */
export interface SeenEvent {
  state: AttemptState;
  /** performance.now() in this process when it arrived. */
  arrivedAt: number;
  /** JobEvent.time: the agent's wall clock, ms (Date resolution). */
  agentTimeMs: number;
  message: string;
}

/** The final states of an attempt. */
export const FINAL: ReadonlySet<AttemptState> = new Set([AttemptState.SUCCEEDED, AttemptState.FAILED, AttemptState.CANCELLED, AttemptState.TIMED_OUT]);

/** One agent's stream, driven from the benchmark. */
export class AgentSession {
  /** Events per attempt id, in arrival order. */
  readonly events = new Map<string, SeenEvent[]>();
  private readonly waiters = new Map<string, Set<() => void>>();
  private nextMessageId = 0;

  constructor(private readonly stream: FakeStream) {
    const receive = stream.receive.bind(stream);
    stream.receive = (request: ConnectRequest) => {
      receive(request);
      this.onRequest(request);
    };
  }

  /**
   * Sends an Assignment; returns when it was handed to the stream (performance.now() and wall ms, taken just before: the message is
   * serialised and written to the HTTP/2 stream right after, so intervals
   * from here are upper bounds).
   */
  assign(attemptId: string, jobId: string, exec: MessageInitShape<typeof ExecSpecSchema>): { sentAt: number; sentWallMs: number } {
    const spec: ExecSpec = create(ExecSpecSchema, exec);
    const sentWallMs = wallMs();
    const sentAt = performance.now();
    this.stream.send({ messageId: this.messageId(), message: { case: "assignment", value: { attemptId, jobId, driver: "process", exec: spec } } });
    return { sentAt, sentWallMs };
  }

  /** Sends a Cancel with a grace period. */
  cancel(attemptId: string, graceMs: number, reason: string): void {
    this.stream.send({ messageId: this.messageId(), message: { case: "cancel", value: { attemptId, gracePeriod: durationFromMs(graceMs), reason } } });
  }

  /** The attempt's event in one of `states`, waiting for it up to ms; rejects naming the attempt. */
  waitFor(attemptId: string, states: ReadonlySet<AttemptState>, ms: number): Promise<SeenEvent> {
    return new Promise((resolve, reject) => {
      const find = () => this.events.get(attemptId)?.find((e) => states.has(e.state));
      const found = find();
      if (found) return resolve(found);
      const set = this.waiters.get(attemptId) ?? new Set();
      this.waiters.set(attemptId, set);
      const timer = setTimeout(() => {
        set.delete(check);
        const seen = (this.events.get(attemptId) ?? []).map((e) => AttemptState[e.state]).join(", ") || "none";
        reject(new Error(`attempt ${attemptId}: no ${[...states].map((s) => AttemptState[s]).join("/")} event within ${ms} ms (events: ${seen})`));
      }, ms);
      const check = () => {
        const event = find();
        if (!event) return;
        clearTimeout(timer);
        set.delete(check);
        resolve(event);
      };
      set.add(check);
    });
  }

  private onRequest(request: ConnectRequest): void {
    if (request.message.case !== "jobEvent") return;
    const event = request.message.value;
    const seen: SeenEvent = {
      state: event.state,
      arrivedAt: performance.now(),
      agentTimeMs: event.time ? timestampMs(event.time) : NaN,
      message: event.message,
    };
    const list = this.events.get(event.attemptId) ?? [];
    list.push(seen);
    this.events.set(event.attemptId, list);
    this.stream.eventAck([event.eventId]);
    for (const wake of [...(this.waiters.get(event.attemptId) ?? [])]) wake();
  }

  private messageId(): string {
    this.nextMessageId += 1;
    return `bench-${this.nextMessageId}`;
  }
}
