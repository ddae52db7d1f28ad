// The log shipper over real bundle files: a small in-test Log server stands
// in for the stream (it stores frames by offset and answers LogAcks the way
// the Log service does), real child processes write through JobHandler, and
// one test runs the whole agent worker against FakeFleet.

import assert from "node:assert/strict";
import { appendFile, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";

import { create, type MessageInitShape } from "@bufbuild/protobuf";

import { ResourcesSchema } from "../gen/ts/drover/common/v1/resources_pb.ts";
import { AssignmentSchema, LogAckSchema, LogStream, MetricsSchema, type LogAck } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { createLogger } from "../lib/logger.ts";
import { REDACTED } from "../lib/redact.ts";
import { AgentWorker } from "./agent_worker.ts";
import { bundleDir, closeBundle, createBundle, logFileName, readManifest, writeManifest, type Manifest } from "./bundle.ts";
import { CredentialStore } from "./credentials.ts";
import { JobEventOutbox } from "./job_events.ts";
import { JobHandler } from "./job_handler.ts";
import { LOG_ACKS, LogShipper, SYSTEM_LOG, type LogFrameInit, type LogLink, type LogShipperOptions } from "./log_shipper.ts";
import { RememberingProbe, type MachineSample } from "./metrics.ts";
import { eventually, FakeFleet } from "./testing/fake_fleet.ts";

const STREAMS = [LogStream.STDOUT, LogStream.STDERR, LogStream.SYSTEM] as const;

/** What the Log service holds of one stream. */
interface Stored {
  /** Source bytes stored: the next frame must start here. */
  end: number;
  /** The data as stored (redacted). */
  data: Buffer[];
  complete: boolean;
}

/**
 * Stands in for Fleet + the Log service: a LogLink that records every frame
 * and stores those that start where the stream's stored bytes end (a frame
 * past a gap stores nothing), answering each with a LogAck, as IngestLogs
 * does. `acking` false: frames are recorded and never acknowledged.
 */
class FakeLogServer implements LogLink {
  readonly frames: LogFrameInit[] = [];
  readonly stored = new Map<string, Stored>();
  acking = true;
  full = false;
  /** Frames to drop silently before storing again (a loaded server). */
  drop = 0;
  shipper: LogShipper | undefined;

  ready(): boolean {
    return !this.full;
  }

  send(frame: LogFrameInit): void {
    this.frames.push(frame);
    if (this.drop > 0) {
      this.drop -= 1;
      return;
    }
    const s = this.streamOf(frame.attemptId!, frame.stream!);
    const offset = Number(frame.offset);
    const covered = frame.sourceLength ? Number(frame.sourceLength) : (frame.data?.length ?? 0);
    if (offset === s.end && covered > 0) {
      s.data.push(Buffer.from(frame.data!));
      s.end += covered;
    }
    if (frame.final && offset === s.end) s.complete = true;
    if (!this.acking) return;
    const ack = create(LogAckSchema, { attemptId: frame.attemptId!, stream: frame.stream!, offset: BigInt(s.end), complete: s.complete });
    setImmediate(() => this.shipper?.logAck(ack));
  }

  streamOf(attemptId: string, stream: LogStream): Stored {
    const key = `${attemptId}/${stream}`;
    let s = this.stored.get(key);
    if (!s) this.stored.set(key, (s = { end: 0, data: [], complete: false }));
    return s;
  }

  text(attemptId: string, stream: LogStream): string {
    return Buffer.concat(this.streamOf(attemptId, stream).data).toString("utf8");
  }

  framesOf(attemptId: string, stream: LogStream): LogFrameInit[] {
    return this.frames.filter((f) => f.attemptId === attemptId && f.stream === stream);
  }

  complete(attemptId: string): boolean {
    return STREAMS.every((s) => this.streamOf(attemptId, s).complete);
  }
}

const quiet = createLogger("silent");
const fast: Partial<LogShipperOptions> = { flushDelayMs: 2, pollIntervalMs: 50, sweepIntervalMs: 200, persistDelayMs: 20 };

/** A state directory, a shipper and a fake server, all torn down after fn whatever happens. */
async function withShipper(options: Partial<LogShipperOptions>, fn: (t: { stateDir: string; shipper: LogShipper; server: FakeLogServer }) => Promise<void>): Promise<void> {
  const stateDir = await mkdtemp(join(tmpdir(), "drover-log-shipper-"));
  const shipper = new LogShipper({ logger: quiet, ...fast, ...options });
  const server = new FakeLogServer();
  server.shipper = shipper;
  try {
    await fn({ stateDir, shipper, server });
  } finally {
    await shipper.stop();
    await rm(stateDir, { recursive: true, force: true });
  }
}

/** An open bundle as JobRunner lays it out before its first command. */
async function openBundle(stateDir: string, attemptId: string, commands = 2): Promise<{ dir: string; manifest: Manifest }> {
  const dir = bundleDir(stateDir, { attemptId, jobId: `job-${attemptId}` });
  await createBundle(dir);
  const manifest: Manifest = {
    version: 1,
    attemptId,
    jobId: `job-${attemptId}`,
    hostname: "test-host",
    driver: "process",
    spec: {},
    assignedTime: new Date().toISOString(),
    state: "RUNNING",
    commands: Array.from({ length: commands }, (_, index) => ({ index, argv: ["true"] })),
    closed: false,
  };
  await writeManifest(dir, manifest);
  return { dir, manifest };
}

async function close(dir: string): Promise<void> {
  const manifest = (await readManifest(dir))!;
  await closeBundle(dir, { ...manifest, state: "SUCCEEDED", exitCode: 0, endTime: new Date().toISOString() });
}

function ack(shipper: LogShipper, value: MessageInitShape<typeof LogAckSchema>): void {
  shipper.logAck(create(LogAckSchema, value) as LogAck);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The frames' data lengths in source bytes, checked to follow each other without gap or overlap from offset 0. */
function assertContiguous(frames: LogFrameInit[]): void {
  let at = 0;
  for (const f of frames.filter((x) => !x.final)) {
    assert.equal(Number(f.offset), at, `frame at ${f.offset} should start at ${at}`);
    at += f.sourceLength ? Number(f.sourceLength) : f.data!.length;
  }
}

describe("LogShipper", () => {
  it("sends every byte of multi-command output with stream offsets that go on from one command to the next, then a final frame for each of the three streams", () =>
    withShipper({ maxFrameBytes: 1024 }, async ({ stateDir, shipper, server }) => {
      const { dir } = await openBundle(stateDir, "a-1");
      const first = "0123456789".repeat(250); // 2 500 bytes: three frames of at most 1 024
      await writeFile(join(dir, logFileName(0, "stdout")), first);
      await writeFile(join(dir, logFileName(0, "stderr")), "err0\n");
      await shipper.track({ dir });
      shipper.connect(server);
      await eventually("command 0's output", () => (server.text("a-1", LogStream.STDOUT).length === 2500 ? true : undefined));

      await writeFile(join(dir, logFileName(1, "stdout")), "second\n");
      await writeFile(join(dir, logFileName(1, "stderr")), "");
      await close(dir);
      await shipper.ended("a-1");
      await eventually("all three streams complete", () => (server.complete("a-1") ? true : undefined));

      assert.equal(server.text("a-1", LogStream.STDOUT), first + "second\n");
      assert.equal(server.text("a-1", LogStream.STDERR), "err0\n");
      assert.equal(server.text("a-1", LogStream.SYSTEM), "");
      const stdout = server.framesOf("a-1", LogStream.STDOUT);
      assertContiguous(stdout);
      assert.ok(stdout.every((f) => (f.data?.length ?? 0) <= 1024), "no frame is larger than maxFrameBytes");
      assert.deepEqual(
        stdout.filter((f) => !f.final).map((f) => [f.commandIndex, Number(f.offset), f.data!.length]),
        [
          [0, 0, 1024],
          [0, 1024, 1024],
          [0, 2048, 452],
          [1, 2500, 7],
        ],
        "a frame never spans two commands, and command 1 starts where command 0 ended",
      );
      const finals = STREAMS.map((s) => server.framesOf("a-1", s).filter((f) => f.final).map((f) => Number(f.offset)));
      assert.deepEqual(finals, [[2507], [5], [0]], "one final frame per stream at its length, 0 for a missing system.log");
    }));

  it("stop() waits for a bundle being marked shipped: nothing writes into the bundle after it", () =>
    withShipper({}, async ({ stateDir, shipper, server }) => {
      const { dir } = await openBundle(stateDir, "a-1", 1);
      await writeFile(join(dir, logFileName(0, "stdout")), "out\n");
      await close(dir);
      await shipper.track({ dir });
      shipper.connect(server);
      // Untracked first; the acks file and the manifest are written after.
      await eventually("untracked", () => (shipper.tracked.length === 0 ? true : undefined));
      await shipper.stop();
      assert.equal((await readManifest(dir))?.logsShipped, true);
      assert.deepEqual(JSON.parse(await readFile(join(dir, LOG_ACKS), "utf8")).streams.stdout, { acked: 4, complete: true });
    }));

  it("marks the bundle's logs shipped once all three streams are acknowledged complete, and stops tracking it", () =>
    withShipper({}, async ({ stateDir, shipper, server }) => {
      const { dir } = await openBundle(stateDir, "a-1", 1);
      await writeFile(join(dir, logFileName(0, "stdout")), "out\n");
      await writeFile(join(dir, SYSTEM_LOG), "pulling\n");
      await close(dir);
      await shipper.track({ dir });
      shipper.connect(server);
      await eventually("the shipped mark", () => (shipper.tracked.length === 0 ? true : undefined));
      await waitFor(async () => (await readManifest(dir))?.logsShipped === true, "manifest.logsShipped");
      assert.equal(server.text("a-1", LogStream.SYSTEM), "pulling\n");
      const saved = JSON.parse(await readFile(join(dir, LOG_ACKS), "utf8"));
      assert.deepEqual(saved.streams.stdout, { acked: 4, complete: true });
      assert.equal((await stat(join(dir, LOG_ACKS))).mode & 0o777, 0o444, "read-only like the rest of a closed bundle");
      assert.equal((await stat(join(dir, "manifest.json"))).mode & 0o777, 0o444);

      // Tracked again (an agent restart): nothing is sent, the bundle is shipped.
      const before = server.frames.length;
      await shipper.track({ dir });
      assert.deepEqual(shipper.tracked, []);
      assert.equal(server.frames.length, before);
    }));

  it("tails a running attempt's files within milliseconds and batches small writes into few frames", () =>
    withShipper({ flushDelayMs: 20, sweepIntervalMs: 60_000, pollIntervalMs: 60_000 }, async ({ stateDir, shipper, server }) => {
      const { dir } = await openBundle(stateDir, "a-1", 1);
      const out = join(dir, logFileName(0, "stdout"));
      await writeFile(out, "");
      await shipper.track({ dir });
      shipper.connect(server);
      await sleep(30);

      const written = Date.now();
      await appendFile(out, "first line\n");
      await eventually("the first line", () => (server.text("a-1", LogStream.STDOUT) === "first line\n" ? true : undefined));
      assert.ok(Date.now() - written < 200, `reached the server after ${Date.now() - written} ms (the watch, not the poll)`);

      const framesBefore = server.framesOf("a-1", LogStream.STDOUT).length;
      let expected = "first line\n";
      for (let i = 0; i < 50; i++) {
        await appendFile(out, `line ${i}\n`);
        expected += `line ${i}\n`;
      }
      await eventually("all 50 lines", () => (server.text("a-1", LogStream.STDOUT) === expected ? true : undefined));
      const frames = server.framesOf("a-1", LogStream.STDOUT).length - framesBefore;
      assert.ok(frames < 25, `50 small writes in quick succession went in ${frames} frames`);
    }));

  it("falls back to polling when it cannot watch the directory", () =>
    withShipper({ watch: false, pollIntervalMs: 30 }, async ({ stateDir, shipper, server }) => {
      const { dir } = await openBundle(stateDir, "a-1", 1);
      await shipper.track({ dir });
      shipper.connect(server);
      await writeFile(join(dir, logFileName(0, "stdout")), "polled\n");
      await eventually("the polled line", () => (server.text("a-1", LogStream.STDOUT) === "polled\n" ? true : undefined));
    }));

  it("replaces secret values with [REDACTED], a value split across two writes too, and says how many file bytes each changed frame covers", () =>
    withShipper({}, async ({ stateDir, shipper, server }) => {
      const { dir } = await openBundle(stateDir, "a-1", 1);
      const out = join(dir, logFileName(0, "stdout"));
      await writeFile(out, "");
      await shipper.track({ dir, secrets: ["hunter2-password", "ab"] });
      shipper.connect(server);

      await appendFile(out, "token=hunter2-pass");
      await sleep(100);
      assert.equal(server.text("a-1", LogStream.STDOUT), "token=", "the start of a secret is held back");
      await appendFile(out, "word and ab\n");
      await eventually("the rest", () => (server.text("a-1", LogStream.STDOUT).endsWith("\n") ? true : undefined));
      assert.equal(server.text("a-1", LogStream.STDOUT), `token=${REDACTED} and ab\n`, "the whole value replaced; values shorter than 3 characters are left alone");

      const frames = server.framesOf("a-1", LogStream.STDOUT);
      assertContiguous(frames);
      const redacted = frames.find((f) => Buffer.from(f.data!).includes(REDACTED))!;
      assert.equal(Number(redacted.sourceLength), "hunter2-password and ab\n".length);
      assert.equal(redacted.data!.length, `${REDACTED} and ab\n`.length);
      assert.ok(frames.filter((f) => f !== redacted).every((f) => !f.sourceLength), "source_length only where redaction changed the length");

      // A secret the file ends with is sent once the attempt has ended.
      await appendFile(out, "last: hunter2");
      await close(dir);
      await shipper.ended("a-1");
      await eventually("completion", () => (server.complete("a-1") ? true : undefined));
      assert.equal(server.text("a-1", LogStream.STDOUT), `token=${REDACTED} and ab\nlast: hunter2`);
    }));

  it("sends a held-back tail of a command's file once the next command has started, since that file is final", () =>
    withShipper({}, async ({ stateDir, shipper, server }) => {
      const { dir } = await openBundle(stateDir, "a-1", 2);
      await writeFile(join(dir, logFileName(0, "stdout")), "ends with hunt");
      await shipper.track({ dir, secrets: ["hunter2-password"] });
      shipper.connect(server);
      await eventually("the part before the possible secret", () => (server.text("a-1", LogStream.STDOUT) === "ends with " ? true : undefined));
      await writeFile(join(dir, logFileName(1, "stdout")), "next\n");
      await eventually("the tail, then command 1", () => (server.text("a-1", LogStream.STDOUT) === "ends with huntnext\n" ? true : undefined));
      const next = server.framesOf("a-1", LogStream.STDOUT).find((f) => f.commandIndex === 1)!;
      assert.equal(Number(next.offset), "ends with hunt".length);
    }));

  it("forgets a bundle that went away (retention removed it) and no longer lists it in Hello", () =>
    withShipper({}, async ({ stateDir, shipper, server }) => {
      const { dir } = await openBundle(stateDir, "a-1", 1);
      await writeFile(join(dir, logFileName(0, "stdout")), "gone soon\n");
      await close(dir);
      await shipper.track({ dir });
      assert.equal(shipper.offsets().length, 3);
      await rm(dir, { recursive: true, force: true });
      shipper.connect(server);
      await eventually("the bundle forgotten", () => (shipper.tracked.length === 0 ? true : undefined));
      assert.deepEqual(shipper.offsets(), []);
    }));

  it("stops at the window without acks and goes on as acks come", () =>
    withShipper({ maxFrameBytes: 1000, streamWindowBytes: 3000, totalWindowBytes: 5000 }, async ({ stateDir, shipper, server }) => {
      server.acking = false;
      const a = await openBundle(stateDir, "a-1", 1);
      const b = await openBundle(stateDir, "a-2", 1);
      await writeFile(join(a.dir, logFileName(0, "stdout")), Buffer.alloc(10_000, "a"));
      await writeFile(join(b.dir, logFileName(0, "stdout")), Buffer.alloc(10_000, "b"));
      await shipper.track({ dir: a.dir });
      await shipper.track({ dir: b.dir });
      shipper.connect(server);
      await sleep(150);
      const sent = (id: string) => server.framesOf(id, LogStream.STDOUT).reduce((n, f) => n + (f.data?.length ?? 0), 0);
      assert.equal(sent("a-1") + sent("a-2"), 5000, "the total window: 5 000 bytes in flight");
      assert.ok(sent("a-1") <= 3000 && sent("a-2") <= 3000, "neither stream past its own window");
      assert.equal(shipper.unacknowledgedBytes, 5000);

      ack(shipper, { attemptId: "a-1", stream: LogStream.STDOUT, offset: BigInt(sent("a-1")) });
      await eventually("more of a-1 after its ack", () => (sent("a-1") + sent("a-2") > 5000 ? true : undefined));
      await sleep(100);
      assert.equal(shipper.unacknowledgedBytes, 5000, "the window is full again, no further");
    }));

  it("waits while the link is full and resumes when it has room", () =>
    withShipper({ maxFrameBytes: 100 }, async ({ stateDir, shipper, server }) => {
      const { dir } = await openBundle(stateDir, "a-1", 1);
      await writeFile(join(dir, logFileName(0, "stdout")), Buffer.alloc(1000, "x"));
      server.full = true;
      await shipper.track({ dir });
      shipper.connect(server);
      await sleep(100);
      assert.equal(server.frames.length, 0);
      server.full = false;
      shipper.writable();
      await eventually("all of it", () => (server.streamOf("a-1", LogStream.STDOUT).end === 1000 ? true : undefined));
    }));

  it("sends again from the last ack after a reconnect", () =>
    withShipper({ maxFrameBytes: 100 }, async ({ stateDir, shipper, server }) => {
      const { dir } = await openBundle(stateDir, "a-1", 1);
      await writeFile(join(dir, logFileName(0, "stdout")), Buffer.alloc(500, "x"));
      server.acking = false;
      await shipper.track({ dir });
      shipper.connect(server);
      await eventually("500 bytes sent", () => (server.framesOf("a-1", LogStream.STDOUT).length === 5 ? true : undefined));
      ack(shipper, { attemptId: "a-1", stream: LogStream.STDOUT, offset: 200n });
      shipper.disconnect();

      const second = new FakeLogServer();
      second.acking = false;
      shipper.connect(second);
      await eventually("the resend", () => (second.framesOf("a-1", LogStream.STDOUT).length === 3 ? true : undefined));
      assert.deepEqual(
        second.framesOf("a-1", LogStream.STDOUT).map((f) => Number(f.offset)),
        [200, 300, 400],
      );
    }));

  it("sends again from the last ack when unacknowledged data sees no ack progress, less often while none comes", () =>
    withShipper({ maxFrameBytes: 100, ackTimeoutMs: 100, maxAckTimeoutMs: 200 }, async ({ stateDir, shipper, server }) => {
      const { dir } = await openBundle(stateDir, "a-1", 1);
      await writeFile(join(dir, logFileName(0, "stdout")), Buffer.alloc(300, "x"));
      server.drop = 1; // the first frame is lost without a word, so the rest land past a gap
      await shipper.track({ dir });
      shipper.connect(server);
      await eventually("the stream stored after the resend", () => (server.streamOf("a-1", LogStream.STDOUT).end === 300 ? true : undefined), 3_000);
      const offsets = server.framesOf("a-1", LogStream.STDOUT).map((f) => Number(f.offset));
      assert.deepEqual(offsets.slice(0, 6), [0, 100, 200, 0, 100, 200]);

      // No acks at all: resent every 100, 200, 200... ms, not in a loop.
      server.acking = false;
      const quietDir = (await openBundle(stateDir, "a-2", 1)).dir;
      await writeFile(join(quietDir, logFileName(0, "stdout")), Buffer.alloc(100, "q"));
      await shipper.track({ dir: quietDir });
      await sleep(700);
      const resends = server.framesOf("a-2", LogStream.STDOUT).length;
      assert.ok(resends >= 3 && resends <= 6, `sent ${resends} times in 700 ms`);
    }));

  it("stops sending a stream the Log service refuses, and the others go on", () =>
    withShipper({ maxFrameBytes: 100 }, async ({ stateDir, shipper, server }) => {
      const { dir } = await openBundle(stateDir, "a-1", 1);
      const out = join(dir, logFileName(0, "stdout"));
      await writeFile(out, "x");
      await writeFile(join(dir, logFileName(0, "stderr")), "e");
      server.acking = false;
      await shipper.track({ dir });
      shipper.connect(server);
      await eventually("the first frame", () => (server.framesOf("a-1", LogStream.STDOUT).length === 1 ? true : undefined));
      ack(shipper, { attemptId: "a-1", stream: LogStream.STDOUT, refused: "attempt a-1 is not this agent's" });
      await appendFile(out, "more");
      shipper.disconnect();
      server.acking = true;
      shipper.connect(server);
      await close(dir);
      await shipper.ended("a-1");
      await eventually("the other streams complete", () => (server.streamOf("a-1", LogStream.STDERR).complete && server.streamOf("a-1", LogStream.SYSTEM).complete ? true : undefined));
      assert.equal(server.framesOf("a-1", LogStream.STDOUT).length, 1, "nothing more of the refused stream, not even after a reconnect");
      // The server marks a stream complete before the shipper has its ack: wait for the shipper to settle all three.
      await eventually("a refused stream is settled, and the others too", () => (shipper.offsets().length === 0 ? true : undefined));
      await waitFor(async () => (await readManifest(dir))?.logsShipped === true, "the shipped mark");
      const saved = JSON.parse(await readFile(join(dir, LOG_ACKS), "utf8"));
      assert.equal(saved.streams.stdout.refused, "attempt a-1 is not this agent's");
    }));

  it("resumes after an agent restart from the acknowledged offsets it saved, and Hello.log_offsets says what it holds", () =>
    withShipper({ maxFrameBytes: 100 }, async ({ stateDir, shipper, server }) => {
      const { dir } = await openBundle(stateDir, "a-1", 2);
      await writeFile(join(dir, logFileName(0, "stdout")), Buffer.alloc(250, "a"));
      await writeFile(join(dir, logFileName(0, "stderr")), "err");
      await writeFile(join(dir, logFileName(1, "stdout")), Buffer.alloc(50, "b"));
      server.acking = false;
      await shipper.track({ dir });
      assert.deepEqual(
        shipper.offsets().map((o) => [o.attemptId, o.stream, Number(o.offset)]),
        [
          ["a-1", LogStream.STDOUT, 300],
          ["a-1", LogStream.STDERR, 3],
          ["a-1", LogStream.SYSTEM, 0],
        ],
      );
      shipper.connect(server);
      await eventually("every byte sent", () => (server.framesOf("a-1", LogStream.STDOUT).length === 4 ? true : undefined));
      ack(shipper, { attemptId: "a-1", stream: LogStream.STDOUT, offset: 260n });
      ack(shipper, { attemptId: "a-1", stream: LogStream.STDERR, offset: 3n });
      await shipper.stop(); // the agent stops (or crashes after persistDelayMs)

      const restarted = new LogShipper({ logger: quiet, ...fast, maxFrameBytes: 100 });
      try {
        const next = new FakeLogServer();
        next.acking = false;
        await restarted.track({ dir });
        restarted.connect(next);
        await eventually("the resend", () => (next.frames.length >= 1 ? true : undefined));
        await sleep(50);
        assert.deepEqual(
          next.framesOf("a-1", LogStream.STDOUT).map((f) => [f.commandIndex, Number(f.offset), f.data!.length]),
          [[1, 260, 40]],
          "from the saved ack, inside command 1's file",
        );
        assert.deepEqual(next.framesOf("a-1", LogStream.STDERR), [], "stderr was acknowledged whole");
      } finally {
        await restarted.stop();
      }
    }));

  it("rewinds when the Log service has less than it acknowledged before", () =>
    withShipper({ maxFrameBytes: 100 }, async ({ stateDir, shipper, server }) => {
      const { dir } = await openBundle(stateDir, "a-1", 1);
      await writeFile(join(dir, logFileName(0, "stdout")), Buffer.alloc(300, "a"));
      server.acking = false;
      await shipper.track({ dir });
      shipper.connect(server);
      await eventually("sent", () => (server.frames.length === 3 ? true : undefined));
      ack(shipper, { attemptId: "a-1", stream: LogStream.STDOUT, offset: 300n });
      ack(shipper, { attemptId: "a-1", stream: LogStream.STDOUT, offset: 100n });
      await eventually("sent again from 100", () => (server.frames.length === 5 ? true : undefined));
      assert.deepEqual(server.frames.slice(3).map((f) => Number(f.offset)), [100, 200]);
    }));
});

describe("LogShipper with JobHandler", () => {
  it("ships a real two-command attempt while it runs, with its secret redacted, and marks the bundle shipped", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "drover-log-shipper-job-"));
    const shipper = new LogShipper({ logger: quiet, ...fast });
    const server = new FakeLogServer();
    server.shipper = shipper;
    const work = new JobHandler({ stateDir, maxAttempts: 2, allowShell: false, lastSample: () => undefined, events: new JobEventOutbox(), logger: quiet, logs: shipper });
    try {
      shipper.connect(server);
      await work.assignment(
        create(AssignmentSchema, {
          attemptId: "a-1",
          jobId: "j-1",
          exec: {
            env: { TOKEN: "s3cret-value" },
            secretEnv: ["TOKEN"],
            commands: [
              { argv: ["sh", "-c", 'echo "one $TOKEN"; echo oops >&2; sleep 0.4; echo two'] },
              { argv: ["sh", "-c", "echo three"] },
            ],
          },
        }),
      );
      await eventually("the first line while the command still runs", () => (server.text("a-1", LogStream.STDOUT) === `one ${REDACTED}\n` ? true : undefined));
      assert.equal(work.isRunning("a-1"), true);
      await eventually("every stream complete", () => (server.complete("a-1") ? true : undefined), 5_000);
      assert.equal(server.text("a-1", LogStream.STDOUT), `one ${REDACTED}\ntwo\nthree\n`);
      assert.equal(server.text("a-1", LogStream.STDERR), "oops\n");
      const three = server.framesOf("a-1", LogStream.STDOUT).find((f) => Buffer.from(f.data ?? []).toString() === "three\n")!;
      assert.equal(three.commandIndex, 1);
      assert.equal(Number(three.offset), "one s3cret-value\ntwo\n".length, "offsets count the file's bytes, not the redacted ones");
      const dir = bundleDir(stateDir, { attemptId: "a-1", jobId: "j-1" });
      await waitFor(async () => (await readManifest(dir))?.logsShipped === true, "manifest.logsShipped");
    } finally {
      await work.shutdown(0);
      await shipper.stop();
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it("picks up closed bundles whose logs are not shipped when the agent starts, before the first Hello", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "drover-log-shipper-recover-"));
    const shipper = new LogShipper({ logger: quiet, ...fast });
    try {
      const { dir } = await openBundle(stateDir, "a-old", 1);
      await writeFile(join(dir, logFileName(0, "stdout")), "from before\n");
      await close(dir);
      const work = new JobHandler({ stateDir, maxAttempts: 2, allowShell: false, lastSample: () => undefined, events: new JobEventOutbox(), logger: quiet, logs: shipper });
      await work.recover();
      assert.deepEqual(
        shipper.offsets().map((o) => [o.attemptId, o.stream, Number(o.offset)]),
        [
          ["a-old", LogStream.STDOUT, 12],
          ["a-old", LogStream.STDERR, 0],
          ["a-old", LogStream.SYSTEM, 0],
        ],
      );
    } finally {
      await shipper.stop();
      await rm(stateDir, { recursive: true, force: true });
    }
  });
});

