import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { RetryPolicySchema } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { durationMs } from "../../lib/host/time.ts";
import { DEFAULT_RETRY, afterFailure, backoffMs, retrySettings, type RetrySettings } from "./retry.ts";

const settings = (over: Partial<RetrySettings> = {}): RetrySettings => ({ ...DEFAULT_RETRY, nonRetryableExitCodes: [], ...over });
const duration = (seconds: number, nanos = 0) => create(DurationSchema, { seconds: BigInt(seconds), nanos });
const fixed = (r: number) => () => r;
const justBelowOne = fixed(1 - Number.EPSILON);
const now = 1_700_000_000_000;

describe("DEFAULT_RETRY", () => {
  it("allows 4 retries (5 attempts), 1 s doubling to at most 5 min, with no non-retryable codes", () => {
    assert.deepEqual(DEFAULT_RETRY, { maxRetries: 4, initialMs: 1000, maxMs: 300_000, multiplier: 2, nonRetryableExitCodes: [] });
  });

  it("cannot be edited in place", () => {
    assert.ok(Object.isFrozen(DEFAULT_RETRY));
    assert.ok(Object.isFrozen(DEFAULT_RETRY.nonRetryableExitCodes));
  });
});

describe("retrySettings", () => {
  it("is the default for a job without a policy, as a copy that may be edited", () => {
    const s = retrySettings(undefined);
    assert.deepEqual(s, DEFAULT_RETRY);
    s.nonRetryableExitCodes.push(2);
    assert.deepEqual(DEFAULT_RETRY.nonRetryableExitCodes, []);
  });

  it("converts every field of a full policy", () => {
    const policy = create(RetryPolicySchema, {
      maxRetries: 7,
      initialBackoff: duration(2, 500_000_000),
      maxBackoff: duration(60),
      multiplier: 3,
      nonRetryableExitCodes: [2, 64],
    });
    assert.deepEqual(retrySettings(policy), { maxRetries: 7, initialMs: 2500, maxMs: 60_000, multiplier: 3, nonRetryableExitCodes: [2, 64] });
  });

  it("takes the defaults for unset durations and for multiplier 0", () => {
    const policy = create(RetryPolicySchema, { maxRetries: 2 });
    assert.deepEqual(retrySettings(policy), { maxRetries: 2, initialMs: 1000, maxMs: 300_000, multiplier: 2, nonRetryableExitCodes: [] });
  });

  it("keeps maxRetries 0 as never retry", () => {
    assert.equal(retrySettings(create(RetryPolicySchema, { maxRetries: 0 })).maxRetries, 0);
  });

  it("copies the exit codes, so editing the settings leaves the policy alone", () => {
    const policy = create(RetryPolicySchema, { nonRetryableExitCodes: [2] });
    retrySettings(policy).nonRetryableExitCodes.push(3);
    assert.deepEqual(policy.nonRetryableExitCodes, [2]);
  });
});

describe("durationMs", () => {
  it("converts seconds and nanoseconds to whole milliseconds", () => {
    assert.equal(durationMs(duration(0)), 0);
    assert.equal(durationMs(duration(1)), 1000);
    assert.equal(durationMs(duration(0, 250_000_000)), 250);
    assert.equal(durationMs(duration(300, 1_999_999)), 300_001);
    assert.equal(durationMs(duration(86_400)), 86_400_000);
  });
});

