// FleetService.Connect, driven by simulated agents through the generated
// client over a real server on port 0 (real gRPC over a real socket), on an
// embedded PGlite and the in-process bus.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { FleetService, Role, Schedulability } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { bearer } from "../../lib/clients.ts";
import { presenceKey } from "./bus_protocol.ts";
import { eventually, startTestFleet, TestAgent, type TestFleet } from "./testing.ts";

let t: TestFleet;
let registrationToken: string;

before(async () => {
  // Thresholds far beyond the tests' length: nothing here goes stale by accident.
  t = await startTestFleet({ settings: { helloTimeoutMs: 300, heartbeatIntervalMs: 1000, staleAfterMs: 60_000, offlineAfterMs: 120_000 } });
  ({ secret: registrationToken } = await t.admin.createAgentToken({ name: "stream tests", labels: { pool: "ci" } }));
});

after(async () => {
  await t?.close();
});

const agentRows = () => t.db.prismaFor("fleet").agent.count();

async function codeOf(call: Promise<unknown>): Promise<Code> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err).code;
  }
  assert.fail("the call succeeded");
}

describe("registration and reconnection", () => {
  it("registers an agent with a registration token and answers Welcome with its id, credential, session and heartbeat interval", async () => {
    const agent = await TestAgent.register(t.grpcUrl, registrationToken, { hostname: "node-a", labels: { arch: "amd64" } });
    try {
      const welcome = agent.welcome!;
      assert.match(welcome.agentId, /^ag_[a-z2-7]{26}$/);
      assert.match(welcome.agentCredential, /^drv_/);
      assert.match(welcome.sessionId, /^[0-9a-f-]{36}$/);
      assert.equal(welcome.heartbeatInterval?.seconds, 1n);

      const { agent: got } = await t.admin.getAgent({ id: welcome.agentId });
      assert.equal(got?.hostname, "node-a");
      assert.deepEqual(got?.labels, { arch: "amd64", pool: "ci" });
      assert.equal(got?.schedulability, Schedulability.ELIGIBLE);
      assert.deepEqual(got?.history.map((h) => h.reason), ["registered"]);
      // The credential is an api token of role agent, stored hashed.
      const row = await t.db.prismaFor("fleet").apiToken.findFirstOrThrow({ where: { agentId: welcome.agentId } });
      assert.equal(row.role, "agent");
      assert.notEqual(row.tokenHash, welcome.agentCredential);
      const { tokens } = await t.admin.listAgentTokens({});
      assert.equal(tokens.find((tk) => tk.name === "stream tests")?.registrations, 1);
    } finally {
      await agent.cancel();
    }
  });

  it("reconnects with the credential as the same agent, without a new credential", async () => {
    const first = await TestAgent.register(t.grpcUrl, registrationToken);
    const { agentId, agentCredential } = first.welcome!;
    await first.cancel();
    const again = await TestAgent.reconnect(t.grpcUrl, agentId, agentCredential);
    try {
      assert.equal(again.welcome!.agentId, agentId);
      assert.equal(again.welcome!.agentCredential, "");
      assert.notEqual(again.welcome!.sessionId, first.welcome!.sessionId);
      // Hello.agent_id may also be left empty: the credential says who it is.
      const third = await TestAgent.open(t.grpcUrl, { hostname: "test-host" }, agentCredential);
      assert.equal(third.welcome!.agentId, agentId);
      await third.cancel();
    } finally {
      await again.cancel();
    }
  });

  it("answers a wrong registration token with UNAUTHENTICATED and creates no agent", async () => {
    const before = await agentRows();
    const agent = new TestAgent(t.grpcUrl);
    agent.send({ message: { case: "hello", value: { hostname: "intruder", registrationToken: "drv_not-a-token" } } });
    assert.equal(await agent.endCode(), Code.Unauthenticated);
    assert.equal(await agentRows(), before);
  });

  it("answers a revoked or expired registration token with UNAUTHENTICATED and creates no agent", async () => {
    const revoked = await t.admin.createAgentToken({ name: "revoked" });
    await t.admin.revokeAgentToken({ id: revoked.token!.id });
    const expired = await t.admin.createAgentToken({ name: "expired", ttl: { seconds: 60n } });
    await t.db.prismaFor("fleet").agentToken.update({ where: { id: expired.token!.id }, data: { expiresAt: new Date(Date.now() - 1000) } });
    const before = await agentRows();
    for (const secret of [revoked.secret, expired.secret]) {
      await assert.rejects(TestAgent.register(t.grpcUrl, secret), (err: unknown) => ConnectError.from(err).code === Code.Unauthenticated);
    }
    assert.equal(await agentRows(), before);
    const { tokens } = await t.admin.listAgentTokens({});
    assert.equal(tokens.find((tk) => tk.id === revoked.token!.id)?.registrations, 0);
  });

  it("answers an unknown credential with UNAUTHENTICATED, and a credential of another agent with PERMISSION_DENIED", async () => {
    await assert.rejects(TestAgent.reconnect(t.grpcUrl, "ag_nobody", "drv_forged"), (err: unknown) => ConnectError.from(err).code === Code.Unauthenticated);
    const a = await TestAgent.register(t.grpcUrl, registrationToken);
    const b = await TestAgent.register(t.grpcUrl, registrationToken);
    try {
      await assert.rejects(
        TestAgent.reconnect(t.grpcUrl, b.agentId, a.welcome!.agentCredential),
        (err: unknown) => ConnectError.from(err).code === Code.PermissionDenied,
      );
      // An operator's bearer token is not an agent credential.
      const { secret } = await t.admin.createApiToken({ name: "op", role: Role.OPERATOR });
      await assert.rejects(TestAgent.reconnect(t.grpcUrl, a.agentId, secret), (err: unknown) => ConnectError.from(err).code === Code.Unauthenticated);
    } finally {
      await Promise.all([a.cancel(), b.cancel()]);
    }
  });

  it("answers a Hello with neither credential nor registration token with UNAUTHENTICATED", async () => {
    await assert.rejects(TestAgent.open(t.grpcUrl, { hostname: "anonymous" }), (err: unknown) => ConnectError.from(err).code === Code.Unauthenticated);
  });
});

