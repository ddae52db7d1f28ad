// How fast trivial jobs go through the whole scheduling path, durably:
// SubmitJob → claim → auction (offers to agents over their streams, bids
// back) → RecordPlacements → Assignment on the agent's stream → RUNNING and
// SUCCEEDED events → committed by the Scheduler (the agent's EventAck).
//
// Two wirings, each measured the same way:
//   split  fleet, scheduler and bid as separate processes (services/<name>/main.ts)
//          on a fresh PostgreSQL database and a Redis prefix of their own
//   dev    services/dev/main.ts: everything in one process on PGlite
// A load process (bench/scheduling/load.ts) holds 50 simulated agents on
// real FleetService.Connect streams (they bid on every offer and finish
// every job at once) and the SubmitJob callers, so the measured processes'
// event loops are theirs alone (the 2 cores are not: see the CPU columns).
//
//   throughput  N jobs with C SubmitJob calls in flight; first submit → last
//               job whose SUCCEEDED event the Scheduler committed (EventAck
//               seen by its agent). 3 runs at C=128 (median), then a curve
//               over C. N is sized from a warm-up run to take ~4 s.
//   latency     jobs submitted on a fixed schedule (open loop) at R/s;
//               submit → Assignment received by the agent, p50/p99. 3 runs
//               at 500/s (median of each percentile), and a curve over R.
//   idle        10 s with the agents connected and nothing submitted: each
//               process's CPU and context switches per second.
//   hops        per job, from the load process's side: submit → SubmitJob
//               answered, submit → first Offer at an agent (claim + candidate
//               selection + RequestBids), Offer → Assignment (bid window,
//               auction record, RecordPlacements, outbox, delivery),
//               Assignment → SUCCEEDED committed (events through Fleet's sink).
//   profile     the services restarted on fresh state with --cpu-prof for one
//               more throughput run; self time within that run, top functions
//               and files per process (bench/scheduling/cpu_profile.ts).
//
// Targets (scheduling issue): throughput ≥ 5,000 jobs/s split, ≥ 1,000 dev;
// submit → Assignment at 500/s p50 ≤ 2 ms, p99 ≤ 10 ms in both.
//
//   node --import tsx bench/scheduling.ts                 both modes (npm run bench -- scheduling)
//   BENCH_SCHED_MODES=split                               one mode
//   BENCH_SCHED_JOBS=5000                                 jobs per throughput run (default: ~4 s worth)
//   BENCH_SCHED_EVENTS=succeeded                          agents report SUCCEEDED alone (no RUNNING)
//   BENCH_SCHED_PROFILE=0                                 skip the profiled runs
//   BENCH_SCHED_QUICK=1                                   one throughput run and the profile only (diagnosis)
//   BENCH_SCHED_BUDGET_SEC=270                            time for the measurements; optional steps past it are skipped
//   BENCH_SCHED_NODELAY=0                                 agents' sockets keep Nagle's algorithm (see load.ts)
//   BENCH_SCHED_CLIENT=connect                            the load process uses connect-node's transport, not Drover's (see load.ts)
//   BENCH_SCHED_PROFILE_DIR=/tmp/dir                      keep the .cpuprofile files there
//   BENCH_SCHED_BATCH=100                                 the measured and profiled runs use SubmitJobs calls of 100 jobs
//   BENCH_SCHED_IDLE_SEC=10                               how long the idle measurement lasts (0: none)
//   BENCH_SCHED_PROBE_RATE=0                              a diagnosis: the idle measurement alone, printed, nothing saved
//   BENCH_SCHED_PROBE_AFTER=20000                         the probe's warm-up: that many jobs first (default 500)
//   BENCH_SCHED_PROBE_RATE=20                             a diagnosis: one latency run at 20 jobs/s per mode, its hops and CPU printed (with
//                                                         BENCH_SCHED_PROFILE_DIR, each service's profile within it too), nothing saved
//
// Results: bench/results/scheduling.json.

import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import {
  cpuMsOf,
  cpuMsOfCommand,
  switchesOf,
  switchesOfCommand,
  switchesBetween,
  freePort,
  calibrate,
  machine,
  printTable,
  progress,
  round,
  runBenchmark,
  spawnNode,
  splitBackends,
  startDevMode,
  writeResult,
  type Cleanup,
  type ManagedProcess,
} from "./harness.ts";
import { summarizeProfile, type ProfileSummary } from "./scheduling/cpu_profile.ts";

