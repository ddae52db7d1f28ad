import assert from "node:assert/strict";
import { setTimeout } from "node:timers/promises";
import { describe, it } from "node:test";
import { ReplicasInFlight } from "./replicas_in_flight.ts";

const uncounted = (r: ReplicasInFlight, round: number, deployment: string, counted: string[] = [], jobId = "j-claimed") => {
  const counts = new Map<string, number>();
  r.addUncounted(counts, round, deployment, jobId, counted);
  return Object.fromEntries(counts);
};

describe("ReplicasInFlight", () => {
  it("counts another round's replicas of the deployment, not the round's own nor another deployment's", () => {
    const r = new ReplicasInFlight();
    const a = r.begin();
    const b = r.begin();
    r.note(a, "web", "j1", "agent-1");
    r.note(a, "web", "j2", "agent-1");
    r.note(a, "api", "j3", "agent-2");
    r.note(b, "web", "j4", "agent-3");
    assert.deepEqual(uncounted(r, b, "web"), { "agent-1": 2 });
    assert.deepEqual(uncounted(r, a, "web"), { "agent-3": 1 });
    assert.deepEqual(uncounted(r, b, "db"), {});
    assert.deepEqual(uncounted(r, b, "web", [], "j1"), { "agent-1": 1 }, "a job is not its own sibling");
  });

  it("follows a replica from its likely agent to the winner, and forgets one that found none or that the Scheduler refused", () => {
    const r = new ReplicasInFlight();
    const a = r.begin();
    const b = r.begin();
    r.note(a, "web", "j1", "agent-1");
    r.note(a, "web", "j1", "agent-2");
    assert.deepEqual(uncounted(r, b, "web"), { "agent-2": 1 });
    r.note(a, "web", "j1", undefined);
    assert.deepEqual(uncounted(r, b, "web"), {});
    r.note(a, "web", "j2", "agent-1");
    r.settled("j2", false);
    assert.deepEqual(uncounted(r, b, "web"), {});
    assert.equal(r.size, 0);
  });

  it("leaves out what the claim counted: the job's siblings, and replicas recorded before the claim was sent", async () => {
    const r = new ReplicasInFlight();
    const a = r.begin();
    const b = r.begin(); // claims before a's replicas are recorded
    r.note(a, "web", "j1", "agent-1");
    r.note(a, "web", "j2", "agent-2");
    r.settled("j1", true);
    r.settled("j2", true);
    await setTimeout(2);
    const c = r.begin(); // claims after
    assert.deepEqual(uncounted(r, b, "web"), { "agent-1": 1, "agent-2": 1 });
    assert.deepEqual(uncounted(r, b, "web", ["j1"]), { "agent-2": 1 }, "j1 is among the claim's siblings");
    assert.deepEqual(uncounted(r, c, "web"), {}, "recorded before c's claim: counted there, or ended since");
  });

  it("forgets a round's unrecorded replicas when it ends, and recorded ones once every open round claimed after them", async () => {
    const r = new ReplicasInFlight();
    const a = r.begin();
    const b = r.begin();
    r.note(a, "web", "j1", "agent-1");
    r.note(a, "web", "j2", "agent-2");
    r.settled("j1", true);
    r.end(a);
    assert.equal(r.size, 1, "j2 was never recorded: its claim lapses");
    assert.deepEqual(uncounted(r, b, "web"), { "agent-1": 1 }, "b claimed before j1 was recorded");
    await setTimeout(2);
    const c = r.begin();
    r.end(b);
    assert.equal(r.size, 0, "c, the only open round, claimed after j1 was recorded");
    r.end(c);
  });
});
