// How many agents one Fleet process holds: N simulated agents (a separate
// process, bench/fleet_load/agents.ts; real gRPC streams, real Hello and
// Heartbeats every 5 s, spread evenly) connect to ONE split-mode Fleet on a
// fresh PostgreSQL database and a Redis prefix of its own. For each N, after
// every stream is open and a warm-up, Fleet is watched from outside for a
// steady-state window:
//
//   CPU   /proc/<pid>/stat user+system over the window (fraction of one core)
//   RSS   /proc/<pid>/status VmRSS every second (median), and per agent:
//         (RSS at N − RSS with no agent) / N
//   p99   heartbeat handling latency, by proxy: Fleet handles a heartbeat on
//         the event loop when its frame is read (a few field writes), so how
//         late the loop runs is how late heartbeats are handled. Fleet logs
//         its event-loop delay histogram at debug every 5 s ("fleet load",
//         services/fleet/load_log.ts); the figure is the worst 5 s p99 in
//         the window.
//
// Targets (issue 3): 10,000 agents at 5 s heartbeats, < 1 core, < 1 GiB RSS,
// p99 < 100 ms. Before the load, a real drover-agent runs against the same
// Fleet for a warm-up and a window: its RSS and CPU% idle (targets ≤ 60 MiB,
// ≤ 0.5 %), in the form operators run (the bundle scripts/build-agent.sh
// makes, with the Node flags of its #! line; built into dist/ for the run,
// removed after), and with BENCH_FLEET_IDLE_AGENT=both also as agent/bin.mjs
// (drover-agent on PATH: its bundle, cached in node_modules/.cache/drover)
// and as agent/bin.mjs with DROVER_AGENT_BUNDLE=0 (tsx compiling TypeScript
// at run time), for comparison.
//
//   node --import tsx bench/fleet_load.ts                  1k and 5k agents (npm run bench)
//   BENCH_FLEET_AGENTS=1000,5000,10000 node --import tsx bench/fleet_load.ts
//   BENCH_FLEET_CONNECTIONS=shared ...                      all agents on one HTTP/2 connection
//   BENCH_FLEET_WINDOW_SEC=30 (default)
//   BENCH_FLEET_IDLE_AGENT=0                                skip the idle drover-agent
//   BENCH_FLEET_IDLE_AGENT=both                             agent/bin.mjs, cached bundle and tsx, too, after the bundle (+80 s)
//   BENCH_FLEET_NODE_ARGS=--max-semi-space-size=64       Node/V8 flags for Fleet alone
//   BENCH_FLEET_HEAP_SNAPSHOT=/tmp/dir                      a heap snapshot of Fleet after the last level
//
// Results: bench/results/fleet_load.json.

import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { bearer } from "../lib/clients.ts";
import {
  buildAgentBundle,
  hashbangNodeFlags,
  cpuMsOf,
  machine,
  printTable,
  progress,
  round,
  rssOf,
  runBenchmark,
  sleep,
  spawnNode,
  writeResult,
  type Cleanup,
  type ManagedProcess,
  splitBackends,
} from "./harness.ts";

const LEVELS = (process.env.BENCH_FLEET_AGENTS ?? "1000,5000").split(",").map(Number);
const CONNECTIONS = process.env.BENCH_FLEET_CONNECTIONS === "shared" ? "shared" : "per-agent";
const WINDOW_SEC = Number(process.env.BENCH_FLEET_WINDOW_SEC ?? 30);
/** After the last stream opened: two heartbeat intervals, so every agent has beaten and connect-time garbage is collected. */
const WARMUP_SEC = 10;
const HEARTBEAT_MS = 5000;
const REGISTRATION_TOKENS = 16;
const AGENT_WARMUP_SEC = 10;
const AGENT_WINDOW_SEC = 30;
/** A directory: Fleet writes a heap snapshot there after the last level (for investigating memory; slow, large). */
const HEAP_SNAPSHOT_DIR = process.env.BENCH_FLEET_HEAP_SNAPSHOT;
/** Which forms of drover-agent are measured idle: the bundle; "both": then agent/bin.mjs too, from its cached bundle and through tsx; "0": none (when only Fleet is of interest). */
const AGENT_FORMS: AgentForm[] =
  process.env.BENCH_FLEET_IDLE_AGENT === "0" ? [] : process.env.BENCH_FLEET_IDLE_AGENT === "both" ? ["bundle", "bin", "tsx"] : ["bundle"];