type Mode = "split" | "dev";
const MODES = (process.env.BENCH_SCHED_MODES ?? "split,dev").split(",") as Mode[];
const FIXED_JOBS = process.env.BENCH_SCHED_JOBS ? Number(process.env.BENCH_SCHED_JOBS) : undefined;
const EVENTS = process.env.BENCH_SCHED_EVENTS === "succeeded" ? "succeeded" : "running+succeeded";
const PROFILE = process.env.BENCH_SCHED_PROFILE !== "0";
/** "0": the simulated agents' sockets keep Nagle's algorithm (connect-node's default); see load.ts. */
const NO_DELAY = process.env.BENCH_SCHED_NODELAY !== "0";
/** The load process's gRPC client: "drover" (lib/grpc_transport.ts, what drover-agent and the SDK use) or "connect" (connect-node's). */
const CLIENT = process.env.BENCH_SCHED_CLIENT === "connect" ? "connect" : "drover";
const AGENTS = 50;
const REPEATS = 3;
const CONCURRENCY = 128;
const CONCURRENCY_CURVE = [16, 64, 256];
/** Jobs per SubmitJobs call in the batched throughput run. */
const BATCH = 100;
/** BENCH_SCHED_BATCH: the measured and profiled runs submit with SubmitJobs calls of this many jobs (a diagnosis). */
const MAIN_BATCH = Number(process.env.BENCH_SCHED_BATCH ?? 1);
const TARGET_RATE = 500;
const RATE_CURVE = [100, 1000];
const LATENCY_SEC = 4;
/** How long the idle measurement lasts: the agents connected, no jobs. */
const IDLE_SEC = Number(process.env.BENCH_SCHED_IDLE_SEC ?? 10);
/** How long a sized throughput run should take, s. */
const RUN_SEC = 4;
const TARGET = { split: 5000, dev: 1000, p50Ms: 2, p99Ms: 10 };
/**
 * Time the measurements may take, shared out among the modes (run.ts stops
 * the benchmark at 330 s). On a busy machine the optional steps (curves,
 * profile) are skipped rather than the whole result lost.
 */
const BUDGET_MS = Number(process.env.BENCH_SCHED_BUDGET_SEC ?? 270) * 1000;
const began = performance.now();
/** Steps skipped for lack of time, to say so in the results. */
const skipped: string[] = [];
/** One throughput run and the profile, nothing else: a diagnosis, not a result to compare. */
const QUICK = process.env.BENCH_SCHED_QUICK === "1";
const PROBE_RATE = process.env.BENCH_SCHED_PROBE_RATE ? Number(process.env.BENCH_SCHED_PROBE_RATE) : undefined;
const PROBE_AFTER = process.env.BENCH_SCHED_PROBE_AFTER ? Number(process.env.BENCH_SCHED_PROBE_AFTER) : undefined;

// ---- The measured processes ------------------------------------------------------

interface Plane {
  mode: Mode;
  /** The service processes, by name (split: fleet, scheduler, bid; dev: dev). */
  procs: Record<string, ManagedProcess>;
  fleetUrl: string;
  schedulerUrl: string;
  adminToken: string;
  /** Split mode: the database, to count jobs by state afterwards. */
  databaseUrl?: string;
  /** Where each process writes its .cpuprofile, when profiled. */
  profileDirs: Record<string, string>;
}

const ready = (l: Record<string, unknown>) => l.msg === "ready";

async function startPlane(cleanup: Cleanup, mode: Mode, profileDir?: string): Promise<Plane> {
  const profileDirs: Record<string, string> = {};
  const nodeArgs = (name: string) => {
    if (!profileDir) return [];
    profileDirs[name] = join(profileDir, `${mode}-${name}`);
    mkdirSync(profileDirs[name]!, { recursive: true });
    return ["--cpu-prof", "--cpu-prof-dir", profileDirs[name]!];
  };
  if (mode === "dev") {
    const { proc: dev, url, adminToken } = await startDevMode(cleanup, nodeArgs("dev"));
    return { mode, procs: { dev }, fleetUrl: url, schedulerUrl: url, adminToken, profileDirs };
  }
  const { env, adminToken } = await splitBackends(cleanup);
  // Fixed ports: Fleet calls the Scheduler (job events) and the Scheduler calls Fleet (assignments).
  const ports = { fleet: await freePort(), scheduler: await freePort(), bid: await freePort() };
  const shared = {
    ...env,
    DROVER_HTTP_PORT: "0",
    DROVER_LOG_LEVEL: "info",
    DROVER_FLEET_URL: `http://127.0.0.1:${ports.fleet}`,
    DROVER_SCHEDULER_URL: `http://127.0.0.1:${ports.scheduler}`,
  };
  // Bid at debug: one "auction round" line per round (it serves almost no calls to log).
  const start = (name: "fleet" | "scheduler" | "bid") =>
    spawnNode(cleanup, name, [...nodeArgs(name), "--import", "tsx", `services/${name}/main.ts`], {
      ...shared,
      DROVER_GRPC_PORT: String(ports[name]),
      ...(name === "bid" ? { DROVER_LOG_LEVEL: "debug" } : {}),
    });
  // Fleet first: it migrates its schema and stores the admin token the others present.
  const fleet = start("fleet");
  await fleet.waitForLine(ready, 60_000);
  const scheduler = start("scheduler");
  await scheduler.waitForLine(ready, 60_000);
  // Bid last: its loop calls the Scheduler as soon as it starts.
  const bid = start("bid");
  await bid.waitForLine(ready, 60_000);
  return { mode, procs: { fleet, scheduler, bid }, fleetUrl: shared.DROVER_FLEET_URL, schedulerUrl: shared.DROVER_SCHEDULER_URL, adminToken, databaseUrl: String(env.DATABASE_URL), profileDirs };
}

