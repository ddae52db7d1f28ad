// When the controller looks at a deployment again to count replicas that
// have been healthy for min_healthy_time (controller.ts dueTime).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DUE_TOGETHER_MS, dueTime } from "./controller.ts";

describe("dueTime", () => {
  it("is undefined with no replica waiting to be counted", () => {
    assert.equal(dueTime([], 1000), undefined);
  });

  it("is the earliest replica's time when no other comes due soon after", () => {
    assert.equal(dueTime([5000, 500, 5000 + DUE_TOGETHER_MS], 1000), 1501);
  });

  it("waits for siblings due within DUE_TOGETHER_MS, so one pass counts the batch", () => {
    assert.equal(dueTime([100, 103, 100 + DUE_TOGETHER_MS, 101], 1000), 100 + DUE_TOGETHER_MS + 1001);
  });

  it("never waits past the span: a later replica is counted on its own pass", () => {
    assert.equal(dueTime([100, 100 + DUE_TOGETHER_MS + 1, 110], 1000), 1111);
  });
});
