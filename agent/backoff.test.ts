import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { backoffDelayMs, backoffWindowMs, nextAttempt } from "./backoff.ts";

const policy = { baseMs: 500, capMs: 30_000 };

describe("backoffWindowMs", () => {
  it("doubles from the base with every attempt", () => {
    assert.deepEqual([0, 1, 2, 3, 4].map((n) => backoffWindowMs(n, policy)), [500, 1_000, 2_000, 4_000, 8_000]);
  });

  it("stops growing at the cap", () => {
    assert.equal(backoffWindowMs(6, policy), 30_000);
    assert.equal(backoffWindowMs(60, policy), 30_000);
  });

  it("stays at the cap for attempts so large that 2^attempt is Infinity", () => {
    assert.equal(backoffWindowMs(5_000, policy), 30_000);
  });

  it("treats a negative or fractional attempt as the whole attempt below it, never less than 0", () => {
    assert.equal(backoffWindowMs(-3, policy), 500);
    assert.equal(backoffWindowMs(2.7, policy), 2_000);
  });
});

describe("backoffDelayMs", () => {
  it("is 0 when the jitter draws 0 (full jitter may retry at once)", () => {
    assert.equal(backoffDelayMs(4, policy, () => 0), 0);
  });

  it("approaches the window when the jitter draws close to 1", () => {
    assert.equal(backoffDelayMs(3, policy, () => 0.5), 2_000);
    assert.ok(backoffDelayMs(3, policy, () => 0.999_999) < 4_000);
  });

  it("spreads real draws over the whole window", () => {
    const delays = Array.from({ length: 2_000 }, () => backoffDelayMs(10, policy));
    assert.ok(delays.every((d) => d >= 0 && d < 30_000));
    // With 2 000 uniform draws each tenth of the window is hit (p of a miss ~ 1e-91).
    const tenths = new Set(delays.map((d) => Math.floor(d / 3_000)));
    assert.equal(tenths.size, 10);
  });
});

describe("nextAttempt", () => {
  const stableMs = 10_000;

  it("starts at attempt 0 after the first session", () => {
    assert.equal(nextAttempt(undefined, { welcomed: false, durationMs: 3 }, stableMs), 0);
  });

  it("counts failures in a row: refused, rejected or dropped before Welcome", () => {
    assert.equal(nextAttempt(0, { welcomed: false, durationMs: 30 }, stableMs), 1);
    assert.equal(nextAttempt(4, { welcomed: false, durationMs: 60_000 }, stableMs), 5);
  });

  it("counts a session that was welcomed but dropped quickly as another failure", () => {
    assert.equal(nextAttempt(2, { welcomed: true, durationMs: 9_999 }, stableMs), 3);
  });

  it("starts over after a welcomed session that stayed up", () => {
    assert.equal(nextAttempt(7, { welcomed: true, durationMs: 10_000 }, stableMs), 0);
  });
});
