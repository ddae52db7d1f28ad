import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { durationText } from "../../lib/host/time.ts";
import { DEFAULT_STRATEGY, decide, type Action, type DeploymentView, type ReplicaView } from "./rollout.ts";

// A harness in the spirit of Nomad's scheduler tests: a deployment and its
// replicas built from healthy defaults, one decide() call, assertions on the
// actions and the state. Time is a number: T is "now".

const T = 1_000_000;

function dep(overrides: Partial<DeploymentView> & { count?: number } = {}): DeploymentView {
  const { count = 3, ...rest } = overrides;
  return {
    revision: 2,
    generation: 0,
    stableRevision: 1,
    slots: Array.from({ length: count }, (_, i) => String(i)),
    perAgent: false,
    strategy: { ...DEFAULT_STRATEGY, minHealthyMs: 1000, healthyDeadlineMs: 60_000, replaceUnhealthyMs: 30_000 },
    stopped: false,
    paused: false,
    promoted: false,
    state: "rolling_out",
    ...rest,
  };
}

let seq = 0;
/** A running replica of revision `rev`, healthy and counted long ago. */
function rep(slot: string | number, rev: number, overrides: Partial<ReplicaView> = {}): ReplicaView {
  seq++;
  return {
    id: `r${String(seq).padStart(7, "0")}-${slot}-${rev}`,
    revision: rev,
    generation: 0,
    slot: String(slot),
    canary: false,
    phase: "running",
    stopping: false,
    health: "healthy",
    healthMessage: "",
    healthSince: T - 100_000,
    createdAt: T - 200_000,
    healthyAt: T - 90_000,
    restarts: 0,
    agentId: `agent-${slot}`,
    ...overrides,
  };
}

/** A new replica started `ageMs` ago, not counted yet. */
function fresh(slot: string | number, rev: number, ageMs: number, overrides: Partial<ReplicaView> = {}): ReplicaView {
  return rep(slot, rev, { createdAt: T - ageMs, healthyAt: null, health: "unknown", healthSince: null, ...overrides });
}

const starts = (a: readonly Action[]) => a.filter((x) => x.kind === "start") as Extract<Action, { kind: "start" }>[];
const stops = (a: readonly Action[]) => a.filter((x) => x.kind === "stop").map((x) => (x as { replicaId: string }).replicaId);
const counted = (a: readonly Action[]) => a.filter((x) => x.kind === "counted").map((x) => (x as { replicaId: string }).replicaId);

describe("decide: first rollout", () => {
  it("fills every empty slot at once, whatever max_parallel", () => {
    const d = decide(dep({ revision: 1, stableRevision: 0, count: 4 }), [], T);
    assert.deepEqual(starts(d.actions).map((s) => s.slot), ["0", "1", "2", "3"]);
    assert.equal(d.state, "rolling_out");
  });

  it("succeeds when every slot holds one counted replica, and the revision becomes stable", () => {
    const rs = [0, 1, 2].map((i) => fresh(i, 1, 5000, { health: "healthy", healthSince: T - 1500 }));
    const d = decide(dep({ revision: 1, stableRevision: 0 }), rs, T);
    assert.deepEqual(counted(d.actions).sort(), rs.map((r) => r.id).sort());
    assert.equal(d.state, "running");
    assert.equal(d.stable, 1);
    assert.equal(d.message, "3 of 3 healthy");
  });

  it("does not count a replica healthy for less than min_healthy_time", () => {
    const rs = [fresh(0, 1, 5000, { health: "healthy", healthSince: T - 999 })];
    const d = decide(dep({ revision: 1, stableRevision: 0, count: 1 }), rs, T);
    assert.deepEqual(counted(d.actions), []);
    assert.equal(d.state, "rolling_out");
    assert.equal(d.stable, undefined);
  });

  it("fails without a stable revision to revert to", () => {
    const bad = fresh(0, 1, 5000, { restarts: 3, health: "unhealthy", healthMessage: "exited with code 1" });
    const d = decide(dep({ revision: 1, stableRevision: 0, count: 1 }), [bad], T);
    assert.equal(d.state, "failed");
    assert.match(d.message, /revision 1 failed: replica r\w+ restarted 3 times without becoming healthy: exited with code 1/);
    assert.deepEqual(d.failing, [bad.id]);
    assert.deepEqual(starts(d.actions), []);
  });
});

