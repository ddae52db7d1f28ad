// Fleet's log sink. First on its own, with a fake IngestLogs: order, one
// call per agent at a time, batching, retries. Then end to end: simulated
// agents stream log frames over real gRPC to a Fleet server on port 0,
// whose LogSink forwards them to the Log service (the real one, on its own
// PGlite; the Scheduler it asks whose attempts are is a fake that knows the
// test's attempts). Between the two sits a switch that can make the Log
// service slow or absent.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createRouterTransport, type CallOptions, type Transport } from "@connectrpc/connect";
import { LogStream, type ConnectResponse, type Hello, type LogAck, type LogFrame } from "../../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { type IngestLogsRequestSchema, type IngestLogsResponse } from "../../gen/ts/drover/log/v1/log_service_pb.ts";
import { SchedulerService } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { createMemoryBus } from "../../lib/bus/memory.ts";
import { createClients } from "../../lib/clients.ts";
import { defaultLogSettings } from "../../lib/config.ts";
import { openPglite, type Database } from "../../lib/db/database.ts";
import { migrate } from "../../lib/db/migrate.ts";
import { createLogger } from "../../lib/logger.ts";
import { createLog } from "../log/log.ts";
import { LogSink, type LogSinkOptions } from "./log_sink.ts";
import type { AgentMessageSink, AgentReplies } from "./sink.ts";
import { eventually, startTestFleet, TestAgent, type TestFleet } from "./testing.ts";

const logger = createLogger((process.env.DROVER_TEST_LOG_LEVEL as "debug" | undefined) ?? "silent");

/** A LogFrame's fields, as a test writes them. */
interface FrameInit {
  attemptId: string;
  stream: LogStream;
  offset: bigint;
  data: Uint8Array;
  final?: boolean;
}
type Ingest = (req: MessageInitShape<typeof IngestLogsRequestSchema>, opts?: CallOptions) => Promise<IngestLogsResponse>;

/** The Log service as the sink sees it, behind a switch: up, slow (calls wait until resumed) or down (UNAVAILABLE). */
class LogSwitch {
  mode: "up" | "slow" | "down" = "up";
  calls = 0;
  /** Calls waiting while slow. */
  waiting = 0;
  private resumed: { promise: Promise<void>; resolve: () => void } | undefined;
  readonly client: { ingestLogs: Ingest };

  constructor(real: { ingestLogs: Ingest }) {
    this.client = {
      ingestLogs: async (req, opts) => {
        this.calls++;
        if (this.mode === "down") throw new ConnectError("log is down (test)", Code.Unavailable);
        if (this.mode === "slow") {
          this.waiting++;
          try {
            await this.slowness();
          } finally {
            this.waiting--;
          }
        }
        return real.ingestLogs(req, opts);
      },
    };
  }

  slow(): void {
    this.mode = "slow";
  }

  up(): void {
    this.mode = "up";
    this.resumed?.resolve();
    this.resumed = undefined;
  }

  private slowness(): Promise<void> {
    if (!this.resumed) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.resumed = { promise, resolve };
    }
    return this.resumed.promise;
  }
}

/** Lets each test give Fleet's one hub a LogSink of its own (the hub binds its sink once). */
class SinkSlot implements AgentMessageSink {
  current: LogSink | undefined;
  private agents: AgentReplies | undefined;

  use(sink: LogSink): LogSink {
    this.current = sink;
    sink.bind(this.agents!);
    return sink;
  }
  bind(agents: AgentReplies): void {
    this.agents = agents;
  }
  connected(agentId: string, hello: Hello): void {
    this.current?.connected(agentId, hello);
  }
  jobEvent(): void {}
  logFrame(agentId: string, frame: LogFrame): void {
    this.current?.logFrame(agentId, frame);
  }
}

