import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  AVOIDED,
  BID_WEIGHT,
  FIT_WEIGHT,
  available,
  decide,
  decideStanding,
  explainNoCandidates,
  explainNoWinner,
  fit,
  ineligibility,
  NOT_PINNED,
  PINNED_UNKNOWN,
  requiredDrivers,
  sampleBound,
  selectCandidates,
  type StandingBid,
} from "./placement.ts";
import { GiB, MiB, agent, bid, counting, decline, fleet, job, res, seeded } from "./placement_harness.ts";

const never = () => {
  throw new Error("random() must not be called for a small fleet");
};
const ids = (agents: readonly { id: string }[]) => agents.map((a) => a.id);

describe("ineligibility", () => {
  it("finds nothing wrong with a healthy agent that has room", () => {
    assert.equal(ineligibility(agent("a-1"), job()), null);
  });

  it("names liveness and schedulability in words", () => {
    assert.equal(ineligibility(agent("a-1", { status: "offline" }), job()), "offline");
    assert.equal(ineligibility(agent("a-1", { status: "stale" }), job()), "stale (no recent heartbeat)");
    assert.equal(ineligibility(agent("a-1", { schedulability: "draining" }), job()), "draining");
    assert.equal(ineligibility(agent("a-1", { schedulability: "cordoned" }), job()), "cordoned");
  });

  it("says liveness first when an agent is both offline and draining", () => {
    assert.equal(ineligibility(agent("a-1", { status: "offline", schedulability: "draining" }), job()), "offline");
  });

  it("tells a missing label apart from a label with another value", () => {
    const eu = job({ labels: { zone: "eu" } });
    assert.equal(ineligibility(agent("a-1"), eu), "lacks label zone=eu");
    assert.equal(ineligibility(agent("a-1", { labels: { zone: "us" } }), eu), "label zone is us, needs eu");
    assert.equal(ineligibility(agent("a-1", { labels: { zone: "eu", gpu: "a100" } }), eu), null);
  });

  it("reads an empty driver as process, and requires every further driver too", () => {
    assert.deepEqual(requiredDrivers(job()), ["process"]);
    assert.deepEqual(requiredDrivers(job({ driver: "docker", drivers: ["docker", "process"] })), ["docker", "process"]);
    assert.equal(ineligibility(agent("a-1", { drivers: ["docker"] }), job()), "no driver process");
    assert.equal(ineligibility(agent("a-1"), job({ driver: "docker" })), "no driver docker");
    assert.equal(ineligibility(agent("a-1", { drivers: ["docker"] }), job({ driver: "docker", drivers: ["process"] })), "no driver process");
  });

  it("says how many CPU cores the job needs and how many are free", () => {
    assert.equal(ineligibility(agent("a-1", { free: res(1.5, 16, 100) }), job({ resources: res(4, 0) })), "needs 4 CPU cores, 1.5 free");
    assert.equal(ineligibility(agent("a-1", { free: res(0.25, 16, 100) }), job({ resources: res(1, 0) })), "needs 1 CPU core, 0.25 free");
  });

  it("counts what this control plane reserved since the agent's last report", () => {
    const busy = agent("a-1", { free: res(8, 2, 100), reserved: { cpuMillis: 0, memoryBytes: 0.8 * GiB, diskBytes: 0 } });
    assert.equal(ineligibility(busy, job({ resources: res(1, 4) })), "needs 4.0 GiB memory, 1.2 GiB free");
    assert.deepEqual(available(busy), { cpuMillis: 8000, memoryBytes: 1.2 * GiB, diskBytes: 100 * GiB });
  });

  it("never counts less than nothing free when reservations exceed the last report", () => {
    const over = agent("a-1", { free: res(1, 1, 1), reserved: res(2, 2, 2) });
    assert.deepEqual(available(over), res(0, 0, 0));
    assert.equal(ineligibility(over, job({ resources: res(0.5, 0) })), "needs 0.5 CPU cores, 0 free");
  });

  it("uses the unit of the need for both memory numbers, and checks disk too", () => {
    const small = agent("a-1", { free: { cpuMillis: 8000, memoryBytes: 100 * MiB, diskBytes: 5 * GiB } });
    assert.equal(ineligibility(small, job({ resources: { cpuMillis: 0, memoryBytes: 512 * MiB, diskBytes: 0 } })), "needs 512 MiB memory, 100 MiB free");
    assert.equal(ineligibility(small, job({ resources: { cpuMillis: 0, memoryBytes: 0, diskBytes: 10 * GiB } })), "needs 10.0 GiB disk, 5.0 GiB free");
  });

  it("treats a requirement of 0 as no requirement at all", () => {
    const full = agent("a-1", { free: res(0, 0, 0) });
    assert.equal(ineligibility(full, job({ resources: res(0, 0, 0) })), null);
  });

  it("accepts a job that fills the agent exactly", () => {
    assert.equal(ineligibility(agent("a-1"), job({ resources: res(8, 16, 100) })), null);
  });
});

