// A service replica on an agent that is cut off from the control plane: the
// real drover-agent in its own network namespace ("machine A", see
// netns.ts), another on the host ("machine B"), dev mode on the host side of
// A's link. One replica, placed on A. The link is cut:
//
//   - A keeps its replica running, and restarts it when it dies (offline
//     autonomy: the agent needs no server to supervise what it runs);
//   - the control plane judges A offline, and the deployment gets a healthy
//     replica on B.
//
// The link comes back: A reconnects, reports the replica it still runs, is
// told its lease was given away, and stops it. One replica is left, on B.
// Which process runs where is read from the kernel (`ip netns pids`), not
// from anything Drover reports.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { HealthState } from "../gen/ts/drover/common/v1/service_pb.ts";
import { DeployService, ReplicaState, type Deployment } from "../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import { AgentStatus, FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { bearer } from "../lib/clients.ts";
import { eventually } from "../services/fleet/testing.ts";
import { removeDir, startAgent, startDev, tempDir, type AgentProcess, type DevProcess } from "./harness.ts";
import { Netns, requireNetnsInCi } from "./netns.ts";

const unavailable = requireNetnsInCi("the deployment partition test");

/** Part of the replica's command line, to find its processes. */
const MARK = "drover-partition-replica";
const AGENT_FAST = { DROVER_RECONNECT_MAX_MS: "500", DROVER_PING_INTERVAL_MS: "1000", DROVER_PING_TIMEOUT_MS: "1000", DROVER_WELCOME_TIMEOUT_MS: "2000" };