describe("batching, order and retries (a fake Log client, no network)", () => {
  /** A fake IngestLogs that records calls and answers after `delayMs`, acknowledging every stream up to its last frame's end. */
  function fakeLog(opts: { delayMs?: () => number; fail?: (call: number) => Code | undefined } = {}) {
    const calls: { agentId: string; frames: LogFrame[]; at: number }[] = [];
    const inFlight = new Map<string, number>();
    let most = 0;
    let overlapped = false;
    const client = {
      ingestLogs: (async (req: { agentId: string; frames: LogFrame[] }) => {
        const n = calls.push({ agentId: req.agentId, frames: req.frames, at: performance.now() });
        const now = (inFlight.get(req.agentId) ?? 0) + 1;
        if (now > 1) overlapped = true;
        inFlight.set(req.agentId, now);
        most = Math.max(most, [...inFlight.values()].reduce((a, b) => a + b, 0));
        try {
          await new Promise((r) => setTimeout(r, opts.delayMs?.() ?? 1));
          const code = opts.fail?.(n);
          if (code !== undefined) throw new ConnectError("fake failure", code);
          const acks = new Map<string, LogAck>();
          for (const f of req.frames) {
            acks.set(`${f.attemptId}/${f.stream}`, { attemptId: f.attemptId, stream: f.stream, offset: f.offset + BigInt(f.data.length), complete: false, refused: "" } as LogAck);
          }
          return { acks: [...acks.values()] };
        } finally {
          inFlight.set(req.agentId, inFlight.get(req.agentId)! - 1);
        }
      }) as unknown as Ingest,
    };
    return { client, calls, overlapped: () => overlapped, most: () => most };
  }

  function recordingReplies() {
    const acks: { agentId: string; ack: LogAck }[] = [];
    return { acks, reply: (agentId: string, m: ConnectResponse) => (m.message.case === "logAck" && acks.push({ agentId, ack: m.message.value }), true) };
  }

  const dataFrame = (attemptId: string, offset: number, text: string) =>
    ({ attemptId, stream: LogStream.STDOUT, offset: BigInt(offset), data: new TextEncoder().encode(text), final: false, commandIndex: 0, sourceLength: 0n }) as unknown as LogFrame;

  it("never has two calls of one agent in flight, keeps each agent's frames in order, and calls for different agents side by side", async () => {
    const fake = fakeLog({ delayMs: () => Math.random() * 5 });
    const sink = new LogSink(fake.client, logger, { delayMs: 1, maxFrames: 7, concurrency: 4 });
    const replies = recordingReplies();
    sink.bind(replies);
    for (let i = 0; i < 100; i++) for (let agent = 0; agent < 10; agent++) sink.logFrame(`ag${agent}`, dataFrame(`att${agent}`, i * 2, "x\n"));
    await eventually(() => (sink.stats().forwarded === 1000 ? true : undefined), 10_000, "every frame forwarded");
    assert.equal(fake.overlapped(), false, "one call per agent at a time");
    assert.ok(fake.most() > 1 && fake.most() <= 4, `calls ran side by side, at most 4 (${fake.most()})`);
    for (let agent = 0; agent < 10; agent++) {
      const offsets = fake.calls.filter((c) => c.agentId === `ag${agent}`).flatMap((c) => c.frames.map((f) => Number(f.offset)));
      assert.deepEqual(offsets, Array.from({ length: 100 }, (_, i) => i * 2), `ag${agent}'s frames in order, each once`);
    }
    assert.ok(fake.calls.every((c) => c.frames.length <= 7 && c.frames.every((f) => f.attemptId === `att${c.agentId.slice(2)}`)), "a call carries one agent's frames, at most 7");
    assert.ok(fake.calls.length < 1000 / 2, `frames were batched (${fake.calls.length} calls)`);
    assert.equal(replies.acks.at(-1)!.ack.offset > 0n, true);
    await sink.close();
  });

  it("sends frames that came while a batch was in flight as soon as it is answered: they waited for company already", async () => {
    const fake = fakeLog({ delayMs: () => 400 });
    const sink = new LogSink(fake.client, logger, { delayMs: 300, lanesPerAgent: 1 });
    sink.bind(recordingReplies());
    const t0 = performance.now();
    sink.logFrame("ag", dataFrame("att", 0, "a\n"));
    await eventually(() => (fake.calls.length === 1 ? true : undefined), 3000, "the first call");
    sink.logFrame("ag", dataFrame("att", 2, "b\n"));
    await eventually(() => (sink.stats().forwarded === 2 ? true : undefined), 5000, "both forwarded");
    const [first, second] = fake.calls;
    assert.ok(first!.at - t0 >= 290, `a first frame waits delayMs for company (${Math.round(first!.at - t0)} ms)`);
    // The first call is answered 400 ms after it started; waiting delayMs again would start the second 300 ms after that.
    const after = second!.at - (first!.at + 400);
    assert.ok(after < 150, `the second call started ${Math.round(after)} ms after the first was answered`);
    await sink.close();
  });

  it("retries a transient failure and then forwards the batch once; drops it at once on a permanent one", async () => {
    const transient = fakeLog({ fail: (n) => (n <= 2 ? Code.Unavailable : undefined) });
    const sink = new LogSink(transient.client, logger, { delayMs: 1, retryDelaysMs: [5, 5, 5] });
    sink.bind(recordingReplies());
    sink.logFrame("ag", dataFrame("att", 0, "hello\n"));
    await eventually(() => (sink.stats().forwarded === 1 ? true : undefined), 3000, "forwarded after two failures");
    assert.equal(transient.calls.length, 3);
    assert.equal(sink.stats().dropped, 0);
    await sink.close();

    const permanent = fakeLog({ fail: () => Code.InvalidArgument });
    const other = new LogSink(permanent.client, logger, { delayMs: 1, retryDelaysMs: [5, 5, 5] });
    other.bind(recordingReplies());
    other.logFrame("ag", dataFrame("att", 0, "hello\n"));
    await eventually(() => (other.stats().dropped === 1 ? true : undefined), 3000, "dropped");
    assert.equal(permanent.calls.length, 1, "not retried");
    // The stream's next frames would be refused as past a gap: dropped here until the agent resends from 0.
    other.logFrame("ag", dataFrame("att", 6, "more\n"));
    assert.equal(other.stats().dropped, 2);
    assert.equal(other.stats().queuedFrames, 0);
    await other.close();
  });
});

