// How fast the Deploy service rolls, measured end to end in split mode:
// Fleet, Scheduler, Bid and Deploy as their own processes on a fresh
// PostgreSQL database, and 20 simulated agents in this process on real
// FleetService.Connect streams (integration/simulated_agent.ts: they bid,
// take assignments, and report a service replica healthy 100 ms after it
// starts). Every replica goes through the real path: replica row → SubmitJob
// → auction → Assignment → RUNNING and health JobEvents → Scheduler →
// ListJobs → the controller's decision.
//
//   first rollout   ApplyDeployment of 100 replicas → RUNNING (all counted healthy)
//   rolling update  a new revision over the 100 with max_parallel 10 and
//                   min_healthy_time 1 s → RUNNING at the new revision;
//                   theoretical 10 batches × 1 s = 10 s, target ≤ 12 s (1.2×)
//   agent offline   one agent (5 replicas) dies with no goodbye; from Fleet
//                   marking it offline to the deployment back at 100 healthy
//                   replicas elsewhere
//
//   node --import tsx bench/deploy.ts        (npm run bench -- deploy)
//   BENCH_DEPLOY_PROFILE=deploy,scheduler     CPU profiles into /tmp/drover-bench-deploy-prof
//   BENCH_DEPLOY_TIMELINE=1                   each new replica's hops and Bid's rounds, printed
//
// Results: bench/results/deploy.json.

import pg from "pg";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { DeployService, DeploymentState } from "../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import { AgentStatus, FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { bearer } from "../lib/clients.ts";
import { Ledger, SimulatedAgent } from "../integration/simulated_agent.ts";
import { cpuMsOf, freePort, machine, percentiles, printTable, progress, round, runBenchmark, sleep, spawnNode, splitBackends, within, writeResult, type ManagedProcess } from "./harness.ts";

const AGENTS = 20;
const REPLICAS = 100;
const MAX_PARALLEL = 10;
const MIN_HEALTHY_MS = 1000;
const HEALTHY_AFTER_MS = 100;
const OFFLINE_AFTER_MS = 6000;