describe("backoffMs", () => {
  it("is 0 when random returns 0, for every retry", () => {
    for (let retry = 1; retry <= 20; retry++) assert.equal(backoffMs(retry, DEFAULT_RETRY, fixed(0)), 0);
  });

  it("approaches the cap, never reaching it, as random approaches 1", () => {
    const expectedCaps = [1000, 2000, 4000, 8000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000, 300_000];
    expectedCaps.forEach((cap, i) => {
      const ms = backoffMs(i + 1, DEFAULT_RETRY, justBelowOne);
      assert.equal(ms, cap - 1, `retry ${i + 1}`);
    });
  });

  it("is half the cap when random returns one half", () => {
    assert.equal(backoffMs(1, DEFAULT_RETRY, fixed(0.5)), 500);
    assert.equal(backoffMs(3, DEFAULT_RETRY, fixed(0.5)), 2000);
  });

  it("stays within [0, cap) for many random draws", () => {
    let seed = 1;
    const random = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
    for (let retry = 1; retry <= 12; retry++) {
      const cap = Math.min(300_000, 1000 * 2 ** (retry - 1));
      for (let n = 0; n < 200; n++) {
        const ms = backoffMs(retry, DEFAULT_RETRY, random);
        assert.ok(Number.isInteger(ms) && ms >= 0 && ms < cap, `retry ${retry}: ${ms}`);
      }
    }
  });

  it("grows by the multiplier", () => {
    const s = settings({ initialMs: 100, multiplier: 3, maxMs: 1_000_000 });
    assert.deepEqual(
      [1, 2, 3, 4].map((retry) => backoffMs(retry, s, fixed(0.5))),
      [50, 150, 450, 1350],
    );
  });

  it("stays flat with multiplier 1", () => {
    const s = settings({ initialMs: 700, multiplier: 1 });
    for (let retry = 1; retry <= 50; retry++) assert.equal(backoffMs(retry, s, fixed(0.5)), 350);
  });

  it("is capped by maxMs even at the first retry, and for retries far beyond overflow", () => {
    assert.equal(backoffMs(1, settings({ initialMs: 10_000, maxMs: 3000 }), fixed(0.5)), 1500);
    assert.equal(backoffMs(5000, DEFAULT_RETRY, fixed(0.5)), 150_000);
  });

  it("treats retry 0 or less as the first retry", () => {
    assert.equal(backoffMs(0, DEFAULT_RETRY, fixed(0.5)), 500);
    assert.equal(backoffMs(-3, DEFAULT_RETRY, fixed(0.5)), 500);
  });

  it("keeps a misbehaving random source within [0, cap]", () => {
    assert.equal(backoffMs(1, DEFAULT_RETRY, fixed(1)), 1000);
    assert.equal(backoffMs(1, DEFAULT_RETRY, fixed(7)), 1000);
    assert.equal(backoffMs(1, DEFAULT_RETRY, fixed(-1)), 0);
    assert.equal(backoffMs(1, DEFAULT_RETRY, fixed(Number.NaN)), 0);
  });

  it("is 0 when the backoff is configured as 0", () => {
    assert.equal(backoffMs(3, settings({ initialMs: 0 }), justBelowOne), 0);
    assert.equal(backoffMs(3, settings({ maxMs: 0 }), justBelowOne), 0);
  });
});