describe("fit", () => {
  it("is 0 for an agent that cannot take the job", () => {
    assert.equal(fit(agent("a-1", { schedulability: "draining" }), job()), 0);
    assert.equal(fit(agent("a-1"), job({ resources: res(9, 1) })), 0);
  });

  it("is 1 when the job fills the agent exactly", () => {
    assert.equal(fit(agent("a-1"), job({ resources: res(8, 16) })), 1);
  });

  it("is 0 when the job needs nothing and the agent is empty", () => {
    assert.equal(fit(agent("a-1"), job({ resources: res(0, 0) })), 0);
  });

  it("packs: the busier of two agents fits better", () => {
    const idle = agent("idle");
    const busy = agent("busy", { free: res(3, 5, 100) });
    assert.ok(fit(busy, job()) > fit(idle, job()));
  });

  it("counts reservations as used, so a reserved agent fits better until it is full", () => {
    const plain = agent("a-1");
    const reserved = agent("a-2", { reserved: res(4, 8) });
    assert.ok(fit(reserved, job()) > fit(plain, job()));
  });

  it("prefers an evenly used agent over a lopsided one with the same total headroom", () => {
    const even = agent("even", { total: res(8, 16), free: res(4, 8) });
    const lopsided = agent("lopsided", { total: res(8, 16), free: res(0, 16) });
    const nothing = job({ resources: res(0, 0) });
    assert.ok(Math.abs(fit(even, nothing) - (20 - 2 * 10 ** 0.5) / 18) < 1e-12);
    assert.equal(fit(lopsided, nothing), 0.5);
    assert.ok(fit(even, nothing) > fit(lopsided, nothing));
  });

  it("is 0.5 when the agent reported no totals to measure against", () => {
    const unknown = agent("a-1", { total: res(0, 0, 0), free: res(8, 16, 100) });
    assert.equal(fit(unknown, job()), 0.5);
  });

  it("stays within 0 and 1 for every size of job", () => {
    for (let cores = 0; cores <= 8; cores += 0.5) {
      for (let gib = 0; gib <= 16; gib += 2) {
        const f = fit(agent("a-1"), job({ resources: res(cores, gib) }));
        assert.ok(f >= 0 && f <= 1, `${cores} cores, ${gib} GiB: ${f}`);
      }
    }
  });
});