async function stopPlane(plane: Plane): Promise<void> {
  // Bid and the Scheduler before Fleet, so nobody is left calling a closed peer.
  for (const name of ["bid", "scheduler", "fleet", "dev"]) await plane.procs[name]?.stop(20_000);
}

// ---- The load process --------------------------------------------------------------

class Load {
  private nextId = 0;

  private constructor(readonly proc: ManagedProcess) {}

  static async start(cleanup: Cleanup, plane: Plane): Promise<Load> {
    const proc = spawnNode(
      cleanup,
      "load",
      ["--import", "tsx", "bench/scheduling/load.ts"],
      { FLEET_URL: plane.fleetUrl, SCHEDULER_URL: plane.schedulerUrl, ADMIN_TOKEN: plane.adminToken, AGENTS: String(AGENTS), EVENTS, NO_DELAY: NO_DELAY ? "1" : "0", CLIENT },
      "pipe",
    );
    await proc.waitForLine((l) => l.ready === true, 60_000);
    return new Load(proc);
  }

  async run<T>(command: Record<string, unknown>, timeoutMs = 180_000): Promise<T> {
    const id = String(++this.nextId);
    this.proc.child.stdin!.write(JSON.stringify({ id, ...command }) + "\n");
    const line = await this.proc.waitForLine((l) => l.id === id, timeoutMs);
    if (line.error) throw new Error(`load: ${String(line.error)}`);
    return line.result as T;
  }

  async stop(): Promise<void> {
    this.proc.child.stdin!.end();
    await this.proc.stop(5_000);
  }
}

