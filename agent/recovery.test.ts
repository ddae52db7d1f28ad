// kill -9 of a real drover-agent mid-job, then a restart on the same state
// directory: the attempt's outcome is reported correctly and nothing runs twice.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import type { MessageInitShape } from "@bufbuild/protobuf";

import { AttemptState, type AssignmentSchema } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { bundleDir, readManifest } from "./bundle.ts";
import { killGroup } from "./process_runner.ts";
import { startAgent, within, type AgentProcess } from "./testing/agent_process.ts";
import { eventually, FakeFleet, type FakeStream } from "./testing/fake_fleet.ts";

// The tests run side by side, each with a FakeFleet of its own: most of a
// test is waiting for agent processes to start.
describe("agent restart recovery (drover-agent killed with SIGKILL, then started again)", { concurrency: true }, () => {
  const fleets: FakeFleet[] = [];
  let root: string;
  const agents: AgentProcess[] = [];
  const pids: number[] = [];
  let n = 0;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "drover-agent-recovery-"));
  });
  after(async () => {
    for (const a of agents) a.child.kill("SIGKILL");
    for (const pid of pids) killGroup(pid, "SIGKILL");
    await Promise.all(fleets.map((f) => f.close()));
    await rm(root, { recursive: true, force: true });
  });

  /** A fresh FakeFleet, a fresh state directory and an agent on it, welcomed. */
  async function firstAgent(): Promise<{ fleet: FakeFleet; stateDir: string; stream: FakeStream; agent: AgentProcess }> {
    n += 1;
    const stateDir = join(root, `agent-${n}`);
    const fleet = await FakeFleet.start();
    fleets.push(fleet);
    const agent = startAgent(["--server", fleet.url, "--token", "X", "--state-dir", stateDir]);
    agents.push(agent);
    const stream = await fleet.nextStream(15_000);
    await stream.next("hello");
    stream.welcome({ agentId: `agent-r${n}`, agentCredential: `credential-r${n}`, heartbeatIntervalMs: 200 });
    await eventually("the stored credential", () => (agent.stdout().includes("stored the agent's credential") ? true : undefined), 15_000);
    return { fleet, stateDir, stream, agent };
  }

  /** kill -9, then the same agent again; resolves with its new stream's Hello (not yet welcomed). */
  async function restart(fleet: FakeFleet, stateDir: string, agent: AgentProcess, beforeStart?: () => Promise<void>) {
    agent.child.kill("SIGKILL");
    await within(agent.exited, 5_000);
    await beforeStart?.();
    const again = startAgent(["--server", fleet.url, "--state-dir", stateDir]);
    agents.push(again);
    const stream = await fleet.nextStream(15_000);
    const hello = await stream.next("hello");
    return { stream, hello, agent: again };
  }

  function assign(stream: FakeStream, value: MessageInitShape<typeof AssignmentSchema>): void {
    stream.send({ messageId: `assign:${value.attemptId}`, message: { case: "assignment", value } });
  }

  it("re-attaches to a command still running, runs the rest once, and reports SUCCEEDED with the next sequence numbers", async () => {
    const { fleet, stateDir, stream, agent } = await firstAgent();
    const marker = join(root, "ran-once-1");
    const ids = { attemptId: "attempt-r1", jobId: "job-r1" };
    const dir = bundleDir(stateDir, ids);
    const release = join(dir, "work", "release");
    // Runs until the test says so, however slow the restart is.
    const waitForRelease = { argv: ["sh", "-c", "while [ ! -e release ]; do sleep 0.05; done"] };
    assign(stream, { ...ids, exec: { commands: [waitForRelease, { argv: ["mkdir", marker] }] } });
    const running = await eventually("RUNNING", () => stream.all("jobEvent").find((e) => e.state === AttemptState.RUNNING));
    const shim = Number((await readManifest(dir))?.commands[0]?.handle?.id);
    pids.push(shim);

    const { stream: second, hello } = await restart(fleet, stateDir, agent);
    assert.deepEqual(
      hello.running.map((r) => [r.attemptId, AttemptState[r.state]]),
      [["attempt-r1", "RUNNING"]],
      "Hello says the attempt still runs",
    );
    second.welcome({ heartbeatIntervalMs: 200 });
    // Redelivered, as Fleet does for an Assignment the agent never acknowledged: it must not start a second copy.
    assign(second, { ...ids, exec: { commands: [waitForRelease, { argv: ["mkdir", marker] }] } });
    await eventually("the redelivered assignment acknowledged", () => (second.acked().includes("assign:attempt-r1") ? true : undefined));
    assert.ok(alive(shim), "the re-attached command still runs");
    await writeFile(release, "");
    const end = await eventually("SUCCEEDED", () => second.all("jobEvent").find((e) => e.state === AttemptState.SUCCEEDED), 15_000);
    assert.equal(end.exitCode, 0);
    assert.equal(end.command?.index, 1, "the final event carries the last command");
    const first = second.all("jobEvent").find((e) => e.command?.index === 0);
    assert.ok(first, "the first command's end is reported");
    assert.equal(first.command?.exitCode, 0);
    assert.ok(first.sequence > running.sequence && end.sequence > first.sequence, `sequences ${running.sequence} < ${first.sequence} < ${end.sequence}`);
    assert.ok(existsSync(marker));
    assert.equal(second.all("jobEvent").filter((e) => e.state === AttemptState.SUCCEEDED).length, 1);
    assert.equal(second.all("jobEvent").filter((e) => e.state === AttemptState.FAILED).length, 0, "mkdir ran once (a second run would fail)");

    second.eventAck(second.all("jobEvent").map((e) => e.eventId));
    const manifest = await waitFor(async () => {
      const x = await readManifest(dir);
      return x?.reported ? x : undefined;
    });
    assert.equal(manifest.state, "SUCCEEDED");
    assert.equal(manifest.closed, true);
    assert.equal(manifest.commands.length, 2);
    assert.match(manifest.logs?.["cmd-000.stdout.log"]?.sha256 ?? "", /^[0-9a-f]{64}$/);
  });

  it("reads how a command ended while the agent was down, then runs the next command", async () => {
    const { fleet, stateDir, stream, agent } = await firstAgent();
    const ids = { attemptId: "attempt-r2", jobId: "job-r2" };
    assign(stream, { ...ids, exec: { commands: [{ argv: ["sleep", "0.3"] }, { argv: ["echo", "after"] }] } });
    await eventually("RUNNING", () => stream.all("jobEvent").find((e) => e.state === AttemptState.RUNNING));
    const dir = bundleDir(stateDir, ids);
    const { stream: second } = await restart(fleet, stateDir, agent, async () => {
      await waitFor(async () => (existsSync(join(dir, "cmd-000.status")) ? true : undefined));
    });
    second.welcome({ heartbeatIntervalMs: 200 });
    const end = await eventually("SUCCEEDED", () => second.all("jobEvent").find((e) => e.state === AttemptState.SUCCEEDED), 15_000);
    assert.equal(end.message, "2 commands succeeded");
    assert.equal(await readFile(join(dir, "cmd-001.stdout.log"), "utf8"), "after\n");
  });

  it("reports an attempt lost when its command died with the agent and left no exit status", async () => {
    const { fleet, stateDir, stream, agent } = await firstAgent();
    const ids = { attemptId: "attempt-r3", jobId: "job-r3" };
    assign(stream, { ...ids, exec: { commands: [{ argv: ["sleep", "30"] }] } });
    await eventually("RUNNING", () => stream.all("jobEvent").find((e) => e.state === AttemptState.RUNNING));
    const dir = bundleDir(stateDir, ids);
    const shim = Number((await readManifest(dir))?.commands[0]?.handle?.id);
    pids.push(shim);
    const { stream: second } = await restart(fleet, stateDir, agent, async () => {
      // The whole group, shim included, as an OOM kill or a reboot would.
      killGroup(shim, "SIGKILL");
      await waitFor(async () => (existsSync(`/proc/${shim}`) ? undefined : true));
    });
    second.welcome({ heartbeatIntervalMs: 200 });
    const end = await eventually("FAILED", () => second.all("jobEvent").find((e) => e.state === AttemptState.FAILED), 15_000);
    assert.match(end.message, /^lost: the outcome of command 1 is unknown/);
  });

  it("sends the final event again after a restart when Fleet never confirmed it", async () => {
    const { fleet, stateDir, stream, agent } = await firstAgent();
    const ids = { attemptId: "attempt-r4", jobId: "job-r4" };
    assign(stream, { ...ids, exec: { commands: [{ argv: ["echo", "hi"] }] } });
    const first = await eventually("SUCCEEDED", () => stream.all("jobEvent").find((e) => e.state === AttemptState.SUCCEEDED));
    const dir = bundleDir(stateDir, ids);
    await waitFor(async () => ((await readManifest(dir))?.closed ? true : undefined));
    const { stream: second, hello } = await restart(fleet, stateDir, agent);
    assert.deepEqual(hello.running, [], "an ended attempt is not running");
    second.welcome({ heartbeatIntervalMs: 200 });
    const again = await eventually("SUCCEEDED again", () => second.all("jobEvent").find((e) => e.state === AttemptState.SUCCEEDED));
    assert.equal(again.eventId, first.eventId, "the same event id, so Fleet applies it once");
    second.eventAck([again.eventId]);
    await waitFor(async () => ((await readManifest(dir))?.reported ? true : undefined));
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitFor<T>(check: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
}