describe("a service replica on an agent cut off from the control plane", { skip: unavailable ?? false }, () => {
  const net = new Netns("dp");
  let dev: DevProcess | undefined;
  const agents: AgentProcess[] = [];
  const dirs: string[] = [];
  let fleet: Client<typeof FleetService>;
  let deploy: Client<typeof DeployService>;
  let agentA = "";
  let agentB = "";

  before(async () => {
    net.create();
    dev = await startDev({
      env: {
        DROVER_HOST: net.hostAddress,
        DROVER_HEARTBEAT_INTERVAL_MS: "200",
        DROVER_STALE_AFTER_MS: "600",
        DROVER_OFFLINE_AFTER_MS: "1500",
        DROVER_MONITOR_INTERVAL_MS: "50",
        DROVER_SWEEP_INTERVAL_MS: "100",
        DROVER_KEEPALIVE_MS: "1000",
        DROVER_SCHEDULER_SWEEP_MS: "100",
        DROVER_LEASE_MS: "3000",
      },
    });
    const transport = createGrpcTransport({ baseUrl: dev.grpcUrl, interceptors: [bearer(dev.adminToken)] });
    fleet = createClient(FleetService, transport);
    deploy = createClient(DeployService, transport);
  });

  after(async () => {
    try {
      await Promise.all(agents.map((a) => a.stop("SIGKILL")));
      await dev?.stop("SIGKILL");
    } finally {
      // Replicas left by a failed run die with their agents' process groups, or here.
      for (const pid of replicaPids()) tryKill(pid);
      net.teardown();
      if (dev) removeDir(dev.dataDir);
      for (const dir of dirs) removeDir(dir);
    }
  });

  async function startOne(name: string, prefix?: string[]): Promise<string> {
    const { secret } = await fleet.createAgentToken({ name });
    const stateDir = tempDir(`drover-agent-${name}-`);
    dirs.push(stateDir);
    const agent = startAgent(["--server", dev!.grpcUrl, "--token", secret, "--state-dir", stateDir, "--labels", `machine=${name}`], { prefix, env: AGENT_FAST });
    agents.push(agent);
    return String((await agent.waitForLog((l) => l.msg === "registered; stored the agent's credential", 20_000)).agentId);
  }

  /** The replica processes (node with MARK in its script, not the shim that runs it) in the namespace, or anywhere. */
  function replicaPids(where?: Netns): number[] {
    const candidates = where ? where.pids() : allPids();
    return candidates.filter((pid) => {
      const argv = commandLine(pid);
      return argv[0]?.split("/").at(-1) === "node" && argv.some((a) => a.includes(MARK));
    });
  }

  async function status(id: string): Promise<AgentStatus> {
    return (await fleet.getAgent({ id })).agent!.status;
  }

  /** The deployment once `ok` holds, polled. */
  function deploymentWhen(what: string, ok: (d: Deployment) => boolean, timeoutMs: number): Promise<Deployment> {
    return eventually(async () => {
      const { deployment } = await deploy.getDeployment({ name: "partition" });
      return deployment && ok(deployment) ? deployment : undefined;
    }, timeoutMs, what);
  }

  const healthyOn = (d: Deployment, agentId: string) =>
    d.replicas.some((r) => r.agentId === agentId && r.state === ReplicaState.RUNNING && r.health?.state === HealthState.HEALTHY);

  it("runs the replica on the agent in the namespace", async () => {
    agentA = await startOne("a", net.prefix);
    await deploy.applyDeployment({
      name: "partition",
      spec: {
        exec: { commands: [{ argv: ["node", "-e", `require('http').createServer((q, s) => s.end('ok')).listen(process.env.PORT) // ${MARK}`] }] },
        replicas: 1,
        assignPort: true,
        healthCheck: { check: { case: "http", value: { path: "/" } }, interval: { seconds: 0n, nanos: 200_000_000 }, timeout: { seconds: 0n, nanos: 150_000_000 } },
        restart: { initialDelay: { seconds: 0n, nanos: 100_000_000 }, maxDelay: { seconds: 0n, nanos: 400_000_000 } },
        update: { maxParallel: 1, minHealthyTime: { seconds: 0n, nanos: 300_000_000 } },
      },
    });
    await deploymentWhen("a healthy replica on A", (d) => healthyOn(d, agentA), 30_000);
    assert.equal(replicaPids(net).length, 1, "the replica runs inside A's namespace");
    // B joins only now, so that the replica could only have gone to A.
    agentB = await startOne("b");
  });

  it("keeps the replica running on A and restarts it there while cut off, and the deployment gets a healthy replica on B", async () => {
    const [before] = replicaPids(net);
    net.cut();
    await eventually(async () => ((await status(agentA)) === AgentStatus.OFFLINE ? true : undefined), 10_000, "A offline");
    const d = await deploymentWhen("a healthy replica on B", (x) => healthyOn(x, agentB), 30_000);
    assert.equal(d.replicas.filter((r) => r.state === ReplicaState.RUNNING).length, 1, "the deployment counts one live replica");
    assert.equal(replicaPids().filter((pid) => !net.pids().includes(pid)).length, 1, "B runs one replica on the host");

    // A still runs its copy, and brings it back when it dies, with nobody to tell it.
    assert.deepEqual(replicaPids(net), [before], "A kept its replica through the cut");
    process.kill(before!, "SIGKILL");
    const restarted = await eventually(async () => replicaPids(net).find((pid) => pid !== before), 10_000, "A restarting its replica while offline");
    assert.notEqual(restarted, before);
    assert.equal(await status(agentA), AgentStatus.OFFLINE, "A was offline all along");
  });

  it("stops A's copy when A is back, leaving one replica, on B", async () => {
    net.restore();
    await eventually(async () => ((await status(agentA)) === AgentStatus.ONLINE ? true : undefined), 15_000, "A online again");
    await eventually(async () => (replicaPids(net).length === 0 ? true : undefined), 15_000, "A's copy stopped");
    const d = await deploymentWhen("one healthy replica, on B", (x) => x.replicas.length === 1 && healthyOn(x, agentB), 10_000);
    assert.equal(d.replicas[0]!.agentId, agentB);
    assert.equal(replicaPids().length, 1, "one replica process is left on the machine");
  });
});

/** Every pid on the machine (the namespace shares the host's pid namespace). */
function allPids(): number[] {
  return readdirSync("/proc").filter((n) => /^\d+$/.test(n)).map(Number);
}

function commandLine(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  } catch {
    return []; // gone meanwhile
  }
}

function tryKill(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}
