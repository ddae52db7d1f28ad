// Fleet in dev mode, as `npm start` runs it: an agent (simulated with the
// generated client) registers, heartbeats and gets a message it does not
// acknowledge; SIGTERM ends its stream with UNAVAILABLE (so it reconnects)
// and the process exits cleanly with Fleet's background work stopped; after
// a restart on the same data directory the agent comes back with its
// credential as the same agent, and gets the message again.

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentStatus, FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { bearer } from "../lib/clients.ts";
import { eventually, TestAgent } from "../services/fleet/testing.ts";
import { removeDir, startDev, type DevProcess } from "./harness.ts";

describe("Fleet in dev mode", () => {
  let dev: DevProcess | undefined;

  after(async () => {
    await dev?.stop("SIGKILL");
    if (dev) removeDir(dev.dataDir);
  });

  it("serves an agent, ends its stream with UNAVAILABLE on SIGTERM, and knows it again after a restart", async () => {
    dev = await startDev({ prepared: true, env: { DROVER_HEARTBEAT_INTERVAL_MS: "200" } });
    const admin = () => createClient(FleetService, createGrpcTransport({ baseUrl: dev!.grpcUrl, interceptors: [bearer(dev!.adminToken)] }));
    const { secret } = await admin().createAgentToken({ name: "dev", labels: { mode: "dev" } });
    const agent = await TestAgent.register(dev.grpcUrl, secret, { hostname: "laptop" });
    const { agentId, agentCredential } = agent.welcome!;
    assert.equal(agent.welcome!.heartbeatInterval?.nanos, 200_000_000);
    agent.heartbeat(1);

    const sent = await admin().sendToAgent({ agentId, message: { message: { case: "cancel", value: { attemptId: "a-1" } } } });
    assert.equal(sent.delivered, true);
    assert.equal((await agent.next()).messageId, sent.messageId);

    const stopped = await dev.stop("SIGTERM");
    assert.equal(stopped.code, 0, `exit code; stderr:\n${dev.stderr()}`);
    assert.ok(stopped.ms < 5000, `stopped in ${Math.round(stopped.ms)} ms`);
    assert.equal(await agent.endCode(), Code.Unavailable);

    dev = await startDev({ dataDir: dev.dataDir, env: { DROVER_HEARTBEAT_INTERVAL_MS: "200" } });
    const again = await TestAgent.reconnect(dev.grpcUrl, agentId, agentCredential, { hostname: "laptop" });
    try {
      assert.equal(again.welcome!.agentId, agentId);
      // Not acknowledged before the restart: kept in Postgres and sent again.
      const redelivered = await again.next();
      assert.equal(redelivered.messageId, sent.messageId);
      again.ack(sent.messageId);
      const got = await eventually(async () => {
        const { agent: a } = await admin().getAgent({ id: agentId });
        return a?.status === AgentStatus.ONLINE ? a : undefined;
      });
      assert.deepEqual(got.labels, { mode: "dev" });
    } finally {
      await again.cancel();
    }
  });
});
