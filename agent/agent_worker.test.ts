// The real AgentWorker against a scripted Fleet (FakeFleet) on a free port:
// every request and response crosses an HTTP/2 connection.

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";

import { ResourcesSchema } from "../gen/ts/drover/common/v1/resources_pb.ts";
import { MetricsSchema, type Assignment, type Offer } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { createLogger } from "../lib/logger.ts";
import { AgentWorker, type AgentWorkerOptions } from "./agent_worker.ts";
import { CREDENTIAL_FILE, CredentialStore } from "./credentials.ts";
import type { MachineProbe, MachineSample } from "./metrics.ts";
import { SystemMetrics } from "./metrics.ts";
import { eventually, FakeFleet, memoryLogger } from "./testing/fake_fleet.ts";
import type { OfferAnswer, WorkHandler } from "./work_handler.ts";

const GiB = 1024n ** 3n;

/** A machine that always reads the same: 4 cores, 8 GiB, 100 GiB of disk, half of each free. */
const fixedMachine: MachineProbe = {
  async sample(): Promise<MachineSample> {
    return {
      metrics: create(MetricsSchema, { cpuPercent: 50, memoryTotalBytes: 8n * GiB, memoryUsedBytes: 4n * GiB, diskTotalBytes: 100n * GiB, diskUsedBytes: 50n * GiB }),
      total: create(ResourcesSchema, { cpuMillis: 4000, memoryBytes: 8n * GiB, diskBytes: 100n * GiB }),
      free: create(ResourcesSchema, { cpuMillis: 2000, memoryBytes: 4n * GiB, diskBytes: 50n * GiB }),
    };
  },
};

const NOT_HERE = "this test agent runs nothing";

/** Records the work it is handed, declines every offer and runs nothing (job_handler.test.ts covers running). */
class RecordingWorkHandler implements WorkHandler {
  readonly offers: Offer[] = [];
  readonly assignments: Assignment[] = [];
  async offer(offer: Offer): Promise<OfferAnswer> {
    this.offers.push(offer);
    return { case: "decline", value: { offerId: offer.offerId, reason: NOT_HERE } };
  }
  async assignment(assignment: Assignment): Promise<void> {
    this.assignments.push(assignment);
  }
  async cancel(): Promise<void> {}
  logAck(): void {}
  running(): [] {
    return [];
  }
}

interface Agent {
  worker: AgentWorker;
  stateDir: string;
  work: RecordingWorkHandler;
  /** Settles when run() returns. */
  done: Promise<void>;
}

/**
 * Runs an AgentWorker against fleet with test-sized timings, hands it to fn,
 * and always stops it and removes its state directory.
 */
async function withAgent(
  fleet: FakeFleet,
  fn: (agent: Agent) => Promise<void>,
  overrides: Partial<AgentWorkerOptions> & { identity?: { agentId: string; credential: string } } = {},
): Promise<void> {
  const stateDir = await mkdtemp(join(tmpdir(), "drover-agent-test-"));
  const { identity, ...options } = overrides;
  if (identity) await writeFile(join(stateDir, CREDENTIAL_FILE), JSON.stringify(identity), { mode: 0o600 });
  const work = new RecordingWorkHandler();
  const worker = new AgentWorker({
    server: fleet.url,
    registrationToken: "registration-token-1",
    credentials: await CredentialStore.open(stateDir),
    hostname: "test-host",
    version: "9.9.9",
    labels: { zone: "a", gpu: "none" },
    drivers: ["process"],
    machine: fixedMachine,
    work,
    logger: createLogger("silent"),
    backoff: { baseMs: 20, capMs: 100 },
    welcomeTimeoutMs: 2_000,
    stopGraceMs: 300,
    ackFlushMs: 10,
    ...options,
  });
  const done = worker.run();
  try {
    await fn({ worker, stateDir, work, done });
  } finally {
    await worker.stop();
    fleet.dropOpened();
    await rm(stateDir, { recursive: true, force: true });
  }
}