describe("selectCandidates", () => {
  it("offers the job only to the agent that is eligible among three", () => {
    const agents = [agent("a-1"), agent("a-2", { schedulability: "draining" }), agent("a-3", { labels: { zone: "us" } })];
    const sel = selectCandidates(agents, job({ labels: { zone: "us" } }), 3, never);
    assert.deepEqual(ids(sel.offered), ["a-3"]);
    assert.equal(sel.eligibleCount, 1);
    assert.equal(sel.examined, 3);
    assert.deepEqual(sel.ineligible, [
      { reason: "draining", count: 1, exampleAgentIds: ["a-2"] },
      { reason: "lacks label zone=us", count: 1, exampleAgentIds: ["a-1"] },
    ]);
  });

  it("does not offer a stale agent", () => {
    const sel = selectCandidates([agent("a-1", { status: "stale" }), agent("a-2")], job(), 2, never);
    assert.deepEqual(ids(sel.offered), ["a-2"]);
    assert.deepEqual(sel.ineligible, [{ reason: "stale (no recent heartbeat)", count: 1, exampleAgentIds: ["a-1"] }]);
  });

  it("offers the best k by fit, breaking equal fits by agent id", () => {
    const agents = [agent("d"), agent("c"), agent("b", { free: res(2, 4, 100) }), agent("a")];
    const sel = selectCandidates(agents, job(), 3, never);
    assert.deepEqual(ids(sel.offered), ["b", "a", "c"]);
  });

  it("offers at least one agent even when asked for fewer", () => {
    assert.equal(selectCandidates([agent("a-1"), agent("a-2")], job(), 0, never).offered.length, 1);
  });

  it("offers an agent of a previous attempt only after every other eligible agent", () => {
    const agents = [agent("a-1", { free: res(1, 1, 100) }), agent("a-2"), agent("a-3")];
    const retry = job({ previousAgentIds: ["a-1", "a-3"] });
    assert.deepEqual(ids(selectCandidates(agents, retry, 3, never).offered), ["a-2", "a-1", "a-3"]);
    assert.deepEqual(ids(selectCandidates(agents, retry, 1, never).offered), ["a-2"]);
  });

  it("still offers an avoided agent when it is the only eligible one", () => {
    const agents = [agent("a-1"), agent("a-2", { status: "offline" })];
    assert.deepEqual(ids(selectCandidates(agents, job({ previousAgentIds: ["a-1"] }), 2, never).offered), ["a-1"]);
  });

  it("counts reserved resources, so an agent already promised away is not offered", () => {
    const agents = [agent("a-1", { reserved: res(7.5, 0) }), agent("a-2")];
    const sel = selectCandidates(agents, job(), 2, never);
    assert.deepEqual(ids(sel.offered), ["a-2"]);
    assert.deepEqual(sel.ineligible, [{ reason: "has less than 1 CPU core free", count: 1, exampleAgentIds: ["a-1"] }]);
  });

  it("scans all of 64 agents without drawing a random number", () => {
    const sel = selectCandidates(fleet(64), job(), 3, never);
    assert.equal(sel.examined, 64);
    assert.equal(sel.eligibleCount, 64);
  });

  it("examines a bounded sample of 10,000 agents when plenty are eligible", () => {
    const agents = fleet(10_000);
    for (const k of [1, 3, 8, 20]) {
      const r = counting(seeded(k));
      const sel = selectCandidates(agents, job(), k, r.random);
      assert.equal(sel.offered.length, k);
      assert.ok(sel.examined <= sampleBound(k), `k=${k}: examined ${sel.examined}`);
      assert.equal(sel.examined, 2 * k, "stops once it holds twice as many eligible agents as offers");
      assert.equal(r.draws(), sel.examined, "one draw per agent examined, none wasted on repeats");
    }
  });

  it("samples at most the bound when half the fleet is eligible", () => {
    const agents = fleet(10_000, (i) => (i % 2 ? { schedulability: "cordoned" } : {}));
    const sel = selectCandidates(agents, job(), 3, seeded(7));
    assert.equal(sel.offered.length, 3);
    assert.ok(sel.examined <= sampleBound(3));
    assert.ok(sel.offered.every((a) => ineligibility(a, job()) === null));
  });

  it("finds the single eligible agent among 10,000 by falling back to a full scan", () => {
    const agents = fleet(10_000, (i) => (i === 4321 ? { labels: { zone: "eu" } } : i % 10 === 0 ? { schedulability: "draining" } : {}));
    const sel = selectCandidates(agents, job({ labels: { zone: "eu" } }), 3, seeded(1));
    assert.deepEqual(ids(sel.offered), ["a-4321"]);
    assert.equal(sel.eligibleCount, 1);
    assert.equal(sel.examined, 10_000);
    assert.deepEqual(
      sel.ineligible.map((g) => [g.reason, g.count, g.exampleAgentIds.length]),
      [
        ["lacks label zone=eu", 8999, 5],
        ["draining", 1000, 5],
      ],
    );
  });

  it("examines every agent exactly once across sample and fallback, even with a degenerate random source", () => {
    for (const random of [() => 0, () => 0.999999999, () => 1, seeded(3)]) {
      const sel = selectCandidates(fleet(500, () => ({ schedulability: "cordoned" })), job(), 2, random);
      assert.equal(sel.examined, 500);
      assert.deepEqual(
        sel.ineligible.map((g) => [g.reason, g.count]),
        [["cordoned", 500]],
      );
    }
  });

  it("returns the same selection for the same random source", () => {
    const agents = fleet(2_000, (i) => ({ free: res(1 + (i % 8), 16, 100) }));
    const a = selectCandidates(agents, job(), 4, seeded(42));
    const b = selectCandidates(agents, job(), 4, seeded(42));
    assert.deepEqual(ids(a.offered), ids(b.offered));
  });

  it("explains an empty offer with the grouped reasons, largest first", () => {
    const agents = [...fleet(30, () => ({ labels: { zone: "us" } })), ...fleet(7, () => ({ schedulability: "draining", labels: { zone: "eu" } }), "d")];
    const sel = selectCandidates(agents, job({ labels: { zone: "eu" } }), 3, seeded(1));
    assert.equal(sel.offered.length, 0);
    assert.equal(explainNoCandidates(sel), "no eligible agent: 30 lack label zone=eu, 7 draining");
  });

  it("explains an empty fleet", () => {
    assert.equal(explainNoCandidates(selectCandidates([], job(), 3, never)), "no eligible agent: no agents are registered");
  });

  it("agrees the verb with the count in reasons", () => {
    const agents = [agent("a-1", { drivers: [] }), agent("a-2", { drivers: [] }), agent("a-3", { free: res(0, 16, 100) })];
    assert.equal(explainNoCandidates(selectCandidates(agents, job(), 1, never)), "no eligible agent: 2 have no driver process, 1 has less than 1 CPU core free");
  });
});

