// RequestBids and SendToAgents, and job events acknowledged once their
// owner has them: simulated agents on a real server (port 0), PGlite and
// the in-process bus; the cross-replica path runs in
// integration/scheduling_replicas.test.ts.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { AttemptState, type JobEvent } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { eventually, startTestFleet, TestAgent, type TestFleet } from "./testing.ts";
import type { Outbox } from "./outbox.ts";
import type { AgentMessageSink } from "./sink.ts";

// A sink that records job events, and can be made to fail.
class RecordingSink implements AgentMessageSink {
  events: { agentId: string; event: JobEvent }[] = [];
  failing = false;
  /** While set, job events are taken but not recorded until it resolves: a slow Scheduler. */
  gate: Promise<void> | undefined;
  connected(): void {}
  jobEvent(agentId: string, event: JobEvent): void | Promise<void> {
    if (this.failing) throw new ConnectError("scheduler unavailable", Code.Unavailable);
    this.events.push({ agentId, event });
    return this.gate;
  }
  logFrame(): void {}
}

let t: TestFleet;
let token: string;
const sink = new RecordingSink();

before(async () => {
  t = await startTestFleet({ sink, settings: { heartbeatIntervalMs: 1000, staleAfterMs: 60_000, offlineAfterMs: 120_000 } });
  ({ secret: token } = await t.admin.createAgentToken({ name: "offers" }));
});

after(async () => {
  await t?.close();
});

const offer = (offerId: string, jobId = "00000000-0000-4000-8000-000000000001") => ({ offerId, jobId, driver: "process", resources: { cpuMillis: 100 } });

describe("RequestBids", () => {
  it("answers a bid that the agent sent after an Ack still being written (an ack waits for its outbox row)", async () => {
    const a = await TestAgent.register(t.grpcUrl, token, { hostname: "slow-ack" });
    // The hub's outbox, its ack held until released: as when the UPDATE waits for the INSERT of the message it names.
    const outbox = (t.fleet.hub as unknown as { deps: { outbox: Outbox } }).deps.outbox;
    const ack = outbox.ack.bind(outbox);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const acking: string[][] = [];
    outbox.ack = async (agentId, ids) => {
      acking.push([...ids]);
      await held;
      return ack(agentId, ids);
    };
    try {
      const { messageId } = await t.admin.sendToAgent({ agentId: a.agentId, message: { message: { case: "cancel", value: { attemptId: "x" } } } });
      assert.equal((await a.next()).messageId, messageId);
      a.ack(messageId);
      await eventually(() => (acking.length === 1 ? true : undefined), 5000, "the ack being written");
      const call = t.admin.requestBids({ offers: [{ agentId: a.agentId, offer: offer("o-after-ack") }], window: { seconds: 5n } });
      assert.equal((await a.next()).message.case, "offer");
      const started = Date.now();
      a.send({ message: { case: "bid", value: { offerId: "o-after-ack", score: 0.4 } } });
      const { replies } = await call;
      assert.equal(replies.length, 1, "the bid came back");
      assert.ok(Date.now() - started < 4000, "before the window ended, while the ack was still held");
      assert.deepEqual(acking, [[messageId]], "and the ack was still being written");
    } finally {
      release();
      outbox.ack = ack;
      await a.cancel();
    }
  });

  it("delivers offers to agents and returns their bids and declines as soon as every offer is answered", async () => {
    const a = await TestAgent.register(t.grpcUrl, token, { hostname: "a" });
    const b = await TestAgent.register(t.grpcUrl, token, { hostname: "b" });
    try {
      const started = Date.now();
      const call = t.admin.requestBids({
        offers: [
          { agentId: a.agentId, offer: offer("o-a") },
          { agentId: b.agentId, offer: offer("o-b") },
        ],
        window: { seconds: 5n },
      });
      const toA = await a.next();
      assert.equal(toA.message.case, "offer");
      assert.equal(toA.messageId, "", "offers need no acknowledgement");
      assert.ok(toA.message.case === "offer" && toA.message.value.deadline, "the offer carries its deadline");
      a.send({ message: { case: "bid", value: { offerId: "o-a", score: 0.7 } } });
      const toB = await b.next();
      assert.equal(toB.message.case === "offer" && toB.message.value.offerId, "o-b");
      b.send({ message: { case: "decline", value: { offerId: "o-b", reason: "too busy" } } });

      const { replies } = await call;
      assert.ok(Date.now() - started < 4000, "returned before the 5 s window ended");
      const byAgent = new Map(replies.map((r) => [r.agentId, r]));
      const ra = byAgent.get(a.agentId)!;
      assert.equal(ra.reply.case, "bid");
      assert.equal(ra.reply.case === "bid" && ra.reply.value.score, 0.7);
      const rb = byAgent.get(b.agentId)!;
      assert.equal(rb.reply.case === "decline" && rb.reply.value.reason, "too busy");
    } finally {
      await a.cancel();
      await b.cancel();
    }
  });

  it("returns what arrived when the window ends; an offer to an absent agent or one left unanswered is simply missing", async () => {
    const a = await TestAgent.register(t.grpcUrl, token, { hostname: "a2" });
    try {
      const started = Date.now();
      const call = t.admin.requestBids({
        offers: [
          { agentId: a.agentId, offer: offer("o-late") },
          { agentId: "ag_nobodyhome", offer: offer("o-nobody") },
        ],
        window: { nanos: 150_000_000 },
      });
      await a.next(); // the offer; never answered
      const { replies } = await call;
      const took = Date.now() - started;
      assert.deepEqual(replies, []);
      assert.ok(took >= 140 && took < 2000, `took ${took} ms for a 150 ms window`);
      // An answer after the window is dropped, not delivered to a later round.
      a.send({ message: { case: "bid", value: { offerId: "o-late", score: 1 } } });
      const next = await t.admin.requestBids({ offers: [{ agentId: a.agentId, offer: offer("o-next") }], window: { nanos: 100_000_000 } });
      assert.deepEqual(next.replies.map((r) => r.offerId), []);
    } finally {
      await a.cancel();
    }
  });

  it("refuses two offers with one id in a request, naming the field", async () => {
    const err = await t.admin
      .requestBids({ offers: [{ agentId: "x", offer: offer("dup") }, { agentId: "y", offer: offer("dup") }], window: { nanos: 10_000_000 } })
      .then(() => assert.fail("accepted"), (e) => ConnectError.from(e));
    assert.equal(err.code, Code.InvalidArgument);
    assert.match(err.rawMessage, /offers\[1\]\.offer\.offer_id/);
  });
});

