// The real AgentWorker with the real JobHandler against FakeFleet: offers,
// assignments and cancels cross an HTTP/2 connection, and attempts run real
// child processes.

import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";

import { ResourcesSchema } from "../gen/ts/drover/common/v1/resources_pb.ts";
import { AssignmentSchema, AttemptState, MetricsSchema, type JobEvent } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { createLogger } from "../lib/logger.ts";
import { AgentWorker } from "./agent_worker.ts";
import { CredentialStore } from "./credentials.ts";
import { JobEventOutbox } from "./job_events.ts";
import { JobHandler } from "./job_handler.ts";
import { RememberingProbe, type MachineSample } from "./metrics.ts";
import { eventually, FakeFleet, type FakeStream } from "./testing/fake_fleet.ts";

const GiB = 1024n ** 3n;

/** 4 cores, 8 GiB, 100 GiB of disk, half of each free, lightly loaded. */
const machine = new RememberingProbe({
  async sample(): Promise<MachineSample> {
    return {
      metrics: create(MetricsSchema, { cpuPercent: 20, load1: 0.5, memoryTotalBytes: 8n * GiB, memoryUsedBytes: 4n * GiB }),
      total: create(ResourcesSchema, { cpuMillis: 4000, memoryBytes: 8n * GiB, diskBytes: 100n * GiB }),
      free: create(ResourcesSchema, { cpuMillis: 2000, memoryBytes: 4n * GiB, diskBytes: 50n * GiB }),
    };
  },
});

interface Agent {
  worker: AgentWorker;
  work: JobHandler;
  events: JobEventOutbox;
  stateDir: string;
}

/** Runs a worker with a JobHandler against fleet; always cancels what runs, stops the worker and removes the state directory. */
async function withAgent(fleet: FakeFleet, fn: (agent: Agent) => Promise<void>): Promise<void> {
  const stateDir = await mkdtemp(join(tmpdir(), "drover-job-handler-test-"));
  const logger = createLogger("silent");
  const events = new JobEventOutbox();
  const work = new JobHandler({
    stateDir,
    maxAttempts: 2,
    allowShell: false,
    lastSample: () => machine.latest,
    events,
    logger,
    defaultCancelGraceMs: 1_000,
  });
  const worker = new AgentWorker({
    server: fleet.url,
    registrationToken: "registration-token-1",
    credentials: await CredentialStore.open(stateDir),
    hostname: "test-host",
    version: "9.9.9",
    labels: {},
    drivers: ["process"],
    machine,
    work,
    events,
    logger,
    backoff: { baseMs: 20, capMs: 100 },
    welcomeTimeoutMs: 2_000,
    stopGraceMs: 300,
    ackFlushMs: 10,
  });
  void worker.run();
  try {
    await fn({ worker, work, events, stateDir });
  } finally {
    await work.shutdown(0);
    await worker.stop();
    fleet.dropOpened(); // what it dialed before it stopped is not the next test's stream
    await rm(stateDir, { recursive: true, force: true });
  }
}

function assign(stream: FakeStream, messageId: string, value: MessageInitShape<typeof AssignmentSchema>): void {
  stream.send({ messageId, message: { case: "assignment", value } });
}

/** The next JobEvent on the stream, with its state's name for easy comparison. */
async function nextEvent(stream: FakeStream): Promise<JobEvent & { stateName: string }> {
  const event = await stream.next("jobEvent");
  return Object.assign(event, { stateName: AttemptState[event.state] });
}

/** Job events received on the stream until (and including) the one in state `last`. */
async function eventsUntil(stream: FakeStream, last: AttemptState): Promise<JobEvent[]> {
  const seen: JobEvent[] = [];
  for (;;) {
    const event = await stream.next("jobEvent");
    seen.push(event);
    if (event.state === last) return seen;
  }
}

const names = (events: JobEvent[]) => events.map((e) => `${e.attemptId}:${AttemptState[e.state]}`);