describe("decide: rolling update", () => {
  it("starts at most max_parallel new replicas beside the old ones, stopping none yet", () => {
    const old = [0, 1, 2, 3, 4].map((i) => rep(i, 1));
    const d = decide(dep({ count: 5, strategy: { ...dep().strategy, maxParallel: 2 } }), old, T);
    assert.deepEqual(starts(d.actions).map((s) => [s.slot, s.revision]), [["0", 2], ["1", 2]]);
    assert.deepEqual(stops(d.actions), []);
    assert.match(d.message, /0 of 5 healthy, batch 1 of 3/);
  });

  it("waits while a batch is in flight: no new start beyond the budget", () => {
    const rs = [rep(0, 1), rep(1, 1), rep(2, 1), fresh(0, 2, 500), fresh(1, 2, 500)];
    const d = decide(dep({ strategy: { ...dep().strategy, maxParallel: 2 } }), rs, T);
    assert.deepEqual(starts(d.actions), []);
    assert.deepEqual(stops(d.actions), []);
  });

  it("stops an old replica once its slot's new one counts healthy, and starts the next batch", () => {
    const o0 = rep(0, 1);
    const n0 = fresh(0, 2, 3000, { health: "healthy", healthSince: T - 1000 });
    const rs = [o0, rep(1, 1), rep(2, 1), n0];
    const d = decide(dep(), rs, T);
    assert.deepEqual(counted(d.actions), [n0.id]);
    assert.deepEqual(stops(d.actions), [o0.id]);
    assert.deepEqual(starts(d.actions).map((s) => s.slot), ["1"]);
    assert.equal(d.progress.healthy, 1);
  });

  it("ends in running with the new revision stable", () => {
    const rs = [0, 1, 2].map((i) => rep(i, 2));
    const d = decide(dep(), rs, T);
    assert.equal(d.state, "running");
    assert.equal(d.stable, 2);
    assert.deepEqual(d.actions, []);
  });

  it("the pass that counts the last batch stops its old replicas and is running already", () => {
    const old = [0, 1, 2].map((i) => rep(i, 1));
    const last = [0, 1, 2].map((i) => fresh(i, 2, 3000, { health: "healthy", healthSince: T - 1000 }));
    const d = decide(dep(), [...old, ...last], T);
    assert.deepEqual(stops(d.actions).sort(), old.map((r) => r.id).sort());
    assert.equal(d.state, "running");
    assert.equal(d.stable, 2);
    assert.equal(d.message, "3 of 3 healthy");
  });

  it("a paused rollout starts no replacement but still fills an empty slot", () => {
    const rs = [rep(0, 1), rep(1, 1)];
    const d = decide(dep({ paused: true, state: "paused" }), rs, T);
    assert.deepEqual(starts(d.actions).map((s) => s.slot), ["2"]);
    assert.equal(d.state, "paused");
  });

  it("a restart (new generation) replaces replicas like a new revision", () => {
    const rs = [0, 1].map((i) => rep(i, 2));
    const d = decide(dep({ count: 2, stableRevision: 2, generation: 1 }), rs, T);
    assert.deepEqual(starts(d.actions).map((s) => [s.slot, s.generation]), [["0", 1]]);
  });
});

