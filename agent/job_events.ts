// The JobEvents the agent has reported and Fleet has not yet confirmed.
//
// An attempt's change of state must reach Fleet even if the stream breaks
// right after it was written: Fleet confirms the events it has recorded with
// EventAck, and until then the agent keeps each event and sends it again,
// in the order it happened, after every Welcome. Event ids are deterministic
// (`<attemptId>:<STATE>`, `<attemptId>:cmd-NNN` for a command's end,
// `<attemptId>:health-<n>` for a service replica's n-th health report), so
// an event sent twice is recorded once.
//
// JobHandler adds events; AgentWorker sends them (at once when a session is
// up, otherwise after the next Welcome) and removes them on EventAck.

import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";

import { AttemptState, JobEventSchema, type JobEvent } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { CommandResultSchema, type CommandResult } from "../gen/ts/drover/common/v1/exec_pb.ts";
import { HealthStatusSchema, type HealthStatus } from "../gen/ts/drover/common/v1/service_pb.ts";
import type { CommandRecord } from "./bundle.ts";
import type { HealthReport } from "./service_supervisor.ts";

/** JobEvent.message holds at most this many characters (the proto's rule). */
const MAX_MESSAGE_CHARS = 4_096;
/**
 * Unconfirmed events kept at most; beyond it the oldest are dropped. A Fleet
 * that never confirms (one older than EventAck) must not grow the agent
 * without bound; 10 000 is days of attempts on a busy machine.
 */
export const MAX_PENDING_EVENTS = 10_000;

/** The id of the event for an attempt reaching a state; the same every time, so resends are idempotent. */
export function jobEventId(attemptId: string, state: AttemptState, commandIndex?: number, healthNumber?: number): string {
  // A service replica's health reports are numbered 1, 2, 3... per attempt (the number survives agent restarts).
  if (healthNumber !== undefined) return `${attemptId}:health-${healthNumber}`;
  // A command's end while the attempt runs on is an event of its own; the final event is named by the state.
  if (state === AttemptState.RUNNING && commandIndex !== undefined) return `${attemptId}:cmd-${String(commandIndex).padStart(3, "0")}`;
  return `${attemptId}:${AttemptState[state] ?? String(state)}`;
}

/** What an attempt's change of state says. */
export interface JobEventFields {
  attemptId: string;
  state: AttemptState;
  exitCode?: number;
  signal?: string;
  message?: string;
  time?: Date;
  /** 1, 2, 3... per attempt. */
  sequence?: number;
  /** How a command ended, when the event says so. */
  command?: CommandRecord;
  /** A service replica's health, with the report's number n (1, 2, 3... per attempt): the event is `<attemptId>:health-<n>`. */
  health?: NumberedHealth;
}

/** A health report and its number among the attempt's health reports. */
export interface NumberedHealth extends HealthReport {
  n: number;
}

/** Keeps reported JobEvents, in order, until Fleet confirms them. */
export class JobEventOutbox {
  private readonly pending = new Map<string, JobEvent>();
  private listener: ((event: JobEvent) => void) | undefined;
  private confirmListener: ((events: JobEvent[]) => void) | undefined;
  private dropped = 0;

  /** Events added and not yet confirmed, oldest first. */
  unconfirmed(): JobEvent[] {
    return [...this.pending.values()];
  }

  /** How many events are waiting for confirmation. */
  get size(): number {
    return this.pending.size;
  }

  /** Events dropped because too many were waiting. */
  get droppedCount(): number {
    return this.dropped;
  }

  /**
   * Records an event and hands it to the listener (the worker, which sends it
   * if it can). An event whose id is already waiting is not added again.
   */
  add(fields: JobEventFields): JobEvent {
    const eventId = jobEventId(fields.attemptId, fields.state, fields.command?.index, fields.health?.n);
    const known = this.pending.get(eventId);
    if (known) return known;
    const event = create(JobEventSchema, {
      eventId,
      attemptId: fields.attemptId,
      state: fields.state,
      exitCode: fields.exitCode ?? 0,
      signal: fields.signal ?? "",
      message: (fields.message ?? "").slice(0, MAX_MESSAGE_CHARS),
      time: timestampFromDate(fields.time ?? new Date()),
      sequence: fields.sequence ?? 0,
      ...(fields.command ? { command: commandResult(fields.command) } : {}),
      ...(fields.health ? { health: healthStatus(fields.health) } : {}),
    });
    this.pending.set(eventId, event);
    while (this.pending.size > MAX_PENDING_EVENTS) {
      const oldest = this.pending.keys().next().value;
      if (oldest === undefined) break;
      this.pending.delete(oldest);
      this.dropped += 1;
    }
    this.listener?.(event);
    return event;
  }

  /** Forgets the events Fleet confirmed; returns how many were waiting. */
  confirm(eventIds: readonly string[]): number {
    const confirmed: JobEvent[] = [];
    for (const id of eventIds) {
      const event = this.pending.get(id);
      if (event && this.pending.delete(id)) confirmed.push(event);
    }
    if (confirmed.length > 0) this.confirmListener?.(confirmed);
    return confirmed.length;
  }

  /** Sets the one listener told of the events Fleet confirmed (JobHandler, to mark bundles reported). */
  onConfirm(listener: (events: JobEvent[]) => void): void {
    this.confirmListener = listener;
  }

  /** Sets the one listener told of every added event (AgentWorker). */
  onAdd(listener: (event: JobEvent) => void): void {
    this.listener = listener;
  }
}

/** A manifest's command record as the stream's CommandResult. */
export function commandResult(r: CommandRecord): CommandResult {
  return create(CommandResultSchema, {
    index: r.index,
    exitCode: r.exitCode ?? -1,
    signal: r.signal ?? "",
    ...(r.startTime ? { startTime: timestampFromDate(new Date(r.startTime)) } : {}),
    ...(r.durationMs !== undefined ? { duration: durationFromMs(r.durationMs) } : {}),
    peakRssBytes: BigInt(r.peakRssBytes ?? 0),
    message: (r.failure ?? "").slice(0, MAX_MESSAGE_CHARS),
  });
}

/** A health report as the stream's HealthStatus. */
export function healthStatus(h: HealthReport): HealthStatus {
  return create(HealthStatusSchema, {
    state: h.state,
    message: h.message.slice(0, MAX_MESSAGE_CHARS),
    since: timestampFromDate(h.since),
    restarts: h.restarts,
    port: h.port,
  });
}
