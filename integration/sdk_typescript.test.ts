// The TypeScript SDK (sdk/typescript) as a user meets it, against `drover dev`
// and one real drover-agent: its example submits a job and follows its output
// with FollowLogs to the end, WatchJob follows a job's states, a bad token is refused with UNAUTHENTICATED, and when dev mode is
// stopped and started again on the same port, a call that is safe to repeat
// rides out the gap by retrying UNAVAILABLE over real sockets, while one that
// is not safe fails at once.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { createDroverClient, fleetv1, logv1, schedulerv1, type DroverClient } from "../sdk/typescript/index.ts";
import { followToEnd, submit } from "../sdk/typescript/example.ts";
import { eventually } from "../services/fleet/testing.ts";
import { freePort, removeDir, ROOT, startAgent, startDev, tempDir, type AgentProcess, type DevProcess } from "./harness.ts";

const run = promisify(execFile);
const { JobState } = schedulerv1;

const FAST = {
  DROVER_HEARTBEAT_INTERVAL_MS: "200",
  DROVER_STALE_AFTER_MS: "600",
  DROVER_OFFLINE_AFTER_MS: "1500",
  DROVER_MONITOR_INTERVAL_MS: "50",
  DROVER_SWEEP_INTERVAL_MS: "100",
  DROVER_PRESENCE_REFRESH_MS: "200",
  DROVER_SCHEDULER_SWEEP_MS: "100",
};

/** The error a promise rejects with, as a ConnectError; fails if it resolves. */
async function rejection(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  assert.fail("the call succeeded");
}