describe("LogShipper with AgentWorker", () => {
  it("lists the streams it holds in Hello, sends frames on the stream, and takes the LogAcks Fleet answers", async () => {
    const fleet = await FakeFleet.start();
    const stateDir = await mkdtemp(join(tmpdir(), "drover-log-shipper-worker-"));
    const shipper = new LogShipper({ logger: quiet, ...fast });
    const events = new JobEventOutbox();
    const work = new JobHandler({ stateDir, maxAttempts: 2, allowShell: false, lastSample: () => undefined, events, logger: quiet, logs: shipper });
    const machine = new RememberingProbe({
      async sample(): Promise<MachineSample> {
        return { metrics: create(MetricsSchema, {}), total: create(ResourcesSchema, { cpuMillis: 1000 }), free: create(ResourcesSchema, { cpuMillis: 1000 }) };
      },
    });
    const { dir } = await openBundle(stateDir, "a-held", 1);
    await writeFile(join(dir, logFileName(0, "stdout")), "held\n");
    await close(dir);
    await work.recover();
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
      logs: shipper,
      logger: quiet,
      backoff: { baseMs: 20, capMs: 100 },
      welcomeTimeoutMs: 2_000,
      stopGraceMs: 300,
      ackFlushMs: 10,
    });
    void worker.run();
    try {
      const { stream, hello } = await fleet.accept({ agentId: "agent-1", agentCredential: "credential-1", heartbeatIntervalMs: 60_000 });
      assert.deepEqual(
        hello.logOffsets.map((o) => [o.attemptId, o.stream, Number(o.offset)]),
        [
          ["a-held", LogStream.STDOUT, 5],
          ["a-held", LogStream.STDERR, 0],
          ["a-held", LogStream.SYSTEM, 0],
        ],
      );
      const frame = await stream.next("logFrame");
      assert.deepEqual([frame.attemptId, frame.stream, Number(frame.offset), Buffer.from(frame.data).toString()], ["a-held", LogStream.STDOUT, 0, "held\n"]);
      for (const s of STREAMS) {
        stream.send({ message: { case: "logAck", value: { attemptId: "a-held", stream: s, offset: s === LogStream.STDOUT ? 5n : 0n, complete: true } } });
      }
      await waitFor(async () => (await readManifest(dir))?.logsShipped === true, "manifest.logsShipped");
      assert.deepEqual(shipper.tracked, []);
    } finally {
      await work.shutdown(0);
      await worker.stop();
      await shipper.stop();
      await fleet.close();
      await rm(stateDir, { recursive: true, force: true });
    }
  });
});