describe("bad input on the stream", () => {
  it("closes a stream whose first message is a heartbeat with INVALID_ARGUMENT", async () => {
    const agent = new TestAgent(t.grpcUrl);
    agent.heartbeat(1);
    assert.equal(await agent.endCode(), Code.InvalidArgument);
    const err = await agent.ended;
    assert.match(err!.rawMessage, /first message of a stream must be Hello, not heartbeat/);
  });

  it("closes a stream that sends nothing within the Hello timeout with INVALID_ARGUMENT", async () => {
    const agent = new TestAgent(t.grpcUrl);
    const started = Date.now();
    assert.equal(await agent.endCode(), Code.InvalidArgument);
    assert.ok(Date.now() - started >= 250, "not before the timeout");
    assert.match((await agent.ended)!.rawMessage, /no Hello within 300 ms/);
  });

  it("closes a stream that says Hello twice with INVALID_ARGUMENT", async () => {
    const agent = await TestAgent.register(t.grpcUrl, registrationToken);
    agent.send({ message: { case: "hello", value: { hostname: "again", registrationToken } } });
    assert.equal(await agent.endCode(), Code.InvalidArgument);
  });

  it("closes a stream that sends a message breaking a rule with INVALID_ARGUMENT naming the field", async () => {
    const agent = await TestAgent.register(t.grpcUrl, registrationToken);
    agent.send({ message: { case: "ack", value: { messageIds: [] } } });
    assert.equal(await agent.endCode(), Code.InvalidArgument);
    assert.match((await agent.ended)!.rawMessage, /ack\.message_ids/);
  });

  it("ignores an Ack of unknown message ids, and other agents never notice any of this", async () => {
    const bystander = await TestAgent.register(t.grpcUrl, registrationToken);
    const agent = await TestAgent.register(t.grpcUrl, registrationToken);
    try {
      agent.ack("msg_unknown");
      agent.heartbeat(1);
      const bad = new TestAgent(t.grpcUrl);
      bad.heartbeat(1);
      assert.equal(await bad.endCode(), Code.InvalidArgument);
      // Both streams still carry messages both ways.
      for (const a of [agent, bystander]) {
        const { delivered } = await t.admin.sendToAgent({ agentId: a.agentId, message: { message: { case: "cancel", value: { attemptId: "x" } } } });
        assert.equal(delivered, true);
        assert.equal((await a.next()).message.case, "cancel");
      }
    } finally {
      await Promise.all([agent.cancel(), bystander.cancel()]);
    }
  });
});