describe("SendToAgents", () => {
  it("stores and delivers several messages in one call, in order, and an acknowledged id is not delivered again", async () => {
    const a = await TestAgent.register(t.grpcUrl, token, { hostname: "s" });
    try {
      const cancel = (id: string, attemptId: string) => ({ agentId: a.agentId, message: { messageId: id, message: { case: "cancel" as const, value: { attemptId } } } });
      const { results } = await t.admin.sendToAgents({ messages: [cancel("m-1", "at-1"), cancel("m-2", "at-2")] });
      assert.deepEqual(results.map((r) => [r.messageId, r.delivered]), [["m-1", true], ["m-2", true]]);
      const first = await a.next();
      const second = await a.next();
      assert.deepEqual([first.messageId, second.messageId], ["m-1", "m-2"]);
      a.ack("m-1", "m-2");
      await eventually(async () => (await t.db.prismaFor("fleet").agentMessage.count({ where: { agentId: a.agentId, ackedAt: null } })) === 0 || undefined);
      await t.admin.sendToAgents({ messages: [cancel("m-1", "at-1")] });
      await a.nothingWithin(150);
    } finally {
      await a.cancel();
    }
  });

  it("answers NOT_FOUND naming the message whose agent does not exist", async () => {
    const err = await t.admin
      .sendToAgents({ messages: [{ agentId: "ag_missing", message: { message: { case: "cancel", value: { attemptId: "x" } } } }] })
      .then(() => assert.fail("accepted"), (e) => ConnectError.from(e));
    assert.equal(err.code, Code.NotFound);
    assert.match(err.rawMessage, /messages\[0\]\.agent_id/);
  });
});

describe("job events", () => {
  it("hands a job event to the sink and only then tells the agent it is recorded", async () => {
    const a = await TestAgent.register(t.grpcUrl, token, { hostname: "e" });
    try {
      a.send({ message: { case: "jobEvent", value: { eventId: "ev-1", attemptId: "at-1", state: AttemptState.RUNNING } } });
      const ack = await a.next();
      assert.equal(ack.message.case, "eventAck");
      assert.deepEqual(ack.message.case === "eventAck" && ack.message.value.eventIds, ["ev-1"]);
      assert.deepEqual(sink.events.map((e) => [e.agentId, e.event.eventId]), [[a.agentId, "ev-1"]]);
    } finally {
      await a.cancel();
    }
  });

  it("keeps reading heartbeats while job events wait for a slow sink, then hands over and acknowledges the waiting events together, in order", async () => {
    const a = await TestAgent.register(t.grpcUrl, token, { hostname: "g" });
    let release!: () => void;
    sink.gate = new Promise<void>((resolve) => (release = resolve));
    const event = (eventId: string) => ({ message: { case: "jobEvent" as const, value: { eventId, attemptId: "at-3", state: AttemptState.RUNNING } } });
    try {
      a.send(event("ev-3"));
      await eventually(() => (sink.events.some((e) => e.event.eventId === "ev-3") ? true : undefined), 2000, "ev-3 with the sink");
      a.send(event("ev-4"));
      a.send(event("ev-5"));
      const session = t.fleet.hub.session(a.agentId)!;
      const heard = session.heartbeats;
      a.heartbeat(1);
      // Before, the heartbeat waited behind the events: a busy Scheduler made the agent look silent.
      await eventually(() => (session.heartbeats > heard ? true : undefined), 2000, "the heartbeat read while ev-3 waits");
      release();
      const acks = [await a.next(), await a.next()].map((m) => (m.message.case === "eventAck" ? m.message.value.eventIds : m.message.case));
      assert.deepEqual(acks, [["ev-3"], ["ev-4", "ev-5"]]);
      assert.deepEqual(sink.events.filter((e) => e.agentId === a.agentId).map((e) => e.event.eventId), ["ev-3", "ev-4", "ev-5"]);
    } finally {
      sink.gate = undefined;
      release?.();
      await a.cancel();
    }
  });

  it("ends the stream UNAVAILABLE without acknowledging when the sink cannot take the event, so the agent resends it", async () => {
    const a = await TestAgent.register(t.grpcUrl, token, { hostname: "f" });
    sink.failing = true;
    try {
      a.send({ message: { case: "jobEvent", value: { eventId: "ev-2", attemptId: "at-2", state: AttemptState.SUCCEEDED } } });
      assert.equal(await a.endCode(), Code.Unavailable);
    } finally {
      sink.failing = false;
      await a.cancel();
    }
  });
});