describe("afterFailure", () => {
  const failure = (over: Partial<Parameters<typeof afterFailure>[0]> = {}) =>
    afterFailure({ outcome: "failed", exitCode: 1, failuresSoFar: 1, settings: settings(), nowMs: now, random: fixed(0.5), ...over });

  it("schedules the first retry after the first failure, at now plus the backoff", () => {
    assert.deepEqual(failure(), { kind: "retry", retry: 1, atMs: now + 500, reason: "attempt 1 failed with exit code 1; retry 1 of 4 in 0.5s" });
  });

  it("numbers each retry after the failures so far, up to maxRetries", () => {
    const plans = [1, 2, 3, 4].map((n) => failure({ failuresSoFar: n }));
    assert.deepEqual(
      plans.map((p) => (p.kind === "retry" ? [p.retry, p.atMs - now] : p.kind)),
      [
        [1, 500],
        [2, 1000],
        [3, 2000],
        [4, 4000],
      ],
    );
  });

  it("says a timed-out attempt timed out", () => {
    assert.deepEqual(failure({ outcome: "timed_out", exitCode: -1, failuresSoFar: 2, random: fixed(0.999) }), {
      kind: "retry",
      retry: 2,
      atMs: now + 1998,
      reason: "attempt 2 timed out; retry 2 of 4 in 2.0s",
    });
  });

  it("names the signal that killed an attempt, and never takes its exit code for a non-retryable one", () => {
    const killed = failure({ exitCode: -1, signal: "SIGKILL", settings: settings({ nonRetryableExitCodes: [-1] }) });
    assert.deepEqual(killed, { kind: "retry", retry: 1, atMs: now + 500, reason: "attempt 1 was killed by SIGKILL; retry 1 of 4 in 0.5s" });
    assert.deepEqual(failure({ exitCode: -1, signal: "SIGTERM", settings: settings({ maxRetries: 0 }) }), {
      kind: "final",
      jobState: "failed",
      reason: "the attempt was killed by SIGTERM; the job does not retry",
    });
  });

  it("retries immediately when random returns 0", () => {
    const plan = failure({ random: fixed(0) });
    assert.equal(plan.kind === "retry" && plan.atMs, now);
  });

  it("declares the job dead once retries are used up", () => {
    assert.deepEqual(failure({ failuresSoFar: 5 }), { kind: "final", jobState: "dead", reason: "out of retries: 5 attempts failed" });
    assert.deepEqual(failure({ failuresSoFar: 9 }), { kind: "final", jobState: "dead", reason: "out of retries: 9 attempts failed" });
    assert.deepEqual(failure({ outcome: "timed_out", failuresSoFar: 2, settings: settings({ maxRetries: 1 }) }), {
      kind: "final",
      jobState: "dead",
      reason: "out of retries: 2 attempts failed",
    });
  });

  it("fails the job at once on a non-retryable exit code, even with retries left", () => {
    assert.deepEqual(failure({ exitCode: 2, settings: settings({ nonRetryableExitCodes: [2, 64] }) }), {
      kind: "final",
      jobState: "failed",
      reason: "exit code 2 is marked non-retryable",
    });
  });

  it("checks the non-retryable code before running out of retries", () => {
    const plan = failure({ exitCode: 64, failuresSoFar: 5, settings: settings({ nonRetryableExitCodes: [64] }) });
    assert.equal(plan.kind === "final" && plan.jobState, "failed");
  });

  it("does not read the exit code of a timed-out attempt as the program's answer", () => {
    const plan = failure({ outcome: "timed_out", exitCode: 2, settings: settings({ nonRetryableExitCodes: [2] }) });
    assert.equal(plan.kind, "retry");
  });

  it("ends the job in the attempt's own outcome when retries are off", () => {
    const off = settings({ maxRetries: 0 });
    assert.deepEqual(failure({ settings: off }), { kind: "final", jobState: "failed", reason: "the attempt failed with exit code 1; the job does not retry" });
    assert.deepEqual(failure({ outcome: "timed_out", settings: off }), { kind: "final", jobState: "timed_out", reason: "the attempt timed out; the job does not retry" });
  });

  it("never calls random when the job ends", () => {
    const boom = () => {
      throw new Error("random() called");
    };
    failure({ failuresSoFar: 5, random: boom });
    failure({ settings: settings({ maxRetries: 0 }), random: boom });
    failure({ exitCode: 2, settings: settings({ nonRetryableExitCodes: [2] }), random: boom });
  });

  it("with a policy of 1 retry, retries once and then gives up", () => {
    const s = retrySettings(create(RetryPolicySchema, { maxRetries: 1, initialBackoff: duration(10) }));
    const first = failure({ settings: s, failuresSoFar: 1, random: justBelowOne });
    assert.deepEqual(first, { kind: "retry", retry: 1, atMs: now + 9999, reason: "attempt 1 failed with exit code 1; retry 1 of 1 in 10s" });
    assert.equal(failure({ settings: s, failuresSoFar: 2 }).kind, "final");
  });
});