describe("the TypeScript SDK against dev mode and a real agent", () => {
  let dev: DevProcess;
  let env: Record<string, string>;
  let drover: DroverClient;
  let agent: AgentProcess;
  const dirs: string[] = [];

  before(async () => {
    // A fixed port, so that dev mode can come back where clients expect it.
    env = { ...FAST, DROVER_GRPC_PORT: String(await freePort()) };
    dev = await startDev({ prepared: true, env });
    dirs.push(dev.dataDir);
    drover = createDroverClient({ addr: dev.grpcUrl, token: dev.adminToken });
    const { secret } = await drover.fleet.createAgentToken({ name: "sdk-ts" });
    const dir = tempDir("drover-agent-sdk-ts-");
    dirs.push(dir);
    agent = startAgent(["--server", dev.grpcUrl, "--state-dir", dir, "--token", secret], { env: { DROVER_RECONNECT_MAX_MS: "200" } });
    await agent.waitForLog((l) => l.msg === "registered; stored the agent's credential", 20_000);
    await eventually(
      async () => ((await drover.fleet.listAgents({ status: fleetv1.AgentStatus.ONLINE })).agents.length === 1 ? true : undefined),
      10_000,
      "the agent online",
    );
  });

  after(async () => {
    drover?.close();
    await agent?.stop("SIGKILL");
    await dev?.stop("SIGKILL");
    dirs.forEach(removeDir);
  });

  it("runs the example: it submits a job, prints its output from FollowLogs, then SUCCEEDED, and exits 0", async () => {
    const { stdout } = await run(process.execPath, ["--import", "tsx", "sdk/typescript/example.ts"], {
      cwd: ROOT,
      env: { ...process.env, DROVER_ADDR: dev.grpcUrl, DROVER_TOKEN: dev.adminToken },
      timeout: 30_000,
    });
    const lines = stdout.trim().split("\n");
    assert.ok(lines.includes("hello from the typescript sdk"), `the job's output line; stdout:\n${stdout}`);
    assert.match(lines.at(-1)!, /^[0-9a-f-]{36} SUCCEEDED\b/, stdout);
  });

  it("follows a job's stdout and stderr apart through FollowLogs, and finds the job ended when the follow ends", async () => {
    const id = await submit(drover, ["sh", "-c", "echo to-out; echo to-err >&2"]);
    const written = new Map<logv1.Stream, string>();
    const job = await followToEnd(drover, id, (stream, data) => written.set(stream, (written.get(stream) ?? "") + Buffer.from(data).toString()));
    assert.equal(job.state, JobState.SUCCEEDED, job.endReason);
    assert.equal(written.get(logv1.Stream.STDOUT), "to-out\n");
    assert.equal(written.get(logv1.Stream.STDERR), "to-err\n");
  });

  it("follows a job through WatchJob, from its first state to its last", async () => {
    const id = await submit(drover, ["sh", "-c", "echo watched"]);
    const seen: schedulerv1.JobState[] = [];
    for await (const { job } of drover.scheduler.watchJob({ id })) if (job) seen.push(job.state);
    assert.ok(seen.length >= 2, `saw ${seen.map((s) => JobState[s]).join(", ")}`);
    assert.equal(seen.at(-1), JobState.SUCCEEDED);
  });

  it("is refused with UNAUTHENTICATED when its token is wrong", async () => {
    const wrong = createDroverClient({ addr: dev.grpcUrl, token: "not-a-drover-token" });
    try {
      const err = await rejection(wrong.scheduler.listJobs({}));
      assert.equal(err.code, Code.Unauthenticated, err.message);
    } finally {
      wrong.close();
    }
  });

  it("takes its token from DROVER_TOKEN when none is passed", async () => {
    const fromEnv = createDroverClient({ addr: dev.grpcUrl }, { DROVER_TOKEN: dev.adminToken });
    try {
      await fromEnv.scheduler.listJobs({});
    } finally {
      fromEnv.close();
    }
    assert.throws(() => createDroverClient({ addr: dev.grpcUrl }, {}), /no token/);
  });

  it("retries a safe call through a dev-mode restart, and fails an unsafe one at once", async () => {
    const { job } = await drover.scheduler.submitJob({ spec: { exec: { commands: [{ argv: ["true"] }] } }, idempotencyKey: "sdk-ts-restart" });
    await dev.stop("SIGTERM");

    // Nothing listens now: without retries the call fails UNAVAILABLE, and a
    // SubmitJob without an idempotency key is not retried even when allowed to be.
    const once = createDroverClient({ addr: dev.grpcUrl, token: dev.adminToken, retries: 0 });
    try {
      assert.equal((await rejection(once.scheduler.getJob({ id: job!.id }))).code, Code.Unavailable);
    } finally {
      once.close();
    }
    const patient = createDroverClient({ addr: dev.grpcUrl, token: dev.adminToken, retries: 200, backoff: { baseMs: 50, maxMs: 250 } });
    try {
      const started = performance.now();
      const unkeyed = await rejection(patient.scheduler.submitJob({ spec: { exec: { commands: [{ argv: ["true"] }] } } }));
      assert.equal(unkeyed.code, Code.Unavailable);
      assert.ok(performance.now() - started < 1000, "a SubmitJob without a key is tried once");

      // GetJob may be repeated: it keeps trying while dev mode comes back on
      // the same port and data directory, then answers with the job.
      const getting = patient.scheduler.getJob({ id: job!.id }, { timeoutMs: 60_000 });
      const restarted = performance.now();
      dev = await startDev({ dataDir: dev.dataDir, env });
      const { job: again } = await getting;
      assert.equal(again?.id, job!.id);
      assert.equal(again?.idempotencyKey, "sdk-ts-restart");
      assert.ok(performance.now() - restarted > 100, "the answer came only after dev mode was back");

      // A keyed SubmitJob may be repeated too, and returns the job first created.
      const { job: same, created } = await patient.scheduler.submitJob({ spec: { exec: { commands: [{ argv: ["true"] }] } }, idempotencyKey: "sdk-ts-restart" });
      assert.equal(same?.id, job!.id);
      assert.equal(created, false);
    } finally {
      patient.close();
    }
  });
});