describe("one stream per agent", () => {
  it("ends the older stream with ABORTED, saying it was replaced, when the agent connects again", async () => {
    const first = await TestAgent.register(t.grpcUrl, registrationToken);
    const second = await TestAgent.reconnect(t.grpcUrl, first.agentId, first.welcome!.agentCredential);
    try {
      assert.equal(await first.endCode(), Code.Aborted);
      assert.match((await first.ended)!.rawMessage, /replaced by a newer stream/);
      // The newer one carries messages.
      await t.admin.sendToAgent({ agentId: first.agentId, message: { message: { case: "cancel", value: { attemptId: "a" } } } });
      assert.equal((await second.next()).message.case, "cancel");
      assert.equal(t.fleet.hub.session(first.agentId)?.id, second.welcome!.sessionId);
    } finally {
      await second.cancel();
    }
  });
});

describe("messages to agents", () => {
  it("delivers SendToAgent over the stream, and an acknowledged message is not delivered again", async () => {
    const agent = await TestAgent.register(t.grpcUrl, registrationToken);
    const { agentId, agentCredential } = agent.welcome!;
    const sent = await t.admin.sendToAgent({ agentId, message: { message: { case: "offer", value: { offerId: "o-1", jobId: "j-1" } } } });
    assert.equal(sent.delivered, true);
    assert.match(sent.messageId, /^msg_/);
    const got = await agent.next();
    assert.equal(got.messageId, sent.messageId);
    assert.equal(got.message.case === "offer" && got.message.value.offerId, "o-1");
    agent.ack(sent.messageId);
    await eventually(async () => {
      const row = await t.db.prismaFor("fleet").agentMessage.findFirst({ where: { agentId, messageId: sent.messageId } });
      return row?.ackedAt ?? undefined;
    });
    await agent.cancel();

    const again = await TestAgent.reconnect(t.grpcUrl, agentId, agentCredential);
    try {
      await again.nothingWithin(200);
      // Sending the same message id again does not reach the agent either.
      const resent = await t.admin.sendToAgent({ agentId, message: { messageId: sent.messageId, message: { case: "offer", value: { offerId: "o-1" } } } });
      assert.equal(resent.messageId, sent.messageId);
      await again.nothingWithin(200);
    } finally {
      await again.cancel();
    }
  });

  it("keeps a message for an agent that is away, and redelivers unacknowledged messages in order on reconnect", async () => {
    const agent = await TestAgent.register(t.grpcUrl, registrationToken);
    const { agentId, agentCredential } = agent.welcome!;
    const first = await t.admin.sendToAgent({ agentId, message: { message: { case: "cancel", value: { attemptId: "a-1" } } } });
    assert.equal((await agent.next()).messageId, first.messageId);
    await agent.cancel(); // without acknowledging it
    await eventually(async () => ((await t.bus.getPresence(presenceKey(agentId))) === null ? true : undefined));

    const second = await t.admin.sendToAgent({
      agentId,
      message: { messageId: "mine-2", message: { case: "assignment", value: { attemptId: "a-2", jobId: "j-2" } } },
    });
    assert.deepEqual(second, { $typeName: "drover.fleet.v1.SendToAgentResponse", messageId: "mine-2", delivered: false });

    const again = await TestAgent.reconnect(t.grpcUrl, agentId, agentCredential);
    try {
      assert.deepEqual([(await again.next()).messageId, (await again.next()).messageId], [first.messageId, "mine-2"]);
      again.ack(first.messageId, "mine-2");
      // A live message after the replay arrives after it.
      const third = await t.admin.sendToAgent({ agentId, message: { message: { case: "cancel", value: { attemptId: "a-3" } } } });
      assert.equal((await again.next()).messageId, third.messageId);
    } finally {
      await again.cancel();
    }
  });

  it("answers SendToAgent for an unknown agent with NOT_FOUND and a Welcome with INVALID_ARGUMENT", async () => {
    assert.equal(
      await codeOf(t.admin.sendToAgent({ agentId: "ag_nobody", message: { message: { case: "cancel", value: { attemptId: "a" } } } })),
      Code.NotFound,
    );
    const agent = await TestAgent.register(t.grpcUrl, registrationToken);
    try {
      assert.equal(await codeOf(t.admin.sendToAgent({ agentId: agent.agentId, message: { message: { case: "welcome", value: {} } } })), Code.InvalidArgument);
      assert.equal(await codeOf(t.admin.sendToAgent({ agentId: agent.agentId, message: {} })), Code.InvalidArgument);
    } finally {
      await agent.cancel();
    }
  });

  it("sends a Drain message to the agent on DrainAgent, and another that ends it on UndrainAgent", async () => {
    const agent = await TestAgent.register(t.grpcUrl, registrationToken);
    try {
      const deadline = { seconds: BigInt(Math.floor(Date.now() / 1000) + 3600), nanos: 0 };
      const { agent: drained } = await t.admin.drainAgent({ id: agent.agentId, reason: "kernel upgrade", deadline });
      assert.equal(drained?.schedulability, Schedulability.DRAINING);
      assert.equal(drained?.drainDeadline?.seconds, deadline.seconds);
      const drain = await agent.next();
      assert.ok(drain.message.case === "drain");
      assert.deepEqual([drain.message.value.draining, drain.message.value.reason, drain.message.value.deadline?.seconds], [true, "kernel upgrade", deadline.seconds]);
      assert.notEqual(drain.messageId, "");
      agent.ack(drain.messageId);

      const { agent: undrained } = await t.admin.undrainAgent({ id: agent.agentId });
      assert.equal(undrained?.schedulability, Schedulability.ELIGIBLE);
      const end = await agent.next();
      assert.ok(end.message.case === "drain" && end.message.value.draining === false);
      // Undraining an agent that is not draining tells it nothing.
      await t.admin.undrainAgent({ id: agent.agentId });
      await agent.nothingWithin(150);
    } finally {
      await agent.cancel();
    }
  });
});

