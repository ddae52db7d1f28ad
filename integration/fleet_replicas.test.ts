// Two Fleet replicas in split mode, each its own process, on real PostgreSQL
// and Redis: agents (simulated with the generated client) connect to either,
// messages reach them through the other, and when one replica is killed
// (SIGKILL: no clean-up at all) the sweeper on the other marks its agent
// offline.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentStatus, FleetService, WatchAgentsResponse_Kind as Kind, type WatchAgentsResponse } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { bearer } from "../lib/clients.ts";
import { requirePostgres, requireRedis } from "../lib/testing/services.ts";
import { eventually, TestAgent } from "../services/fleet/testing.ts";
import { createTestDatabase, randomToken, startSplit, type DroverProcess, type SplitEnv } from "./harness.ts";

const postgresUrl = await requirePostgres();
const redisUrl = await requireRedis();

// Short thresholds so that a death is noticed in about a second.
const FAST = {
  DROVER_HEARTBEAT_INTERVAL_MS: "200",
  DROVER_STALE_AFTER_MS: "600",
  DROVER_OFFLINE_AFTER_MS: "1500",
  DROVER_MONITOR_INTERVAL_MS: "50",
  DROVER_SWEEP_INTERVAL_MS: "200",
  DROVER_PRESENCE_REFRESH_MS: "200",
  DROVER_SNAPSHOT_INTERVAL_MS: "1000",
};

describe("two Fleet replicas on PostgreSQL and Redis", { skip: postgresUrl === null || redisUrl === null ? "needs PostgreSQL and Redis" : false }, () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let env: SplitEnv;
  let a: DroverProcess;
  let b: DroverProcess;
  let adminA: Client<typeof FleetService>;
  let adminB: Client<typeof FleetService>;
  let registration: string;
  const agents: TestAgent[] = [];
  const beats: NodeJS.Timeout[] = [];

  /** Registers an agent on a replica and keeps it heartbeating. */
  async function agentOn(replica: DroverProcess, labels: Record<string, string>): Promise<TestAgent> {
    const agent = await TestAgent.register(replica.grpcUrl, registration, { labels });
    agents.push(agent);
    let sequence = 0;
    beats.push(setInterval(() => agent.heartbeat(++sequence), 200));
    return agent;
  }

  before(async () => {
    db = await createTestDatabase(postgresUrl!);
    env = { databaseUrl: db.url, redisUrl: redisUrl!, adminToken: randomToken(), redisPrefix: `drover-it-fleet-${process.pid}:` };
    [a, b] = await Promise.all([startSplit("fleet", env, FAST), startSplit("fleet", env, FAST)]);
    adminA = createClient(FleetService, createGrpcTransport({ baseUrl: a.grpcUrl, interceptors: [bearer(env.adminToken)] }));
    adminB = createClient(FleetService, createGrpcTransport({ baseUrl: b.grpcUrl, interceptors: [bearer(env.adminToken)] }));
    ({ secret: registration } = await adminA.createAgentToken({ name: "replicas" }));
  });

  after(async () => {
    beats.forEach(clearInterval);
    await Promise.all(agents.map((agent) => agent.cancel()));
    await Promise.all([a?.stop("SIGKILL"), b?.stop("SIGKILL")]);
    await db?.drop();
  });

  it("delivers SendToAgent issued through one replica to an agent connected to the other, both ways", async () => {
    const onA = await agentOn(a, { replica: "a" });
    const onB = await agentOn(b, { replica: "b" });

    const viaB = await adminB.sendToAgent({ agentId: onA.agentId, message: { message: { case: "offer", value: { offerId: "offer-1", jobId: "job-1" } } } });
    assert.equal(viaB.delivered, true);
    const got = await onA.next();
    assert.equal(got.messageId, viaB.messageId);
    assert.equal(got.message.case === "offer" && got.message.value.offerId, "offer-1");
    onA.ack(got.messageId);

    const viaA = await adminA.sendToAgent({ agentId: onB.agentId, message: { message: { case: "cancel", value: { attemptId: "attempt-1" } } } });
    assert.equal(viaA.delivered, true);
    assert.equal((await onB.next()).messageId, viaA.messageId);
  });

  it("revoking an agent's credential through one replica closes its stream on the other within a second", async () => {
    const agent = await agentOn(b, { purpose: "revoke" });
    // The credential's token id, from the admin API of the other replica.
    const { tokens } = await adminA.listApiTokens({ pageSize: 1000 });
    const credential = tokens.find((t) => t.name.startsWith(`agent ${agent.agentId}`));
    assert.ok(credential, "the agent's credential is listed");
    const started = Date.now();
    await adminA.revokeApiToken({ id: credential.id });
    assert.equal(await agent.endCode(1000), Code.Unauthenticated);
    assert.ok(Date.now() - started < 1000);
  });

  it("when a replica is killed, the sweeper on the other marks its agent offline, and WatchAgents there sees it", async () => {
    const doomed = await agentOn(a, { fate: "doomed" });
    const survivor = await agentOn(b, { fate: "survivor" });

    const seen: WatchAgentsResponse[] = [];
    const abort = new AbortController();
    const watching = (async () => {
      for await (const event of adminB.watchAgents({}, { signal: abort.signal })) seen.push(event);
    })().catch(() => {});
    try {
      await eventually(() => (seen.some((e) => e.kind === Kind.SYNCED) ? true : undefined));

      const killed = Date.now();
      await a.stop("SIGKILL");
      const offline = await eventually(
        async () => {
          const { agent } = await adminB.getAgent({ id: doomed.agentId });
          return agent?.status === AgentStatus.OFFLINE ? agent : undefined;
        },
        8000,
        "the doomed agent offline",
      );
      const ms = Date.now() - killed;
      // Its last heartbeat was at most 200 ms before the kill; offline comes 1.5 s after it.
      assert.ok(ms >= 1000 && ms < 6000, `offline ${ms} ms after the kill`);
      assert.match(offline.history[0]!.reason, /^no heartbeat for /);
      assert.deepEqual(
        offline.history.slice(0, 2).map((h) => [AgentStatus[h.from], AgentStatus[h.to]]),
        [
          ["STALE", "OFFLINE"],
          ["ONLINE", "STALE"],
        ],
      );
      await eventually(() =>
        seen.some((e) => e.kind === Kind.UPDATED && e.agent?.id === doomed.agentId && e.agent.status === AgentStatus.OFFLINE) ? true : undefined,
      );
      // The agent on the surviving replica never noticed.
      assert.equal((await adminB.getAgent({ id: survivor.agentId })).agent?.status, AgentStatus.ONLINE);
      assert.ok(!seen.some((e) => e.agent?.id === survivor.agentId && e.agent.status !== AgentStatus.ONLINE));

      // The doomed agent reconnects to the survivor and is online again.
      const back = await TestAgent.reconnect(b.grpcUrl, doomed.agentId, doomed.welcome!.agentCredential);
      agents.push(back);
      await eventually(async () => ((await adminB.getAgent({ id: doomed.agentId })).agent?.status === AgentStatus.ONLINE ? true : undefined));
    } finally {
      abort.abort();
      await watching;
    }
  });
});
