// An agent killed with SIGKILL and started again before Fleet declares it
// offline: `drover dev` and a real drover-agent. The job's command outlives
// the agent, the new agent process re-attaches to it and says so in Hello,
// the Scheduler lets it continue (it still holds the attempt), and the job
// ends with one attempt, its outcome reported, its work done once.

import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentStatus, FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { AttemptState, JobState, SchedulerService, type Job } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { bundleDir } from "../agent/bundle.ts";
import { bearer } from "../lib/clients.ts";
import { eventually } from "../services/fleet/testing.ts";
import { removeDir, startAgent, startDev, tempDir, type AgentProcess, type DevProcess } from "./harness.ts";

describe("an agent restarted after SIGKILL keeps its running attempt (dev mode)", () => {
  let dev: DevProcess;
  let fleet: Client<typeof FleetService>;
  let scheduler: Client<typeof SchedulerService>;
  const agents: AgentProcess[] = [];
  const dirs: string[] = [];
  let stateDir: string;
  let secret: string;

  before(async () => {
    // Offline only after 30 s: the restart below comes well before.
    dev = await startDev({ prepared: true, env: { DROVER_HEARTBEAT_INTERVAL_MS: "200", DROVER_STALE_AFTER_MS: "10000", DROVER_OFFLINE_AFTER_MS: "30000" } });
    dirs.push(dev.dataDir);
    const transport = createGrpcTransport({ baseUrl: dev.grpcUrl, interceptors: [bearer(dev.adminToken)] });
    fleet = createClient(FleetService, transport);
    scheduler = createClient(SchedulerService, transport);
    ({ secret } = await fleet.createAgentToken({ name: "restart" }));
    stateDir = tempDir("drover-agent-restart-");
    dirs.push(stateDir);
  });

  after(async () => {
    await Promise.all(agents.map((a) => a.stop("SIGKILL")));
    await dev?.stop("SIGKILL");
    dirs.forEach(removeDir);
  });

  function agent(): AgentProcess {
    const a = startAgent(["--server", dev.grpcUrl, "--state-dir", stateDir, "--token", secret], { env: { DROVER_RECONNECT_MAX_MS: "200" } });
    agents.push(a);
    return a;
  }

  async function until(id: string, states: JobState[], timeoutMs = 20_000): Promise<Job> {
    return eventually(async () => {
      const { job } = await scheduler.getJob({ id });
      return job && states.includes(job.state) ? job : undefined;
    }, timeoutMs, `job ${id} in ${states.map((s) => JobState[s]).join("|")}`);
  }

  it("re-attaches, reports the truth in Hello, and the job succeeds with one attempt and its work done once", async () => {
    const first = agent();
    await first.waitForLog((l) => l.msg === "registered; stored the agent's credential", 20_000);
    await eventually(async () => ((await fleet.listAgents({ status: AgentStatus.ONLINE })).agents.length === 1 ? true : undefined), 10_000, "the agent online");

    // Waits for the test's go, then counts its runs: a second run would add a line.
    const script = "while [ ! -e release ]; do sleep 0.05; done; echo ran >> count";
    const { job } = await scheduler.submitJob({ spec: { exec: { commands: [{ argv: ["sh", "-c", script] }, { argv: ["echo", "second command"] }] } } });
    const running = await until(job!.id, [JobState.RUNNING]);
    const attempt = running.attempts[0]!;
    const work = join(bundleDir(stateDir, { attemptId: attempt.id, jobId: job!.id }), "work");

    await first.stop("SIGKILL");
    const second = agent();
    await second.waitForLog((l) => l.msg === "recovered attempts from a previous agent process" && l.resumed === 1, 20_000);
    await second.waitForLog((l) => l.msg === "connected to Fleet", 20_000);
    writeFileSync(join(work, "release"), "");

    const done = await until(job!.id, [JobState.SUCCEEDED, JobState.FAILED, JobState.DEAD]);
    assert.equal(JobState[done.state], "SUCCEEDED");
    assert.deepEqual(done.attempts.map((a) => [a.id, AttemptState[a.state]]), [[attempt.id, "SUCCEEDED"]], "one attempt, never declared lost");
    assert.deepEqual(done.attempts[0]!.commands.map((c) => [c.index, c.exitCode]), [[0, 0], [1, 0]]);
    assert.equal(readFileSync(join(work, "count"), "utf8"), "ran\n", "the command ran once");
  });
});