interface Percentiles {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

interface Hops {
  submitToResponse: Percentiles;
  submitToOffer: Percentiles;
  offerToAssignment: Percentiles;
  assignmentToSucceededAck: Percentiles;
  submitToSucceededAck: Percentiles;
}

/** Bid's auction rounds during a run (split mode): p50s, and offers answered in the window. */
interface AuctionRounds {
  rounds: number;
  jobs: number;
  windowMs: number;
  selectMs: number;
  bidsMs: number;
  recordMs: number;
  offers: number;
  answers: number;
  /** Jobs claimed, and those of them placed on a standing bid (no offer, no bid window). */
  claimed: number;
  standing: number;
}

interface ThroughputRun {
  jobs: number;
  concurrency: number;
  /** Jobs per SubmitJobs call; 1: one SubmitJob per job. */
  batch: number;
  rounds?: AuctionRounds;
  complete: boolean;
  succeeded: number;
  ms: number;
  jobsPerSec: number;
  submitPerSec: number;
  errors: Record<string, number>;
  hops: Hops;
  clock: { startUs: number; endUs: number };
  loadCpuMs: number;
  /**
   * CPU used during the run, fraction of one core, per service process and
   * for the load process, and (split mode, when they run on this machine)
   * for PostgreSQL and Redis; machine: busy share of all cores.
   */
  cpu?: Record<string, number>;
  /**
   * CPU ms per job during the run, per service process and for the load
   * process: steadier than jobs/s on a shared machine, and what a change to
   * one process moves (the load process's, whose code is the same in an
   * A/B, shows how much the machine inflated everyone's).
   */
  cpuMsPerJob?: Record<string, number>;
  /**
   * Context switches per job during the run, per process as in cpuMsPerJob
   * (of PostgreSQL's and Redis's, those alive throughout the run): below
   * saturation each job is a chain of wake-ups, and on a virtualised
   * machine a wake-up can cost more than the work it wakes for.
   */
  switchesPerJob?: Record<string, number>;
}

interface LatencyRun {
  rate: number;
  sec: number;
  jobs: number;
  complete: boolean;
  succeeded: number;
  offeredRate: number;
  maxScheduleLagMs: number;
  submitToAssignment: Percentiles;
  errors: Record<string, number>;
  hops: Hops;
}

/** Busy and total jiffies of the whole machine (/proc/stat). */
async function machineTicks(): Promise<{ busy: number; total: number }> {
  const line = (await readFile("/proc/stat", "utf8")).split("\n")[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3]! + (f[4] ?? 0);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/**
 * Split mode's servers, when they run on this machine: their processes' CPU
 * (PostgreSQL's backends included) is the rest of what a job costs.
 */
const SERVERS = { postgres: "postgres", redis: "redis-server" } as const;

async function serversCpuMs(plane: Plane): Promise<Record<string, number | undefined>> {
  if (plane.mode !== "split") return {};
  return Object.fromEntries(await Promise.all(Object.entries(SERVERS).map(async ([n, command]) => [n, await cpuMsOfCommand(command)] as const)));
}

async function serversSwitches(plane: Plane): Promise<Record<string, Map<number, number>>> {
  if (plane.mode !== "split") return {};
  return Object.fromEntries(await Promise.all(Object.entries(SERVERS).map(async ([n, command]) => [n, await switchesOfCommand(command)] as const)));
}

async function throughput(plane: Plane, load: Load, jobs: number, concurrency: number, batch = 1): Promise<ThroughputRun> {
  return withCpu(plane, load, jobs, () => load.run<ThroughputRun>({ cmd: "throughput", jobs, concurrency, batch }));
}

/** Runs one load command and adds what each process used meanwhile: a fraction of one core, and ms per job. */
async function withCpu<T extends object>(plane: Plane, load: Load, jobs: number, command: () => Promise<T>): Promise<T & Pick<ThroughputRun, "cpu" | "cpuMsPerJob" | "switchesPerJob" | "rounds">> {
  const pids = { ...Object.fromEntries(Object.entries(plane.procs).map(([n, p]) => [n, p.pid])), load: load.proc.pid };
  const snapshot = async () => ({
    cpu: { ...Object.fromEntries(await Promise.all(Object.entries(pids).map(async ([n, pid]) => [n, await cpuMsOf(pid)] as const))), ...(await serversCpuMs(plane)) },
    switches: Object.fromEntries(await Promise.all(Object.entries(pids).map(async ([n, pid]) => [n, new Map([[pid, (await switchesOf(pid)) ?? 0]])] as const))),
    serverSwitches: await serversSwitches(plane),
    machine: await machineTicks(),
  });
  const before = await snapshot();
  const t0 = performance.now();
  const from = Date.now();
  const run = await command();
  const elapsed = performance.now() - t0;
  const rounds = plane.procs.bid ? auctionRounds(plane.procs.bid, from, Date.now()) : undefined;
  const after = await snapshot();
  const cpu: Record<string, number> = {};
  const cpuMsPerJob: Record<string, number> = {};
  const switchesPerJob: Record<string, number> = {};
  for (const [n, used] of Object.entries(after.cpu)) {
    const at = before.cpu[n];
    if (used === undefined || at === undefined) continue;
    cpu[n] = round((used - at) / elapsed, 3);
    cpuMsPerJob[n] = round((used - at) / jobs, 3);
  }
  for (const [n, count] of Object.entries({ ...after.switches, ...after.serverSwitches })) {
    const used = switchesBetween(before.switches[n] ?? before.serverSwitches[n] ?? new Map(), count);
    if (used !== undefined) switchesPerJob[n] = round(used / jobs, 1);
  }
  cpu.machine = round((after.machine.busy - before.machine.busy) / Math.max(1, after.machine.total - before.machine.total), 3);
  return { ...run, cpu, cpuMsPerJob, switchesPerJob, rounds };
}

/** Bid's rounds between two times (its debug line "auction round"): how many, and the p50 of each part. */
function auctionRounds(bid: ManagedProcess, from: number, to: number): AuctionRounds {
  const lines = bid.lines.filter((l) => l.msg === "auction round" && Number(l.time) >= from && Number(l.time) <= to);
  // A round whose jobs all went to standing bids ran no auction: it has no bid or record times.
  const p50 = (key: string) => median(lines.map((l) => Number(l[key])).filter(Number.isFinite));
  const sum = (key: string) => lines.reduce((n, l) => n + (Number(l[key]) || 0), 0);
  return { rounds: lines.length, jobs: p50("jobs"), windowMs: p50("windowMs"), selectMs: p50("selectMs"), bidsMs: p50("bidsMs"), recordMs: p50("recordMs"), offers: sum("offers"), answers: sum("answers"), claimed: sum("jobs"), standing: sum("standing") };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** Jobs in the database by state (split mode), to check that what the agents saw was stored. */
async function jobsByState(databaseUrl: string): Promise<Record<string, number>> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ state: string; n: string }>(`SELECT state, count(*) AS n FROM "scheduler"."jobs" GROUP BY state`);
    return Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
  } finally {
    await client.end();
  }
}

/** What the control plane costs with its agents connected and no jobs. */
interface IdleRun {
  sec: number;
  /** Fraction of one core per process, as in ThroughputRun.cpu. */
  cpu: Record<string, number>;
  /** Context switches per second per process. */
  switchesPerSec: Record<string, number>;
}

/** IDLE_SEC with nothing submitted, after the warm-up's work has settled. */
async function idle(plane: Plane, load: Load): Promise<IdleRun> {
  await new Promise((r) => setTimeout(r, 2000));
  // Per "job" with IDLE_SEC jobs is per second.
  const { cpu, switchesPerJob } = await withCpu(plane, load, IDLE_SEC, () => new Promise<object>((r) => setTimeout(() => r({}), IDLE_SEC * 1000)));
  return { sec: IDLE_SEC, cpu: cpu!, switchesPerSec: switchesPerJob! };
}

