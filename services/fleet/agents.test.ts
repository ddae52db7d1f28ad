// The operator API over agents, and liveness end to end: real Fleet servers
// on port 0 with simulated agents, on embedded PGlite and the in-process bus.
// One server keeps long thresholds (nothing goes stale by accident); another
// runs with thresholds of a few hundred milliseconds; two replicas share one
// database and one bus to show routing and takeover between them.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import {
  AgentStatus,
  FleetService,
  Schedulability,
  WatchAgentsResponse_Kind as Kind,
  type WatchAgentsResponse,
} from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { createMemoryBus } from "../../lib/bus/memory.ts";
import { openPglite, type Database } from "../../lib/db/database.ts";
import { AgentStore } from "./agent_store.ts";
import { eventually, startTestFleet, TestAgent, type TestFleet } from "./testing.ts";

async function codeOf(call: Promise<unknown>): Promise<Code> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err).code;
  }
  assert.fail("the call succeeded");
}

/** A WatchAgents stream whose messages are collected as they come. */
class Watch {
  readonly seen: WatchAgentsResponse[] = [];
  private readonly abort = new AbortController();
  readonly done: Promise<unknown>;

  constructor(client: Client<typeof FleetService>, labelSelector: Record<string, string> = {}) {
    this.done = (async () => {
      for await (const event of client.watchAgents({ labelSelector }, { signal: this.abort.signal })) this.seen.push(event);
    })().catch((err) => err);
  }

  /** The kinds and agent statuses seen for one agent, in order. */
  of(agentId: string): [Kind, AgentStatus][] {
    return this.seen.filter((e) => e.agent?.id === agentId).map((e) => [e.kind, e.agent!.status]);
  }

  synced(): Promise<true> {
    return eventually(() => (this.seen.some((e) => e.kind === Kind.SYNCED) ? true : undefined), 5000, "SYNCED");
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.done;
  }
}

