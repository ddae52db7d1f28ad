import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { release, validateDag, type StageDef, type StageState } from "./dag.ts";

// "test<build" reads "test requires build"; a stage without "<" requires nothing.
function dag(...specs: string[]): StageDef[] {
  return specs.map((spec) => {
    const [name, requires] = spec.split("<");
    return { name: name!, requires: requires ? requires.split(",") : [] };
  });
}

const chain = dag("build", "test<build", "package<test", "deploy<package");
const diamond = dag("fetch", "lint<fetch", "unit<fetch", "merge<lint,unit");

describe("validateDag", () => {
  it("finds nothing wrong with a chain, a diamond, independent stages or no stages", () => {
    assert.deepEqual(validateDag(chain), []);
    assert.deepEqual(validateDag(diamond), []);
    assert.deepEqual(validateDag(dag("a", "b", "c")), []);
    assert.deepEqual(validateDag([]), []);
  });

  it("accepts requirements defined after the stage that needs them", () => {
    assert.deepEqual(validateDag(dag("deploy<build", "build")), []);
  });

  it("names a cycle in the order its stages would run, from its earliest-defined stage", () => {
    const stages = dag("build<package", "test<build", "package<test");
    assert.deepEqual(validateDag(stages), [{ field: "stages", message: "cycle: build → test → package → build" }]);
  });

  it("names a cycle the same way whichever of its stages the search meets first", () => {
    const stages = dag("lint", "package<test", "build<package,lint", "test<build");
    assert.deepEqual(validateDag(stages), [{ field: "stages", message: "cycle: package → build → test → package" }]);
  });

  it("names a two-stage cycle", () => {
    assert.deepEqual(validateDag(dag("a<b", "b<a")), [{ field: "stages", message: "cycle: a → b → a" }]);
  });

  it("reports each of two separate cycles once", () => {
    const stages = dag("a<b", "b<a", "ok", "c<d,ok", "d<c");
    assert.deepEqual(
      validateDag(stages).map((e) => e.message),
      ["cycle: a → b → a", "cycle: c → d → c"],
    );
  });

  it("does not mistake a diamond's two paths for a cycle", () => {
    assert.deepEqual(validateDag(dag("a", "b<a", "c<a", "d<b,c", "e<d,a")), []);
  });

  it("names the field of an unknown requirement", () => {
    assert.deepEqual(validateDag(dag("build", "test<build", "package<test,tset")), [{ field: "stages[2].requires[1]", message: 'no stage named "tset"' }]);
  });

  it("reports a stage that requires itself, but not as a cycle", () => {
    assert.deepEqual(validateDag(dag("build", "test<build,test")), [{ field: "stages[1].requires[1]", message: 'stage "test" requires itself' }]);
  });

  it("reports empty and duplicate names with the index of the first", () => {
    const stages = [...dag("build", "test<build", "build"), { name: "", requires: [] }, { name: "  ", requires: [] }];
    assert.deepEqual(validateDag(stages), [
      { field: "stages[2].name", message: 'duplicate stage name "build" (also stages[0])' },
      { field: "stages[3].name", message: "a stage needs a name" },
      { field: "stages[4].name", message: "a stage needs a name" },
    ]);
  });

  it("reports an empty and a repeated requirement", () => {
    const stages: StageDef[] = [{ name: "build", requires: [] }, { name: "test", requires: ["build", "", "build"] }];
    assert.deepEqual(validateDag(stages), [
      { field: "stages[1].requires[1]", message: "a requirement needs a stage name" },
      { field: "stages[1].requires[2]", message: '"build" is already required' },
    ]);
  });

  it("reports field errors before cycles, and all of them at once", () => {
    const stages = dag("a<b", "b<a", "c<nope");
    assert.deepEqual(validateDag(stages), [
      { field: "stages[2].requires[0]", message: 'no stage named "nope"' },
      { field: "stages", message: "cycle: a → b → a" },
    ]);
  });

  it("handles a chain of 20,000 stages without exhausting the stack", () => {
    const long: StageDef[] = Array.from({ length: 20_000 }, (_, i) => ({ name: `s${i}`, requires: i ? [`s${i - 1}`] : [`s19999`] }));
    const errors = validateDag(long);
    assert.equal(errors.length, 1);
    assert.match(errors[0]!.message, /^cycle: s0 → s1 → .* → s19999 → s0$/);
    assert.deepEqual(validateDag(long.map((s, i) => (i === 0 ? { ...s, requires: [] } : s))), []);
  });
});

