// The retry policy and backoff, as pure functions (the real-socket retry is
// in integration/sdk_typescript.test.ts).

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { backoffMs, isSafeToRetry } from "./retry.ts";

const SCHEDULER = "drover.scheduler.v1.SchedulerService";

describe("isSafeToRetry", () => {
  it("retries reads and the writes the contract calls idempotent", () => {
    for (const method of [`${SCHEDULER}/GetJob`, `${SCHEDULER}/ListJobs`, `${SCHEDULER}/CancelJob`, "drover.fleet.v1.FleetService/DrainAgent"]) {
      assert.equal(isSafeToRetry(method, {}), true, method);
    }
  });

  it("retries SubmitJob, ResubmitJob and SubmitRun only when they carry an idempotency key", () => {
    for (const method of ["SubmitJob", "ResubmitJob", "SubmitRun"]) {
      assert.equal(isSafeToRetry(`${SCHEDULER}/${method}`, { idempotencyKey: "k1" }), true, method);
      assert.equal(isSafeToRetry(`${SCHEDULER}/${method}`, { idempotencyKey: "" }), false, method);
      assert.equal(isSafeToRetry(`${SCHEDULER}/${method}`, {}), false, method);
    }
  });

  it("never retries calls that mint something or that a second try would answer differently", () => {
    for (const method of [
      "drover.fleet.v1.FleetService/CreateApiToken",
      "drover.fleet.v1.FleetService/CreateAgentToken",
      "drover.fleet.v1.FleetService/DeleteAgent",
      "drover.fleet.v1.FleetService/SendToAgent",
      `${SCHEDULER}/CreateSchedule`,
      `${SCHEDULER}/DeleteSchedule`,
      `${SCHEDULER}/ClaimPlaceableJobs`,
    ]) {
      assert.equal(isSafeToRetry(method, { idempotencyKey: "k1" }), false, method);
    }
  });
});

describe("backoffMs", () => {
  const backoff = { baseMs: 100, maxMs: 2000 };

  it("waits between nothing and the ceiling, which doubles from baseMs each retry", () => {
    assert.deepEqual([0, 1, 2, 3].map((r) => backoffMs(r, backoff, () => 0)), [0, 0, 0, 0]);
    assert.deepEqual([0, 1, 2, 3].map((r) => backoffMs(r, backoff, () => 0.999999)), [100, 200, 400, 800]);
  });

  it("never waits longer than maxMs, however many retries", () => {
    assert.equal(backoffMs(5, backoff, () => 0.999999), 2000);
    assert.equal(backoffMs(60, backoff, () => 0.999999), 2000);
  });

  it("spreads waits across the range, so clients do not retry in step", () => {
    const waits = new Set(Array.from({ length: 50 }, () => backoffMs(3, backoff)));
    assert.ok(waits.size > 10, `50 draws gave ${waits.size} distinct waits`);
    for (const w of waits) assert.ok(w >= 0 && w <= 800, `${w} in [0, 800]`);
  });
});
