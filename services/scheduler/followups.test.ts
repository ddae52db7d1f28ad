// The pure parts of follow-ups: what a run does next from its stages'
// states, and what a repeating job's end submits next.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { RunModeSchema } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import type { StageDef } from "./dag.ts";
import { decideRun, nextRepeat, stageStateOfJob, stageStates } from "./followups.ts";

const diamond: StageDef[] = [
  { name: "a", requires: [] },
  { name: "b", requires: ["a"] },
  { name: "c", requires: ["a"] },
  { name: "d", requires: ["b", "c"] },
];

describe("stage states", () => {
  it("a stage is what its job is: placed or not is pending, held is running, every kind of failure is failed", () => {
    assert.deepEqual(
      ["pending", "offered", "assigned", "running", "succeeded", "failed", "dead", "timed_out", "cancelled"].map(stageStateOfJob),
      ["pending", "pending", "running", "running", "succeeded", "failed", "failed", "failed", "cancelled"],
    );
  });

  it("a stage without a job is skipped when noted so and blocked otherwise; a job wins over a note", () => {
    const states = stageStates(diamond, [{ stageName: "a", state: "failed" }, { stageName: "c", state: "running" }], {
      b: { reason: "x", at: "", cause: "requirement" },
      c: { reason: "run cancelled", at: "", cause: "cancel" },
    });
    assert.deepEqual(states, { a: "failed", b: "skipped", c: "running", d: "blocked" });
  });
});

describe("decideRun", () => {
  it("releases the roots of a new run", () => {
    assert.deepEqual(decideRun(diamond, {}, {}, null), { release: ["a"], skip: {}, end: undefined });
  });

  it("releases both sides of a diamond once its root succeeded, and the join only once both did", () => {
    assert.deepEqual(decideRun(diamond, { a: "succeeded" }, {}, null).release, ["b", "c"]);
    assert.deepEqual(decideRun(diamond, { a: "succeeded", b: "succeeded", c: "running" }, {}, null).release, []);
    assert.deepEqual(decideRun(diamond, { a: "succeeded", b: "succeeded", c: "succeeded" }, {}, null).release, ["d"]);
  });

  it("skips everything downstream of a failure, saying which requirement, and fails the run once nothing runs", () => {
    const d = decideRun(diamond, { a: "succeeded", b: "failed", c: "running" }, {}, null);
    assert.deepEqual(d.skip, { d: { reason: 'requires "b", which failed', cause: "requirement" } });
    assert.equal(d.end, undefined, "c still runs");
    const chain: StageDef[] = [{ name: "a", requires: [] }, { name: "b", requires: ["a"] }, { name: "c", requires: ["b"] }];
    const failed = decideRun(chain, { a: "failed" }, {}, null);
    assert.deepEqual(failed.skip, {
      b: { reason: 'requires "a", which failed', cause: "requirement" },
      c: { reason: 'requires "b", which was skipped', cause: "requirement" },
    });
    assert.deepEqual(failed.end, { state: "failed", reason: 'stage "a" failed' });
  });

  it("ends a run succeeded when every stage succeeded", () => {
    assert.deepEqual(decideRun(diamond, { a: "succeeded", b: "succeeded", c: "succeeded", d: "succeeded" }, {}, null).end, { state: "succeeded", reason: null });
  });

  it("once cancelled, releases nothing, skips every blocked stage, and ends cancelled when no stage is live", () => {
    const cancel = { reason: "stop" };
    const live = decideRun(diamond, { a: "succeeded", b: "running" }, {}, cancel);
    assert.deepEqual(live.release, []);
    assert.deepEqual(Object.keys(live.skip), ["c", "d"]);
    assert.equal(live.skip.c!.reason, "run cancelled: stop");
    assert.equal(live.end, undefined, "b is still running");
    const skipped = { c: { reason: "run cancelled: stop", at: "", cause: "cancel" as const }, d: { reason: "run cancelled: stop", at: "", cause: "cancel" as const } };
    const done = decideRun(diamond, { a: "succeeded", b: "cancelled", c: "skipped", d: "skipped" }, skipped, cancel);
    assert.deepEqual(done.end, { state: "cancelled", reason: "stop" });
    // A stage that succeeded before the cancel reached it does not make the run succeed, nor fail.
    const raced = decideRun(diamond, { a: "succeeded", b: "succeeded", c: "skipped", d: "skipped" }, skipped, cancel);
    assert.equal(raced.end?.state, "cancelled");
    // A failure still wins.
    assert.equal(decideRun(diamond, { a: "succeeded", b: "failed", c: "skipped", d: "skipped" }, skipped, cancel).end?.state, "failed");
  });
});

describe("nextRepeat", () => {
  const first = { id: "j1", state: "succeeded", repeatOf: null, repeatIndex: 1 };

  it("n_times: 3 repeats after the first and second job, and not after the third", () => {
    const mode = create(RunModeSchema, { mode: { case: "nTimes", value: 3 } });
    assert.deepEqual(nextRepeat(first, mode), { repeatOf: "j1", repeatIndex: 2, delayMs: 0 });
    assert.deepEqual(nextRepeat({ id: "j2", state: "failed", repeatOf: "j1", repeatIndex: 2 }, mode), { repeatOf: "j1", repeatIndex: 3, delayMs: 0 });
    assert.equal(nextRepeat({ id: "j3", state: "succeeded", repeatOf: "j1", repeatIndex: 3 }, mode), null);
    assert.equal(nextRepeat(first, create(RunModeSchema, { mode: { case: "nTimes", value: 1 } })), null, "n_times: 1 is the first job alone");
  });

  it("forever repeats after every end but a cancel, a second apart unless a delay says otherwise", () => {
    const mode = create(RunModeSchema, { mode: { case: "forever", value: true } });
    for (const state of ["succeeded", "failed", "dead", "timed_out"]) {
      assert.deepEqual(nextRepeat({ ...first, state, repeatIndex: 41, repeatOf: "j0" }, mode), { repeatOf: "j0", repeatIndex: 42, delayMs: 1000 });
    }
    assert.equal(nextRepeat({ ...first, state: "cancelled" }, mode), null);
    assert.equal(nextRepeat(first, create(RunModeSchema, { mode: { case: "forever", value: true }, delay: { seconds: 0n, nanos: 5_000_000 } }))?.delayMs, 5);
  });

  it("a job without a run mode has nothing to follow it", () => {
    assert.equal(nextRepeat(first, undefined), null);
    assert.equal(nextRepeat(first, create(RunModeSchema, {})), null);
  });
});
