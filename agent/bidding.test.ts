import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { decideOffer, type AgentView, type Amounts, type OfferDecision } from "./bidding.ts";

const MiB = 1024n * 1024n;
const GiB = 1024n * MiB;

/** A 4-core, 8 GiB, 100 GiB machine with half of each free, idle, running nothing. */
function agent(overrides: Partial<AgentView> = {}): AgentView {
  return {
    drivers: ["process"],
    total: { cpuMillis: 4000, memoryBytes: 8n * GiB, diskBytes: 100n * GiB },
    free: { cpuMillis: 2000, memoryBytes: 4n * GiB, diskBytes: 50n * GiB },
    reserved: { cpuMillis: 0, memoryBytes: 0n, diskBytes: 0n },
    running: 0,
    maxAttempts: 8,
    runningServices: 0,
    maxServices: 16,
    cpuPercent: 10,
    load1: 0.4,
    cores: 4,
    ...overrides,
  };
}

function needs(resources: Partial<Amounts> = {}, driver = "process") {
  return { driver, resources: { cpuMillis: 0, memoryBytes: 0n, diskBytes: 0n, ...resources } };
}

function scoreOf(decision: OfferDecision): number {
  assert.equal(decision.kind, "bid", `expected a bid, got ${JSON.stringify(decision, (_k, v) => (typeof v === "bigint" ? String(v) : v))}`);
  return decision.kind === "bid" ? decision.score : NaN;
}

function reasonOf(decision: OfferDecision): string {
  assert.equal(decision.kind, "decline");
  return decision.kind === "decline" ? decision.reason : "";
}