interface ModeResult {
  mode: Mode;
  jobsPerRun: number;
  warmup: ThroughputRun;
  idle?: IdleRun;
  throughput: ThroughputRun[];
  throughputMedian: number;
  curve: ThroughputRun[];
  batched?: ThroughputRun;
  latency: LatencyRun[];
  latencyMedian: { p50: number; p99: number };
  rateCurve: LatencyRun[];
  /** Jobs left in a non-final state at the end (dev: ListJobs), or every job by state (split: SQL). */
  finalCheck: Record<string, number>;
  profile?: { run: ThroughputRun; processes: Record<string, ProfileSummary> };
}

/** BENCH_SCHED_PROBE_RATE: one latency run and its hops on stdout, then exit (a diagnosis of fixed delays). */
async function probe(plane: Plane, load: Load, rate: number): Promise<never> {
  const clockUs = () => Number(process.hrtime.bigint() / 1000n);
  progress(`scheduling ${plane.mode}: probe at ${rate} jobs/s for ${LATENCY_SEC} s`);
  const startUs = clockUs();
  const run = await withCpu(plane, load, rate * LATENCY_SEC, () => load.run<LatencyRun>({ cmd: "latency", rate, sec: LATENCY_SEC }));
  const endUs = clockUs();
  const { submitToAssignment, hops, cpu, cpuMsPerJob, switchesPerJob, rounds } = run;
  console.log(JSON.stringify({ mode: plane.mode, rate, submitToAssignment, hops, cpu, cpuMsPerJob, switchesPerJob, rounds }, null, 1));
  // With BENCH_SCHED_PROFILE_DIR the services ran with --cpu-prof: their self time within the probe.
  if (Object.keys(plane.profileDirs).length > 0) {
    await load.stop();
    await stopPlane(plane);
    for (const [name, d] of Object.entries(plane.profileDirs)) {
      const file = readdirSync(d).find((f) => f.endsWith(".cpuprofile"));
      if (file) console.log(name, JSON.stringify(summarizeProfile(join(d, file), { windowUs: { startUs, endUs }, top: 25 }), null, 1));
    }
  }
  throw new Error("probe done (BENCH_SCHED_PROBE_RATE): nothing saved");
}