const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

const MiB = 2 ** 20;
const TARGET = { agents: 10_000, cpuCores: 1, rssBytes: 2 ** 30, p99Ms: 100, agentRssBytes: 60 * MiB, agentCpuPercent: 0.5 };

interface Window {
  sec: number;
  cpuCores: number;
  rssMedian: number;
  rssMax: number;
  rssSamples: number[];
}

/** CPU (fraction of one core) and RSS (sampled every second) of a process over `sec`. */
async function watch(pid: number, sec: number): Promise<Window> {
  const cpu0 = (await cpuMsOf(pid))!;
  const t0 = performance.now();
  const rssSamples: number[] = [];
  for (let i = 0; i < sec; i++) {
    await sleep(1000);
    rssSamples.push((await rssOf(pid))!);
  }
  const cpu1 = (await cpuMsOf(pid))!;
  const elapsed = performance.now() - t0;
  const sorted = [...rssSamples].sort((a, b) => a - b);
  return {
    sec: round(elapsed / 1000),
    cpuCores: round((cpu1 - cpu0) / elapsed, 4),
    rssMedian: sorted[sorted.length >> 1]!,
    rssMax: sorted.at(-1)!,
    rssSamples,
  };
}

/** Fleet's "fleet load" lines logged since `since` (an index into its lines). */
function loadLines(fleet: ManagedProcess, since: number) {
  return fleet.lines.slice(since).filter((l) => l.msg === "fleet load") as unknown as {
    sessions: number;
    heartbeatsPerSec: number;
    eventLoopDelayMs: { p50: number; p99: number; max: number };
    heapUsedMiB: number;
    heapTotalMiB: number;
    externalMiB: number;
    rssMiB: number;
    gc?: { pauses: number; totalMs: number; maxMs: number; minorMs?: number; minorMaxMs?: number };
    involuntarySwitches?: number;
  }[];
}

/** A fresh database and Redis prefix, and Fleet on them in split mode; resolves its process and gRPC URL. */
async function startFleet(cleanup: Cleanup) {
  const { env, adminToken } = await splitBackends(cleanup);
  const snapshotArgs = HEAP_SNAPSHOT_DIR ? ["--heapsnapshot-signal=SIGUSR2", `--diagnostic-dir=${HEAP_SNAPSHOT_DIR}`] : [];
  // Node/V8 flags for Fleet alone, to compare (V8 flags are not all allowed in NODE_OPTIONS).
  const nodeArgs = (process.env.BENCH_FLEET_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const fleet = spawnNode(cleanup, "fleet", [...nodeArgs, ...snapshotArgs, "--import", "tsx", "services/fleet/main.ts"], {
    ...env,
    DROVER_GRPC_PORT: "0",
    DROVER_HTTP_PORT: "0",
    // For the "fleet load" lines; nothing is logged per heartbeat at debug.
    DROVER_LOG_LEVEL: "debug",
    DROVER_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS),
  });
  const ready = await fleet.waitForLine((l) => l.msg === "ready", 30_000);
  return { fleet, grpcUrl: String(ready.grpcUrl), adminToken };
}

/**
 * How drover-agent is run: the bundle as its own executable (as shipped);
 * agent/bin.mjs (on PATH from a checkout: its bundle, cached); the same with
 * DROVER_AGENT_BUNDLE=0 (tsx at run time).
 */
type AgentForm = "bundle" | "bin" | "tsx";


/** A real drover-agent, idle, against Fleet: its RSS and CPU after a warm-up. */
async function measureIdleAgent(cleanup: Cleanup, grpcUrl: string, token: string, form: AgentForm) {
  const stateDir = mkdtempSync(join(tmpdir(), "drover-bench-agent-"));
  cleanup.defer(`remove ${stateDir}`, () => rmSync(stateDir, { recursive: true, force: true }));
  const entry = form === "bundle" ? buildAgentBundle(cleanup, "fleet-load") : join(ROOT, "agent", "bin.mjs");
  const agent = spawnNode(cleanup, `drover-agent (${form})`, [...hashbangNodeFlags(entry), entry, "--server", grpcUrl, "--token", token, "--state-dir", stateDir], {
    DROVER_LOG_LEVEL: "info",
    ...(form === "tsx" ? { DROVER_AGENT_BUNDLE: "0" } : {}),
  });
  try {
    await agent.waitForLine((l) => l.msg === "connected to Fleet", 30_000);
    await sleep(AGENT_WARMUP_SEC * 1000);
    const w = await watch(agent.pid, AGENT_WINDOW_SEC);
    return { form, ...w, cpuPercent: round(w.cpuCores * 100, 2) };
  } finally {
    await agent.stop();
  }
}

