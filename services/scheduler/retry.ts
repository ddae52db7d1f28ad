// What happens after an attempt fails: retry later, or give the job its final
// state. Pure: the scheduler passes the clock reading and a random source in,
// and applies the answer (schedules the retry, or writes the final state).
//
// Delays use full jitter (a uniformly random delay between 0 and the
// exponential cap). When many jobs fail together, say because one agent
// died, their retries spread over the whole window instead of arriving in
// synchronised waves; see the AWS Architecture Blog, "Exponential Backoff
// and Jitter".

import { durationMs } from "../../lib/host/time.ts";
import type { RetryPolicy } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";

/** A job's retry policy in plain numbers, defaults applied. */
export interface RetrySettings {
  /** Attempts after the first; 0 never retries. */
  maxRetries: number;
  /** Cap of the first retry's delay, in ms, before jitter. */
  initialMs: number;
  /** Cap of any retry's delay, in ms. */
  maxMs: number;
  /** Growth of the cap per retry. */
  multiplier: number;
  /** Exit codes that fail the job at once. */
  nonRetryableExitCodes: number[];
}

// Frozen, like DEFAULT_RETRY itself: the default is shared and must never be
// edited in place; retrySettings hands out copies.
const NO_EXIT_CODES: number[] = [];
Object.freeze(NO_EXIT_CODES);

/** The policy of a job that set none: 4 retries (5 attempts), 1 s doubling to at most 5 min. */
export const DEFAULT_RETRY: RetrySettings = Object.freeze({
  maxRetries: 4,
  initialMs: 1000,
  maxMs: 300_000,
  multiplier: 2,
  nonRetryableExitCodes: NO_EXIT_CODES,
});

/** The settings of a proto RetryPolicy; unset durations and multiplier 0 take the defaults, no policy at all is DEFAULT_RETRY. */
export function retrySettings(policy: RetryPolicy | undefined): RetrySettings {
  if (!policy) return { ...DEFAULT_RETRY, nonRetryableExitCodes: [] };
  return {
    maxRetries: policy.maxRetries,
    initialMs: policy.initialBackoff ? durationMs(policy.initialBackoff) : DEFAULT_RETRY.initialMs,
    maxMs: policy.maxBackoff ? durationMs(policy.maxBackoff) : DEFAULT_RETRY.maxMs,
    multiplier: policy.multiplier === 0 ? DEFAULT_RETRY.multiplier : policy.multiplier,
    nonRetryableExitCodes: [...policy.nonRetryableExitCodes],
  };
}

/** The delay before retry number `retry` (1 = first retry): uniform in [0, cap), cap = min(maxMs, initialMs × multiplier^(retry-1)). */
export function backoffMs(retry: number, s: RetrySettings, random: () => number): number {
  const cap = Math.max(0, Math.min(s.maxMs, s.initialMs * s.multiplier ** (Math.max(1, retry) - 1)));
  const r = random();
  // A random source that strays outside [0, 1) must not stretch the delay
  // past the cap or below zero.
  return Math.floor((r > 0 ? Math.min(r, 1) : 0) * cap);
}

/** What the scheduler does after a failed attempt: retry at a given time, or end the job in a final state. */
export type AfterFailure =
  | { kind: "retry"; retry: number; atMs: number; reason: string }
  | { kind: "final"; jobState: "failed" | "timed_out" | "dead"; reason: string };

/**
 * Retry or finish after a failed or timed-out attempt. In this order:
 * a non-retryable exit code of a failed attempt ends the job "failed"; with
 * retries off the job ends in the attempt's own outcome; with retries used up
 * it is "dead"; otherwise retry number failuresSoFar runs at nowMs + backoff.
 * An exit code of a timed-out attempt is the signal we killed it with, not the
 * program's answer, so it is never checked against the non-retryable list.
 */
export function afterFailure(input: {
  outcome: "failed" | "timed_out";
  exitCode: number;
  /** The signal that ended the attempt ("SIGKILL"), if one did: then the exit code means nothing. */
  signal?: string;
  /** Failed attempts of this job, this one included. */
  failuresSoFar: number;
  settings: RetrySettings;
  nowMs: number;
  random: () => number;
}): AfterFailure {
  const { outcome, exitCode, signal, failuresSoFar, settings, nowMs, random } = input;
  if (outcome === "failed" && !signal && settings.nonRetryableExitCodes.includes(exitCode)) {
    return { kind: "final", jobState: "failed", reason: `exit code ${exitCode} is marked non-retryable` };
  }
  const what = outcome === "timed_out" ? "timed out" : signal ? `was killed by ${signal}` : `failed with exit code ${exitCode}`;
  if (settings.maxRetries <= 0) {
    return { kind: "final", jobState: outcome, reason: `the attempt ${what}; the job does not retry` };
  }
  if (failuresSoFar > settings.maxRetries) {
    return { kind: "final", jobState: "dead", reason: `out of retries: ${failuresSoFar} ${failuresSoFar === 1 ? "attempt" : "attempts"} failed` };
  }
  const retry = Math.max(1, failuresSoFar);
  const delay = backoffMs(retry, settings, random);
  return {
    kind: "retry",
    retry,
    atMs: nowMs + delay,
    reason: `attempt ${retry} ${what}; retry ${retry} of ${settings.maxRetries} in ${seconds(delay)}`,
  };
}

// "0.8s", "12s": tenths under ten seconds, whole seconds above, as liveness says it.
function seconds(ms: number): string {
  const tenths = Math.round(ms / 100) / 10; // round first, so 9999 ms reads "10s", not "10.0s"
  return `${tenths < 10 ? tenths.toFixed(1) : Math.round(ms / 1000)}s`;
}