describe("the operator API", () => {
  let t: TestFleet;
  let registration: string;

  before(async () => {
    t = await startTestFleet({ settings: { heartbeatIntervalMs: 1000, staleAfterMs: 60_000, offlineAfterMs: 120_000 } });
    ({ secret: registration } = await t.admin.createAgentToken({ name: "operator api", labels: { pool: "blue", zone: "token-zone" } }));
  });
  after(async () => {
    await t?.close();
  });

  it("creates registration tokens whose secret is shown once, lists them newest first by page, and revokes them idempotently", async () => {
    const created: { secret: string; token?: { id: string; expireTime?: unknown } }[] = [];
    for (const name of ["rt-1", "rt-2", "rt-3"]) created.push(await t.admin.createAgentToken({ name, labels: { team: name }, ttl: { seconds: 3600n } }));
    assert.match(created[0]!.secret, /^drv_/);
    assert.ok(created[0]!.token!.expireTime);
    const rows = await t.db.prismaFor("fleet").agentToken.findMany();
    assert.ok(rows.every((r) => !JSON.stringify(r).includes(created[0]!.secret)), "only the hash is stored");

    const first = await t.admin.listAgentTokens({ pageSize: 2 });
    assert.deepEqual(first.tokens.map((tk) => tk.name), ["rt-3", "rt-2"]);
    assert.deepEqual(first.tokens[0]!.labels, { team: "rt-3" });
    const second = await t.admin.listAgentTokens({ pageSize: 2, pageToken: first.nextPageToken });
    assert.equal(second.tokens[0]!.name, "rt-1");

    const revoked = await t.admin.revokeAgentToken({ id: created[0]!.token!.id });
    assert.ok(revoked.token?.revokeTime);
    const again = await t.admin.revokeAgentToken({ id: created[0]!.token!.id });
    assert.deepEqual(again.token?.revokeTime, revoked.token?.revokeTime);
    assert.equal(await codeOf(t.admin.revokeAgentToken({ id: "00000000-0000-4000-8000-000000000000" })), Code.NotFound);
  });

  it("lists agents by id, filtered by status and by a selector over effective labels, page by page", async () => {
    const agents = [];
    for (const arch of ["amd64", "arm64", "amd64"]) {
      agents.push(await TestAgent.register(t.grpcUrl, registration, { labels: { arch, zone: "reported-zone", owner: "list-test" } }));
    }
    try {
      // The token's zone overrides the reported one.
      const { agents: amd } = await t.admin.listAgents({ labelSelector: { arch: "amd64", zone: "token-zone", owner: "list-test" } });
      assert.deepEqual(amd.map((a) => a.id), [agents[0]!.agentId, agents[2]!.agentId].sort());
      assert.deepEqual((await t.admin.listAgents({ labelSelector: { zone: "reported-zone" } })).agents, []);

      // An operator's label overrides both.
      const { agent } = await t.admin.setAgentLabels({ id: agents[1]!.agentId, labels: { zone: "rack-7" } });
      assert.deepEqual(agent?.operatorLabels, { zone: "rack-7" });
      assert.equal(agent?.labels.zone, "rack-7");
      const { agents: rack } = await t.admin.listAgents({ labelSelector: { zone: "rack-7" } });
      assert.deepEqual(rack.map((a) => a.id), [agents[1]!.agentId]);

      const ids: string[] = [];
      let pageToken = "";
      do {
        const page = await t.admin.listAgents({ labelSelector: { owner: "list-test" }, status: AgentStatus.ONLINE, pageSize: 2, pageToken });
        assert.ok(page.agents.length <= 2);
        ids.push(...page.agents.map((a) => a.id));
        pageToken = page.nextPageToken;
      } while (pageToken);
      assert.deepEqual(ids, agents.map((a) => a.agentId).sort());
      assert.deepEqual((await t.admin.listAgents({ labelSelector: { owner: "list-test" }, status: AgentStatus.OFFLINE })).agents, []);
      assert.equal(await codeOf(t.admin.listAgents({ pageToken: "garbage" })), Code.InvalidArgument);
    } finally {
      await Promise.all(agents.map((a) => a.cancel()));
    }
  });

  it("cordons and uncordons an agent without telling it, and a cordon leaves a drain in place", async () => {
    const agent = await TestAgent.register(t.grpcUrl, registration);
    try {
      assert.equal((await t.admin.cordonAgent({ id: agent.agentId })).agent?.schedulability, Schedulability.CORDONED);
      assert.equal((await t.admin.cordonAgent({ id: agent.agentId })).agent?.schedulability, Schedulability.CORDONED);
      assert.equal((await t.admin.uncordonAgent({ id: agent.agentId })).agent?.schedulability, Schedulability.ELIGIBLE);
      await agent.nothingWithin(100);

      await t.admin.drainAgent({ id: agent.agentId, reason: "maintenance" });
      assert.equal((await agent.next()).message.case, "drain");
      assert.equal((await t.admin.cordonAgent({ id: agent.agentId })).agent?.schedulability, Schedulability.DRAINING);
      assert.equal((await t.admin.uncordonAgent({ id: agent.agentId })).agent?.schedulability, Schedulability.DRAINING);
      for (const call of [t.admin.cordonAgent({ id: "ag_nobody" }), t.admin.drainAgent({ id: "ag_nobody" }), t.admin.getAgent({ id: "ag_nobody" })]) {
        assert.equal(await codeOf(call), Code.NotFound);
      }
    } finally {
      await agent.cancel();
    }
  });

  it("refuses to delete an agent that is not offline, and deletes an offline one with its credential", async () => {
    const agent = await TestAgent.register(t.grpcUrl, registration);
    const { agentId, agentCredential } = agent.welcome!;
    const watch = new Watch(t.admin);
    try {
      await watch.synced();
      const err = await t.admin.deleteAgent({ id: agentId }).catch((e: unknown) => ConnectError.from(e));
      assert.ok(err instanceof ConnectError);
      assert.equal(err.code, Code.FailedPrecondition);
      assert.match(err.rawMessage, /is online: only an offline agent can be deleted/);

      await agent.cancel();
      await new AgentStore(t.db.prismaFor("fleet")).transition(agentId, "offline", "test", new Date());
      await t.admin.deleteAgent({ id: agentId });
      assert.equal(await codeOf(t.admin.getAgent({ id: agentId })), Code.NotFound);
      assert.equal(await codeOf(t.admin.deleteAgent({ id: agentId })), Code.NotFound);
      const credential = await t.db.prismaFor("fleet").apiToken.findFirstOrThrow({ where: { name: { startsWith: `agent ${agentId}` } } });
      assert.ok(credential.revokedAt, "its credential is revoked");
      await assert.rejects(TestAgent.reconnect(t.grpcUrl, agentId, agentCredential), (e: unknown) => ConnectError.from(e).code === Code.Unauthenticated);
      await eventually(() => (watch.of(agentId).some(([kind]) => kind === Kind.DELETED) ? true : undefined));
    } finally {
      await watch.close();
    }
  });

  it("WatchAgents sends the current agents, then SYNCED, then additions, changes and deletions that match its selector", async () => {
    const present = await TestAgent.register(t.grpcUrl, registration, { labels: { watch: "yes" } });
    const watch = new Watch(t.admin, { watch: "yes" });
    try {
      await watch.synced();
      const syncedAt = watch.seen.findIndex((e) => e.kind === Kind.SYNCED);
      assert.deepEqual(watch.seen.slice(0, syncedAt).map((e) => [e.kind, e.agent?.id]), [[Kind.EXISTING, present.agentId]]);

      const added = await TestAgent.register(t.grpcUrl, registration, { labels: { watch: "yes" } });
      const ignored = await TestAgent.register(t.grpcUrl, registration, { labels: { watch: "no" } });
      await t.admin.setAgentLabels({ id: added.agentId, labels: { role: "builder" } });
      await eventually(() => (watch.of(added.agentId).length === 2 ? true : undefined));
      assert.deepEqual(watch.of(added.agentId), [
        [Kind.ADDED, AgentStatus.ONLINE],
        [Kind.UPDATED, AgentStatus.ONLINE],
      ]);
      assert.equal(watch.seen.at(-1)?.agent?.labels.role, "builder");
      assert.deepEqual(watch.of(ignored.agentId), []);
      await Promise.all([added.cancel(), ignored.cancel()]);
    } finally {
      await present.cancel();
      await watch.close();
    }
  });
});