interface Level {
  agents: number;
  open: number;
  failed: number;
  rampSec: number;
  fleet: Window & { rssPerAgent: number };
  eventLoopDelayP99Ms: number;
  eventLoopDelayP99MedianMs: number;
  eventLoopDelayMaxMs: number;
  /** Garbage-collection pauses in the window: the longest, and their share of the time. */
  gcMaxPauseMs: number;
  gcPercent: number;
  /** The same for scavenges (young generation) alone. */
  gcMinorMaxPauseMs: number;
  gcMinorPercent: number;
  /** Times per second the kernel took the CPU away from Fleet (a busy machine). */
  involuntarySwitchesPerSec: number;
  heartbeatsPerSec: number;
  heapUsedMiB: number;
  heapTotalMiB: number;
  externalMiB: number;
  /** Fleet's "fleet load" lines in the window. */
  loadLines: ReturnType<typeof loadLines>;
  clientRss: number;
  clientErrors: Record<string, number>;
}

async function measureLevel(fleet: ManagedProcess, client: ManagedProcess, agents: number, baselineRss: number): Promise<Level> {
  const status = () => client.lines.filter((l) => "open" in l).at(-1) as { open: number; failed: number; ended: number; rss: number; errors: Record<string, number> } | undefined;
  const rampStarted = performance.now();
  client.child.stdin!.write(JSON.stringify({ target: agents }) + "\n");
  const deadline = rampStarted + 240_000;
  for (;;) {
    await sleep(500);
    const s = status();
    if (s && s.open >= agents) break;
    if (s && s.open + s.failed + s.ended >= agents && s.failed + s.ended > 0) break;
    if (performance.now() > deadline) throw new Error(`${agents} agents: only ${s?.open ?? 0} streams open after 240 s`);
    if (!fleet.running) throw new Error(`fleet exited: ${fleet.stderr}`);
  }
  const rampSec = round((performance.now() - rampStarted) / 1000);
  progress(`fleet_load: ${agents} agents: ${status()!.open} open after ${rampSec} s; warm-up ${WARMUP_SEC} s, window ${WINDOW_SEC} s`);
  await sleep(WARMUP_SEC * 1000);
  const since = fleet.lines.length;
  const w = await watch(fleet.pid, WINDOW_SEC);
  // The next load line closes the last 5 s of the window.
  await fleet.waitForLine((l) => l.msg === "fleet load" && fleet.lines.indexOf(l) >= since, 10_000).catch(() => {});
  const loads = loadLines(fleet, since);
  const p99s = loads.map((l) => l.eventLoopDelayMs.p99).sort((a, b) => a - b);
  const s = status()!;
  return {
    agents,
    open: s.open,
    failed: s.failed,
    rampSec,
    fleet: { ...w, rssPerAgent: Math.round((w.rssMedian - baselineRss) / s.open) },
    eventLoopDelayP99Ms: p99s.at(-1) ?? NaN,
    eventLoopDelayP99MedianMs: p99s[p99s.length >> 1] ?? NaN,
    eventLoopDelayMaxMs: Math.max(...loads.map((l) => l.eventLoopDelayMs.max)),
    gcMaxPauseMs: Math.max(0, ...loads.map((l) => l.gc?.maxMs ?? 0)),
    gcPercent: round((loads.reduce((sum, l) => sum + (l.gc?.totalMs ?? 0), 0) / (loads.length * 5000)) * 100, 2),
    gcMinorMaxPauseMs: Math.max(0, ...loads.map((l) => l.gc?.minorMaxMs ?? 0)),
    gcMinorPercent: round((loads.reduce((sum, l) => sum + (l.gc?.minorMs ?? 0), 0) / (loads.length * 5000)) * 100, 2),
    involuntarySwitchesPerSec: Math.round(loads.reduce((sum, l) => sum + (l.involuntarySwitches ?? 0), 0) / (loads.length * 5)),
    heartbeatsPerSec: loads[loads.length >> 1]?.heartbeatsPerSec ?? NaN,
    heapUsedMiB: loads.at(-1)?.heapUsedMiB ?? NaN,
    heapTotalMiB: loads.at(-1)?.heapTotalMiB ?? NaN,
    loadLines: loads,
    externalMiB: loads.at(-1)?.externalMiB ?? NaN,
    clientRss: s.rss,
    clientErrors: s.errors,
  };
}

