// What an attempt's event, or its lapsed lease, does to the attempt and its
// job. Pure: the service reads the rows, asks here, and writes the answer
// as a compare-and-set (job_store.ts applyAttemptChanges), so a decision
// made on rows that changed meanwhile is simply not applied.
//
//   attempt: assigned ─running─▶ running ─▶ succeeded | failed | timed_out | cancelled
//               └──────────── lease lapsed ──────────▶ lost
//   job, after its attempt ends:
//     succeeded                      → succeeded
//     failed / timed_out             → retry (pending at a time) or failed | timed_out | dead (retry.ts)
//     cancelled, by CancelJob        → cancelled
//     cancelled by the agent itself,
//     or lost                        → pending again (does not count against retries; bounded)

import { afterFailure, type RetrySettings } from "./retry.ts";
import type { AttemptChange, AttemptRow, JobRow } from "./job_store.ts";

/** An attempt's state as an agent reports it, in the stored spelling. */
export type ReportedState = "starting" | "running" | "succeeded" | "failed" | "cancelled" | "timed_out";

export interface ReportedEvent {
  state: ReportedState;
  exitCode: number;
  signal: string;
  message: string;
  time: Date;
}

/** Attempts lost (or cancelled by their agent) before a job is given up as dead. */
export const MAX_LOST_ATTEMPTS = 10;

export interface LifecycleContext {
  nowMs: number;
  random: () => number;
  leaseMs: number;
  retry: RetrySettings;
}

/** What to do with an event. */
export type EventOutcome =
  /** Write this change. */
  | { kind: "change"; change: AttemptChange }
  /** Nothing to do: a repeat, or news the rows already hold. */
  | { kind: "none" }
  /** The attempt no longer holds its job (lost, or another's): the agent must stop it. */
  | { kind: "stale"; reason: string };

const FINAL = new Set(["succeeded", "failed", "cancelled", "timed_out", "lost"]);

/** What the lifecycle reads of an attempt. */
export type LifecycleAttempt = Pick<AttemptRow, "id" | "number" | "agentId" | "state" | "reason">;
/** What the lifecycle reads of a job. */
export type LifecycleJob = Pick<JobRow, "id" | "state" | "currentAttemptId" | "cancelRequestedAt" | "endReason" | "failureCount" | "lostCount">;

/** Decides what an agent's event does to an attempt and its job. */
export function onEvent(attempt: LifecycleAttempt, job: LifecycleJob, event: ReportedEvent, ctx: LifecycleContext): EventOutcome {
  const live = attempt.state === "assigned" || attempt.state === "running";
  if (!live) {
    // A finished attempt hears nothing new, but one that was given away
    // while its agent was unreachable must be stopped if it still runs.
    if (attempt.state === "lost" && (event.state === "starting" || event.state === "running")) {
      return { kind: "stale", reason: `attempt ${attempt.number} of job ${job.id} was lost (${attempt.reason ?? "lease lapsed"}); the job was placed again` };
    }
    return { kind: "none" };
  }
  if (job.currentAttemptId !== attempt.id && (event.state === "starting" || event.state === "running")) {
    return { kind: "stale", reason: `attempt ${attempt.id} no longer holds job ${job.id}` };
  }
  const base = { attemptId: attempt.id, agentId: attempt.agentId, fromState: attempt.state };
  switch (event.state) {
    case "starting":
      return { kind: "none" };
    case "running":
      // Already running: news the store records by itself (a command's
      // result, a service's health and restarts), never a change of state.
      if (attempt.state === "running") return { kind: "none" };
      return {
        kind: "change",
        change: { ...base, state: "running", startedAt: event.time, leaseMs: ctx.leaseMs, job: job.state === "assigned" ? { state: "running" } : undefined },
      };
    default:
      return { kind: "change", change: { ...base, ...ended(event), job: afterEnd(attempt, job, event, ctx) } };
  }
}

function ended(event: ReportedEvent): Pick<AttemptChange, "state" | "endedAt" | "exitCode" | "signal" | "reason"> {
  return { state: event.state, endedAt: event.time, exitCode: event.exitCode, signal: event.signal || undefined, reason: event.message || undefined };
}

function afterEnd(attempt: LifecycleAttempt, job: LifecycleJob, event: ReportedEvent, ctx: LifecycleContext): AttemptChange["job"] {
  const final = (state: string, reason: string) => ({ state, ended: true, endReason: reason, waitReason: null });
  if (event.state === "succeeded") return final("succeeded", `attempt ${attempt.number} succeeded on agent ${attempt.agentId}`);
  if (job.cancelRequestedAt) {
    return final("cancelled", job.endReason ?? "cancelled");
  }
  if (event.state === "cancelled") {
    return requeue(job, `attempt ${attempt.number} was stopped by agent ${attempt.agentId}${event.message ? ` (${event.message})` : ""}`);
  }
  const outcome = event.state === "timed_out" ? "timed_out" : "failed";
  const next = afterFailure({ outcome, exitCode: event.exitCode, signal: event.signal || undefined, failuresSoFar: job.failureCount + 1, settings: ctx.retry, nowMs: ctx.nowMs, random: ctx.random });
  if (next.kind === "final") return { ...final(next.jobState, next.reason), failureInc: 1 };
  return { state: "pending", failureInc: 1, releaseAttempt: true, notBefore: new Date(next.atMs), waitReason: next.reason };
}

// Back to pending for a new attempt, unless this has happened too often.
function requeue(job: LifecycleJob, why: string): AttemptChange["job"] {
  if (job.lostCount + 1 >= MAX_LOST_ATTEMPTS) {
    return { state: "dead", ended: true, endReason: `${why}; ${MAX_LOST_ATTEMPTS} attempts were lost, giving up`, lostInc: 1, waitReason: null };
  }
  return { state: "pending", lostInc: 1, releaseAttempt: true, notBefore: null, waitReason: `${why}; placing it again` };
}

/** Decides what a lapsed lease does: the attempt is lost, the job placed again (or ended, if cancelled or lost too often). */
export function onLeaseLapsed(attempt: LifecycleAttempt, job: LifecycleJob, why: string, nowMs: number): AttemptChange {
  const base = { attemptId: attempt.id, agentId: attempt.agentId, fromState: attempt.state, state: "lost", endedAt: new Date(nowMs), reason: why };
  if (job.currentAttemptId !== attempt.id || FINAL.has(job.state)) return base;
  if (job.cancelRequestedAt) return { ...base, job: { state: "cancelled", ended: true, endReason: job.endReason ?? "cancelled", waitReason: null } };
  return { ...base, job: requeue(job, `attempt ${attempt.number} lost: ${why}`) };
}