describe("liveness", () => {
  let t: TestFleet;
  let registration: string;
  const settings = {
    heartbeatIntervalMs: 100,
    staleAfterMs: 300,
    offlineAfterMs: 900,
    monitorIntervalMs: 25,
    sweepIntervalMs: 50,
    presenceRefreshMs: 100,
    snapshotIntervalMs: 200,
  };

  before(async () => {
    t = await startTestFleet({ settings });
    ({ secret: registration } = await t.admin.createAgentToken({ name: "liveness" }));
  });
  after(async () => {
    await t?.close();
  });

  /** Sends heartbeats every interval until the returned function is called. */
  function keepBeating(agent: TestAgent): () => void {
    let sequence = 0;
    const timer = setInterval(() => agent.heartbeat(++sequence), settings.heartbeatIntervalMs);
    return () => clearInterval(timer);
  }

  it("an agent that stays connected but silent goes stale, then offline (its stream is ended), and online again when it reconnects", async () => {
    const watch = new Watch(t.admin);
    await watch.synced();
    const agent = await TestAgent.register(t.grpcUrl, registration);
    const { agentId, agentCredential } = agent.welcome!;
    try {
      const stopped = Date.now();
      assert.equal(await agent.endCode(3000), Code.Unavailable);
      const ended = Date.now() - stopped;
      assert.ok(ended >= settings.offlineAfterMs - 50, `ended after ${ended} ms`);
      assert.match((await agent.ended)!.rawMessage, /no heartbeat for/);

      const again = await TestAgent.reconnect(t.grpcUrl, agentId, agentCredential);
      const stop = keepBeating(again);
      try {
        await eventually(() => (watch.of(agentId).length >= 4 ? true : undefined), 3000, "four events");
        assert.deepEqual(watch.of(agentId), [
          [Kind.ADDED, AgentStatus.ONLINE],
          [Kind.UPDATED, AgentStatus.STALE],
          [Kind.UPDATED, AgentStatus.OFFLINE],
          [Kind.UPDATED, AgentStatus.ONLINE],
        ]);
        const { agent: got } = await t.admin.getAgent({ id: agentId });
        assert.equal(got?.status, AgentStatus.ONLINE);
        assert.deepEqual(
          got?.history.map((h) => [AgentStatus[h.from], AgentStatus[h.to], h.reason.replace(/[\d.]+s$/, "Ns")]),
          [
            ["OFFLINE", "ONLINE", "connected"],
            ["STALE", "OFFLINE", "no heartbeat for Ns"],
            ["ONLINE", "STALE", "no heartbeat for Ns"],
            ["OFFLINE", "ONLINE", "registered"],
          ],
        );
        // Heartbeats keep it online well past the stale threshold.
        await new Promise((resolve) => setTimeout(resolve, 2 * settings.staleAfterMs));
        assert.equal((await t.admin.getAgent({ id: agentId })).agent?.status, AgentStatus.ONLINE);
      } finally {
        stop();
        await again.cancel();
      }
    } finally {
      await watch.close();
    }
  });

  it("a heartbeat brings a stale agent back online at once", async () => {
    const agent = await TestAgent.register(t.grpcUrl, registration);
    try {
      await eventually(async () => ((await t.admin.getAgent({ id: agent.agentId })).agent?.status === AgentStatus.STALE ? true : undefined), 2000);
      agent.heartbeat(1);
      await eventually(async () => ((await t.admin.getAgent({ id: agent.agentId })).agent?.status === AgentStatus.ONLINE ? true : undefined), 200);
      const { agent: got } = await t.admin.getAgent({ id: agent.agentId });
      assert.equal(got?.history[0]?.reason, "heartbeats arrive");
    } finally {
      await agent.cancel();
    }
  });

  it("an agent whose stream ended is judged by the sweeper: stale, then offline, from its last heartbeat", async () => {
    const agent = await TestAgent.register(t.grpcUrl, registration);
    const stop = keepBeating(agent);
    await new Promise((resolve) => setTimeout(resolve, 250));
    stop();
    await agent.cancel();
    const gone = Date.now();
    assert.ok(t.fleet.sweeper.holdsLock, "the only replica holds the sweeper lock");
    await eventually(async () => ((await t.admin.getAgent({ id: agent.agentId })).agent?.status === AgentStatus.OFFLINE ? true : undefined), 3000);
    assert.ok(Date.now() - gone >= settings.offlineAfterMs - 200, "not before the threshold");
    const { agent: got } = await t.admin.getAgent({ id: agent.agentId });
    assert.deepEqual(
      got?.history.slice(0, 2).map((h) => [AgentStatus[h.from], AgentStatus[h.to]]),
      [
        ["STALE", "OFFLINE"],
        ["ONLINE", "STALE"],
      ],
    );
  });

  it("writes heartbeat data to Postgres at most every snapshot interval", async () => {
    const agent = await TestAgent.register(t.grpcUrl, registration);
    const stop = keepBeating(agent);
    try {
      const before = t.fleet.hub.getStats().snapshotsWritten;
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const written = t.fleet.hub.getStats().snapshotsWritten - before;
      // About 10 heartbeats went by; a snapshot every 200 ms is at most 5 (plus one of rounding).
      assert.ok(written >= 3 && written <= 6, `${written} snapshots`);
      const row = await t.db.prismaFor("fleet").agent.findUniqueOrThrow({ where: { id: agent.agentId } });
      assert.ok(row.lastHeartbeatAt && Date.now() - row.lastHeartbeatAt.getTime() < 600);
    } finally {
      stop();
      await agent.cancel();
    }
  });
});