describe("decide", () => {
  const offered = [agent("a-1"), agent("a-2"), agent("a-3")];

  it("places the job on the highest combined score", () => {
    const d = decide(job(), offered, [bid("a-1", 0.4), bid("a-2", 0.9), bid("a-3", 0.6)]);
    assert.equal(d.winnerAgentId, "a-2");
    assert.deepEqual(
      d.candidates.map((c) => [c.agentId, c.outcome]),
      [
        ["a-2", "won"],
        ["a-3", "outbid"],
        ["a-1", "outbid"],
      ],
    );
    const f = fit(offered[1]!, job());
    assert.ok(Math.abs(d.candidates[0]!.score - (BID_WEIGHT * 0.9 + FIT_WEIGHT * f)) < 1e-12);
    assert.match(d.candidates[1]!.reason, /^outbid by a-2 \(0\.\d\d > 0\.\d\d\)$/);
  });

  it("lets fit decide between equal bids: the busier agent wins", () => {
    const agents = [agent("a-1"), agent("a-2", { free: res(2, 4, 100) })];
    assert.equal(decide(job(), agents, [bid("a-1", 1), bid("a-2", 1)]).winnerAgentId, "a-2");
  });

  it("breaks exact ties by agent id, whatever the order of offers and answers", () => {
    const answers = [bid("a-3", 0.5), bid("a-1", 0.5), bid("a-2", 0.5)];
    const forward = decide(job(), offered, answers);
    const backward = decide(job(), [...offered].reverse(), [...answers].reverse());
    assert.equal(forward.winnerAgentId, "a-1");
    assert.deepEqual(forward, backward);
    assert.match(forward.candidates[1]!.reason, /^tied with a-1 at 0\.\d\d; a-1 sorts first$/);
  });

  it("reports declines with their reasons and silences as no answer", () => {
    const d = decide(job(), offered, [bid("a-3", 0.7), decline("a-1", "needs 4096 MiB memory, 1024 MiB free")]);
    assert.equal(d.winnerAgentId, "a-3");
    assert.deepEqual(d.candidates, [
      { agentId: "a-3", outcome: "won", score: d.candidates[0]!.score, reason: "the only bid" },
      { agentId: "a-1", outcome: "declined", score: 0, reason: "needs 4096 MiB memory, 1024 MiB free" },
      { agentId: "a-2", outcome: "no_answer", score: 0, reason: "did not answer in time" },
    ]);
    assert.match(d.summary, /^placed on agent a-3 \(score 0\.\d\d\): the only bid; a-1 declined: "needs 4096 MiB memory, 1024 MiB free"; 1 offered agent did not answer in time \(a-2\)$/);
  });

  it("writes the whole story in the summary when given the selection", () => {
    const agents = [
      agent("a-3", { labels: { zone: "eu" } }),
      agent("a-7", { labels: { zone: "eu" } }),
      agent("a-9", { labels: { zone: "eu" } }),
      agent("a-4", { labels: { zone: "eu" } }),
      ...fleet(30, () => ({ labels: { zone: "us" } }), "us"),
      ...fleet(7, () => ({ schedulability: "draining" }), "d"),
    ];
    const eu = job({ labels: { zone: "eu" } });
    const sel = selectCandidates(agents, eu, 4, never);
    assert.deepEqual(ids(sel.offered), ["a-3", "a-4", "a-7", "a-9"]);
    const d = decide(eu, sel.offered, [bid("a-3", 1), bid("a-4", 0.5), decline("a-7", "needs 4096 MiB memory, 1024 MiB free")], sel);
    assert.equal(
      d.summary,
      `placed on agent a-3 (score ${d.candidates[0]!.score.toFixed(2)}): best of 2 bids; a-7 declined: "needs 4096 MiB memory, 1024 MiB free"; ` +
        "1 offered agent did not answer in time (a-9); 37 agents ineligible (30 lack label zone=eu, 7 draining)",
    );
  });

  it("chooses an agent of a previous attempt only when no other agent bid", () => {
    const retry = job({ previousAgentIds: ["a-1"] });
    const d = decide(retry, offered, [bid("a-1", 1), bid("a-2", 0.1)]);
    assert.equal(d.winnerAgentId, "a-2");
    assert.equal(d.candidates[1]!.reason, "ran a previous attempt; a-2 preferred");
    assert.equal(decide(retry, offered, [bid("a-1", 1), decline("a-2", "busy")]).winnerAgentId, "a-1");
  });

  it("ignores answers from agents that were not offered the job, and repeated answers", () => {
    const d = decide(job(), [agent("a-1")], [bid("intruder", 1), decline("a-1", "disk full"), bid("a-1", 1)]);
    assert.equal(d.winnerAgentId, undefined);
    assert.deepEqual(ids(d.candidates.map((c) => ({ id: c.agentId }))), ["a-1"]);
    assert.equal(d.candidates[0]!.outcome, "declined");
  });

  it("counts an answer with both a bid and a decline as a decline, and one with neither as no answer", () => {
    const d = decide(job(), [agent("a-1"), agent("a-2")], [{ agentId: "a-1", bid: { score: 1 }, decline: { reason: "changed its mind" } }, { agentId: "a-2" }]);
    assert.deepEqual(
      d.candidates.map((c) => c.outcome),
      ["declined", "no_answer"],
    );
  });

  it("clamps bid scores to 0..1, so a bid of 50 cannot drown the fit", () => {
    const agents = [agent("a-1"), agent("a-2", { free: res(2, 4, 100) })];
    const d = decide(job(), agents, [bid("a-1", 50), bid("a-2", 1)]);
    assert.equal(d.winnerAgentId, "a-2");
    assert.ok(d.candidates.every((c) => c.score <= 1));
    assert.equal(decide(job(), [agent("a-1")], [bid("a-1", Number.NaN)]).candidates[0]!.score, FIT_WEIGHT * fit(agent("a-1"), job()));
  });

  it("explains why nobody won when all declined or stayed silent", () => {
    const d = decide(job(), offered, [decline("a-2", "disk full"), decline("a-1", "docker daemon down")]);
    assert.equal(d.winnerAgentId, undefined);
    const why = 'no agent bid; a-1 declined: "docker daemon down"; a-2 declined: "disk full"; 1 offered agent did not answer in time (a-3)';
    assert.equal(explainNoWinner(d), why);
    assert.equal(d.summary, why);
  });

  it("explains an auction nobody answered", () => {
    const d = decide(job(), offered, []);
    assert.equal(explainNoWinner(d), "no agent bid; 3 offered agents did not answer in time (a-1, a-2, a-3)");
  });

  it("explains an auction offered to nobody", () => {
    const d = decide(job(), [], []);
    assert.equal(d.summary, "no agent was offered the job");
    assert.equal(explainNoWinner(d), "no agent was offered the job");
  });
});