await runBenchmark("deploy", async (cleanup) => {
  const began = performance.now();
  const { env, adminToken } = await splitBackends(cleanup);
  const names = ["fleet", "scheduler", "bid", "deploy"] as const;
  const ports = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await freePort()]))) as Record<(typeof names)[number], number>;
  const url = (port: number) => `http://127.0.0.1:${port}`;
  const shared = {
    ...env,
    DROVER_HTTP_PORT: "0",
    DROVER_LOG_LEVEL: "warn",
    DROVER_FLEET_URL: url(ports.fleet),
    DROVER_SCHEDULER_URL: url(ports.scheduler),
    DROVER_BID_URL: url(ports.bid),
    DROVER_DEPLOY_URL: url(ports.deploy),
    DROVER_LOG_URL: url(ports.deploy), // not used on this path
    DROVER_HEARTBEAT_INTERVAL_MS: "500",
    DROVER_STALE_AFTER_MS: "2000",
    DROVER_OFFLINE_AFTER_MS: String(OFFLINE_AFTER_MS),
    DROVER_SCHEDULER_SWEEP_MS: "100",
    DROVER_WAIT_RETRY_MS: "300",
    // DROVER_DEPLOY_TICK_MS stays at its default (1 s), as operators run it: passes are
    // woken by the Scheduler's job changes and by replicas coming due, not by the tick.
  };
  const procs: Record<string, ManagedProcess> = {};
  for (const name of names) {
    // Deploy logs each tick's duration at debug: the table reports them.
    // BENCH_DEPLOY_PROFILE=deploy,scheduler: a CPU profile of those services into /tmp/drover-bench-deploy-prof.
    const prof = (process.env.BENCH_DEPLOY_PROFILE ?? "").split(",").includes(name) ? ["--cpu-prof", "--cpu-prof-dir=/tmp/drover-bench-deploy-prof"] : [];
    procs[name] = spawnNode(cleanup, name, [...prof, "--import", "tsx", `services/${name}/main.ts`], { ...shared, DROVER_LOG_LEVEL: name === "deploy" || name === "bid" ? "debug" : "info", DROVER_GRPC_PORT: String(ports[name]) });
    await procs[name].waitForLine((l) => typeof l.msg === "string" && l.msg.includes("ready"), 60_000);
  }
  // The observer asks for no compression: gzip of every WatchDeployment message would cost Deploy and
  // this process (which also hosts the simulated agents) CPU that an operator watching remotely pays alone.
  const transport = (baseUrl: string) => createGrpcTransport({ baseUrl, interceptors: [bearer(adminToken)], acceptCompression: [] });
  const fleet = createClient(FleetService, transport(url(ports.fleet)));
  const deploy = createClient(DeployService, transport(url(ports.deploy)));

  progress(`starting ${AGENTS} simulated agents`);
  const { secret } = await fleet.createAgentToken({ name: "bench-deploy" });
  const ledger = new Ledger();
  const agents: SimulatedAgent[] = [];
  for (let i = 0; i < AGENTS; i++) agents.push(await SimulatedAgent.start({ fleetUrl: url(ports.fleet), registrationToken: secret, ledger, name: `sim-${i}` }));
  cleanup.defer("stop the simulated agents", () => Promise.all(agents.map((a) => a.stop())).then(() => {}));
  await within(30_000, "agents online", (async () => {
    while ((await fleet.listAgents({ status: AgentStatus.ONLINE, pageSize: 1000 })).agents.length < AGENTS) await sleep(100);
  })());

  const spec = (version: string) => ({
    exec: { commands: [{ argv: ["sim", version, String(HEALTHY_AFTER_MS)] }] },
    replicas: REPLICAS,
    resources: { cpuMillis: 100, memoryBytes: 64n << 20n },
    update: { maxParallel: MAX_PARALLEL, minHealthyTime: { seconds: BigInt(MIN_HEALTHY_MS / 1000), nanos: 0 }, healthyDeadline: { seconds: 60n } },
  });
  // Follows the deployment as `drover deploy apply --wait` does (WatchDeployment), so the end is
  // seen when it happens, not at the next poll.
  async function until(revision: number, timeoutMs: number, healthy = REPLICAS): Promise<number> {
    const t0 = performance.now();
    const stop = new AbortController();
    try {
      await within(timeoutMs, `revision ${revision} running`, (async () => {
        for await (const { deployment } of deploy.watchDeployment({ name: "bench" }, { signal: stop.signal })) {
          if (deployment?.state === DeploymentState.RUNNING && deployment.currentRevision?.number === revision && deployment.healthyReplicas >= healthy && deployment.replicas.length === REPLICAS) return;
          if (process.env.BENCH_DEPLOY_DEBUG === "1") {
            const states: Record<string, number> = {};
            for (const r of deployment?.replicas ?? []) {
              const key = `${r.revision}:${r.state}:${r.health?.state ?? 0}`;
              states[key] = (states[key] ?? 0) + 1;
            }
            progress(`${DeploymentState[deployment?.state ?? 0]} "${deployment?.statusMessage}" healthy ${deployment?.healthyReplicas} ${JSON.stringify(states)}`);
          }
        }
        throw new Error("WatchDeployment ended");
      })());
    } finally {
      stop.abort();
    }
    return performance.now() - t0;
  }

  const cpu0 = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await cpuMsOf(procs[n]!.pid)])));
  progress(`first rollout: ${REPLICAS} replicas`);
  let t = performance.now();
  await deploy.applyDeployment({ name: "bench", spec: spec("v1") });
  await until(1, 120_000);
  const firstMs = performance.now() - t;

  progress(`rolling update: max_parallel ${MAX_PARALLEL}, min_healthy_time ${MIN_HEALTHY_MS} ms`);
  t = performance.now();
  const rollFrom = Date.now();
  await deploy.applyDeployment({ name: "bench", spec: spec("v2") });
  await until(2, 120_000);
  const rollMs = performance.now() - t;
  const rollTo = Date.now();
  const cpu1 = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await cpuMsOf(procs[n]!.pid)])));
  // Where a batch's time goes, from the replicas of revision 2: created → healthy (placement, start,
  // health check, events) and healthy → counted (min_healthy_time plus the controller's tick).
  const sql = new pg.Pool({ connectionString: String(env.DATABASE_URL), max: 1 });
  const { rows: [hops] } = await sql.query<{ start: number; count: number; batch: number }>(
    `SELECT round(avg(extract(epoch FROM health_since - created_at)) * 1000)::int AS start,
            round(avg(extract(epoch FROM healthy_at - health_since)) * 1000)::int AS count,
            round(extract(epoch FROM max(healthy_at) - min(created_at)) * 1000 / 10)::int AS batch
     FROM deploy.replicas WHERE revision = 2 AND healthy_at IS NOT NULL`,
  );
  const { rows: [path] } = await sql.query<{ submit: number; place: number; run: number; health: number }>(
    `SELECT round(avg(extract(epoch FROM j.created_at - r.created_at)) * 1000)::int AS submit,
            round(avg(extract(epoch FROM a.created_at - j.created_at)) * 1000)::int AS place,
            round(avg(extract(epoch FROM a.started_at - a.created_at)) * 1000)::int AS run,
            round(avg(extract(epoch FROM r.health_since - a.started_at)) * 1000)::int AS health
     FROM deploy.replicas r JOIN scheduler.jobs j ON j.id = r.job_id JOIN scheduler.attempts a ON a.job_id = j.id
     WHERE r.revision = 2 AND r.healthy_at IS NOT NULL`,
  );
  // BENCH_DEPLOY_TIMELINE=1: each new replica's hops (ms from the rollout's first replica) and Bid's rounds.
  if (process.env.BENCH_DEPLOY_TIMELINE === "1") {
    const { rows } = await sql.query<Record<string, number | string>>(
      `SELECT r.slot, extract(epoch FROM r.created_at) * 1000 AS created, extract(epoch FROM j.created_at) * 1000 AS submitted,
              extract(epoch FROM b.closed_at) * 1000 AS bids, extract(epoch FROM a.created_at) * 1000 AS placed,
              extract(epoch FROM a.started_at) * 1000 AS started,
              extract(epoch FROM r.health_since) * 1000 AS healthy, extract(epoch FROM r.healthy_at) * 1000 AS counted
         FROM deploy.replicas r JOIN scheduler.jobs j ON j.id = r.job_id JOIN scheduler.attempts a ON a.job_id = j.id
         LEFT JOIN bid.auctions b ON b.id = a.auction_id
        WHERE r.revision = 2 ORDER BY r.created_at, r.slot`,
    );
    const t0 = Number(rows[0]?.created ?? 0);
    const at = (v: number | string | null) => (v === null ? "-" : String(Math.round(Number(v) - t0))).padStart(7);
    console.log(`apply called at ${at(rollFrom)}, RUNNING seen at ${at(rollTo)}`);
    console.log("slot created submitted bids-in placed started healthy counted");
    for (const r of rows) console.log(`${String(r.slot).padStart(4)} ${at(r.created)} ${at(r.submitted)} ${at(r.bids)} ${at(r.placed)} ${at(r.started)} ${at(r.healthy)} ${at(r.counted)}`);
    const passes = procs.deploy!.lines.filter((l) => l.msg === "deploy tick" && Number(l.time) >= rollFrom && Number(l.time) <= rollTo);
    console.log(`deploy passes during the rolling update: ${passes.length} (${passes.filter((l) => l.full).length} full), busy ${Math.round(passes.reduce((n, l) => n + Number(l.ms), 0))} ms`);
    for (const l of passes) if (l.full) console.log(`full pass ended ${at(Number(l.time))}: ${l.ms} ms`);
    for (const l of procs.bid!.lines) if (l.msg === "auction round") console.log(`bid round ended ${at(Number(l.time))}: ${JSON.stringify({ ...l, level: undefined, time: undefined, pid: undefined, service: undefined, component: undefined, bidder: undefined, msg: undefined })}`);
  }
  await sql.end();
  const theoreticalMs = Math.ceil(REPLICAS / MAX_PARALLEL) * MIN_HEALTHY_MS;
  const ticks = percentiles(procs.deploy!.lines.filter((l) => l.msg === "deploy tick").map((l) => Number(l.ms)));
  // Bid's rounds (its debug line "auction round"): where "job → attempt" goes once a claim returns.
  const rounds = procs.bid!.lines.filter((l) => l.msg === "auction round" && Number(l.time) >= rollFrom && Number(l.time) <= rollTo);
  const roundPart = (key: string) => percentiles(rounds.map((l) => Number(l[key]))).p50;
  const sum = (key: string) => rounds.reduce((n, l) => n + Number(l[key]), 0);
  const auction = { rounds: rounds.length, offers: sum("offers"), answers: sum("answers"), jobsP50: roundPart("jobs"), selectMs: roundPart("selectMs"), bidsMs: roundPart("bidsMs"), recordMs: roundPart("recordMs"), placeMs: roundPart("placeMs"), storeMs: roundPart("storeMs") };

  progress("agent offline: killing one agent");
  const { deployment } = await deploy.getDeployment({ name: "bench" });
  const victim = agents.find((a) => deployment!.replicas.some((r) => r.agentId === a.id))!;
  const lost = deployment!.replicas.filter((r) => r.agentId === victim.id).length;
  const killedAt = performance.now();
  await victim.kill();
  agents.splice(agents.indexOf(victim), 1);
  let offlineAt = 0;
  await within(60_000, "the agent offline", (async () => {
    for (;;) {
      const { agent } = await fleet.getAgent({ id: victim.id });
      if (agent?.status === AgentStatus.OFFLINE) return void (offlineAt = performance.now());
      await sleep(20);
    }
  })());
  await within(120_000, "replacements healthy", (async () => {
    for (;;) {
      const { deployment: d } = await deploy.getDeployment({ name: "bench" });
      const elsewhere = d!.replicas.filter((r) => r.agentId && r.agentId !== victim.id && r.health?.state === 1).length;
      if (elsewhere >= REPLICAS) return;
      await sleep(50);
    }
  })());
  const replacedMs = performance.now() - offlineAt;
  const detectMs = offlineAt - killedAt;

  const cpuPct = (n: string) => round(((cpu1[n] ?? 0) - (cpu0[n] ?? 0)) / (firstMs + rollMs) * 100);
  const table: [string, string, string][] = [
    ["first rollout, 100 replicas", `${round(firstMs / 1000, 2)} s`, "all placed and counted healthy (min_healthy_time 1 s)"],
    ["rolling update, max_parallel 10", `${round(rollMs / 1000, 2)} s`, `target ≤ ${round((1.2 * theoreticalMs) / 1000, 1)} s (1.2 × ${theoreticalMs / 1000} s)`],
    ["  ratio to theoretical", `${round(rollMs / theoreticalMs, 2)}×`, "≤ 1.2"],
    ["  replica created → healthy (mean)", `${hops!.start} ms`, `placement, start, health after ${HEALTHY_AFTER_MS} ms, events`],
    ["    replica row → job submitted", `${path!.submit} ms`, "Deploy's SubmitJob after its decision's transaction"],
    ["    job → attempt (placed)", `${path!.place} ms`, "claim, auction, RecordPlacements"],
    ["    attempt → running", `${path!.run} ms`, "Assignment delivered, RUNNING event recorded"],
    ["    running → healthy", `${path!.health} ms`, `the simulated replica reports healthy after ${HEALTHY_AFTER_MS} ms`],
    ["  auction round p50: select / bids / record", `${auction.selectMs} / ${auction.bidsMs} / ${auction.recordMs} ms (RecordPlacements ${auction.placeMs}, auction rows ${auction.storeMs})`, `Bid, from claim returned to placements recorded; ${auction.rounds} rounds, ${auction.jobsP50} jobs each (p50); ${auction.answers} of ${auction.offers} offers answered in the window`],
    ["  controller tick p50 / p99", `${round(ticks.p50)} / ${round(ticks.p99)} ms`, "load, sync with the Scheduler, decide, write, submit/cancel"],
    ["  healthy → counted (mean)", `${hops!.count} ms`, `min_healthy_time ${MIN_HEALTHY_MS} ms + the controller's tick`],
    [`agent killed → offline`, `${round(detectMs / 1000, 2)} s`, `DROVER_OFFLINE_AFTER_MS ${OFFLINE_AFTER_MS}`],
    [`offline → ${lost} replacements healthy`, `${round(replacedMs / 1000, 2)} s`, "lease ended, re-auctioned, healthy (no min wait outside a rollout)"],
    ["CPU during the rollouts", names.map((n) => `${n} ${cpuPct(n)}%`).join(", "), "of one core"],
  ];
  printTable("deploy", table);
  const file = writeResult({
    benchmark: "deploy",
    date: new Date().toISOString(),
    machine: machine(),
    durationSec: round((performance.now() - began) / 1000),
    table,
    conclusion: [`rolling update ${round(rollMs / 1000, 2)} s for ${theoreticalMs / 1000} s theoretical (${round(rollMs / theoreticalMs, 2)}×)`],
    details: { hops, path, ticks, auction, agents: AGENTS, replicas: REPLICAS, maxParallel: MAX_PARALLEL, minHealthyMs: MIN_HEALTHY_MS, healthyAfterMs: HEALTHY_AFTER_MS, firstMs, rollMs, theoreticalMs, detectMs, replacedMs, lost, cpuPercent: Object.fromEntries(names.map((n) => [n, cpuPct(n)])) },
  });
  console.log(`results: ${file}`);
});