describe("decide: failure and auto-revert", () => {
  it("a new replica never healthy within healthy_deadline reverts to the stable revision", () => {
    const slow = fresh(0, 2, 61_000, { health: "unhealthy", healthMessage: "GET / returned 503" });
    const d = decide(dep(), [rep(0, 1), rep(1, 1), rep(2, 1), slow], T);
    const revert = d.actions.find((a) => a.kind === "revert");
    assert.deepEqual(revert && { to: revert.toRevision, ids: revert.failedReplicaIds }, { to: 1, ids: [slow.id] });
    assert.equal(d.state, "reverting");
    assert.match(d.message, /not healthy within 1m: GET \/ returned 503; reverting to revision 1/);
    assert.deepEqual(starts(d.actions), []);
  });

  it("a new replica never placed within healthy_deadline reverts with the Scheduler's reason it waits, not a health message", () => {
    const unplaced = fresh(0, 2, 61_000, { phase: "pending", waitReason: "no eligible agent: 3 have less than 4 CPU cores free" });
    const d = decide(dep(), [rep(0, 1), rep(1, 1), rep(2, 1), unplaced], T);
    assert.equal(d.state, "reverting");
    assert.match(d.message, /not placed within 1m: no eligible agent: 3 have less than 4 CPU cores free; reverting to revision 1/);
  });

  it("a new replica whose job ended fails the rollout at once", () => {
    const gone = fresh(0, 2, 2000, { phase: "ended", endReason: "cwd escapes the work directory" });
    const d = decide(dep(), [rep(0, 1), rep(1, 1), rep(2, 1), gone], T);
    assert.deepEqual(d.actions.map((a) => a.kind), ["ended", "revert"]);
    assert.match(d.message, /ended: cwd escapes/);
  });

  it("without auto_revert the rollout stops where it is: failed, nothing started", () => {
    const bad = fresh(0, 2, 2000, { restarts: 4, health: "unhealthy" });
    const d = decide(dep({ strategy: { ...dep().strategy, autoRevert: false } }), [rep(0, 1), rep(1, 1), rep(2, 1), bad], T);
    assert.equal(d.state, "failed");
    assert.deepEqual(starts(d.actions), []);
    assert.deepEqual(stops(d.actions), []);
  });

  it("after the revert, the failed revision's replicas are stopped and lost slots rolled back", () => {
    // Slot 0 had moved to revision 2 (old copy stopped); slot 1's revision 2 replica was failing.
    const moved = rep(0, 2);
    const failing = fresh(1, 2, 61_000, { health: "unhealthy" });
    const keep1 = rep(1, 1);
    const keep2 = rep(2, 1);
    const d = decide(dep({ revision: 1, stableRevision: 1, state: "reverting", promoted: true }), [moved, failing, keep1, keep2], T);
    assert.deepEqual(stops(d.actions), [failing.id]);
    assert.deepEqual(starts(d.actions).map((s) => [s.slot, s.revision]), [["0", 1]]);
    assert.equal(d.state, "reverting");
  });

  it("a failed deployment stays failed and starts nothing", () => {
    const d = decide(dep({ state: "failed" }), [rep(0, 1), rep(1, 1)], T);
    assert.equal(d.state, "failed");
    assert.deepEqual(starts(d.actions), []);
  });
});

describe("decide: canaries", () => {
  const canary = (n: number, autoPromote = false) => ({ ...dep().strategy, canary: n, autoPromote, maxParallel: 2 });

  it("starts only `canary` new replicas, marked, and keeps every old one", () => {
    const d = decide(dep({ count: 4, strategy: canary(1) }), [0, 1, 2, 3].map((i) => rep(i, 1)), T);
    assert.deepEqual(starts(d.actions).map((s) => [s.slot, s.canary]), [["0", true]]);
  });

  it("waits for promotion once the canaries are healthy, old replica still running", () => {
    const c = fresh(0, 2, 5000, { canary: true, health: "healthy", healthSince: T - 2000 });
    const d = decide(dep({ count: 2, strategy: canary(1) }), [rep(0, 1), rep(1, 1), c], T);
    assert.equal(d.state, "waiting_promotion");
    assert.deepEqual(stops(d.actions), []);
    assert.deepEqual(starts(d.actions), []);
  });

  it("auto_promote promotes healthy canaries", () => {
    const c = fresh(0, 2, 5000, { canary: true, health: "healthy", healthSince: T - 2000 });
    const d = decide(dep({ count: 2, strategy: canary(1, true) }), [rep(0, 1), rep(1, 1), c], T);
    assert.ok(d.actions.some((a) => a.kind === "promote"));
  });

  it("once promoted, the canary's old replica goes and the rest roll", () => {
    const o0 = rep(0, 1);
    const c = rep(0, 2, { canary: true });
    const d = decide(dep({ count: 3, promoted: true, strategy: canary(1) }), [o0, rep(1, 1), rep(2, 1), c], T);
    assert.deepEqual(stops(d.actions), [o0.id]);
    assert.deepEqual(starts(d.actions).map((s) => s.slot), ["1", "2"]);
  });
});