describe("with the real Log service", () => {
  let fleet: TestFleet;
  let logDb: Database;
  let logService: { stop(): Promise<void>; routes: Parameters<typeof createRouterTransport>[0] };
  let registrationToken: string;
  const slot = new SinkSlot();
  /** attempt id → the agent it was given to, as the fake Scheduler tells the Log service. */
  const owners = new Map<string, string>();
  let switchboard: LogSwitch;
  let attemptSeq = 0;

  before(async () => {
    logDb = await openPglite("memory://");
    await migrate(logDb.executor, "log");
    const scheduler = createRouterTransport((router) =>
      router.service(SchedulerService, {
        describeAttempts: (req) => ({
          attempts: req.attemptIds
            .filter((id) => owners.has(id))
            .map((id) => ({ attemptId: id, jobId: `job-of-${id}`, agentId: owners.get(id)!, runId: "", stageName: "", secretValues: [], jobEnded: false })),
        }),
      }),
    );
    let logTransport: Transport | undefined;
    const clients = createClients((name) => (name === "scheduler" ? scheduler : logTransport!));
      const log = createLog({ db: logDb.prismaFor("log"), sql: logDb.executor, bus: createMemoryBus(), clients, logger, settings: defaultLogSettings() });
    logService = { routes: log.routes, stop: () => log.stop() };
    logTransport = createRouterTransport(log.routes);
    await log.start();
    switchboard = new LogSwitch(clients.log);

    // One PGlite for both services (each has its own schema): opening one costs seconds.
    fleet = await startTestFleet({ db: logDb, sink: slot, settings: { heartbeatIntervalMs: 1000, staleAfterMs: 60_000, offlineAfterMs: 120_000 } });
    ({ secret: registrationToken } = await fleet.admin.createAgentToken({ name: "log sink tests" }));
  });

  after(async () => {
    await fleet?.close();
    await slot.current?.close();
    await logService?.stop();
    await logDb?.close();
  });

  afterEach(() => switchboard?.up());

  function newSink(options: Partial<LogSinkOptions> = {}): LogSink {
    return slot.use(new LogSink(switchboard.client, logger, { delayMs: 2, retryDelaysMs: [10, 20], ...options }));
  }

  /** A registered agent and a fresh attempt of its. */
  async function agentWithAttempt(): Promise<{ agent: TestAgent; attemptId: string }> {
    const agent = await TestAgent.register(fleet.grpcUrl, registrationToken);
    const attemptId = `attempt-${process.pid}-${++attemptSeq}`;
    owners.set(attemptId, agent.agentId);
    return { agent, attemptId };
  }

  /** Bytes of a stream as the Log service stored them; fails if chunks overlap or leave a hole (each byte once). */
  async function stored(attemptId: string, stream: "stdout" | "stderr"): Promise<string> {
    const chunks = await logDb.prismaFor("log").logChunk.findMany({ where: { attemptId, stream }, orderBy: { startOffset: "asc" } });
    let next = 0n;
    const parts: Uint8Array[] = [];
    for (const c of chunks) {
      assert.equal(c.startOffset, next, `chunk at ${c.startOffset} follows the stored bytes' end ${next}`);
      next = c.endOffset;
      parts.push(c.data);
    }
    return Buffer.concat(parts).toString();
  }

  function frame(attemptId: string, stream: LogStream, offset: number, text: string, extra: Partial<FrameInit> = {}): FrameInit {
    return { attemptId, stream, offset: BigInt(offset), data: new TextEncoder().encode(text), ...extra };
  }

  /** Sends `text` as frames of `size` bytes from offset `from`; returns the offset after. */
  function sendText(agent: TestAgent, attemptId: string, stream: LogStream, text: string, size: number, from = 0): number {
    for (let i = 0; i < text.length; i += size) {
      agent.send({ message: { case: "logFrame", value: frame(attemptId, stream, from + i, text.slice(i, i + size)) } });
    }
    return from + text.length;
  }

  /** Reads the agent's messages until a LogAck of the stream at `offset` (or further; and complete, if asked) comes; returns the LogAcks seen. */
  async function ackUpTo(agent: TestAgent, attemptId: string, stream: LogStream, offset: number, opts: { complete?: boolean; timeoutMs?: number } = {}): Promise<LogAck[]> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const acks: LogAck[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m: ConnectResponse = await agent.next(Math.max(1, deadline - Date.now()));
      if (m.message.case !== "logAck") continue;
      acks.push(m.message.value);
      const ack = m.message.value;
      if (ack.attemptId === attemptId && ack.stream === stream && ack.offset >= BigInt(offset) && (!opts.complete || ack.complete)) return acks;
    }
  }

  const lines = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `${tag} line ${i}\n`).join("");

  describe("forwarding log frames", () => {
    it("stores every byte once and in order, with heartbeats and duplicates in between, and acknowledges each stream to the agent", async () => {
      newSink();
      const { agent, attemptId } = await agentWithAttempt();
      try {
        const out = lines(300, "out");
        const err = lines(200, "err");
        // Interleaved, as an agent shipping two files would; a resent stretch too.
        let o = 0;
        let e = 0;
        let hb = 0;
        while (o < out.length || e < err.length) {
          if (o < out.length) o = sendText(agent, attemptId, LogStream.STDOUT, out.slice(o, o + 700), 350, o);
          if (e < err.length) e = sendText(agent, attemptId, LogStream.STDERR, err.slice(e, e + 300), 100, e);
          agent.heartbeat(++hb);
        }
        sendText(agent, attemptId, LogStream.STDOUT, out.slice(0, 1000), 500, 0);
        agent.send({ message: { case: "logFrame", value: frame(attemptId, LogStream.STDOUT, out.length, "", { final: true }) } });

        const acks = await ackUpTo(agent, attemptId, LogStream.STDOUT, out.length, { complete: true });
        assert.equal(acks.at(-1)!.offset, BigInt(out.length), "the final frame completes stdout where its bytes end");
        await eventually(async () => ((await stored(attemptId, "stderr")).length === err.length ? true : undefined), 5000, "stderr stored");
        assert.equal(await stored(attemptId, "stdout"), out);
        assert.equal(await stored(attemptId, "stderr"), err);
        const session = fleet.fleet.hub.session(agent.agentId)!;
        assert.equal(session.heartbeats, hb);
        assert.equal(slot.current!.stats().dropped, 0);
      } finally {
        await agent.cancel();
      }
    });

    it("answers a returning agent's Hello.log_offsets with how far each stream is stored", async () => {
      newSink();
      const { agent, attemptId } = await agentWithAttempt();
      const credential = agent.welcome!.agentCredential;
      const agentId = agent.agentId;
      try {
        sendText(agent, attemptId, LogStream.STDOUT, "hello\nworld\n", 6);
        await ackUpTo(agent, attemptId, LogStream.STDOUT, 12);
      } finally {
        await agent.cancel();
      }
      const back = await TestAgent.reconnect(fleet.grpcUrl, agentId, credential, {
        logOffsets: [
          { attemptId, stream: LogStream.STDOUT, offset: 20n },
          { attemptId, stream: LogStream.STDERR, offset: 5n },
        ],
      });
      try {
        const acks = await ackUpTo(back, attemptId, LogStream.STDERR, 0);
        const byStream = new Map(acks.filter((a) => a.attemptId === attemptId).map((a) => [a.stream, a.offset]));
        assert.equal(byStream.get(LogStream.STDOUT), 12n, "stdout is stored up to 12: resend from there");
        assert.equal(byStream.get(LogStream.STDERR), 0n, "nothing of stderr is stored");
      } finally {
        await back.cancel();
      }
    });

    it("keeps several agents' streams apart, each acknowledged on its own stream", async () => {
      newSink();
      const a = await agentWithAttempt();
      const b = await agentWithAttempt();
      try {
        sendText(a.agent, a.attemptId, LogStream.STDOUT, lines(50, "a"), 64);
        sendText(b.agent, b.attemptId, LogStream.STDOUT, lines(50, "b"), 64);
        const [acksA, acksB] = await Promise.all([
          ackUpTo(a.agent, a.attemptId, LogStream.STDOUT, lines(50, "a").length),
          ackUpTo(b.agent, b.attemptId, LogStream.STDOUT, lines(50, "b").length),
        ]);
        assert.ok(acksA.every((ack) => ack.attemptId === a.attemptId));
        assert.ok(acksB.every((ack) => ack.attemptId === b.attemptId));
        assert.equal(await stored(a.attemptId, "stdout"), lines(50, "a"));
        assert.equal(await stored(b.attemptId, "stdout"), lines(50, "b"));
      } finally {
        await Promise.all([a.agent.cancel(), b.agent.cancel()]);
      }
    });

    it("tells the agent when the Log service refuses a stream (an attempt that is not its own)", async () => {
      newSink();
      const { agent } = await agentWithAttempt();
      const other = await agentWithAttempt();
      try {
        sendText(agent, other.attemptId, LogStream.STDOUT, "not mine\n", 100);
        const m = await agent.next();
        assert.equal(m.message.case, "logAck");
        const ack = m.message.value as LogAck;
        assert.equal(ack.attemptId, other.attemptId);
        assert.notEqual(ack.refused, "", "the ack says why it is refused");
        assert.equal(await stored(other.attemptId, "stdout"), "");
      } finally {
        await Promise.all([agent.cancel(), other.agent.cancel()]);
      }
    });
  });

  describe("when the Log service is slow or away", () => {
    it("reads heartbeats while the Log service is slow, and acknowledges once it answers", async () => {
      newSink();
      const { agent, attemptId } = await agentWithAttempt();
      try {
        switchboard.slow();
        const text = lines(100, "slow");
        sendText(agent, attemptId, LogStream.STDOUT, text, 200);
        for (let i = 1; i <= 5; i++) agent.heartbeat(i);
        const session = fleet.fleet.hub.session(agent.agentId)!;
        await eventually(() => (session.heartbeats === 5 ? true : undefined), 3000, "heartbeats read while IngestLogs hangs");
        assert.ok(switchboard.waiting > 0, "a call is waiting on the slow Log service");
        await agent.nothingWithin(100);
        switchboard.up();
        await ackUpTo(agent, attemptId, LogStream.STDOUT, text.length);
        assert.equal(await stored(attemptId, "stdout"), text);
      } finally {
        await agent.cancel();
      }
    });

    it("drops frames while the Log service is down, reads heartbeats meanwhile, and stores the agent's resend once it is back", async () => {
      const sink = newSink();
      const { agent, attemptId } = await agentWithAttempt();
      try {
        switchboard.mode = "down";
        const text = lines(40, "down");
        sendText(agent, attemptId, LogStream.STDOUT, text, 100);
        for (let i = 1; i <= 3; i++) agent.heartbeat(i);
        const session = fleet.fleet.hub.session(agent.agentId)!;
        await eventually(() => (session.heartbeats === 3 ? true : undefined), 3000, "heartbeats read");
        await eventually(() => (sink.stats().dropped >= text.length / 100 && sink.stats().queuedFrames === 0 ? true : undefined), 5000, "every frame dropped after the retries");
        assert.ok(switchboard.calls > 1, "the call was retried before the frames were dropped");

        switchboard.up();
        // Frames after the dropped ones go nowhere until the agent goes back...
        sendText(agent, attemptId, LogStream.STDOUT, "more\n", 100, text.length);
        await agent.nothingWithin(150);
        // ...and resends from its last acknowledged offset, as it does when acks stop coming.
        const all = text + "more\n";
        sendText(agent, attemptId, LogStream.STDOUT, all, 100);
        await ackUpTo(agent, attemptId, LogStream.STDOUT, all.length);
        assert.equal(await stored(attemptId, "stdout"), all);
      } finally {
        await agent.cancel();
      }
    });

    it("drops frames past an agent's memory bound instead of queueing them or slowing the stream", async () => {
      const bound = 64 * 1024;
      const sink = newSink({ maxQueuedBytesPerAgent: bound, maxBatchBytes: 16 * 1024 });
      const { agent, attemptId } = await agentWithAttempt();
      try {
        switchboard.slow();
        const text = "x".repeat(1023) + "\n";
        const big = text.repeat(512); // 512 KiB, eight times the bound
        sendText(agent, attemptId, LogStream.STDOUT, big, 4096);
        for (let i = 1; i <= 3; i++) agent.heartbeat(i);
        const session = fleet.fleet.hub.session(agent.agentId)!;
        await eventually(() => (session.heartbeats === 3 ? true : undefined), 5000, "heartbeats read behind 512 KiB of frames");
        const stats = sink.stats();
        assert.ok(stats.queuedBytes <= bound, `at most the bound queued (${stats.queuedBytes})`);
        assert.ok(stats.dropped > 0, "frames past the bound were dropped");

        switchboard.up();
        await ackUpTo(agent, attemptId, LogStream.STDOUT, 1);
        await eventually(() => (sink.stats().calls === 0 && sink.stats().queuedFrames === 0 ? true : undefined), 3000, "nothing queued or in flight");
        const storedUpTo = (await stored(attemptId, "stdout")).length;
        assert.ok(storedUpTo > 0 && storedUpTo <= bound, `what was queued is stored, the rest dropped (${storedUpTo})`);
        // The agent resends from the acknowledged offset; everything is then stored once.
        sendText(agent, attemptId, LogStream.STDOUT, big.slice(storedUpTo), 4096, storedUpTo);
        await ackUpTo(agent, attemptId, LogStream.STDOUT, big.length);
        assert.equal(await stored(attemptId, "stdout"), big);
      } finally {
        await agent.cancel();
      }
    });
  });
});