describe("release", () => {
  const all = (stages: readonly StageDef[], state: StageState) => Object.fromEntries(stages.map((s) => [s.name, state]));

  it("releases the stages without requirements when a run starts", () => {
    assert.deepEqual(release(diamond, all(diamond, "blocked")), { release: ["fetch"], skip: [], runState: "running" });
  });

  it("counts a stage missing from the states as blocked", () => {
    assert.deepEqual(release(chain, {}), { release: ["build"], skip: [], runState: "running" });
  });

  it("walks a chain one stage at a time", () => {
    const states: Record<string, StageState> = all(chain, "blocked");
    const order: string[][] = [];
    for (let step = 0; step < 10; step++) {
      const r = release(chain, states);
      if (r.runState !== "running") break;
      order.push(r.release);
      for (const name of r.release) states[name] = "succeeded"; // pretend each released stage ran and succeeded
    }
    assert.deepEqual(order, [["build"], ["test"], ["package"], ["deploy"]]);
    assert.equal(release(chain, states).runState, "succeeded");
  });

  it("releases both sides of a diamond together, and the join only after both succeed", () => {
    const states = { fetch: "succeeded", lint: "blocked", unit: "blocked", merge: "blocked" } as const;
    assert.deepEqual(release(diamond, states).release, ["lint", "unit"]);
    assert.deepEqual(release(diamond, { ...states, lint: "succeeded", unit: "running" }).release, []);
    assert.deepEqual(release(diamond, { ...states, lint: "succeeded", unit: "succeeded" }).release, ["merge"]);
  });

  it("skips the join of a diamond as soon as one side fails, and fails the run once the other side ends", () => {
    const running = release(diamond, { fetch: "succeeded", lint: "failed", unit: "running", merge: "blocked" });
    assert.deepEqual(running, { release: [], skip: ["merge"], runState: "running" });
    const ended = release(diamond, { fetch: "succeeded", lint: "failed", unit: "succeeded", merge: "skipped" });
    assert.deepEqual(ended, { release: [], skip: [], runState: "failed" });
  });

  it("skips everything after a failed middle stage in one call", () => {
    assert.deepEqual(release(chain, { build: "succeeded", test: "failed", package: "blocked", deploy: "blocked" }), {
      release: [],
      skip: ["package", "deploy"],
      runState: "failed",
    });
  });

  it("skips transitively whatever the order stages are defined in", () => {
    const reversed = [...chain].reverse();
    assert.deepEqual(release(reversed, { build: "failed" }), { release: [], skip: ["deploy", "package", "test"], runState: "failed" });
  });

  it("keeps running an independent branch after another branch fails", () => {
    const stages = dag("build", "test<build", "docs", "publish-docs<docs");
    const r = release(stages, { build: "failed", test: "blocked", docs: "succeeded", "publish-docs": "blocked" });
    assert.deepEqual(r, { release: ["publish-docs"], skip: ["test"], runState: "running" });
    const done = release(stages, { build: "failed", test: "skipped", docs: "succeeded", "publish-docs": "succeeded" });
    assert.equal(done.runState, "failed");
  });

  it("skips after a cancelled or skipped requirement too", () => {
    for (const dead of ["cancelled", "skipped"] as const) {
      assert.deepEqual(release(chain, { build: "succeeded", test: dead }).skip, ["package", "deploy"], dead);
    }
  });

  it("never touches a stage that is not blocked", () => {
    const r = release(chain, { build: "failed", test: "pending", package: "running", deploy: "succeeded" });
    assert.deepEqual(r, { release: [], skip: [], runState: "running" });
  });

  it("is running while any stage is pending or running", () => {
    assert.equal(release(chain, { build: "succeeded", test: "succeeded", package: "succeeded", deploy: "pending" }).runState, "running");
    assert.equal(release(chain, { build: "succeeded", test: "succeeded", package: "succeeded", deploy: "running" }).runState, "running");
  });

  it("is cancelled when a stage was cancelled and none failed", () => {
    const r = release(diamond, { fetch: "succeeded", lint: "cancelled", unit: "succeeded", merge: "blocked" });
    assert.deepEqual(r, { release: [], skip: ["merge"], runState: "cancelled" });
  });

  it("is failed when one stage failed and another was cancelled", () => {
    const r = release(diamond, { fetch: "succeeded", lint: "cancelled", unit: "failed", merge: "blocked" });
    assert.equal(r.runState, "failed");
  });

  it("is failed, not succeeded, when stages only succeeded or were skipped", () => {
    assert.equal(release(dag("a", "b"), { a: "succeeded", b: "skipped" }).runState, "failed");
  });

  it("is succeeded for a run with no stages", () => {
    assert.deepEqual(release([], {}), { release: [], skip: [], runState: "succeeded" });
  });

  it("leaves a stage with an unknown requirement blocked, and the run running", () => {
    assert.deepEqual(release(dag("a", "b<ghost"), { a: "succeeded" }), { release: [], skip: [], runState: "running" });
  });

  it("never releases and skips the same stage", () => {
    const stages = dag("a", "b", "c<a,b", "d<c", "e<a");
    const states: StageState[] = ["blocked", "pending", "running", "succeeded", "failed", "cancelled", "skipped"];
    for (const a of states) {
      for (const b of states) {
        const r = release(stages, { a, b });
        assert.ok(!r.release.some((name) => r.skip.includes(name)), `a=${a} b=${b}`);
      }
    }
  });
});