describe("decideOffer", () => {
  it("bids for a job that fits, with a score between 0 and 1 and what is free after reservations", () => {
    const decision = decideOffer(needs({ cpuMillis: 500, memoryBytes: GiB }), agent({ reserved: { cpuMillis: 1000, memoryBytes: GiB, diskBytes: 0n } }));
    const score = scoreOf(decision);
    assert.ok(score > 0 && score <= 1, `score ${score}`);
    assert.deepEqual(decision.kind === "bid" && decision.free, { cpuMillis: 1000, memoryBytes: 3n * GiB, diskBytes: 50n * GiB });
  });

  it("declines a driver the agent does not have, naming it", () => {
    assert.equal(reasonOf(decideOffer(needs({}, "docker"), agent())), "driver docker not available here (this agent has: process)");
  });

  it("takes an offer that names no driver as one for the process driver", () => {
    scoreOf(decideOffer(needs({}, ""), agent()));
    reasonOf(decideOffer(needs({}, ""), agent({ drivers: ["docker"] })));
  });

  it("declines when it already runs as many attempts as DROVER_MAX_ATTEMPTS allows", () => {
    assert.equal(reasonOf(decideOffer(needs(), agent({ running: 8, maxAttempts: 8 }))), "running 8 attempts, the most this agent takes (DROVER_MAX_ATTEMPTS)");
  });

  it("counts service replicas apart from attempts: each kind declines only at its own limit", () => {
    const service = { ...needs(), service: true };
    // Every attempt slot is taken, but a replica still fits; and the reverse.
    scoreOf(decideOffer(service, agent({ running: 8, maxAttempts: 8, runningServices: 3 })));
    assert.equal(reasonOf(decideOffer(service, agent({ runningServices: 16, maxServices: 16 }))), "running 16 service replicas, the most this agent takes (DROVER_MAX_SERVICES)");
    scoreOf(decideOffer(needs(), agent({ runningServices: 16, maxServices: 16 })));
    // The slots part of a score is the offer's own kind's.
    assert.ok(scoreOf(decideOffer(service, agent({ runningServices: 12 }))) < scoreOf(decideOffer(service, agent({ runningServices: 0 }))));
    assert.equal(scoreOf(decideOffer(service, agent({ running: 7 }))), scoreOf(decideOffer(service, agent({ running: 0 }))));
  });

  it("declines a job that needs more memory than is free, in MiB", () => {
    const decision = decideOffer(needs({ memoryBytes: 4096n * MiB }), agent({ free: { cpuMillis: 2000, memoryBytes: 1024n * MiB, diskBytes: 50n * GiB } }));
    assert.equal(reasonOf(decision), "needs 4096 MiB memory, 1024 MiB free");
  });

  it("declines a job that needs more CPU than is free, in cores", () => {
    assert.equal(reasonOf(decideOffer(needs({ cpuMillis: 2500 }), agent())), "needs 2.5 CPU cores, 2 free");
  });

  it("declines a job that needs more disk than is free, in MiB", () => {
    assert.equal(reasonOf(decideOffer(needs({ diskBytes: 60n * GiB }), agent())), "needs 61440 MiB disk, 51200 MiB free");
  });

  it("counts what running attempts reserved as taken, even if the last sample still saw it free", () => {
    const reserved = { cpuMillis: 0, memoryBytes: 3n * GiB, diskBytes: 0n };
    assert.equal(reasonOf(decideOffer(needs({ memoryBytes: 2n * GiB }), agent({ reserved }))), "needs 2048 MiB memory, 1024 MiB free");
  });

  it("treats zero requested resources as no requirement, even on a full machine", () => {
    const full = agent({ free: { cpuMillis: 0, memoryBytes: 0n, diskBytes: 0n } });
    scoreOf(decideOffer(needs(), full));
    scoreOf(decideOffer({ driver: "process", resources: undefined }, full));
  });

  it("declines a job with needs before the machine was measured, and bids for one without", () => {
    assert.match(reasonOf(decideOffer(needs({ memoryBytes: GiB }), agent({ free: undefined, total: undefined }))), /not measured/);
    scoreOf(decideOffer(needs(), agent({ free: undefined, total: undefined })));
  });

  it("checks the driver first, then the attempt count, then resources", () => {
    const busy = agent({ running: 8, free: { cpuMillis: 0, memoryBytes: 0n, diskBytes: 0n } });
    assert.match(reasonOf(decideOffer(needs({ memoryBytes: GiB }, "docker"), busy)), /driver docker/);
    assert.match(reasonOf(decideOffer(needs({ memoryBytes: GiB }), busy)), /DROVER_MAX_ATTEMPTS/);
  });

  it("scores a machine with more headroom after placement higher", () => {
    const roomy = scoreOf(decideOffer(needs({ memoryBytes: GiB }), agent({ free: { cpuMillis: 3000, memoryBytes: 6n * GiB, diskBytes: 80n * GiB } })));
    const tight = scoreOf(decideOffer(needs({ memoryBytes: GiB }), agent({ free: { cpuMillis: 1000, memoryBytes: 2n * GiB, diskBytes: 20n * GiB } })));
    assert.ok(roomy > tight, `roomy ${roomy} > tight ${tight}`);
  });

  it("scores a bigger job lower on the same machine, since it leaves less room", () => {
    const small = scoreOf(decideOffer(needs({ memoryBytes: GiB }), agent()));
    const big = scoreOf(decideOffer(needs({ memoryBytes: 3n * GiB }), agent()));
    assert.ok(small > big, `small ${small} > big ${big}`);
  });

  it("scores a less loaded machine higher, by CPU percent or by load average", () => {
    const idle = scoreOf(decideOffer(needs(), agent({ cpuPercent: 5, load1: 0.1 })));
    const busyCpu = scoreOf(decideOffer(needs(), agent({ cpuPercent: 90, load1: 0.1 })));
    const busyLoad = scoreOf(decideOffer(needs(), agent({ cpuPercent: 5, load1: 6 })));
    assert.ok(idle > busyCpu, `idle ${idle} > busy cpu ${busyCpu}`);
    assert.ok(idle > busyLoad, `idle ${idle} > busy load ${busyLoad}`);
  });

  it("scores an agent running fewer attempts higher", () => {
    const none = scoreOf(decideOffer(needs(), agent({ running: 0 })));
    const some = scoreOf(decideOffer(needs(), agent({ running: 6 })));
    assert.ok(none > some, `none ${none} > some ${some}`);
  });

  it("keeps the score within [0, 1] at the extremes", () => {
    const best = scoreOf(
      decideOffer(needs(), agent({ free: { cpuMillis: 4000, memoryBytes: 8n * GiB, diskBytes: 100n * GiB }, cpuPercent: 0, load1: 0 })),
    );
    const worst = scoreOf(
      decideOffer(
        needs({ cpuMillis: 1, memoryBytes: 1n, diskBytes: 1n }),
        agent({ free: { cpuMillis: 1, memoryBytes: MiB, diskBytes: MiB }, cpuPercent: 100, load1: 1000, running: 7 }),
      ),
    );
    assert.equal(best, 1);
    assert.ok(worst >= 0 && worst < 0.1, `worst ${worst}`);
    // NaN and nonsense readings do not escape the range either.
    const odd = scoreOf(decideOffer(needs(), agent({ cpuPercent: Number.NaN, load1: -1, cores: 0 })));
    assert.ok(odd >= 0 && odd <= 1, `odd ${odd}`);
  });
});
