// Deployments end to end in split mode: every service its own process on
// PostgreSQL and Redis, two real drover-agents, and a tiny HTTP server
// script as the service (it answers with its revision's text on the port
// the agent assigns it). The Deploy issue's faults, proved for real:
//
//   - a first rollout and a rolling update, checked by asking every replica
//     over HTTP which revision it runs;
//   - a new revision whose process exits at once: the rollout stops at its
//     first batch and auto-revert brings the previous revision back, with
//     the reason (and the replica's last output) in the deployment's status;
//   - Deploy killed with SIGKILL in the middle of a rollout: the restarted
//     service finishes it, and no replica was started twice.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { DeployService, DeploymentState, ReplicaState, type Deployment } from "../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import { HealthState } from "../gen/ts/drover/common/v1/service_pb.ts";
import { AgentStatus, FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { bearer } from "../lib/clients.ts";
import { requirePostgres, requireRedis } from "../lib/testing/services.ts";
import { STOPS_AFTER_STARTS_MS } from "../services/deploy/controller.ts";
import { eventually } from "../services/fleet/testing.ts";
import { createTestDatabase, freePort, randomToken, removeDir, startAgent, startSplit, tempDir, type AgentProcess, type DroverProcess, type SplitEnv } from "./harness.ts";

const postgresUrl = await requirePostgres();
const redisUrl = await requireRedis();

const FAST = {
  DROVER_HEARTBEAT_INTERVAL_MS: "500",
  DROVER_STALE_AFTER_MS: "3000",
  DROVER_OFFLINE_AFTER_MS: "20000",
  DROVER_SCHEDULER_SWEEP_MS: "100",
  DROVER_WAIT_RETRY_MS: "300",
  DROVER_SHUTDOWN_GRACE_MS: "200",
  DROVER_DEPLOY_TICK_MS: "100",
  DROVER_DEPLOY_CLAIM_MS: "2000",
};

/** The service: an HTTP server on $PORT answering `<text> <pid>`. */
function server(text: string) {
  const code = `require("http").createServer((q, s) => s.end(${JSON.stringify(text)} + " " + process.pid)).listen(Number(process.env.PORT), "127.0.0.1")`;
  return { commands: [{ argv: [process.execPath, "-e", code] }] };
}

const crashing = { commands: [{ argv: [process.execPath, "-e", `console.log("config file /etc/web.conf is missing"); process.exit(3)`] }] };

function spec(exec: object, replicas: number, update: object = {}) {
  return {
    exec,
    replicas,
    assignPort: true,
    healthCheck: { check: { case: "http" as const, value: { path: "/" } }, interval: { seconds: 0n, nanos: 200_000_000 }, timeout: { seconds: 0n, nanos: 150_000_000 } },
    restart: { initialDelay: { seconds: 0n, nanos: 100_000_000 }, maxDelay: { seconds: 0n, nanos: 400_000_000 } },
    update: { maxParallel: 1, minHealthyTime: { seconds: 0n, nanos: 500_000_000 }, healthyDeadline: { seconds: 30n }, ...update },
  };
}

/** What every running replica answers over HTTP, by slot. */
async function answers(d: Deployment): Promise<string[]> {
  const live = d.replicas.filter((r) => r.state === ReplicaState.RUNNING && r.health?.state === HealthState.HEALTHY);
  return Promise.all(live.map(async (r) => (await (await fetch(`http://127.0.0.1:${r.health!.port}/`)).text()).split(" ")[0]!));
}

describe("deployments in split mode", { skip: postgresUrl === null || redisUrl === null ? "needs PostgreSQL and Redis" : false }, () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let env: SplitEnv;
  let sql: pg.Pool;
  const procs: Record<string, DroverProcess> = {};
  const agents: AgentProcess[] = [];
  const stateDirs: string[] = [];
  let deployPort = 0;
  let urls: Record<string, string> = {};
  let fleet: Client<typeof FleetService>;
  let deploy: Client<typeof DeployService>;

  const startDeploy = () => startSplit("deploy", env, { ...FAST, ...urls, DROVER_GRPC_PORT: String(deployPort) });

  before(async () => {
    db = await createTestDatabase(postgresUrl!);
    sql = new pg.Pool({ connectionString: db.url, max: 2 });
    env = { databaseUrl: db.url, redisUrl: redisUrl!, adminToken: randomToken(), redisPrefix: `drover-it-deploy-${process.pid}:` };
    const [pf, ps, pb, pl] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    deployPort = await freePort();
    const url = (port: number) => `http://127.0.0.1:${port}`;
    urls = { DROVER_FLEET_URL: url(pf), DROVER_SCHEDULER_URL: url(ps), DROVER_BID_URL: url(pb), DROVER_LOG_URL: url(pl), DROVER_DEPLOY_URL: url(deployPort) };
    procs.fleet = await startSplit("fleet", env, { ...FAST, ...urls, DROVER_GRPC_PORT: String(pf) });
    const [s, b, l, d] = await Promise.all([
      startSplit("scheduler", env, { ...FAST, ...urls, DROVER_GRPC_PORT: String(ps) }),
      startSplit("bid", env, { ...FAST, ...urls, DROVER_GRPC_PORT: String(pb) }),
      startSplit("log", env, { ...FAST, ...urls, DROVER_GRPC_PORT: String(pl) }),
      startDeploy(),
    ]);
    Object.assign(procs, { scheduler: s, bid: b, log: l, deploy: d });
    const client = <T extends Parameters<typeof createClient>[0]>(service: T, baseUrl: string) =>
      createClient(service, createGrpcTransport({ baseUrl, interceptors: [bearer(env.adminToken)] }));
    fleet = client(FleetService, procs.fleet.grpcUrl);
    deploy = client(DeployService, url(deployPort));
    const { secret } = await fleet.createAgentToken({ name: "deploy-it" });
    for (let i = 0; i < 2; i++) {
      const dir = tempDir("drover-deploy-it-");
      stateDirs.push(dir);
      // The first agent is the only "edge" one: a per-agent deployment selects it.
      // Replicas hold attempt slots (DROVER_MAX_ATTEMPTS, default: the cores), so give them room.
      const labels = i === 0 ? ["--labels", "role=edge"] : [];
      agents.push(startAgent(["--server", procs.fleet.grpcUrl, "--state-dir", dir, "--token", secret, ...labels], { env: { DROVER_RECONNECT_MAX_MS: "300", DROVER_MAX_ATTEMPTS: "8" } }));
    }
    await eventually(async () => ((await fleet.listAgents({ status: AgentStatus.ONLINE })).agents.length === 2 ? true : undefined), 30_000, "both agents online");
  });

  after(async () => {
    // Stop the deployments' replicas first: they are detached from the agents.
    for (const name of ["web", "edge"]) {
      await deploy?.stopDeployment({ name }).catch(() => {});
      await eventually(async () => ((await deploy.getDeployment({ name })).deployment?.replicas.length === 0 ? true : undefined), 20_000, "replicas stopped").catch(() => {});
    }
    await Promise.all(agents.map((a) => a.stop("SIGTERM")));
    await Promise.all(Object.values(procs).map((p) => p.stop("SIGKILL")));
    await sql?.end();
    await db?.drop();
    for (const dir of stateDirs) removeDir(dir);
  });

  /** Waits until the deployment is in `state` at `revision`, and returns it. */
  function settled(state: DeploymentState, revision: number, timeoutMs = 60_000) {
    return eventually(
      async () => {
        const { deployment } = await deploy.getDeployment({ name: "web" });
        return deployment?.state === state && deployment.currentRevision?.number === revision && deployment.replicas.every((r) => r.state === ReplicaState.RUNNING) ? deployment : undefined;
      },
      timeoutMs,
      `web ${DeploymentState[state]} at revision ${revision}`,
    );
  }

  it("rolls out a first revision: every replica healthy and answering", async () => {
    const res = await deploy.applyDeployment({ name: "web", spec: spec(server("v1"), 3) });
    assert.equal(res.deployment?.currentRevision?.number, 1);
    const d = await settled(DeploymentState.RUNNING, 1);
    assert.equal(d.stableRevision, 1);
    assert.equal(d.healthyReplicas, 3);
    assert.deepEqual(await answers(d), ["v1", "v1", "v1"]);
    assert.equal(new Set(d.replicas.map((r) => r.slot)).size, 3);
  });

  it("rolls a new revision over one replica at a time, never below the wanted count", async () => {
    await deploy.applyDeployment({ name: "web", spec: spec(server("v2"), 3) });
    let lowest = 3;
    const d = await eventually(
      async () => {
        const { deployment } = await deploy.getDeployment({ name: "web" });
        const healthy = deployment!.replicas.filter((r) => r.health?.state === HealthState.HEALTHY).length;
        lowest = Math.min(lowest, healthy);
        const inFlight = deployment!.replicas.filter((r) => r.revision === 2 && r.state !== ReplicaState.STOPPING).length - (deployment!.rollout?.healthy ?? 0);
        assert.ok(inFlight <= 1, `at most max_parallel (1) new replicas in flight, saw ${inFlight}`);
        return deployment!.state === DeploymentState.RUNNING && deployment!.currentRevision?.number === 2 && deployment!.replicas.length === 3 ? deployment : undefined;
      },
      60_000,
      "revision 2 rolled out",
    );
    assert.equal(lowest, 3, "start before stop: never fewer healthy replicas than wanted");
    assert.equal(d.stableRevision, 2);
    assert.deepEqual(await answers(d), ["v2", "v2", "v2"]);
    const { events } = await deploy.getDeployment({ name: "web" });
    assert.ok(events.some((e) => e.kind === "rollout_succeeded" && e.revision === 2));
    // A pass that stopped an old replica and started the next new one sent the stop once the
    // new one was placed: its job's cancel comes after the placement (or, on a machine too
    // busy to place it that soon, after STOPS_AFTER_STARTS_MS).
    const { rows: order } = await sql.query<{ slot: string; cancelled: Date; placed: Date; stopped: Date }>(
      `SELECT o.slot, j.cancel_requested_at AS cancelled, min(a.created_at) AS placed, o.stop_requested_at AS stopped
         FROM deploy.replicas o
         JOIN deploy.deployments dep ON dep.id = o.deployment_id AND dep.name = 'web'
         JOIN scheduler.jobs j ON j.id = o.job_id
         JOIN deploy.replicas n ON n.deployment_id = o.deployment_id AND n.revision = 2 AND n.created_at = o.stop_requested_at
         JOIN scheduler.attempts a ON a.job_id = n.job_id
        WHERE o.revision = 1
        GROUP BY o.slot, j.cancel_requested_at, o.stop_requested_at`,
    );
    assert.ok(order.length >= 1, "some stop went with a start");
    for (const r of order) {
      const waitedOut = r.cancelled.getTime() - r.stopped.getTime() >= STOPS_AFTER_STARTS_MS;
      assert.ok(r.cancelled >= r.placed || waitedOut, `slot ${r.slot}: cancelled ${r.cancelled.toISOString()} before the new replica was placed ${r.placed.toISOString()}`);
    }
  });

  it("stops a revision that exits at once at its first batch and reverts to the last good one, saying why", async () => {
    await deploy.applyDeployment({ name: "web", spec: spec(crashing, 3) });
    const d = await eventually(
      async () => {
        const { deployment } = await deploy.getDeployment({ name: "web" });
        return deployment?.currentRevision?.number === 2 && deployment.state === DeploymentState.RUNNING && deployment.replicas.length === 3 ? deployment : undefined;
      },
      60_000,
      "reverted to revision 2",
    );
    const { events } = await deploy.getDeployment({ name: "web" });
    const reverting = events.find((e) => e.kind === "reverting");
    assert.ok(reverting, `a reverting event among ${events.map((e) => e.kind).join(", ")}`);
    assert.match(reverting.message, /revision 3 failed: replica \w+ restarted \d+ times without becoming healthy/);
    assert.match(reverting.message, /config file \/etc\/web.conf is missing/, "the failing replica's last output");
    const started3 = events.filter((e) => e.kind === "replica_started" && e.revision === 3).length;
    assert.equal(started3, 1, "only the first batch (max_parallel 1) of revision 3 was started");
    assert.deepEqual(await answers(d), ["v2", "v2", "v2"]);
  });

  it("finishes a rollout after Deploy is killed with SIGKILL in the middle, starting no replica twice", async () => {
    await deploy.applyDeployment({ name: "web", spec: spec(server("v4"), 3, { minHealthyTime: { seconds: 1n, nanos: 0 } }) });
    await eventually(
      async () => {
        const { events } = await deploy.getDeployment({ name: "web" });
        return events.some((e) => e.kind === "replica_healthy" && e.revision === 4) ? true : undefined;
      },
      30_000,
      "a first replica of revision 4 healthy",
    );
    await procs.deploy!.stop("SIGKILL");
    procs.deploy = await startDeploy();
    const d = await settled(DeploymentState.RUNNING, 4, 60_000);
    assert.deepEqual(await answers(d), ["v4", "v4", "v4"]);
    const { rows } = await sql.query<{ slot: string; n: string }>(
      `SELECT r.slot, count(*)::text AS n FROM deploy.replicas r JOIN deploy.deployments d ON d.id = r.deployment_id
       WHERE d.name = 'web' AND r.revision = 4 GROUP BY r.slot ORDER BY r.slot`,
    );
    assert.deepEqual(rows.map((r) => [r.slot, Number(r.n)]), [["0", 1], ["1", 1], ["2", 1]], "one replica of revision 4 per slot");
    const jobs = await sql.query<{ n: string }>(`SELECT count(*)::text AS n FROM scheduler.jobs WHERE idempotency_key LIKE 'deploy:replica:%' AND (spec->'service'->>'revision')::int = 4`);
    assert.equal(Number(jobs.rows[0]!.n), 3, "one job per replica");
  });

  it("runs one replica on each matching agent for a per-agent deployment, pinned there", async () => {
    const edge = (await fleet.listAgents({ labelSelector: { role: "edge" } })).agents;
    assert.equal(edge.length, 1);
    const perAgent = { ...spec(server("edge"), 0), replicas: 0, perAgent: { labels: { role: "edge" } } };
    await deploy.applyDeployment({ name: "edge", spec: perAgent });
    const d = await eventually(
      async () => {
        const { deployment } = await deploy.getDeployment({ name: "edge" });
        return deployment?.state === DeploymentState.RUNNING && deployment.replicas.length === 1 ? deployment : undefined;
      },
      30_000,
      "edge running",
    ).catch(async (err: unknown) => {
      const { deployment, events } = await deploy.getDeployment({ name: "edge" });
      throw new Error(`${String(err)}: ${DeploymentState[deployment!.state]} "${deployment!.statusMessage}" replicas ${JSON.stringify(deployment!.replicas.map((r) => [r.slot, r.agentId, ReplicaState[r.state], r.message]))} events ${events.map((e) => e.message).join("; ")}`);
    });
    assert.deepEqual(d.replicas.map((r) => [r.slot, r.agentId]), [[edge[0]!.id, edge[0]!.id]]);
    assert.equal(d.desiredReplicas, 1);
    assert.deepEqual(await answers(d), ["edge"]);
  });
});
