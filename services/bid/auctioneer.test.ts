// The auctioneer on a real dev-mode control plane (PGlite, real ports) with
// agents on real gRPC streams that bid on every offer: what placing a job on
// a standing bid looks like from outside.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { rmSync } from "node:fs";
import { setTimeout } from "node:timers/promises";
import { after, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { BidService, Candidate_Outcome } from "../../gen/ts/drover/bid/v1/bid_service_pb.ts";
import { AttemptState as Reported } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { FleetService } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { JobState, SchedulerService } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { bearer } from "../../lib/clients.ts";
import { readDevConfig } from "../../lib/config.ts";
import { createLogger } from "../../lib/logger.ts";
import { preparedDataDir } from "../../lib/testing/dev_data.ts";
import { startDev, type DevPlane } from "../dev/dev.ts";
import { eventually, TestAgent } from "../fleet/testing.ts";

let dir: string;
let plane: DevPlane;
let scheduler: ReturnType<typeof createClient<typeof SchedulerService>>;
let bid: ReturnType<typeof createClient<typeof BidService>>;
const agents: { stream: TestAgent; offeredJobs: Set<string>; stop: () => Promise<void> }[] = [];
let secret: string;

before(async () => {
  dir = await preparedDataDir("drover-auctioneer-");
  plane = await startDev(
    // A long bid window: an agent here may hold its answers back on purpose; every auction closes when all are in.
    readDevConfig({ DROVER_DATA_DIR: dir, DROVER_GRPC_PORT: "0", DROVER_HTTP_PORT: "0", DROVER_HEARTBEAT_INTERVAL_MS: "200", DROVER_BID_WINDOW_MS: "3000" }),
    createLogger((process.env.DROVER_TEST_LOG_LEVEL as "debug" | undefined) ?? "silent"),
  );
  const transport = createGrpcTransport({ baseUrl: plane.server.grpcUrl, interceptors: [bearer(plane.adminToken)] });
  scheduler = createClient(SchedulerService, transport);
  bid = createClient(BidService, transport);
  ({ secret } = await createClient(FleetService, transport).createAgentToken({ name: "auctioneer tests" }));
  for (let i = 0; i < 2; i++) agents.push(await biddingAgent(secret));
});

after(async () => {
  for (const a of agents) await a.stop();
  await plane?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/**
 * An agent that bids on every offer, notes which jobs it was offered, and
 * finishes every assignment at once; with `hold`, it bids once the promise
 * `hold` gives for the offer resolves, runs its assignments until they are
 * cancelled, and labels itself pool=hold.
 */
async function biddingAgent(token: string, hold?: (jobId: string) => Promise<void>) {
  const capacity = { cpuMillis: 4000, memoryBytes: 8n << 30n };
  const labels = { pool: hold ? "hold" : "standing" };
  const stream = await TestAgent.register(plane.server.grpcUrl, token, { hostname: "sim", labels, drivers: ["process"], total: capacity, free: capacity });
  const offeredJobs = new Set<string>();
  let seq = 0;
  let stopped = false;
  const beat = setInterval(() => stream.heartbeat(++seq), 100);
  const loop = (async () => {
    while (!stopped) {
      const m = await stream.next(60_000).catch(() => undefined);
      if (!m) return;
      if (m.messageId) stream.ack(m.messageId);
      if (m.message.case === "offer") {
        const { jobId, offerId } = m.message.value;
        offeredJobs.add(jobId);
        const bid = () => stream.send({ message: { case: "bid", value: { offerId, score: 0.5, free: capacity } } });
        if (hold) void hold(jobId).then(bid);
        else bid();
      } else if (m.message.case === "assignment") {
        const attemptId = m.message.value.attemptId;
        const state = hold ? Reported.RUNNING : Reported.SUCCEEDED;
        stream.send({ message: { case: "jobEvent", value: { eventId: `${attemptId}:${state}`, attemptId, state } } });
      } else if (m.message.case === "cancel") {
        const attemptId = m.message.value.attemptId;
        stream.send({ message: { case: "jobEvent", value: { eventId: `${attemptId}:cancelled`, attemptId, state: Reported.CANCELLED } } });
      }
    }
  })();
  return {
    stream,
    offeredJobs,
    stop: async () => {
      stopped = true;
      clearInterval(beat);
      await stream.cancel();
      await loop;
    },
  };
}

const spec = { exec: { commands: [{ argv: ["true"] }] }, constraints: { labels: { pool: "standing" } } };

async function succeeded(id: string): Promise<void> {
  await eventually(async () => ((await scheduler.getJob({ id })).job?.state === JobState.SUCCEEDED ? true : undefined), 10_000, `job ${id} succeeded`);
}

describe("auctioneer", () => {
  it("places a job right after another's auction on the losing bid, offers it to nobody, and says so in ExplainPlacement", async () => {
    // Both agents bid for the first job and one loses: its bid stands for a
    // second. A job submitted as soon as the first is placed should use it;
    // on a slow machine the claim may come too late, so try a few pairs.
    for (let pair = 0; pair < 10; pair++) {
      const first = (await scheduler.submitJob({ spec })).job!.id;
      await eventually(async () => ((await scheduler.getJob({ id: first })).job?.attemptCount === 1 ? true : undefined), 10_000, `job ${first} assigned`);
      const second = (await scheduler.submitJob({ spec })).job!.id;
      await Promise.all([succeeded(first), succeeded(second)]);
      const explained = await bid.explainPlacement({ jobId: second });
      if (!/without an auction/.test(explained.explanation)) {
        // Let this pair's bids lapse, so that the next second job can only use its own first's.
        await setTimeout(1_100);
        continue;
      }

      const [auction] = explained.auctions;
      assert.equal(auction?.candidates.length, 1);
      assert.equal(auction.candidates[0]!.outcome, Candidate_Outcome.WON);
      assert.match(auction.candidates[0]!.reason, new RegExp(`^a standing bid: it bid for job ${first} \\d+ ms ago`));
      const { job } = await scheduler.getJob({ id: second });
      assert.equal(job!.attempts[0]!.agentId, auction.winnerAgentId);
      assert.ok(
        agents.every((a) => !a.offeredJobs.has(second)),
        "a job placed on a standing bid is offered to no agent",
      );
      // The bid that stood was the loser's of the first job's auction.
      const { job: firstJob } = await scheduler.getJob({ id: first });
      assert.notEqual(firstJob!.attempts[0]!.agentId, auction.winnerAgentId);
      return;
    }
    assert.fail("no job of 10 pairs was placed on a standing bid");
  });

  it("spreads a deployment's replicas that overlapping rounds place: a round counts the replicas another is still auctioning", async () => {
    // Both agents hold their bids for the first replica until the second's
    // offers arrive too: the first replica's round is still waiting for bids
    // when another round claims the second, so the Scheduler has placed
    // neither and the second's claim counts no sibling. Equal agents sort the
    // same way for both (packing ties go to the lower id): without counting
    // the first round's replica, both would go to one agent.
    const offered = new Set<string>();
    let bothOffered!: () => void;
    const both = new Promise<void>((resolve) => (bothOffered = resolve));
    let heldTooLong = false;
    const hold = (jobId: string) => {
      offered.add(jobId);
      if (offered.size >= 2) bothOffered();
      return Promise.race([both, setTimeout(2_500).then(() => void (heldTooLong = true))]);
    };
    const pool = [await biddingAgent(secret, hold), await biddingAgent(secret, hold)];
    agents.push(...pool);
    const fleet = createClient(FleetService, createGrpcTransport({ baseUrl: plane.server.grpcUrl, interceptors: [bearer(plane.adminToken)] }));
    await eventually(async () => ((await fleet.listAgents({ labelSelector: { pool: "hold" } })).agents.length === 2 ? true : undefined), 5_000, "two agents listed");
    await setTimeout(200); // Bid's view follows Fleet's by a few ms
    const replica = () => ({ ...spec, constraints: { labels: { pool: "hold" } }, service: { deployment: "overlap", revision: 1, replicaId: randomUUID() } });

    const first = (await scheduler.submitJob({ spec: replica() })).job!.id;
    await eventually(async () => (pool.every((a) => a.offeredJobs.has(first)) ? true : undefined), 5_000, "the first replica offered to both agents");
    const second = (await scheduler.submitJob({ spec: replica() })).job!.id;
    const agentOf = async (id: string) => {
      const job = await eventually(async () => {
        const { job } = await scheduler.getJob({ id });
        return job?.state === JobState.RUNNING ? job : undefined;
      }, 10_000, `job ${id} running`);
      return job.attempts.at(-1)!.agentId;
    };
    const placed = [await agentOf(first), await agentOf(second)];
    assert.equal(heldTooLong, false, "the second replica was offered while the first's bids were held");
    assert.notEqual(placed[0], placed[1], "one replica on each agent");
    assert.deepEqual(new Set(placed), new Set(pool.map((a) => a.stream.agentId)));
    await Promise.all([first, second].map((id) => scheduler.cancelJob({ id })));
  });
});