describe("two replicas on one database and one bus", () => {
  let db: Database;
  let a: TestFleet;
  let b: TestFleet;
  let registration: string;

  before(async () => {
    db = await openPglite("memory://");
    const bus = createMemoryBus();
    const settings = { heartbeatIntervalMs: 1000, staleAfterMs: 60_000, offlineAfterMs: 120_000 };
    a = await startTestFleet({ db, bus, settings, replica: "replica-a" });
    b = await startTestFleet({ db, bus, settings, replica: "replica-b" });
    ({ secret: registration } = await a.admin.createAgentToken({ name: "replicas" }));
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await db?.close();
  });

  it("delivers a message sent through one replica to an agent connected to the other", async () => {
    const onA = await TestAgent.register(a.grpcUrl, registration);
    const onB = await TestAgent.register(b.grpcUrl, registration);
    try {
      const viaB = await b.admin.sendToAgent({ agentId: onA.agentId, message: { message: { case: "cancel", value: { attemptId: "x" } } } });
      assert.equal(viaB.delivered, true);
      assert.equal((await onA.next()).messageId, viaB.messageId);
      const viaA = await a.admin.sendToAgent({ agentId: onB.agentId, message: { message: { case: "cancel", value: { attemptId: "y" } } } });
      assert.equal((await onB.next()).messageId, viaA.messageId);
    } finally {
      await Promise.all([onA.cancel(), onB.cancel()]);
    }
  });

  it("ends the stream on the first replica with ABORTED when the agent connects to the second", async () => {
    const first = await TestAgent.register(a.grpcUrl, registration);
    const second = await TestAgent.reconnect(b.grpcUrl, first.agentId, first.welcome!.agentCredential);
    try {
      assert.equal(await first.endCode(), Code.Aborted);
      assert.match((await first.ended)!.rawMessage, /replaced by a newer stream .* \(on replica-b\)/);
      await eventually(() => (a.fleet.hub.session(first.agentId) === undefined ? true : undefined));
      // The second keeps its presence: the first replica did not clean up after a takeover.
      await new Promise((resolve) => setTimeout(resolve, 100));
      const sent = await a.admin.sendToAgent({ agentId: first.agentId, message: { message: { case: "cancel", value: { attemptId: "z" } } } });
      assert.equal(sent.delivered, true);
      assert.equal((await second.next()).messageId, sent.messageId);
    } finally {
      await second.cancel();
    }
  });

  it("closes the agent's stream on the other replica within a second of revoking its credential", async () => {
    const agent = await TestAgent.register(b.grpcUrl, registration);
    const token = await db.prismaFor("fleet").apiToken.findFirstOrThrow({ where: { agentId: agent.agentId } });
    await a.admin.revokeApiToken({ id: token.id });
    assert.equal(await agent.endCode(1000), Code.Unauthenticated);
  });

  it("lets only one replica hold the sweeper lock", async () => {
    await eventually(() => (a.fleet.sweeper.holdsLock !== b.fleet.sweeper.holdsLock ? true : undefined), 6000, "exactly one sweeper");
  });
});