describe("LogShipper with AgentWorker under load", () => {
  it("keeps heartbeats on time while megabytes of output go out on the same stream", async () => {
    const fleet = await FakeFleet.start();
    const stateDir = await mkdtemp(join(tmpdir(), "drover-log-shipper-load-"));
    const shipper = new LogShipper({ logger: quiet, ...fast });
    const events = new JobEventOutbox();
    const work = new JobHandler({ stateDir, maxAttempts: 2, allowShell: false, lastSample: () => undefined, events, logger: quiet, logs: shipper });
    const machine = new RememberingProbe({
      async sample(): Promise<MachineSample> {
        return { metrics: create(MetricsSchema, {}), total: create(ResourcesSchema, { cpuMillis: 1000 }), free: create(ResourcesSchema, { cpuMillis: 1000 }) };
      },
    });
    const MiB = 1024 * 1024;
    for (const id of ["a-1", "a-2"]) {
      const { dir } = await openBundle(stateDir, id, 1);
      await writeFile(join(dir, logFileName(0, "stdout")), Buffer.alloc(12 * MiB, id));
      await close(dir);
    }
    await work.recover();
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
      logs: shipper,
      logger: quiet,
      backoff: { baseMs: 20, capMs: 100 },
      welcomeTimeoutMs: 2_000,
      stopGraceMs: 300,
      ackFlushMs: 10,
    });
    void worker.run();
    try {
      const { stream } = await fleet.accept({ agentId: "agent-1", agentCredential: "credential-1", heartbeatIntervalMs: 100 });
      // Fleet acks every frame as it arrives, like a Log service that keeps up.
      const stored = new Map<string, number>();
      let seen = 0;
      const acker = setInterval(() => {
        for (; seen < stream.received.length; seen++) {
          const r = stream.received[seen]!;
          if (r.message.case !== "logFrame") continue;
          const f = r.message.value;
          const key = `${f.attemptId}/${f.stream}`;
          const end = stored.get(key) ?? 0;
          if (Number(f.offset) === end) stored.set(key, end + f.data.length);
          const endNow = stored.get(key) ?? 0;
          stream.send({ message: { case: "logAck", value: { attemptId: f.attemptId, stream: f.stream, offset: BigInt(endNow), complete: f.final && Number(f.offset) === endNow } } });
        }
      }, 5);
      try {
        await eventually("24 MiB stored", () => ((stored.get(`a-1/${LogStream.STDOUT}`) ?? 0) + (stored.get(`a-2/${LogStream.STDOUT}`) ?? 0) === 24 * MiB ? true : undefined), 20_000);
      } finally {
        clearInterval(acker);
      }
      // Bracket the transfer: wait for a heartbeat after the last byte was
      // stored, so every gap checked below lies (at least partly) in it. A
      // fast machine ships 24 MiB within one or two heartbeat intervals.
      const doneAt = Date.now();
      const heartbeats = () => stream.received.map((r, i) => (r.message.case === "heartbeat" ? stream.receivedAt[i]! : undefined)).filter((t) => t !== undefined);
      await eventually("a heartbeat after the transfer", () => (heartbeats().some((t) => t > doneAt) ? true : undefined), 5_000);
      const beats = heartbeats();
      const last = beats.findIndex((t) => t > doneAt);
      assert.ok(last >= 1, `${beats.length} heartbeats, the first after the transfer at index ${last}`);
      for (let i = 1; i <= last; i++) assert.ok(beats[i]! - beats[i - 1]! < 400, `heartbeats ${beats[i]! - beats[i - 1]!} ms apart while frames flowed, expected about 100`);
    } finally {
      await work.shutdown(0);
      await worker.stop();
      await shipper.stop();
      await fleet.close();
      await rm(stateDir, { recursive: true, force: true });
    }
  });
});

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