describe("JobHandler on a real stream", () => {
  let fleet: FakeFleet;
  before(async () => {
    fleet = await FakeFleet.start();
  });
  after(async () => {
    await fleet.close();
  });

  it("answers an Offer that fits with a Bid, and one that does not with a Decline saying why", async () => {
    await withAgent(fleet, async () => {
      const { stream } = await fleet.accept();
      // Offers carry no message id: they are answered, never acknowledged.
      stream.send({ message: { case: "offer", value: { offerId: "offer-1", jobId: "job-1", driver: "process", resources: { memoryBytes: GiB } } } });
      const bid = await stream.next("bid");
      assert.equal(bid.offerId, "offer-1");
      assert.ok(bid.score > 0 && bid.score <= 1, `score ${bid.score}`);
      assert.equal(bid.free?.memoryBytes, 4n * GiB);

      stream.send({ message: { case: "offer", value: { offerId: "offer-2", jobId: "job-2", resources: { memoryBytes: 6n * GiB } } } });
      const decline = await stream.next("decline");
      assert.equal(decline.offerId, "offer-2");
      assert.equal(decline.reason, "needs 6144 MiB memory, 4096 MiB free");
      assert.deepEqual(stream.acked(), []);
    });
  });

  it("runs an assigned echo hi and reports RUNNING, then SUCCEEDED with exit code 0", async () => {
    await withAgent(fleet, async ({ stateDir }) => {
      const { stream } = await fleet.accept();
      assign(stream, "m-1", { attemptId: "attempt-1", jobId: "job-1", driver: "process", exec: { commands: [{ argv: ["echo", "hi"] }] } });
      const events = await eventsUntil(stream, AttemptState.SUCCEEDED);
      assert.deepEqual(names(events), ["attempt-1:STARTING", "attempt-1:RUNNING", "attempt-1:SUCCEEDED"]);
      assert.deepEqual(events.map((e) => e.eventId), names(events), "event ids are deterministic");
      assert.equal(events.at(-1)!.exitCode, 0);
      assert.ok(events.every((e) => e.time !== undefined));
      assert.equal(await readFile(join(stateDir, "runs", "job-1", "job-1", "attempt-1", "cmd-000.stdout.log"), "utf8"), "hi\n");
      await eventually("the ack of m-1", () => (stream.acked().includes("m-1") ? true : undefined));
    });
  });

  it("resends unconfirmed job events in order after every reconnect, and stops once Fleet confirms them", async () => {
    await withAgent(fleet, async ({ events }) => {
      const first = (await fleet.accept()).stream;
      assign(first, "m-2", { attemptId: "attempt-2", jobId: "job-2", exec: { commands: [{ argv: ["true"] }] } });
      const sent = names(await eventsUntil(first, AttemptState.SUCCEEDED));
      assert.deepEqual(sent, ["attempt-2:STARTING", "attempt-2:RUNNING", "attempt-2:SUCCEEDED"]);
      first.end(new ConnectError("fleet restarting", Code.Unavailable));

      // No EventAck yet: everything comes again, first thing after Welcome.
      const second = (await fleet.accept()).stream;
      assert.deepEqual(names(await eventsUntil(second, AttemptState.SUCCEEDED)), sent);
      assert.equal(second.received[1]?.message.case, "jobEvent", "the events follow Hello directly");
      second.eventAck(["attempt-2:STARTING"]);
      await eventually("the first confirmation", () => (events.size === 2 ? true : undefined));
      second.end(new ConnectError("fleet restarting", Code.Unavailable));

      const third = (await fleet.accept()).stream;
      assert.deepEqual(names(await eventsUntil(third, AttemptState.SUCCEEDED)), sent.slice(1));
      third.eventAck(["attempt-2:RUNNING", "attempt-2:SUCCEEDED"]);
      await eventually("every confirmation", () => (events.size === 0 ? true : undefined));
      third.end(new ConnectError("fleet restarting", Code.Unavailable));

      const fourth = (await fleet.accept({ heartbeatIntervalMs: 50 })).stream;
      await fourth.next("heartbeat");
      assert.deepEqual(fourth.all("jobEvent"), [], "confirmed events are not sent again");
    });
  });

  it("lists a running attempt in Hello.running after a reconnect", async () => {
    await withAgent(fleet, async ({ work }) => {
      const first = (await fleet.accept()).stream;
      assign(first, "m-3", { attemptId: "attempt-3", jobId: "job-3", exec: { commands: [{ argv: ["sleep", "30"] }] } });
      await eventsUntil(first, AttemptState.RUNNING);
      first.end(new ConnectError("fleet restarting", Code.Unavailable));

      const { hello } = await fleet.accept();
      assert.deepEqual(
        hello.running.map((r) => ({ attemptId: r.attemptId, jobId: r.jobId, state: AttemptState[r.state] })),
        [{ attemptId: "attempt-3", jobId: "job-3", state: "RUNNING" }],
      );
      await work.shutdown(0);
    });
  });

  it("stops a running sleep on Cancel, reporting CANCELLED with SIGTERM", async () => {
    await withAgent(fleet, async ({ work }) => {
      const { stream } = await fleet.accept();
      assign(stream, "m-4", { attemptId: "attempt-4", jobId: "job-4", exec: { commands: [{ argv: ["sleep", "30"] }] } });
      await eventsUntil(stream, AttemptState.RUNNING);
      const started = Date.now();
      stream.send({ messageId: "m-5", message: { case: "cancel", value: { attemptId: "attempt-4", gracePeriod: durationFromMs(2_000), reason: "user asked" } } });
      const cancelled = await nextEvent(stream);
      assert.equal(cancelled.stateName, "CANCELLED");
      assert.equal(cancelled.signal, "SIGTERM");
      assert.equal(cancelled.message, "cancelled: user asked");
      assert.ok(Date.now() - started < 1_500, "SIGTERM ended it well within the grace period");
      assert.deepEqual(work.running(), []);
    });
  });

  it("ignores a second Assignment for an attempt it already has, and a Cancel for one it does not", async () => {
    await withAgent(fleet, async ({ work, stateDir }) => {
      const { stream } = await fleet.accept();
      const value = { attemptId: "attempt-6", jobId: "job-6", exec: { commands: [{ argv: ["echo", "once"] }] } };
      assign(stream, "m-6", value);
      await eventsUntil(stream, AttemptState.SUCCEEDED);
      // Another message id, so the worker does not filter it: the handler must.
      assign(stream, "m-7", value);
      stream.send({ messageId: "m-8", message: { case: "cancel", value: { attemptId: "attempt-unknown" } } });
      await eventually("the acks of m-7 and m-8", () => (stream.acked().includes("m-7") && stream.acked().includes("m-8") ? true : undefined));
      assert.equal(await readFile(join(stateDir, "runs", "job-6", "job-6", "attempt-6", "cmd-000.stdout.log"), "utf8"), "once\n");
      assert.equal(stream.all("jobEvent").length, 3);
      assert.deepEqual(work.running(), []);
    });
  });

  it("holds an attempt's resources while it runs, so the next offer sees them taken", async () => {
    await withAgent(fleet, async ({ work }) => {
      const { stream } = await fleet.accept();
      assign(stream, "m-9", { attemptId: "attempt-9", jobId: "job-9", resources: { memoryBytes: 3n * GiB }, exec: { commands: [{ argv: ["sleep", "30"] }] } });
      await eventsUntil(stream, AttemptState.RUNNING);
      stream.send({ message: { case: "offer", value: { offerId: "offer-9", jobId: "job-10", resources: { memoryBytes: 2n * GiB } } } });
      assert.equal((await stream.next("decline")).reason, "needs 2048 MiB memory, 1024 MiB free");
      await work.shutdown(0);
      stream.send({ message: { case: "offer", value: { offerId: "offer-10", jobId: "job-10", resources: { memoryBytes: 2n * GiB } } } });
      assert.equal((await stream.next("decline")).reason, "the agent is stopping");
    });
  });

  it("fails an attempt for a driver it does not have, without running anything", async () => {
    await withAgent(fleet, async () => {
      const { stream } = await fleet.accept();
      assign(stream, "m-11", { attemptId: "attempt-11", jobId: "job-11", driver: "docker", exec: { commands: [{ argv: ["echo"] }] } });
      const failed = await nextEvent(stream);
      assert.equal(failed.stateName, "FAILED");
      assert.equal(failed.message, "driver docker is not known to this agent");
    });
  });
});