describe("revocation", () => {
  it("closes the agent's live stream with UNAUTHENTICATED within a second of RevokeApiToken, and the credential stops working", async () => {
    const agent = await TestAgent.register(t.grpcUrl, registrationToken);
    const { agentId, agentCredential } = agent.welcome!;
    const token = await t.db.prismaFor("fleet").apiToken.findFirstOrThrow({ where: { agentId } });
    const started = Date.now();
    await t.admin.revokeApiToken({ id: token.id });
    assert.equal(await agent.endCode(1000), Code.Unauthenticated);
    assert.ok(Date.now() - started < 1000);
    assert.match((await agent.ended)!.rawMessage, /credential was revoked/);
    await assert.rejects(TestAgent.reconnect(t.grpcUrl, agentId, agentCredential), (err: unknown) => ConnectError.from(err).code === Code.Unauthenticated);
  });

  it("lets an agent's credential call nothing but Connect", async () => {
    const agent = await TestAgent.register(t.grpcUrl, registrationToken);
    try {
      const asAgent = createClient(FleetService, createGrpcTransport({ baseUrl: t.grpcUrl, interceptors: [bearer(agent.welcome!.agentCredential)] }));
      assert.equal(await codeOf(asAgent.listAgents({})), Code.PermissionDenied);
      assert.equal(await codeOf(asAgent.sendToAgent({ agentId: agent.agentId, message: { message: { case: "cancel", value: {} } } })), Code.PermissionDenied);
    } finally {
      await agent.cancel();
    }
  });
});