async function measureMode(cleanup: Cleanup, mode: Mode, deadline: number): Promise<ModeResult> {
  // An optional step starts only if this mode's share of the budget leaves it room.
  const room = (step: string, needMs: number) => {
    if (performance.now() + needMs <= deadline && (!QUICK || step === "the profiled run")) return true;
    skipped.push(`${mode}: ${step}`);
    progress(`scheduling ${mode}: ${QUICK ? "quick run:" : "no time left for"} ${step}; skipped`);
    return false;
  };
  progress(`scheduling ${mode}: starting the services`);
  const plane = await startPlane(cleanup, mode, PROBE_RATE ? process.env.BENCH_SCHED_PROFILE_DIR : undefined);
  const load = await Load.start(cleanup, plane);
  progress(`scheduling ${mode}: ${AGENTS} agents registered; warm-up`);
  // A probe may come after a longer history (BENCH_SCHED_PROBE_AFTER): what a long-lived plane has to carry.
  const warmupJobs = PROBE_RATE !== undefined && PROBE_AFTER ? PROBE_AFTER : FIXED_JOBS ? Math.min(500, FIXED_JOBS) : 500;
  const warmup = await throughput(plane, load, warmupJobs, 64);
  if (PROBE_RATE === 0) {
    console.log(JSON.stringify({ mode, idle: await idle(plane, load) }, null, 1));
    throw new Error("probe done (BENCH_SCHED_PROBE_RATE=0, idle): nothing saved");
  }
  if (PROBE_RATE) await probe(plane, load, PROBE_RATE);
  const idleRun = IDLE_SEC > 0 && !QUICK ? await idle(plane, load) : undefined;
  if (idleRun) progress(`scheduling ${mode}: idle for ${IDLE_SEC} s: ${idleCell(idleRun)}`);
  const jobsPerRun = FIXED_JOBS ?? Math.min(20_000, Math.max(500, Math.round((warmup.jobsPerSec * RUN_SEC) / 500) * 500));
  const runs: ThroughputRun[] = [];
  for (let i = 0; i < (QUICK ? 1 : REPEATS); i++) {
    runs.push(await throughput(plane, load, jobsPerRun, CONCURRENCY, MAIN_BATCH));
    progress(`scheduling ${mode}: throughput ${i + 1}/${REPEATS}: ${runs.at(-1)!.jobsPerSec} jobs/s (${jobsPerRun} jobs, ${CONCURRENCY} in flight)`);
  }
  const curve: ThroughputRun[] = [];
  const runMs = median(runs.map((r) => r.ms)) + 1000;
  for (const c of CONCURRENCY_CURVE) {
    if (!room(`throughput at ${c} in flight`, runMs + (LATENCY_SEC + 2) * 1000 * REPEATS)) continue;
    curve.push(await throughput(plane, load, jobsPerRun, c));
    progress(`scheduling ${mode}: throughput at ${c} in flight: ${curve.at(-1)!.jobsPerSec} jobs/s`);
  }
  // The same jobs submitted 100 to a SubmitJobs call, 4 calls in flight: what a client that enqueues in bulk gets.
  let batched: ThroughputRun | undefined;
  if (room(`throughput with SubmitJobs batches of ${BATCH}`, runMs)) {
    batched = await throughput(plane, load, jobsPerRun, 4, BATCH);
    progress(`scheduling ${mode}: throughput with SubmitJobs batches of ${BATCH}: ${batched.jobsPerSec} jobs/s`);
  }
  // A rate well above what this plane just sustained only measures a growing
  // queue (and may not drain within the time limit): say so instead.
  const capacity = median(runs.map((r) => r.jobsPerSec));
  const sustainable = (rate: number) => {
    if (rate <= capacity * 1.5) return true;
    skipped.push(`${mode}: latency at ${rate}/s (above the ${Math.round(capacity)} jobs/s it sustained)`);
    return false;
  };
  const latency: LatencyRun[] = [];
  for (let i = 0; i < REPEATS && sustainable(TARGET_RATE) && room(`latency at ${TARGET_RATE}/s`, (LATENCY_SEC + 2) * 1000); i++) {
    latency.push(await load.run<LatencyRun>({ cmd: "latency", rate: TARGET_RATE, sec: LATENCY_SEC }));
    const l = latency.at(-1)!.submitToAssignment;
    progress(`scheduling ${mode}: latency at ${TARGET_RATE}/s ${i + 1}/${REPEATS}: p50 ${l.p50} ms, p99 ${l.p99} ms`);
  }
  const rateCurve: LatencyRun[] = [];
  for (const rate of RATE_CURVE) {
    if (!sustainable(rate) || !room(`latency at ${rate}/s`, (LATENCY_SEC + 2) * 1000)) continue;
    rateCurve.push(await load.run<LatencyRun>({ cmd: "latency", rate, sec: LATENCY_SEC }));
    const l = rateCurve.at(-1)!.submitToAssignment;
    progress(`scheduling ${mode}: latency at ${rate}/s: p50 ${l.p50} ms, p99 ${l.p99} ms`);
  }
  const finalCheck = plane.databaseUrl ? await jobsByState(plane.databaseUrl) : await load.run<Record<string, number>>({ cmd: "unfinished" });
  await load.stop();
  await stopPlane(plane);
  const result: ModeResult = {
    mode,
    jobsPerRun,
    warmup,
    idle: idleRun,
    throughput: runs,
    throughputMedian: median(runs.map((r) => r.jobsPerSec)),
    curve,
    batched,
    latency,
    latencyMedian: latency.length
      ? { p50: median(latency.map((l) => l.submitToAssignment.p50)), p99: median(latency.map((l) => l.submitToAssignment.p99)) }
      : { p50: NaN, p99: NaN },
    rateCurve,
    finalCheck,
  };
  if (PROFILE && room("the profiled run", runMs + 20_000)) result.profile = await profileMode(cleanup, mode, jobsPerRun);
  return result;
}