describe("agents the job is pinned to or avoids", () => {
  it("rules out an agent the job is not pinned to, and one it avoids, in words a user can read", () => {
    assert.equal(NOT_PINNED, "not one of the agents the job is pinned to");
    assert.equal(AVOIDED, "avoided by the job");
    assert.equal(ineligibility(agent("a-1"), job({ agentIds: ["a-2"] })), "not one of the agents the job is pinned to");
    assert.equal(ineligibility(agent("a-2"), job({ agentIds: ["a-2", "a-3"] })), null);
    assert.equal(ineligibility(agent("a-1"), job({ avoidAgentIds: ["a-1"] })), "avoided by the job");
    assert.equal(ineligibility(agent("a-1"), job({ agentIds: [], avoidAgentIds: [] })), null, "empty lists constrain nothing");
  });

  it("lets an avoid win over a pin, and names the job's choice before the agent's own state", () => {
    assert.equal(ineligibility(agent("a-1"), job({ agentIds: ["a-1"], avoidAgentIds: ["a-1"] })), AVOIDED);
    assert.equal(ineligibility(agent("a-1", { status: "offline" }), job({ agentIds: ["a-2"] })), NOT_PINNED);
    assert.equal(ineligibility(agent("a-1", { schedulability: "draining" }), job({ agentIds: ["a-1"] })), "draining");
  });

  it("offers a job pinned to one agent out of 10,000 to that agent, without sampling, with or without an index by id", () => {
    const agents = fleet(10_000);
    const pinned = job({ agentIds: ["a-7777"] });
    const index = new Map(agents.map((a) => [a.id, a]));
    for (const sel of [selectCandidates(agents, pinned, 3, never), selectCandidates(agents, pinned, 3, never, index)]) {
      assert.deepEqual(ids(sel.offered), ["a-7777"]);
      assert.equal(sel.eligibleCount, 1);
      assert.equal(sel.examined, 10_000);
      assert.deepEqual(sel.ineligible, [{ reason: NOT_PINNED, count: 9_999, exampleAgentIds: ["a-0", "a-1", "a-2", "a-3", "a-4"] }]);
    }
  });

  it("finds every pinned agent however many are eligible, and still puts a previous attempt's agent last", () => {
    const agents = fleet(10_000, (i) => (i === 42 ? { free: res(2, 2, 100) } : {}));
    const sel = selectCandidates(agents, job({ agentIds: ["a-9999", "a-42", "a-0"], previousAgentIds: ["a-42"] }), 3, seeded(5));
    assert.deepEqual(ids(sel.offered), ["a-0", "a-9999", "a-42"], "a-42 fits best but ran a previous attempt");
  });

  it("explains why a pinned job waits: its agent cannot take it, or Fleet does not know it", () => {
    const agents = fleet(100, (i) => (i === 3 ? { schedulability: "draining" } : {}));
    const draining = selectCandidates(agents, job({ agentIds: ["a-3"] }), 3, never);
    assert.deepEqual(draining.offered, []);
    assert.equal(explainNoCandidates(draining), "no eligible agent: 99 not one of the agents the job is pinned to, 1 draining");

    const gone = selectCandidates(agents, job({ agentIds: ["a-3", "deleted-1", "deleted-0"] }), 3, never);
    assert.deepEqual(gone.ineligible.find((g) => g.reason === PINNED_UNKNOWN), { reason: PINNED_UNKNOWN, count: 2, exampleAgentIds: ["deleted-0", "deleted-1"] });
    assert.equal(explainNoCandidates(gone), "no eligible agent: 99 not one of the agents the job is pinned to, 2 pinned by the job but not registered, 1 draining");
    assert.equal(explainNoCandidates(selectCandidates([], job({ agentIds: ["a-3"] }), 3, never)), "no eligible agent: no agents are registered");
  });

  it("never offers an avoided agent, even the best fit or the only one left, unlike a previous attempt's agent", () => {
    const agents = [agent("a-1", { free: res(1, 1, 100) }), agent("a-2"), agent("a-3")];
    const sel = selectCandidates(agents, job({ avoidAgentIds: ["a-1"] }), 3, never);
    assert.deepEqual(ids(sel.offered), ["a-2", "a-3"]);
    assert.deepEqual(sel.ineligible, [{ reason: AVOIDED, count: 1, exampleAgentIds: ["a-1"] }]);
    const only = selectCandidates([agent("a-1"), agent("a-2", { status: "offline" })], job({ avoidAgentIds: ["a-1"] }), 2, never);
    assert.deepEqual(only.offered, []);
    assert.equal(explainNoCandidates(only), "no eligible agent: 1 avoided by the job, 1 offline");
  });

  it("never offers avoided agents sampled from 10,000, and says so in the auction's summary", () => {
    // The 64 agents it avoids fit best, and this source samples them first (all the sample bound
    // allows): the sample holds no eligible agent, the full scan finds others, none avoided is offered.
    const agents = fleet(10_000, (i) => (i < 64 ? { free: res(1, 1, 100) } : {}));
    const avoidAgentIds = agents.slice(0, 64).map((a) => a.id);
    const avoiding = job({ avoidAgentIds });
    const sel = selectCandidates(agents, avoiding, 3, () => 0);
    assert.equal(sel.offered.length, 3);
    assert.ok(sel.offered.every((a) => !avoidAgentIds.includes(a.id)), `offered ${ids(sel.offered)}`);
    assert.equal(sampleBound(3), 64);
    assert.equal(sel.examined, 10_000);
    const d = decide(avoiding, sel.offered, [bid(sel.offered[0]!.id, 1)], sel);
    assert.match(d.summary, /; 64 agents ineligible \(64 avoided by the job\)$/);
  });
});