describe("heartbeats", () => {
  it("keeps heartbeats in memory and does not write Postgres for each one", async () => {
    const agent = await TestAgent.register(t.grpcUrl, registrationToken);
    try {
      const before = t.fleet.hub.getStats();
      for (let i = 1; i <= 20; i++) agent.heartbeat(i, { cpuPercent: i });
      const session = t.fleet.hub.session(agent.agentId)!;
      await eventually(() => (session.heartbeats === 20 ? true : undefined));
      assert.equal(session.lastSequence, 20n);
      assert.equal(session.metrics?.cpuPercent, 20);
      // The snapshot interval (30 s) has not passed: Postgres still has the connect-time data.
      assert.equal(t.fleet.hub.getStats().snapshotsWritten, before.snapshotsWritten);
      const row = await t.db.prismaFor("fleet").agent.findUniqueOrThrow({ where: { id: agent.agentId } });
      assert.equal(row.metrics, null);
    } finally {
      await agent.cancel();
    }
  });

  it("leaves the last heartbeat's data in Postgres when the stream ends", async () => {
    const agent = await TestAgent.register(t.grpcUrl, registrationToken);
    agent.heartbeat(1, { cpuPercent: 77 });
    const session = t.fleet.hub.session(agent.agentId)!;
    await eventually(() => (session.heartbeats === 1 ? true : undefined));
    await agent.cancel();
    const row = await eventually(async () => {
      const r = await t.db.prismaFor("fleet").agent.findUniqueOrThrow({ where: { id: agent.agentId } });
      return r.metrics ? r : undefined;
    });
    assert.equal((row.metrics as { cpuPercent: number }).cpuPercent, 77);
    assert.equal(row.lastHeartbeatAt?.getTime(), session.lastHeartbeatMs);
    const { agent: got } = await t.admin.getAgent({ id: agent.agentId });
    assert.equal(got?.metrics?.cpuPercent, 77);
    assert.equal(got?.free?.cpuMillis, 2000);
  });
});

describe("streams sharing one HTTP/2 connection", () => {
  it("an agent that keeps sending after its stream was ended does not stall the other streams on its connection", async () => {
    // Both agents on one connection, as behind a proxy or in a load tool.
    const transport = createGrpcTransport({ baseUrl: t.grpcUrl });
    const rogue = await TestAgent.register(t.grpcUrl, registrationToken, {}, { transport, closeOnEnd: false });
    const bystander = await TestAgent.register(t.grpcUrl, registrationToken, {}, { transport });
    try {
      const token = await t.db.prismaFor("fleet").apiToken.findFirstOrThrow({ where: { agentId: rogue.agentId } });
      await t.admin.revokeApiToken({ id: token.id });
      assert.equal(await rogue.endCode(), Code.Unauthenticated);
      // 4 MiB the server has no use for: far more than the connection's flow-control window.
      const data = new Uint8Array(256 * 1024);
      for (let i = 0; i < 16; i++) rogue.send({ message: { case: "logFrame", value: { attemptId: "a", stream: 1, offset: BigInt(i * data.length), data } } });
      for (let i = 1; i <= 3; i++) bystander.heartbeat(i);
      const session = t.fleet.hub.session(bystander.agentId)!;
      await eventually(() => (session.heartbeats === 3 ? true : undefined), 3000, "the bystander's heartbeats read");
    } finally {
      await Promise.all([rogue.cancel(), bystander.cancel()]);
    }
  });
});

describe("clean-up", () => {
  it("leaves no session, reader or pending work behind once every stream has ended", async () => {
    const stats = await eventually(() => {
      const s = t.fleet.hub.getStats();
      return s.sessions === 0 && s.readers === 0 && s.pending === 0 ? s : undefined;
    }, 3000, `no sessions, readers or pending work (now ${JSON.stringify(t.fleet.hub.getStats())})`);
    assert.equal(stats.sessions, 0);
  });
});
