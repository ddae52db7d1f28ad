// What an agent's events do to an attempt and its job, as pure decisions.
// Events carry a per-attempt sequence, but the lifecycle does not need it to
// stay monotonic: an attempt only moves forward (assigned → running → an
// end), so an event that arrives after a later one (a resend, a reconnect
// reordering) can never move the attempt or its job back.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { AttemptRow, JobRow } from "./job_store.ts";
import { onEvent, type LifecycleContext, type ReportedEvent, type ReportedState } from "./lifecycle.ts";
import { DEFAULT_RETRY } from "./retry.ts";

const T0 = Date.parse("2030-01-01T12:00:00Z");
const ctx: LifecycleContext = { nowMs: T0, random: () => 0.5, leaseMs: 30_000, retry: { ...DEFAULT_RETRY, nonRetryableExitCodes: [] } };

function rows(): { attempt: AttemptRow; job: JobRow } {
  const attempt: AttemptRow = {
    id: "a1", jobId: "j1", number: 1, agentId: "ag_1", state: "assigned", auctionId: null, createdAt: new Date(T0),
    startedAt: null, endedAt: null, exitCode: null, signal: null, reason: null, leaseExpiresAt: new Date(T0 + 30_000), commands: [], health: null,
  };
  const job: JobRow = {
    id: "j1", state: "assigned", spec: {}, priority: 0, idempotencyKey: null, createdAt: new Date(T0), updatedAt: new Date(T0),
    attemptCount: 1, failureCount: 0, lostCount: 0, currentAttemptId: "a1", notBefore: null, waitingForCapacity: false,
    waitReason: null, claimId: null, claimExpiresAt: null, cancelRequestedAt: null, endReason: null, endedAt: null, runId: null,
    stageName: null, repeatOf: null, repeatIndex: 1, nextJobId: null, scheduleId: null, concurrencyKey: null, concurrencyLimit: 1,
    followupPending: false,
  };
  return { attempt, job };
}

const event = (state: ReportedState, sequence: number, exitCode = 0): ReportedEvent & { sequence: number } => ({
  state, sequence, exitCode, signal: "", message: "", time: new Date(T0 + sequence * 1000),
});

/** Applies events in the order given, as the service does (each change written before the next is decided); the states after each. */
function replay(events: ReportedEvent[]): { attempt: string; job: string }[] {
  const { attempt, job } = rows();
  let a = attempt;
  let j = job;
  return events.map((e) => {
    const outcome = onEvent(a, j, e, ctx);
    assert.notEqual(outcome.kind, "stale", "the attempt still holds its job: no Cancel");
    if (outcome.kind === "change") {
      a = { ...a, state: outcome.change.state, startedAt: outcome.change.startedAt ?? a.startedAt, endedAt: outcome.change.endedAt ?? a.endedAt };
      if (outcome.change.job) j = { ...j, state: outcome.change.job.state };
    }
    return { attempt: a.state, job: j.state };
  });
}

describe("events that arrive after a later one", () => {
  it("a RUNNING (sequence 2) heard after the SUCCEEDED (sequence 3) changes nothing", () => {
    const states = replay([event("starting", 1), event("succeeded", 3), event("running", 2)]);
    assert.deepEqual(states.at(-1), { attempt: "succeeded", job: "succeeded" });
    assert.deepEqual(states[1], states[2]);
  });

  it("a RUNNING heard again after the attempt failed changes nothing, whatever retry the failure chose", () => {
    const states = replay([event("running", 1), event("failed", 3, 1), event("running", 1), event("running", 2)]);
    assert.deepEqual(states.slice(1), [{ attempt: "failed", job: "pending" }, { attempt: "failed", job: "pending" }, { attempt: "failed", job: "pending" }]);
  });

  it("a STARTING heard after RUNNING leaves the attempt running and keeps its start time", () => {
    const { attempt, job } = rows();
    const running = onEvent(attempt, job, event("running", 2), ctx);
    assert.equal(running.kind, "change");
    const after = { ...attempt, state: "running", startedAt: new Date(T0 + 2000) };
    assert.deepEqual(onEvent(after, { ...job, state: "running" }, event("starting", 1), ctx), { kind: "none" });
  });

  it("an ended attempt hears no second ending: a late FAILED after SUCCEEDED is ignored", () => {
    const states = replay([event("running", 1), event("succeeded", 3), event("failed", 2, 1)]);
    assert.deepEqual(states.at(-1), { attempt: "succeeded", job: "succeeded" });
  });
});

describe("a service replica's attempt", () => {
  it("stays running through any number of RUNNING events (each process exit, restart and health change) and ends only on a final event", () => {
    const states = replay([event("running", 1), ...Array.from({ length: 20 }, (_, i) => event("running", i + 2)), event("cancelled", 30)]);
    assert.deepEqual(states.slice(0, 21).map((s) => s.attempt), Array(21).fill("running"));
    assert.deepEqual(states.at(-1), { attempt: "cancelled", job: "pending" }, "stopped by its agent, not by CancelJob: placed again");
  });
});