describe("spreading a service's replicas (siblings)", () => {
  const siblings = (counts: Record<string, number>) => new Map(Object.entries(counts));

  it("offers the agents running fewest replicas of the deployment first, whatever the fit", () => {
    // a-1 is the best fit (busiest), but it runs two replicas already.
    const agents = [agent("a-1", { free: res(2, 4, 100) }), agent("a-2", { free: res(6, 12, 100) }), agent("a-3")];
    const replica = job({ siblings: siblings({ "a-1": 2, "a-2": 1 }) });
    assert.deepEqual(ids(selectCandidates(agents, replica, 3, never).offered), ["a-3", "a-2", "a-1"]);
    // The same job without siblings packs: best fit first.
    assert.deepEqual(ids(selectCandidates(agents, job(), 3, never).offered), ["a-1", "a-2", "a-3"]);
  });

  it("lets the bid with fewer siblings win over a higher score, and says why the other lost", () => {
    const agents = [agent("a-1"), agent("a-2")];
    const replica = job({ siblings: siblings({ "a-1": 1 }) });
    const d = decide(replica, agents, [bid("a-1", 1), bid("a-2", 0.1)]);
    assert.equal(d.winnerAgentId, "a-2");
    assert.equal(d.candidates[1]!.agentId, "a-1");
    assert.equal(d.candidates[1]!.reason, "runs 1 replica of the service, a-2 0; replicas are spread");
  });

  it("still places a replica beside its siblings when no other agent bid", () => {
    const replica = job({ siblings: siblings({ "a-1": 3 }) });
    const d = decide(replica, [agent("a-1"), agent("a-2")], [bid("a-1", 1), decline("a-2", "disk full")]);
    assert.equal(d.winnerAgentId, "a-1");
  });

  it("with spreadFirst, defers a replica whose best bid runs more siblings than an agent that did not answer, and says so", () => {
    const agents = [agent("a-1"), agent("a-2"), agent("a-3")];
    const replica = job({ siblings: siblings({ "a-1": 1, "a-3": 1 }) });
    const answers = [bid("a-1", 1), bid("a-3", 0.5)]; // a-2, with none, is silent
    const d = decide(replica, agents, answers, undefined, true);
    assert.equal(d.winnerAgentId, undefined);
    assert.deepEqual(
      d.candidates.map((c) => [c.agentId, c.outcome]),
      [["a-1", "deferred"], ["a-3", "outbid"], ["a-2", "no_answer"]],
    );
    assert.equal(d.candidates[0]!.reason, "runs 1 replica of the service; a-2 runs 0 and did not answer in time, so the job is auctioned again to hear from it");
    assert.equal(explainNoWinner(d), d.summary);
    assert.match(d.summary, /^not placed yet: a-1 runs 1 replica of the service; a-2 runs 0 /);
    // Without spreadFirst (the caller's patience ran out) the best bid wins.
    assert.equal(decide(replica, agents, answers).winnerAgentId, "a-1");
  });

  it("with spreadFirst, places as usual when the silent agents run as many siblings, when a bidder with fewer answered, and for other jobs", () => {
    const agents = [agent("a-1"), agent("a-2"), agent("a-3")];
    const even = job({ siblings: siblings({ "a-1": 1, "a-2": 1 }) });
    assert.equal(decide(even, agents.slice(0, 2), [bid("a-1", 1)], undefined, true).winnerAgentId, "a-1", "a-2 runs as many");
    const spread = job({ siblings: siblings({ "a-1": 1 }) });
    assert.equal(decide(spread, agents, [bid("a-1", 1), bid("a-3", 0.1)], undefined, true).winnerAgentId, "a-3", "a-3 runs none and bid");
    assert.equal(decide(job(), agents, [bid("a-1", 1)], undefined, true).winnerAgentId, "a-1", "a batch job has no siblings");
    // A silent agent the job avoids (a previous attempt's) is not waited for.
    const retried = job({ siblings: siblings({ "a-1": 1 }), previousAgentIds: ["a-2"] });
    assert.equal(decide(retried, agents.slice(0, 2), [bid("a-1", 1)], undefined, true).winnerAgentId, "a-1");
  });
});