describe("AgentWorker", () => {
  let fleet: FakeFleet;
  before(async () => {
    fleet = await FakeFleet.start();
  });
  after(async () => {
    await fleet.close();
  });

  it("registers with the token, stores the credential with mode 0600, and presents it as a bearer header next time", async () => {
    await withAgent(fleet, async ({ stateDir, worker }) => {
      const first = await fleet.nextStream();
      assert.equal(first.authorization, null, "no credential yet, so no authorization header");
      const hello = await first.next("hello");
      assert.equal(hello.registrationToken, "registration-token-1");
      assert.equal(hello.agentId, "");
      first.welcome({ agentId: "agent-7", agentCredential: "credential-7" });

      const path = join(stateDir, CREDENTIAL_FILE);
      // The file appears whole or not at all (written aside, then renamed).
      const file = await waitForFile(path);
      assert.equal(worker.agentId, "agent-7");
      assert.deepEqual(JSON.parse(file), { agentId: "agent-7", credential: "credential-7" });
      assert.equal((await stat(path)).mode & 0o777, 0o600);

      first.end(new ConnectError("fleet restarting", Code.Unavailable));
      const second = await fleet.nextStream();
      assert.equal(second.authorization, "Bearer credential-7");
      const again = await second.next("hello");
      assert.equal(again.agentId, "agent-7");
      assert.equal(again.registrationToken, "", "the registration token is presented only once");
    });
  });

  it("says in Hello who it is, what it has and what it runs", async () => {
    await withAgent(fleet, async () => {
      const { hello } = await fleet.accept();
      assert.equal(hello.hostname, "test-host");
      assert.equal(hello.version, "9.9.9");
      assert.deepEqual(hello.labels, { zone: "a", gpu: "none" });
      assert.deepEqual(hello.drivers, ["process"]);
      assert.equal(hello.total?.cpuMillis, 4000);
      assert.equal(hello.total?.memoryBytes, 8n * GiB);
      assert.equal(hello.total?.diskBytes, 100n * GiB);
      assert.equal(hello.free?.memoryBytes, 4n * GiB);
      assert.deepEqual(hello.running, []);
      assert.deepEqual(hello.logOffsets, []);
    });
  });

  it("sends heartbeats at the Welcome interval with increasing sequence and plausible metrics", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "drover-agent-metrics-"));
    try {
      await withAgent(
        fleet,
        async () => {
          const { stream } = await fleet.accept({ heartbeatIntervalMs: 150 });
          const beats = [await stream.next("heartbeat"), await stream.next("heartbeat"), await stream.next("heartbeat")];
          assert.deepEqual(beats.map((b) => b.sequence), [1n, 2n, 3n]);
          const times = stream.received.map((r, i) => (r.message.case === "heartbeat" ? stream.receivedAt[i]! : undefined)).filter((t) => t !== undefined);
          // The mean gap, not each one: a beat whose metrics took long on a
          // busy machine is followed by one that comes early (the timer keeps
          // its rate). Either way it is the Welcome's 150 ms, not the 5 s default.
          const mean = (times.at(-1)! - times[0]!) / (times.length - 1);
          assert.ok(times.length >= 3 && mean >= 100 && mean <= 400, `heartbeats ${mean} ms apart on average, expected about 150`);
          for (const { metrics, free } of beats) {
            assert.ok(metrics, "every heartbeat carries metrics");
            assert.ok(metrics.cpuPercent >= 0 && metrics.cpuPercent <= 100, `cpu ${metrics.cpuPercent}%`);
            assert.ok(metrics.memoryTotalBytes > 0n && metrics.memoryUsedBytes <= metrics.memoryTotalBytes);
            assert.ok(metrics.diskTotalBytes > 0n && metrics.diskUsedBytes <= metrics.diskTotalBytes);
            assert.ok(metrics.uptimeSeconds > 0n);
            assert.ok(metrics.agentRssBytes > 10n * 1024n * 1024n, "the agent's own RSS is at least 10 MiB");
            assert.ok(metrics.load1 >= 0);
            assert.ok(free && free.memoryBytes > 0n && free.memoryBytes <= metrics.memoryTotalBytes);
          }
        },
        { machine: new SystemMetrics({ stateDir }) },
      );
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it("answers an Offer with a Decline and acknowledges it", async () => {
    await withAgent(fleet, async ({ work }) => {
      const { stream } = await fleet.accept();
      stream.send({ messageId: "m-offer-1", message: { case: "offer", value: { offerId: "offer-1", jobId: "job-1", driver: "process" } } });
      const decline = await stream.next("decline");
      assert.equal(decline.offerId, "offer-1");
      assert.equal(decline.reason, NOT_HERE);
      await eventually("the ack of m-offer-1", () => (stream.acked().includes("m-offer-1") ? true : undefined));
      assert.equal(work.offers.length, 1);
    });
  });

  it("acknowledges a message once, and acknowledges a redelivered duplicate without handling it twice", async () => {
    await withAgent(fleet, async ({ work }) => {
      const assignment = { messageId: "m-assign-1", message: { case: "assignment" as const, value: { attemptId: "attempt-1", jobId: "job-1" } } };
      const first = (await fleet.accept({ agentId: "agent-1", agentCredential: "credential-1" })).stream;
      first.send(assignment);
      await eventually("the ack of m-assign-1", () => (first.acked().includes("m-assign-1") ? true : undefined));
      // Let a second flush happen, to be sure the ack is not repeated.
      await sleep(50);
      assert.deepEqual(first.acked(), ["m-assign-1"]);
      first.end(new ConnectError("fleet restarting", Code.Unavailable));

      // Fleet lost the ack with the old stream and delivers the message again.
      const second = (await fleet.accept()).stream;
      second.send(assignment);
      await eventually("the second ack of m-assign-1", () => (second.acked().includes("m-assign-1") ? true : undefined));
      assert.equal(work.assignments.length, 1, "the assignment was handled once");
    });
  });

  it("sends the same answer again when an Offer is redelivered", async () => {
    await withAgent(fleet, async ({ work }) => {
      const offer = { messageId: "m-offer-2", message: { case: "offer" as const, value: { offerId: "offer-2", jobId: "job-2" } } };
      const { stream } = await fleet.accept();
      stream.send(offer);
      await stream.next("decline");
      stream.send(offer);
      const again = await stream.next("decline");
      assert.equal(again.offerId, "offer-2");
      assert.equal(work.offers.length, 1);
    });
  });

  it("sets the draining flag on Drain, declines offers while draining, and clears it when the drain is lifted", async () => {
    await withAgent(fleet, async ({ worker, work }) => {
      const { stream } = await fleet.accept();
      assert.equal(worker.draining, false);
      stream.send({ messageId: "m-drain-1", message: { case: "drain", value: { draining: true, reason: "kernel upgrade" } } });
      await eventually("the ack of m-drain-1", () => (stream.acked().includes("m-drain-1") ? true : undefined));
      assert.equal(worker.draining, true);

      stream.send({ messageId: "m-offer-3", message: { case: "offer", value: { offerId: "offer-3" } } });
      const decline = await stream.next("decline");
      assert.match(decline.reason, /draining/);
      assert.equal(work.offers.length, 0, "the work handler is not asked while draining");

      stream.send({ messageId: "m-drain-2", message: { case: "drain", value: { draining: false } } });
      await eventually("the ack of m-drain-2", () => (stream.acked().includes("m-drain-2") ? true : undefined));
      assert.equal(worker.draining, false);
    });
  });

  it("reconnects when Fleet ends the stream with UNAVAILABLE, backing off longer after each failure in a row", async () => {
    // random() = 1 makes every wait the whole window: 20, 40, 80, 100 (cap), 100 ms.
    await withAgent(
      fleet,
      async () => {
        const opened: number[] = [];
        for (let i = 0; i < 5; i++) {
          const stream = await fleet.nextStream();
          await stream.next("hello");
          opened.push(stream.openedAt);
          stream.end(new ConnectError("fleet shutting down", Code.Unavailable));
        }
        const gaps = opened.slice(1).map((t, i) => t - opened[i]!);
        const windows = [20, 40, 80, 100];
        gaps.forEach((gap, i) => assert.ok(gap >= windows[i]! - 5, `gap ${i} was ${gap} ms, expected at least ${windows[i]} ms`));
        assert.ok(gaps[3]! < 1_000, `the cap bounds the wait (gap ${gaps[3]} ms)`);
      },
      { random: () => 0.999_999 },
    );
  });

  it("keeps retrying with its credential when Fleet answers UNAUTHENTICATED, and never registers again", async () => {
    const { logger, records } = memoryLogger();
    await withAgent(
      fleet,
      async ({ stateDir }) => {
        for (let i = 0; i < 3; i++) {
          const stream = await fleet.nextStream();
          assert.equal(stream.authorization, "Bearer revoked-credential");
          const hello = await stream.next("hello");
          assert.equal(hello.registrationToken, "");
          assert.equal(hello.agentId, "agent-9");
          stream.end(new ConnectError("credential revoked", Code.Unauthenticated));
        }
        const stored = JSON.parse(await readFile(join(stateDir, CREDENTIAL_FILE), "utf8"));
        assert.deepEqual(stored, { agentId: "agent-9", credential: "revoked-credential" });
        const refused = records.filter((r) => r.level === 50 && String(r.msg).includes("refused this agent's credential"));
        assert.ok(refused.length >= 2, "each refusal is logged as an error");
        assert.equal(refused[0]!.agentId, "agent-9");
      },
      { identity: { agentId: "agent-9", credential: "revoked-credential" }, logger },
    );
  });

  it("keeps presenting its registration token when Fleet refuses it, and says so", async () => {
    const { logger, records } = memoryLogger();
    await withAgent(
      fleet,
      async ({ worker }) => {
        for (let i = 0; i < 2; i++) {
          const stream = await fleet.nextStream();
          assert.equal(stream.authorization, null);
          assert.equal((await stream.next("hello")).registrationToken, "registration-token-1");
          stream.end(new ConnectError("the registration token is unknown, revoked or expired", Code.Unauthenticated));
        }
        await eventually("the error log", () => records.find((r) => r.level === 50 && String(r.msg).includes("refused the registration token")));
        assert.equal(worker.agentId, undefined);
      },
      { logger },
    );
  });

  it("stops at once while waiting to reconnect", async () => {
    await withAgent(
      fleet,
      async ({ worker }) => {
        const stream = await fleet.nextStream();
        await stream.next("hello");
        stream.end(new ConnectError("fleet shutting down", Code.Unavailable));
        await sleep(50);
        const started = Date.now();
        await worker.stop();
        assert.ok(Date.now() - started < 200, "stop() did not wait out the 10 s backoff");
      },
      { backoff: { baseMs: 10_000, capMs: 10_000 }, random: () => 0.999 },
    );
  });

  it("gives up on a stream that gets no Welcome and dials again", async () => {
    await withAgent(
      fleet,
      async () => {
        const silent = await fleet.nextStream();
        await silent.next("hello");
        const next = await fleet.nextStream(3_000);
        await next.next("hello");
        // Seen from Fleet: the first stream arrives a little after the agent's timer started, so the gap can be a few ms short of 200.
        const gap = next.openedAt - silent.openedAt;
        assert.ok(gap >= 150, `it waited for the Welcome timeout (dialed again after ${gap} ms)`);
      },
      { welcomeTimeoutMs: 200 },
    );
  });

  it("half-closes the stream on stop() and resolves promptly", async () => {
    await withAgent(fleet, async ({ worker, done }) => {
      const { stream } = await fleet.accept({ heartbeatIntervalMs: 50 });
      await stream.next("heartbeat");
      const started = Date.now();
      await worker.stop();
      const took = Date.now() - started;
      assert.equal(stream.requestsDone, true, "Fleet saw the end of the requests");
      assert.ok(took < 250, `stop() took ${took} ms`);
      await done;
      const beats = stream.all("heartbeat").length;
      await sleep(120);
      assert.equal(stream.all("heartbeat").length, beats, "no heartbeats after stop()");
      assert.equal(fleet.streams.at(-1), stream, "no reconnection after stop()");
    });
  });

  it("stops within the grace period when Fleet does not end its side", async () => {
    const stubborn = await FakeFleet.start({ endOnHalfClose: false });
    try {
      await withAgent(stubborn, async ({ worker }) => {
        const { stream } = await stubborn.accept();
        const started = Date.now();
        await worker.stop();
        const took = Date.now() - started;
        await stream.requestsEnded;
        assert.ok(took >= 250 && took < 1_000, `stop() took ${took} ms with a 300 ms grace`);
      });
    } finally {
      await stubborn.close();
    }
  });
});

async function waitForFile(path: string): Promise<string> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    try {
      return await readFile(path, "utf8");
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(5);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