describe("decide: remediation and scaling", () => {
  it("replaces a replica unhealthy for replace_unhealthy_after on another agent, then stops it", () => {
    const sick = rep(0, 2, { health: "unhealthy", healthSince: T - 31_000, healthMessage: "connection refused", agentId: "pi-7" });
    const d = decide(dep({ count: 1, stableRevision: 2, state: "running" }), [sick], T);
    const [s] = starts(d.actions);
    assert.deepEqual(s && { slot: s.slot, avoid: s.avoidAgents }, { slot: "0", avoid: ["pi-7"] });
    assert.match(s!.reason, /unhealthy for 31s: connection refused/);
    assert.equal(d.state, "running");
    assert.match(d.message, /degraded/);

    const replacement = fresh(0, 2, 5000, { health: "healthy", healthSince: T - 2000, agentId: "pi-8" });
    const next = decide(dep({ count: 1, stableRevision: 2, state: "running" }), [sick, replacement], T);
    assert.deepEqual(stops(next.actions), [sick.id]);
  });

  it("refills the slot of a replica whose job ended on its own, without failing anything", () => {
    const gone = rep(1, 2, { phase: "ended", endReason: "dead: out of attempts" });
    const d = decide(dep({ stableRevision: 2, state: "running" }), [rep(0, 2), gone, rep(2, 2)], T);
    assert.deepEqual(d.actions.map((a) => a.kind), ["ended", "start"]);
    assert.equal(starts(d.actions)[0]!.slot, "1");
  });

  it("outside a rollout, a replica that never gets healthy is replaced elsewhere, not reverted", () => {
    const bad = fresh(1, 2, 61_000, { agentId: "box-1" });
    const d = decide(dep({ stableRevision: 2, state: "running" }), [rep(0, 2), bad, rep(2, 2)], T);
    assert.deepEqual(stops(d.actions), [bad.id]);
    assert.deepEqual(starts(d.actions).map((s) => s.avoidAgents), [["box-1"]]);
  });

  it("scaling down stops the replicas of slots no longer wanted", () => {
    const rs = [0, 1, 2, 3].map((i) => rep(i, 2));
    const d = decide(dep({ count: 2, stableRevision: 2, state: "rolling_out" }), rs, T);
    assert.deepEqual(stops(d.actions), [rs[2]!.id, rs[3]!.id]);
    assert.equal(d.state, "running");
  });

  it("per_agent: slots are agents, starts are pinned, an agent that left loses its replica", () => {
    const left = rep("agent-b", 1);
    const d = decide(dep({ revision: 1, stableRevision: 1, perAgent: true, slots: ["agent-a", "agent-c"], state: "running" }), [rep("agent-a", 1), left], T);
    assert.deepEqual(stops(d.actions), [left.id]);
    assert.deepEqual(starts(d.actions).map((s) => s.pinAgent), ["agent-c"]);
  });

  it("stopping a deployment stops every replica, then it is stopped", () => {
    const rs = [rep(0, 2), fresh(1, 2, 100)];
    const d = decide(dep({ stopped: true }), rs, T);
    assert.deepEqual(stops(d.actions), rs.map((r) => r.id));
    assert.equal(d.state, "stopping");
    assert.equal(d.message, "stopping 2 replicas");
    // Asked to stop, not yet gone: still stopping, nothing asked twice.
    const asked = decide(dep({ stopped: true, state: "stopping" }), rs.map((r) => ({ ...r, stopping: true })), T);
    assert.deepEqual(asked.actions, []);
    assert.equal(asked.state, "stopping");
    const none = decide(dep({ stopped: true, state: "stopping" }), [], T);
    assert.equal(none.state, "stopped");
    assert.equal(none.message, "stopped");
  });

  it("a replica being stopped is left to the loop", () => {
    const d = decide(dep({ count: 1, stableRevision: 2, state: "running" }), [rep(0, 2), rep(0, 1, { stopping: true })], T);
    assert.deepEqual(d.actions, []);
    assert.equal(d.state, "running");
  });
});

describe("durationText", () => {
  it("reads like a person wrote it", () => {
    assert.deepEqual([250, 1000, 60_000, 90_000, 3_600_000].map(durationText), ["250ms", "1s", "1m", "1m30s", "1h"]);
  });
});