/** One throughput run on fresh services started with --cpu-prof; self time within the run, per process. */
async function profileMode(cleanup: Cleanup, mode: Mode, jobs: number): Promise<ModeResult["profile"]> {
  const keep = process.env.BENCH_SCHED_PROFILE_DIR;
  const dir = keep ?? mkdtempSync(join(tmpdir(), "drover-bench-prof-"));
  if (!keep) cleanup.defer(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  progress(`scheduling ${mode}: profiled run (--cpu-prof, fresh services)`);
  const plane = await startPlane(cleanup, mode, dir);
  const load = await Load.start(cleanup, plane);
  await throughput(plane, load, Math.min(500, jobs), 64);
  const run = await throughput(plane, load, jobs, CONCURRENCY, MAIN_BATCH);
  progress(`scheduling ${mode}: profiled run: ${run.jobsPerSec} jobs/s`);
  await load.stop();
  // The profiles are written when the processes exit.
  await stopPlane(plane);
  const processes: Record<string, ProfileSummary> = {};
  for (const [name, d] of Object.entries(plane.profileDirs)) {
    const file = readdirSync(d).find((f) => f.endsWith(".cpuprofile"));
    if (file) processes[name] = summarizeProfile(join(d, file), { windowUs: run.clock, top: 15 });
  }
  return { run, processes };
}

// ---- Report ------------------------------------------------------------------------

const pass = (ok: boolean) => (ok ? "PASS" : "FAIL");
const ms = (v: number) => `${round(v, 1)} ms`;
const cpuCell = (r: ThroughputRun) =>
  Object.entries(r.cpu ?? {})
    .map(([n, v]) => (n === "machine" ? `machine ${Math.round(v * 100)}%` : `${n} ${Math.round(v * 100)}% (${r.cpuMsPerJob?.[n] ?? "?"} ms/job)`))
    .join(", ");

const idleCell = (r: IdleRun) =>
  Object.entries(r.cpu)
    .map(([n, v]) => (n === "machine" ? `machine ${round(v * 100, 1)}%` : `${n} ${round(v * 100, 1)}% (${r.switchesPerSec[n] ?? "?"} switches/s)`))
    .join(", ");

function tableFor(r: ModeResult): [string, string, string][] {
  const target = TARGET[r.mode];
  const rows: [string, string, string][] = [];
  const t = r.throughput;
  rows.push([
    `${r.mode}: throughput, ${CONCURRENCY} in flight`,
    `${r.throughputMedian} jobs/s`,
    `≥ ${target}: ${pass(r.throughputMedian >= target)} (${round((r.throughputMedian / target) * 100, 0)} % of target); runs ${t.map((x) => x.jobsPerSec).join(", ")}; ${r.jobsPerRun} jobs each`,
  ]);
  const mid = [...t].sort((a, b) => a.jobsPerSec - b.jobsPerSec)[t.length >> 1]!;
  rows.push([`${r.mode}: CPU in the median run (of one core)`, cpuCell(mid), "load = the agents and submitters"]);
  if (r.idle) rows.push([`${r.mode}: idle, ${AGENTS} agents, no jobs (of one core)`, idleCell(r.idle), `${r.idle.sec} s after the warm-up settled; switches: context switches, each a wake-up or a preemption`]);
  if (mid.rounds) {
    const a = mid.rounds;
    rows.push([
      `${r.mode}: auction rounds in the median run (p50)`,
      `${a.rounds} rounds of ${a.jobs} jobs; select ${round(a.selectMs, 2)} / bids ${round(a.bidsMs, 2)} (window ${a.windowMs}) / record ${round(a.recordMs, 2)} ms`,
      `Bid, from a claim's answer to placements recorded; ${a.answers} of ${a.offers} offers answered in the window; ${a.standing} of ${a.claimed} claimed jobs placed on standing bids (no offer)`,
    ]);
  }
  rows.push([
    `${r.mode}: hops in the median run (p50)`,
    `${ms(mid.hops.submitToResponse.p50)} / ${ms(mid.hops.submitToOffer.p50)} / ${ms(mid.hops.offerToAssignment.p50)} / ${ms(mid.hops.assignmentToSucceededAck.p50)}`,
    "submit→answer / submit→offer / offer→assignment (jobs that were auctioned; a standing bid places a job with no offer) / assignment→succeeded committed",
  ]);
  for (const c of r.curve) rows.push([`${r.mode}: throughput, ${c.concurrency} in flight`, `${c.jobsPerSec} jobs/s`, `one run; submits accepted at ${c.submitPerSec}/s`]);
  if (r.batched) {
    const b = r.batched;
    rows.push([
      `${r.mode}: throughput, SubmitJobs of ${b.batch}`,
      `${b.jobsPerSec} jobs/s`,
      `one run, ${b.concurrency} calls in flight; submits accepted at ${b.submitPerSec}/s; CPU ${cpuCell(b)}${b.rounds ? `; ${b.rounds.rounds} auction rounds of ${b.rounds.jobs} jobs, bids ${b.rounds.bidsMs} ms, record ${b.rounds.recordMs} ms (p50)` : ""}`,
    ]);
  }
  if (r.latency.length === 0) rows.push([`${r.mode}: submit→Assignment at ${TARGET_RATE}/s`, "not measured", "skipped (see the conclusion)"]);
  else rows.push([
    `${r.mode}: submit→Assignment at ${TARGET_RATE}/s`,
    `p50 ${ms(r.latencyMedian.p50)}, p99 ${ms(r.latencyMedian.p99)}`,
    `p50 ≤ 2 ms: ${pass(r.latencyMedian.p50 <= TARGET.p50Ms)}, p99 ≤ 10 ms: ${pass(r.latencyMedian.p99 <= TARGET.p99Ms)}; runs p50 ${r.latency.map((l) => l.submitToAssignment.p50).join(", ")}; p99 ${r.latency.map((l) => l.submitToAssignment.p99).join(", ")}`,
  ]);
  const l = [...r.latency].sort((a, b) => a.submitToAssignment.p50 - b.submitToAssignment.p50)[r.latency.length >> 1];
  if (l) rows.push([
    `${r.mode}: hops at ${TARGET_RATE}/s (p50)`,
    `${ms(l.hops.submitToResponse.p50)} / ${ms(l.hops.submitToOffer.p50)} / ${ms(l.hops.offerToAssignment.p50)} / ${ms(l.hops.assignmentToSucceededAck.p50)}`,
    "submit→answer / submit→offer / offer→assignment (jobs that were auctioned; a standing bid places a job with no offer) / assignment→succeeded committed",
  ]);
  for (const c of r.rateCurve) {
    rows.push([
      `${r.mode}: submit→Assignment at ${c.rate}/s`,
      `p50 ${ms(c.submitToAssignment.p50)}, p99 ${ms(c.submitToAssignment.p99)}`,
      `one run; offered ${c.offeredRate}/s${c.complete ? "" : `; only ${c.succeeded}/${c.jobs} succeeded in time`}`,
    ]);
  }
  const errors = [...r.throughput, ...r.curve].reduce((n, x) => n + Object.values(x.errors).reduce((a, b) => a + b, 0), 0);
  const incomplete = [...r.throughput, ...r.curve, ...r.latency, ...r.rateCurve].filter((x) => !x.complete).length;
  rows.push([`${r.mode}: jobs at the end`, JSON.stringify(r.finalCheck), `submit errors ${errors}; runs not complete ${incomplete}`]);
  if (r.profile) {
    for (const [name, p] of Object.entries(r.profile.processes)) {
      const top = p.files.filter((f) => !f.name.startsWith("(")).slice(0, 4).map((f) => `${f.name} ${f.percent}%`).join(", ");
      rows.push([`${r.mode}: profile ${name} (${r.profile.run.jobsPerSec} jobs/s)`, `idle ${p.idlePercent}%, GC ${p.gcPercent}%`, top]);
    }
  }
  return rows;
}

function printProfiles(r: ModeResult): void {
  if (!r.profile) return;
  for (const [name, p] of Object.entries(r.profile.processes)) {
    console.log(`\n${r.mode} ${name}: ${p.sampledMs} ms sampled${p.windowed ? " within the run" : " (whole process: the window missed)"}; idle ${p.idlePercent} %, GC ${p.gcPercent} %`);
    console.log("  self time by file / package:");
    for (const f of p.files) console.log(`    ${String(f.percent).padStart(5)} %  ${f.name}`);
    console.log("  self time by function:");
    for (const f of p.functions) console.log(`    ${String(f.percent).padStart(5)} %  ${f.name}`);
  }
}

await runBenchmark("scheduling", async (cleanup) => {
  const results: ModeResult[] = [];
  const speed: { when: string; calibrationMs: number }[] = [];
  for (const [i, mode] of MODES.entries()) {
    speed.push({ when: `before ${mode}`, calibrationMs: calibrate() });
    const left = began + BUDGET_MS - performance.now();
    results.push(await measureMode(cleanup, mode, performance.now() + left / (MODES.length - i)));
  }
  speed.push({ when: "at the end", calibrationMs: calibrate() });
  const table: [string, string, string][] = [
    [
      "machine speed",
      speed.map((s) => `${s.calibrationMs} ms ${s.when}`).join(", "),
      "calibrate() in bench/harness.ts: fixed single-threaded work, lower is faster; compare figures only between runs at a like speed",
    ],
    ...results.flatMap(tableFor),
  ];
  const conclusion = results.map((r) => {
    const target = TARGET[r.mode];
    return (
      `${r.mode}: ${r.throughputMedian} jobs/s submit→succeeded (target ${target}: ${r.throughputMedian >= target ? "met" : `missed by ${round((1 - r.throughputMedian / target) * 100, 0)} %`}); ` +
      `submit→Assignment at ${TARGET_RATE}/s p50 ${ms(r.latencyMedian.p50)}, p99 ${ms(r.latencyMedian.p99)} (targets 2 / 10 ms).`
    );
  });
  printTable(`scheduling (${AGENTS} simulated agents on real streams; events ${EVENTS}; ${QUICK ? "QUICK: one throughput run, a diagnosis" : `medians of ${REPEATS} runs unless "one run"`})`, table);
  for (const r of results) printProfiles(r);
  console.log("");
  if (skipped.length) conclusion.push(`${QUICK ? "Skipped (BENCH_SCHED_QUICK=1)" : "Skipped for lack of time (a busy machine)"}: ${skipped.join("; ")}.`);
  for (const line of conclusion) console.log(line);
  const file = writeResult({
    benchmark: "scheduling",
    date: new Date().toISOString(),
    machine: machine(),
    durationSec: round((performance.now() - began) / 1000),
    table,
    conclusion,
    details: {
      agents: AGENTS,
      events: EVENTS,
      agentSocketsNoDelay: NO_DELAY,
      loadClient: CLIENT,
      quick: QUICK,
      skipped,
      concurrency: CONCURRENCY,
      targetRate: TARGET_RATE,
      latencySec: LATENCY_SEC,
      done: "a job is done when its agent receives Fleet's EventAck for the SUCCEEDED event, sent after the Scheduler committed it",
      speed,
      modes: results,
    },
  });
  console.log(`results: ${file}`);
});
