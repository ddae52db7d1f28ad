// The walk of one job, with real processes: `drover dev` and two real
// drover-agents on this machine. A job runs `sh -c` free argv commands on
// whichever agent wins its auction, a failing one retries, a cancelled one
// stops its process, and a job whose agent is killed (SIGKILL) mid-run is
// run again on the other agent once the lease lapses.

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentStatus, FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { AttemptState, JobState, SchedulerService, type Job } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { bearer } from "../lib/clients.ts";
import { eventually } from "../services/fleet/testing.ts";
import { removeDir, startAgent, startDev, tempDir, type AgentProcess, type DevProcess } from "./harness.ts";

const FAST = {
  DROVER_HEARTBEAT_INTERVAL_MS: "200",
  DROVER_STALE_AFTER_MS: "600",
  DROVER_OFFLINE_AFTER_MS: "1500",
  DROVER_MONITOR_INTERVAL_MS: "50",
  DROVER_SWEEP_INTERVAL_MS: "100",
  DROVER_PRESENCE_REFRESH_MS: "200",
  DROVER_SCHEDULER_SWEEP_MS: "100",
  DROVER_LEASE_MS: "1000",
};

describe("jobs on real agents in dev mode", () => {
  let dev: DevProcess;
  let fleet: Client<typeof FleetService>;
  let scheduler: Client<typeof SchedulerService>;
  const agents: AgentProcess[] = [];
  const ids: string[] = [];
  const dirs: string[] = [];

  async function until(id: string, states: JobState[], timeoutMs = 15_000): Promise<Job> {
    return eventually(async () => {
      const { job } = await scheduler.getJob({ id });
      return job && states.includes(job.state) ? job : undefined;
    }, timeoutMs, `job ${id} in ${states.map((s) => JobState[s]).join("|")}`);
  }

  before(async () => {
    dev = await startDev({ prepared: true, env: FAST });
    dirs.push(dev.dataDir);
    const transport = createGrpcTransport({ baseUrl: dev.grpcUrl, interceptors: [bearer(dev.adminToken)] });
    fleet = createClient(FleetService, transport);
    scheduler = createClient(SchedulerService, transport);
    const { secret } = await fleet.createAgentToken({ name: "jobs" });
    // Both agents start at once; ids and dirs keep the order of agents.
    for (const name of ["one", "two"]) {
      const dir = tempDir(`drover-agent-${name}-`);
      dirs.push(dir);
      agents.push(
        startAgent(["--server", dev.grpcUrl, "--state-dir", dir, "--labels", `name=${name}`, "--token", secret], {
          env: { DROVER_RECONNECT_MAX_MS: "200" },
        }),
      );
    }
    const registered = await Promise.all(agents.map((a) => a.waitForLog((l) => l.msg === "registered; stored the agent's credential", 20_000)));
    ids.push(...registered.map((r) => String(r.agentId)));
    await eventually(async () => ((await fleet.listAgents({ status: AgentStatus.ONLINE })).agents.length === 2 ? true : undefined), 10_000, "two agents online");
  });

  after(async () => {
    await Promise.all(agents.map((a) => a.stop("SIGKILL")));
    await dev?.stop("SIGKILL");
    dirs.forEach(removeDir);
  });

  it("runs a job's commands on an agent and keeps their output in the attempt's bundle", async () => {
    const { job } = await scheduler.submitJob({ spec: { exec: { commands: [{ argv: ["echo", "hello from drover"] }, { argv: ["true"] }] } } });
    const done = await until(job!.id, [JobState.SUCCEEDED, JobState.FAILED, JobState.DEAD]);
    assert.equal(done.state, JobState.SUCCEEDED, done.endReason);
    const attempt = done.attempts[0]!;
    assert.equal(attempt.exitCode, 0);
    const dir = dirs[1 + ids.indexOf(attempt.agentId)]!;
    const stdout = join(dir, "runs", job!.id, job!.id, attempt.id, "cmd-000.stdout.log");
    assert.ok(existsSync(stdout), `${stdout} exists`);
    assert.equal(readFileSync(stdout, "utf8"), "hello from drover\n");
  });

  it("retries a command that fails and records each attempt's exit code", async () => {
    const { job } = await scheduler.submitJob({
      spec: { exec: { commands: [{ argv: ["sh", "-c", "exit 3"] }] }, retry: { maxRetries: 1, initialBackoff: { nanos: 50_000_000 } } },
    });
    const done = await until(job!.id, [JobState.DEAD, JobState.FAILED, JobState.SUCCEEDED]);
    assert.equal(done.state, JobState.DEAD);
    assert.deepEqual(done.attempts.map((a) => [AttemptState[a.state], a.exitCode]), [["FAILED", 3], ["FAILED", 3]]);
  });

  it("cancels a running job: its process is stopped and the job ends cancelled", async () => {
    const { job } = await scheduler.submitJob({ spec: { exec: { commands: [{ argv: ["sleep", "60"] }] } } });
    await until(job!.id, [JobState.RUNNING]);
    const started = Date.now();
    await scheduler.cancelJob({ id: job!.id, gracePeriod: { seconds: 2n } });
    const done = await until(job!.id, [JobState.CANCELLED]);
    assert.ok(Date.now() - started < 5000, "sleep 60 was stopped, not waited for");
    assert.equal(done.attempts[0]!.state, AttemptState.CANCELLED);
  });

  it("runs a job again on the other agent when its agent is killed mid-run", async () => {
    const { job } = await scheduler.submitJob({ spec: { exec: { commands: [{ argv: ["sh", "-c", "sleep 3; echo done"] }] } } });
    const running = await until(job!.id, [JobState.RUNNING]);
    const victim = ids.indexOf(running.attempts[0]!.agentId);
    await agents[victim]!.stop("SIGKILL");
    const done = await until(job!.id, [JobState.SUCCEEDED], 30_000);
    assert.deepEqual(done.attempts.map((a) => AttemptState[a.state]), ["LOST", "SUCCEEDED"]);
    assert.equal(done.attempts[1]!.agentId, ids[1 - victim]);
  });
});