describe("decide with what the round already gave away", () => {
  it("passes over a bid whose capacity went to a job placed before this one, to the next bid", () => {
    // Both agents bid with 8 free cores; a-1 has since been given 7.5 cores by this round.
    const taken = agent("a-1", { reserved: res(7.5, 1) });
    const d = decide(job({ resources: res(1, 1) }), [taken, agent("a-2")], [bid("a-1", 1), bid("a-2", 0.2)]);
    assert.equal(d.winnerAgentId, "a-2");
    const lost = d.candidates.find((c) => c.agentId === "a-1")!;
    assert.equal(lost.outcome, "outbid");
    assert.equal(lost.reason, "no longer eligible when the auction closed: needs 1 CPU core, 0.5 free");
  });

  it("places nothing when every bidder is taken, and the summary says why instead of 'no agent bid'", () => {
    const taken = agent("a-1", { reserved: res(8, 0) });
    const d = decide(job(), [taken], [bid("a-1", 1)]);
    assert.equal(d.winnerAgentId, undefined);
    assert.equal(d.summary, "no usable bid: a-1 no longer eligible when the auction closed: needs 1 CPU core, 0 free");
    assert.equal(explainNoWinner(d), d.summary);
  });
});

describe("decideStanding", () => {
  const now = 10_000;
  const standing = (agentId: string, score: number, overrides: Partial<StandingBid> = {}): StandingBid => ({
    agentId,
    score,
    needs: res(1, 1),
    drivers: ["process"],
    jobId: "earlier",
    at: now - 100,
    ...overrides,
  });
  const lookup = (...agents: ReturnType<typeof agent>[]) => (id: string) => agents.find((a) => a.id === id);

  it("places the job on the best standing bid and says which bid it used", () => {
    const hit = decideStanding(job(), [standing("a-1", 0.3), standing("a-2", 0.9)], lookup(agent("a-1"), agent("a-2")), now, 500);
    assert.equal(hit?.index, 1);
    assert.equal(hit?.decision.winnerAgentId, "a-2");
    assert.deepEqual(
      hit?.decision.candidates.map((c) => [c.agentId, c.outcome]),
      [["a-2", "won"]],
    );
    assert.match(hit!.decision.summary, /^placed on agent a-2 \(score 0\.\d\d\) without an auction: a standing bid: it bid for job earlier 100 ms ago/);
  });

  it("uses no bid older than the limit", () => {
    assert.equal(decideStanding(job(), [standing("a-1", 1, { at: now - 501 })], lookup(agent("a-1")), now, 500), undefined);
  });

  it("uses no bid made for a smaller job, or for other drivers", () => {
    const agents = lookup(agent("a-1", { drivers: ["process", "docker"] }));
    assert.equal(decideStanding(job({ resources: res(2, 1) }), [standing("a-1", 1)], agents, now, 500), undefined);
    assert.equal(decideStanding(job({ driver: "docker" }), [standing("a-1", 1)], agents, now, 500), undefined);
    assert.equal(decideStanding(job({ resources: res(0.5, 0) }), [standing("a-1", 1)], agents, now, 500)?.decision.winnerAgentId, "a-1");
  });

  it("uses no bid of an agent that is no longer eligible: full since, draining, avoided, or a previous attempt's", () => {
    const bids = [standing("a-1", 1)];
    assert.equal(decideStanding(job(), bids, lookup(agent("a-1", { reserved: res(7.5, 0) })), now, 500), undefined);
    assert.equal(decideStanding(job(), bids, lookup(agent("a-1", { schedulability: "draining" })), now, 500), undefined);
    assert.equal(decideStanding(job({ avoidAgentIds: ["a-1"] }), bids, lookup(agent("a-1")), now, 500), undefined);
    assert.equal(decideStanding(job({ previousAgentIds: ["a-1"] }), bids, lookup(agent("a-1")), now, 500), undefined);
    assert.equal(decideStanding(job(), bids, lookup(), now, 500), undefined);
  });

  it("respects a job's pins", () => {
    const bids = [standing("a-1", 1), standing("a-2", 0.1)];
    const hit = decideStanding(job({ agentIds: ["a-2"] }), bids, lookup(agent("a-1"), agent("a-2")), now, 500);
    assert.equal(hit?.decision.winnerAgentId, "a-2");
  });
});
