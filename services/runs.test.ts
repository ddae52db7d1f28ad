// Runs and run modes end to end in one process: the dev-mode control plane
// (PGlite, the in-process bus) on real ports, and one simulated agent on a
// real stream that bids on every offer and runs each assignment at once:
// exit 0, or exit 2 for a job named "fail". Nothing is driven by hand: the
// follow-up loop moves runs and chains along as the agent's events arrive.

import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AttemptState as Reported, type Assignment } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { JobState, RunState, SchedulerService, StageState } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { bearer } from "../lib/clients.ts";
import { readDevConfig } from "../lib/config.ts";
import { createLogger } from "../lib/logger.ts";
import { preparedDataDir } from "../lib/testing/dev_data.ts";
import { startDev, type DevPlane } from "./dev/dev.ts";
import { eventually, TestAgent } from "./fleet/testing.ts";

let dir: string;
let plane: DevPlane;
let scheduler: ReturnType<typeof createClient<typeof SchedulerService>>;
let agent: TestAgent;
let serving: Promise<void>;
let stopped = false;
const assigned: Assignment[] = [];

before(async () => {
  // Its database already created and migrated: these tests are not about a first start.
  dir = await preparedDataDir("drover-runs-");
  const config = readDevConfig({
    DROVER_DATA_DIR: dir,
    DROVER_GRPC_PORT: "0",
    DROVER_HTTP_PORT: "0",
    DROVER_HEARTBEAT_INTERVAL_MS: "100",
    DROVER_STALE_AFTER_MS: "1000",
    DROVER_OFFLINE_AFTER_MS: "3000",
    DROVER_MONITOR_INTERVAL_MS: "50",
    DROVER_SWEEP_INTERVAL_MS: "100",
    DROVER_SCHEDULER_SWEEP_MS: "100",
    DROVER_CONFIRM_MS: "5000",
    DROVER_LEASE_MS: "3000",
  });
  plane = await startDev(config, createLogger((process.env.DROVER_TEST_LOG_LEVEL as "debug" | undefined) ?? "silent"));
  const transport = createGrpcTransport({ baseUrl: plane.server.grpcUrl, interceptors: [bearer(plane.adminToken)] });
  scheduler = createClient(SchedulerService, transport);
  const fleet = createClient(FleetService, transport);
  const { secret } = await fleet.createAgentToken({ name: "runs tests" });
  agent = await TestAgent.register(plane.server.grpcUrl, secret, { hostname: "sim", labels: {}, drivers: ["process"], total: { cpuMillis: 4000, memoryBytes: 8n << 30n }, free: { cpuMillis: 4000, memoryBytes: 8n << 30n } });
  let seq = 0;
  const beat = setInterval(() => agent.heartbeat(++seq), 50);
  serving = (async () => {
    const report = (attemptId: string, state: Reported, exitCode = 0) =>
      agent.send({ message: { case: "jobEvent", value: { eventId: `${attemptId}:${state}`, attemptId, state, exitCode, message: exitCode ? `exited with code ${exitCode}` : "" } } });
    try {
      while (!stopped) {
        const m = await agent.next(60_000);
        if (m.messageId) agent.ack(m.messageId);
        if (m.message.case === "offer") agent.send({ message: { case: "bid", value: { offerId: m.message.value.offerId, score: 0.5 } } });
        if (m.message.case === "cancel") report(m.message.value.attemptId, Reported.CANCELLED);
        if (m.message.case === "assignment") {
          const a = m.message.value;
          assigned.push(a);
          report(a.attemptId, Reported.RUNNING);
          report(a.attemptId, a.exec?.commands[0]?.argv[0] === "fail" ? Reported.FAILED : Reported.SUCCEEDED, a.exec?.commands[0]?.argv[0] === "fail" ? 2 : 0);
        }
      }
    } catch {
      // the stream ended
    } finally {
      clearInterval(beat);
    }
  })();
});

after(async () => {
  stopped = true;
  await agent?.cancel();
  await serving;
  await plane?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const stage = (name: string, requires: string[], argv = ["true"]) => ({ name, requires, job: { name, exec: { commands: [{ argv }] }, retry: { maxRetries: 0 } } });

async function untilEnded(id: string) {
  return eventually(async () => {
    const { run } = await scheduler.getRun({ id });
    return run && run.state !== RunState.RUNNING ? run : undefined;
  }, 30_000, `run ${id} ended`);
}

describe("runs end to end", () => {
  it("runs a diamond on an agent in order: the join's job is created after both its requirements succeeded", async () => {
    const { run } = await scheduler.submitRun({ spec: { name: "diamond", stages: [stage("a", []), stage("b", ["a"]), stage("c", ["a"]), stage("d", ["b", "c"])] } });
    const done = await untilEnded(run!.id);
    assert.equal(done.state, RunState.SUCCEEDED);
    const byName = Object.fromEntries(done.stages.map((s) => [s.name, s]));
    for (const s of done.stages) assert.equal(s.state, StageState.SUCCEEDED, s.name);
    const ms = (t: Parameters<typeof timestampMs>[0] | undefined) => timestampMs(t!);
    assert.ok(ms(byName.b!.startTime) >= ms(byName.a!.endTime));
    assert.ok(ms(byName.c!.startTime) >= ms(byName.a!.endTime));
    assert.ok(ms(byName.d!.startTime) >= Math.max(ms(byName.b!.endTime), ms(byName.c!.endTime)));
    const order = assigned.filter((a) => done.stages.some((s) => s.jobId === a.jobId)).map((a) => done.stages.find((s) => s.jobId === a.jobId)!.name);
    assert.equal(order[0], "a");
    assert.equal(order[3], "d");
    const { job } = await scheduler.getJob({ id: byName.d!.jobId });
    assert.equal(job!.runId, run!.id);
    assert.equal(job!.stageName, "d");
  });

  it("a failing stage skips what depends on it and the run fails", async () => {
    const { run } = await scheduler.submitRun({ spec: { stages: [stage("build", [], ["fail"]), stage("test", ["build"]), stage("docs", [])] } });
    const done = await untilEnded(run!.id);
    assert.equal(done.state, RunState.FAILED);
    assert.deepEqual(done.stages.map((s) => StageState[s.state]), ["FAILED", "SKIPPED", "SUCCEEDED"]);
    assert.equal(done.stages[1]!.jobId, "");
  });

  it("n_times: 3 runs a job three times on the agent, chained", async () => {
    const { job } = await scheduler.submitJob({ spec: { name: "thrice", exec: { commands: [{ argv: ["true"] }] }, runMode: { mode: { case: "nTimes", value: 3 } } } });
    const chain = [job!.id];
    await eventually(async () => {
      const { job: last } = await scheduler.getJob({ id: chain.at(-1)! });
      if (last!.nextJobId) chain.push(last!.nextJobId);
      return chain.length === 3 && last!.state === JobState.SUCCEEDED ? true : undefined;
    }, 30_000, "three jobs in the chain");
    await new Promise((r) => setTimeout(r, 500)); // time for a fourth, which must not come
    const { job: third } = await scheduler.getJob({ id: chain[2]! });
    assert.equal(third!.nextJobId, "");
    assert.equal(third!.repeatIndex, 3);
    assert.equal(third!.repeatOf, job!.id);
    assert.equal(assigned.filter((a) => chain.includes(a.jobId)).length, 3);
  });
});