const mib = (bytes: number) => `${Math.round(bytes / MiB)} MiB`;
const verdict = (ok: boolean) => (ok ? "PASS" : "FAIL");

await runBenchmark("fleet_load", async (cleanup) => {
  const began = performance.now();
  progress("fleet_load: starting Fleet (split mode, fresh database)");
  const { fleet, grpcUrl, adminToken } = await startFleet(cleanup);
  const admin = createClient(FleetService, createGrpcTransport({ baseUrl: grpcUrl, interceptors: [bearer(adminToken)] }));
  const tokens: string[] = [];
  for (let i = 0; i < REGISTRATION_TOKENS + 1; i++) {
    tokens.push((await admin.createAgentToken({ name: `bench-${i}`, labels: { bench: "fleet-load" } })).secret);
  }

  const agentToken = tokens.pop()!;
  const agentIdle: Awaited<ReturnType<typeof measureIdleAgent>>[] = [];
  for (const form of AGENT_FORMS) {
    progress(`fleet_load: a real drover-agent (${form}), idle, ${AGENT_WARMUP_SEC} s warm-up + ${AGENT_WINDOW_SEC} s`);
    agentIdle.push(await measureIdleAgent(cleanup, grpcUrl, agentToken, form));
  }

  await sleep(2000);
  const baseline = await watch(fleet.pid, 5);
  progress(`fleet_load: Fleet with no simulated agent: ${mib(baseline.rssMedian)}; ${CONNECTIONS} connections`);
  const client = spawnNode(cleanup, "simulated agents", ["--import", "tsx", "bench/fleet_load/agents.ts"], {
    FLEET_URL: grpcUrl,
    REGISTRATION_TOKENS: tokens.join(","),
    HEARTBEAT_MS: String(HEARTBEAT_MS),
    CONNECTIONS,
  }, "pipe");
  const levels: Level[] = [];
  for (const agents of LEVELS) levels.push(await measureLevel(fleet, client, agents, baseline.rssMedian));
  if (HEAP_SNAPSHOT_DIR) {
    progress(`fleet_load: heap snapshot of Fleet into ${HEAP_SNAPSHOT_DIR}`);
    const before = new Set(readdirSync(HEAP_SNAPSHOT_DIR));
    fleet.child.kill("SIGUSR2");
    // Written when a new .heapsnapshot file stops growing (Node writes it synchronously, then the loop runs again).
    let last = -1;
    for (let i = 0; i < 240; i++) {
      await sleep(1000);
      const file = readdirSync(HEAP_SNAPSHOT_DIR).find((f) => f.endsWith(".heapsnapshot") && !before.has(f));
      const size = file ? statSync(join(HEAP_SNAPSHOT_DIR, file)).size : -1;
      if (size > 0 && size === last) break;
      last = size;
    }
  }

  const table: [string, string, string][] = [
    ...agentIdle.map((a): [string, string, string] =>
      a.form === "bundle"
        ? [
            "drover-agent idle (bundle): RSS / CPU",
            `${mib(a.rssMedian)} / ${a.cpuPercent} %`,
            `target ≤ 60 MiB, ≤ 0.5 %: ${verdict(a.rssMedian <= TARGET.agentRssBytes && a.cpuPercent <= TARGET.agentCpuPercent)}`,
          ]
        : a.form === "bin"
          ? ["drover-agent idle (agent/bin.mjs, cached bundle): RSS / CPU", `${mib(a.rssMedian)} / ${a.cpuPercent} %`, "drover-agent on PATH from a checkout"]
          : ["drover-agent idle (agent/bin.mjs, tsx): RSS / CPU", `${mib(a.rssMedian)} / ${a.cpuPercent} %`, "for comparison: tsx compiles at run time"],
    ),
    ...(agentIdle.length === 0 ? [["drover-agent idle", "not measured", "BENCH_FLEET_IDLE_AGENT=0"] as [string, string, string]] : []),
    ["fleet, no agents: RSS", mib(baseline.rssMedian), `${CONNECTIONS} HTTP/2 connections below`],
  ];
  for (const l of levels) {
    const at10k = l.agents >= TARGET.agents;
    const pass = (ok: boolean) => (at10k ? `target: ${verdict(ok)}` : ok ? "within the 10k target" : "over the 10k target");
    table.push(
      [`${l.agents} agents: open (failed)`, `${l.open} (${l.failed})`, `ramp ${l.rampSec} s; ${l.heartbeatsPerSec} heartbeats/s handled`],
      [`${l.agents} agents: CPU (of one core)`, `${round(l.fleet.cpuCores * 100)} %`, `< 1 core: ${pass(l.fleet.cpuCores < TARGET.cpuCores)}`],
      [`${l.agents} agents: RSS (median; max)`, `${mib(l.fleet.rssMedian)}; ${mib(l.fleet.rssMax)}`, `< 1 GiB: ${pass(l.fleet.rssMax < TARGET.rssBytes)}`],
      [`${l.agents} agents: RSS per agent`, `${round(l.fleet.rssPerAgent / 1024)} KiB`, `V8 heap ${l.heapUsedMiB} MiB used of ${l.heapTotalMiB} MiB, external ${l.externalMiB} MiB`],
      [
        `${l.agents} agents: p99 event-loop delay`,
        `${round(l.eventLoopDelayP99Ms)} ms`,
        `worst 5 s p99 (median ${round(l.eventLoopDelayP99MedianMs)} ms, max ${round(l.eventLoopDelayMaxMs)} ms); < 100 ms: ${pass(l.eventLoopDelayP99Ms < TARGET.p99Ms)}`,
      ],
      [
        `${l.agents} agents: GC; preempted`,
        `${l.gcPercent} % of the time; ${l.involuntarySwitchesPerSec}/s`,
        `longest GC pause ${round(l.gcMaxPauseMs)} ms (scavenges: ${l.gcMinorPercent} %, longest ${round(l.gcMinorMaxPauseMs)} ms); involuntary context switches (other work on the machine)`,
      ],
    );
  }
  const last = levels.at(-1)!;
  const conclusion = [
    `${last.agents} agents on one Fleet (${CONNECTIONS} connections): ${round(last.fleet.cpuCores * 100)} % of a core, ` +
      `${mib(last.fleet.rssMedian)} RSS (${round(last.fleet.rssPerAgent / 1024)} KiB per agent), p99 event-loop delay ${round(last.eventLoopDelayP99Ms)} ms.`,
    ...(last.agents < TARGET.agents
      ? [`10k is opt-in: BENCH_FLEET_AGENTS=1000,5000,10000 (RSS at 10k ≈ ${mib(baseline.rssMedian + last.fleet.rssPerAgent * TARGET.agents)} by extrapolation).`]
      : []),
  ];
  printTable(`fleet_load (heartbeats every ${HEARTBEAT_MS / 1000} s; window ${WINDOW_SEC} s after ${WARMUP_SEC} s warm-up)`, table);
  for (const line of conclusion) console.log(line);
  const file = writeResult({
    benchmark: "fleet_load",
    date: new Date().toISOString(),
    machine: machine(),
    durationSec: round((performance.now() - began) / 1000),
    table,
    conclusion,
    details: {
      connections: CONNECTIONS,
      fleetNodeArgs: process.env.BENCH_FLEET_NODE_ARGS ?? "",
      heartbeatMs: HEARTBEAT_MS,
      windowSec: WINDOW_SEC,
      warmupSec: WARMUP_SEC,
      registration: `registration tokens (${REGISTRATION_TOKENS}, round-robin) through Hello, as a new agent does`,
      latency: "event-loop delay of Fleet (perf_hooks.monitorEventLoopDelay, 10 ms resolution), worst 5 s p99 in the window",
      agentIdle,
      baseline,
      levels,
    },
  });
  console.log(`results: ${file}`);
});
