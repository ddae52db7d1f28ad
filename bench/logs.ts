// Logs (issue 5, "Performance"), in split mode: Fleet, Scheduler, Bid and
// Log each their own process on PostgreSQL and Redis, and one real
// drover-agent running real commands.
//
//   ingestion  PRINTERS jobs at once, each printing MiB_TOTAL / PRINTERS of
//              100-byte lines as fast as it can (64 KiB writes). Measured
//              from the first byte stored to the last one: bytes stored in
//              Postgres (log.log_streams.next_offset, which moves only in
//              committed transactions) per second, lines per second, and the
//              CPU of the agent, Fleet, the Log service, PostgreSQL and Redis
//              (% of one core, and ms per MiB stored: where the time goes).
//              Target: ≥ 50 MiB/s durable on one Log process.
//   follow     FOLLOWERS jobs each printing 100 lines of 100 bytes every
//              10 ms (1 MiB/s each, 10 MiB/s in all with 10) for
//              FOLLOW_SEC; each line starts with the wall-clock time it was
//              written (performance.timeOrigin + now(), µs). One FollowLogs
//              per job, from this process; latency = receipt time − written
//              time, per line. Target: p99 < 100 ms. The tickers start
//              printing together START_DELAY_MS after they are submitted
//              (their processes and the follows have started by then). A
//              first, cold round of COLD_SEC (the first follow after the
//              services start) is measured apart and not held to the target.
//
//   node --import tsx bench/logs.ts          (npm run bench -- logs), ~2 min
//   BENCH_LOGS_MIB=256  BENCH_LOGS_PRINTERS=8  BENCH_LOGS_FOLLOWERS=10  BENCH_LOGS_FOLLOW_SEC=15
//   BENCH_LOGS_COLD_SEC=5  BENCH_LOGS_START_DELAY_MS=1000
//   BENCH_LOGS_CLIENT=connect   the followers and the bench's calls use connect-node's transport, not
//                               Drover's (lib/grpc_transport.ts, what the CLI and the SDK use)
//
// Results: bench/results/logs.json.

import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import pg from "pg";
import { AgentStatus, FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { FollowFrom, LogService, Stream } from "../gen/ts/drover/log/v1/log_service_pb.ts";
import { JobState, SchedulerService } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { bearer } from "../lib/clients.ts";
import { createDroverTransport } from "../lib/grpc_transport.ts";
import { onEachSession } from "../lib/http2_sessions.ts";
import {
  cpuMsOf,
  freePort,
  machine,
  percentiles,
  printTable,
  progress,
  round,
  runBenchmark,
  sleep,
  spawnNode,
  splitBackends,
  within,
  writeResult,
  type Cleanup,
  type ManagedProcess,
} from "./harness.ts";

const MiB = 2 ** 20;
const TOTAL_MIB = Number(process.env.BENCH_LOGS_MIB ?? 256);
const PRINTERS = Number(process.env.BENCH_LOGS_PRINTERS ?? 8);
const FOLLOWERS = Number(process.env.BENCH_LOGS_FOLLOWERS ?? 10);
const FOLLOW_SEC = Number(process.env.BENCH_LOGS_FOLLOW_SEC ?? 15);
const COLD_SEC = Number(process.env.BENCH_LOGS_COLD_SEC ?? 5);
const START_DELAY_MS = Number(process.env.BENCH_LOGS_START_DELAY_MS ?? 1000);
const TARGET = { ingestMiBps: 50, followP99Ms: 100 };
const debug = process.env.BENCH_LOGS_DEBUG === "1";
const CLIENT = process.env.BENCH_LOGS_CLIENT === "connect" ? "connect" : "drover";

/** argv[1]: bytes to print, in 100-byte lines, 64 KiB writes. */
const FLOOD = `const fs = require("fs"); let left = Number(process.argv[1]); const buf = Buffer.from(("x".repeat(99) + "\\n").repeat(655)); while (left > 0) { const n = Math.min(left, buf.length); fs.writeSync(1, buf, 0, n); left -= n; }`;
/** argv[1]: lines per 10 ms tick, argv[2]: ms to run. Every line starts with its write time. */
const TICKER = `const fs = require("fs"); const n = Number(process.argv[1]); const startAt = Number(process.argv[3] ?? 0); const end = Math.max(Date.now(), startAt) + Number(process.argv[2]); const tick = () => { const t = (performance.timeOrigin + performance.now()).toFixed(3); fs.writeSync(1, ("T=" + t + " ").padEnd(99, "y").concat("\\n").repeat(n)); if (Date.now() < end) setTimeout(tick, 10); }; setTimeout(tick, Math.max(0, startAt - Date.now()));`;

// Bytes that hold a ticker line's write time: "T=" + epoch ms with 3 decimals + " ".
const TIME_PREFIX_BYTES = 24;

/**
 * The write time a ticker put at the start of a line ("T=<epoch ms>.<µs> "),
 * read from its bytes: the benchmark's process follows 100 000 lines a
 * second on the services' machine, and a string and a regex per line were
 * a large share of its CPU (its own profile; 30-34 → 23-25 ms per MiB).
 */
function writtenAt(data: Uint8Array): number | undefined {
  if (data.length < 4 || data[0] !== 0x54 || data[1] !== 0x3d) return undefined;
  let i = 2;
  let ms = 0;
  for (; i < data.length && data[i]! >= 0x30 && data[i]! <= 0x39; i++) ms = ms * 10 + data[i]! - 0x30;
  if (data[i] !== 0x2e) return undefined;
  let fraction = 0;
  let scale = 1;
  for (i++; i < data.length && data[i]! >= 0x30 && data[i]! <= 0x39; i++) {
    fraction = fraction * 10 + data[i]! - 0x30;
    scale *= 10;
  }
  return data[i] === 0x20 ? ms + fraction / scale : undefined;
}

/** CPU ms used so far by every process whose command name is `comm` (/proc). */
async function cpuMsOfAll(comm: string): Promise<number> {
  let total = 0;
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() !== comm) continue;
      total += (await cpuMsOf(Number(pid))) ?? 0;
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

/**
 * The followers' connection to the Log service, with HTTP/2 receive windows
 * of a few MiB: Node's client keeps the connection's at 64 KiB, and 10 follows
 * at 1 MiB/s of output (~19 MiB/s of LogLines) then waited for a window
 * update, a round trip through both event loops, every 64 KiB: seconds of
 * latency with both processes busy. connect-node does not expose its
 * sessions; onEachSession (lib/http2_sessions.ts) reaches each one.
 */
function followerTransport(baseUrl: string, adminToken: string) {
  // Drover's transport (as `drover logs -f` and the TypeScript SDK) opens its connections with those windows itself.
  if (CLIENT === "drover") return createDroverTransport({ baseUrl, interceptors: [bearer(adminToken)] });
  const manager = onEachSession(new Http2SessionManager(baseUrl, undefined, { settings: { initialWindowSize: 1 << 20 } }), (session) => session.setLocalWindowSize(4 << 20));
  // No gzip either, as between Drover's services: log output compresses
  // tenfold, but zlib was the largest item of the Log service's profile
  // while followed (2.4 s of ~19 s busy) and the follower paid again to
  // inflate. A client across a slow link may prefer it: it asks, by default.
  return createGrpcTransport({ baseUrl, interceptors: [bearer(adminToken)], sessionManager: manager, acceptCompression: [] });
}

/** BENCH_LOGS_DEBUG: prints each process's CPU (% of a core) every `everyMs` until stop(). */
function sampleCpu(pids: Record<string, number>, everyMs = 1000): { stop(): void } {
  let last: Record<string, number> | undefined;
  let lastAt = performance.now();
  const timer = setInterval(async () => {
    const now: Record<string, number> = {};
    for (const [name, pid] of Object.entries(pids)) now[name] = (await cpuMsOf(pid)) ?? 0;
    const at = performance.now();
    if (last) progress(`cpu %: ${Object.keys(pids).map((n) => `${n} ${round(((now[n]! - last![n]!) / (at - lastAt)) * 100)}`).join(", ")}, load ${round(loadavg()[0]!)}`);
    last = now;
    lastAt = at;
  }, everyMs);
  return { stop: () => clearInterval(timer) };
}

interface Plane {
  procs: Record<string, ManagedProcess>;
  fleetUrl: string;
  schedulerUrl: string;
  logUrl: string;
  adminToken: string;
  databaseUrl: string;
}

async function startPlane(cleanup: Cleanup): Promise<Plane> {
  const { env, adminToken } = await splitBackends(cleanup);
  const ports = { fleet: await freePort(), scheduler: await freePort(), bid: await freePort(), log: await freePort() };
  const url = (port: number) => `http://127.0.0.1:${port}`;
  const shared = {
    ...env,
    DROVER_HTTP_PORT: "0",
    DROVER_LOG_LEVEL: "info",
    DROVER_FLEET_URL: url(ports.fleet),
    DROVER_SCHEDULER_URL: url(ports.scheduler),
    DROVER_LOG_URL: url(ports.log),
  };
  const ready = (l: Record<string, unknown>) => typeof l.msg === "string" && l.msg.includes("ready");
  const procs: Record<string, ManagedProcess> = {};
  for (const name of ["fleet", "scheduler", "log", "bid"] as const) {
    const level = name === "log" && debug ? { DROVER_LOG_LEVEL: "debug" } : {};
    // BENCH_LOGS_PROFILE=fleet,log (and agent): a CPU profile of those processes into /tmp/drover-bench-logs-prof.
    const profiled = (process.env.BENCH_LOGS_PROFILE ?? "").split(",").includes(name);
    const prof = profiled ? ["--cpu-prof", "--cpu-prof-dir=/tmp/drover-bench-logs-prof"] : [];
    procs[name] = spawnNode(cleanup, name, [...prof, "--import", "tsx", `services/${name}/main.ts`], { ...shared, ...level, DROVER_GRPC_PORT: String(ports[name]) });
    await procs[name].waitForLine(ready, 60_000);
  }
  return { procs, fleetUrl: shared.DROVER_FLEET_URL, schedulerUrl: shared.DROVER_SCHEDULER_URL, logUrl: shared.DROVER_LOG_URL, adminToken, databaseUrl: String(env.DATABASE_URL) };
}

await runBenchmark("logs", async (cleanup) => {
  const started = performance.now();
  const plane = await startPlane(cleanup);
  const transport = (baseUrl: string) =>
    CLIENT === "drover" ? createDroverTransport({ baseUrl, interceptors: [bearer(plane.adminToken)] }) : createGrpcTransport({ baseUrl, interceptors: [bearer(plane.adminToken)] });
  const fleet = createClient(FleetService, transport(plane.fleetUrl));
  const scheduler = createClient(SchedulerService, transport(plane.schedulerUrl));
  const logs = createClient(LogService, followerTransport(plane.logUrl, plane.adminToken));
  const sql = new pg.Pool({ connectionString: plane.databaseUrl, max: 2 });
  cleanup.defer("close the pg pool", () => sql.end());

  const stateDir = mkdtempSync(join(tmpdir(), "drover-bench-logs-"));
  cleanup.defer(`remove ${stateDir}`, () => rmSync(stateDir, { recursive: true, force: true }));
  const { secret } = await fleet.createAgentToken({ name: "bench-logs" });
  const agentProf = (process.env.BENCH_LOGS_PROFILE ?? "").split(",").includes("agent") ? ["--cpu-prof", "--cpu-prof-dir=/tmp/drover-bench-logs-prof"] : [];
  const agent = spawnNode(cleanup, "agent", [...agentProf, "--import", "tsx", "agent/main.ts", "--server", plane.fleetUrl, "--state-dir", stateDir, "--token", secret], {
    DROVER_LOG_LEVEL: "info",
  });
  await within(30_000, "the agent online", (async () => {
    while ((await fleet.listAgents({ status: AgentStatus.ONLINE })).agents.length === 0) await sleep(100);
  })());

  // No CPU requirement: the agent declines a job that needs more CPU than its last sample shows free,
  // and on a machine busy with other work that started some of the followed jobs tens of seconds late.
  const small = { cpuMillis: 0, memoryBytes: 16n * BigInt(MiB) };
  async function submit(argv: string[]): Promise<string> {
    const { job } = await scheduler.submitJob({ spec: { exec: { commands: [{ argv }] }, resources: small } });
    return job!.id;
  }
  async function waitEnded(ids: string[], ms: number): Promise<void> {
    await within(ms, "jobs ended", (async () => {
      for (const id of ids) {
        for (;;) {
          const { job } = await scheduler.getJob({ id });
          if (job && job.state >= JobState.SUCCEEDED) break;
          await sleep(200);
        }
      }
    })());
  }
  const storedBytes = async () => Number((await sql.query<{ n: string }>(`SELECT coalesce(sum(next_offset), 0)::text AS n FROM log.log_streams`)).rows[0]!.n);
  const completeStdout = async () => Number((await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM log.log_streams WHERE stream = 'stdout' AND complete`)).rows[0]!.n);

  // ---- Ingestion ------------------------------------------------------------------
  const perPrinter = Math.floor((TOTAL_MIB * MiB) / PRINTERS / 100) * 100;
  progress(`ingestion: ${PRINTERS} printers × ${round(perPrinter / MiB)} MiB`);
  const before = await storedBytes();
  const cpu0 = { agent: await cpuMsOf(agent.pid), fleet: await cpuMsOf(plane.procs.fleet!.pid), log: await cpuMsOf(plane.procs.log!.pid), postgres: await cpuMsOfAll("postgres"), redis: await cpuMsOfAll("redis-server") };
  const floodIds = await Promise.all(Array.from({ length: PRINTERS }, () => submit([process.execPath, "-e", FLOOD, String(perPrinter)])));
  let firstAt = 0;
  let lastAt = 0;
  const samples: { atMs: number; bytes: number }[] = [];
  await within(600_000, "every printer's output stored", (async () => {
    for (;;) {
      const bytes = (await storedBytes()) - before;
      const now = performance.now();
      samples.push({ atMs: now, bytes });
      if (bytes > 0 && firstAt === 0) firstAt = now;
      if (bytes >= perPrinter * PRINTERS) {
        lastAt = now;
        break;
      }
      await sleep(50);
    }
  })());
  const cpu1 = { agent: await cpuMsOf(agent.pid), fleet: await cpuMsOf(plane.procs.fleet!.pid), log: await cpuMsOf(plane.procs.log!.pid), postgres: await cpuMsOfAll("postgres"), redis: await cpuMsOfAll("redis-server") };
  await waitEnded(floodIds, 60_000);
  await within(60_000, "stdout streams complete", (async () => {
    while ((await completeStdout()) < PRINTERS) await sleep(100);
  })());
  const ingestSec = (lastAt - firstAt) / 1000;
  const totalBytes = perPrinter * PRINTERS;
  const mibPerSec = totalBytes / MiB / ingestSec;
  const cpuPct = (name: "agent" | "fleet" | "log" | "postgres" | "redis") => round((((cpu1[name] ?? 0) - (cpu0[name] ?? 0)) / (lastAt - firstAt)) * 100);
  // CPU per MiB stored: what each process spends on a byte, whatever else shares the machine (wall-clock rates do not).
  const cpuPerMiB = (name: "agent" | "fleet" | "log" | "postgres" | "redis") => round(((cpu1[name] ?? 0) - (cpu0[name] ?? 0)) / (totalBytes / MiB));

  // ---- Follow latency -------------------------------------------------------------
  // Tickers start printing together, START_DELAY_MS after they are submitted: their
  // processes and the follows have started by then, so the output flows at a steady
  // 10 MiB/s from its first line (not while ten Node processes start).
  interface FollowRound {
    latencies: number[];
    // The same latency in two parts, cut at the time the agent read the line (LogLine.time, ms):
    // write → read is the agent's (inotify, its flush delay, its send window); read → receipt the rest.
    toAgentMs: number[];
    fromAgentMs: number[];
    bySecond: number[][];
    lines: number;
  }
  async function followRound(seconds: number): Promise<FollowRound> {
    const round: FollowRound = { latencies: [], toAgentMs: [], fromAgentMs: [], bySecond: [], lines: 0 };
    const startAt = Date.now() + START_DELAY_MS;
    const startedAt = performance.now() + START_DELAY_MS;
    const ids = await Promise.all(Array.from({ length: FOLLOWERS }, () => submit([process.execPath, "-e", TICKER, "100", String(seconds * 1000), String(startAt)])));
    const follows = ids.map(async (jobId) => {
      // The first bytes of a line that came in pieces (partial), enough to hold its write time.
      let head: Uint8Array | undefined;
      for await (const res of logs.followLogs({ jobId, stream: Stream.STDOUT, from: FollowFrom.UNSPECIFIED })) {
        const now = performance.timeOrigin + performance.now();
        for (const line of res.lines) {
          if (head === undefined) head = line.data;
          else if (head.length < TIME_PREFIX_BYTES) head = Buffer.concat([head, line.data]);
          if (line.partial) continue;
          const written = writtenAt(head);
          head = undefined;
          if (written === undefined) continue;
          round.lines++;
          round.latencies.push(now - written);
          if (line.time) {
            const readMs = timestampMs(line.time);
            round.toAgentMs.push(readMs - written);
            round.fromAgentMs.push(now - readMs);
          }
          if (debug) (round.bySecond[Math.floor((written - performance.timeOrigin - startedAt) / 1000)] ??= []).push(now - written);
        }
      }
    });
    await within((seconds + 120) * 1000, "the follows ended", Promise.all(follows));
    return round;
  }

  // The first follow after the services start runs cold (the follow path's code running
  // for the first time in each process): on the AMD machine its first seconds waited
  // 0.5-1.3 s, on the Intel one its first second ~180 ms at p99. Measured and shown apart.
  progress(`follow, cold: ${FOLLOWERS} jobs × 1 MiB/s for ${COLD_SEC} s`);
  const coldSampler = debug ? sampleCpu({ agent: agent.pid, fleet: plane.procs.fleet!.pid, log: plane.procs.log!.pid }, 250) : undefined;
  const coldRound = await followRound(COLD_SEC);
  coldSampler?.stop();
  const cold = percentiles(coldRound.latencies);
  if (debug) {
    coldRound.bySecond.forEach((ms, sec) => progress(`follow, cold: lines written in second ${sec}: latency ${JSON.stringify(percentiles(ms))}`));
    progress(`follow, cold: write → agent read ${JSON.stringify(percentiles(coldRound.toAgentMs))}; agent read → receipt ${JSON.stringify(percentiles(coldRound.fromAgentMs))}`);
  }
  progress(`follow: ${FOLLOWERS} jobs × 1 MiB/s for ${FOLLOW_SEC} s`);
  const followStart = performance.now();
  const fcpu0 = { agent: await cpuMsOf(agent.pid), fleet: await cpuMsOf(plane.procs.fleet!.pid), log: await cpuMsOf(plane.procs.log!.pid), bench: process.cpuUsage() };
  const cpuSampler = debug ? sampleCpu({ agent: agent.pid, fleet: plane.procs.fleet!.pid, log: plane.procs.log!.pid }) : undefined;
  const { latencies, toAgentMs, fromAgentMs, bySecond, lines: linesFollowed } = await followRound(FOLLOW_SEC);
  // From the tickers' first line (their processes start in the delay before it, CPU included).
  const followMs = performance.now() - followStart - START_DELAY_MS;
  cpuSampler?.stop();
  const fcpu1 = { agent: await cpuMsOf(agent.pid), fleet: await cpuMsOf(plane.procs.fleet!.pid), log: await cpuMsOf(plane.procs.log!.pid) };
  const benchCpu = process.cpuUsage(fcpu0.bench);
  const followCpu = (name: "agent" | "fleet" | "log") => round((((fcpu1[name] ?? 0) - (fcpu0[name] ?? 0)) / followMs) * 100);
  const followCpuBench = round(((benchCpu.user + benchCpu.system) / 1000 / followMs) * 100);
  // CPU per MiB delivered to the followers (100-byte lines): steadier than latency on a busy machine.
  const followedMiB = (linesFollowed * 100) / MiB;
  const followCpuPerMiB = (name: "agent" | "fleet" | "log") => round(((fcpu1[name] ?? 0) - (fcpu0[name] ?? 0)) / followedMiB);
  const followCpuPerMiBBench = round((benchCpu.user + benchCpu.system) / 1000 / followedMiB);
  const p = percentiles(latencies);
  const pToAgent = percentiles(toAgentMs);
  const pFromAgent = percentiles(fromAgentMs);
  if (debug) {
    bySecond.forEach((ms, sec) => progress(`follow: lines written in second ${sec}: latency ${JSON.stringify(percentiles(ms))}`));
    const calls = plane.procs.log!.lines.filter((l) => l.msg === "call ok" && l.method === "IngestLogs").map((l) => Number(l.ms));
    progress(`IngestLogs calls: ${calls.length}, ms ${JSON.stringify(percentiles(calls))}`);
  }

  const table: [string, string, string][] = [
    ["ingestion: MiB/s stored durably", `${round(mibPerSec)} MiB/s (${round(totalBytes / MiB)} MiB in ${round(ingestSec)} s)`, `≥ ${TARGET.ingestMiBps} MiB/s: ${mibPerSec >= TARGET.ingestMiBps ? "PASS" : "FAIL"}`],
    ["ingestion: lines/s", `${Math.round(totalBytes / 100 / ingestSec)}`, "100-byte lines"],
    ["ingestion: CPU agent / Fleet / Log", `${cpuPct("agent")} / ${cpuPct("fleet")} / ${cpuPct("log")} %`, "% of one core over the window"],
    ["ingestion: CPU PostgreSQL / Redis", `${cpuPct("postgres")} / ${cpuPct("redis")} %`, "every process of each (other work on the machine included)"],
    ["ingestion: CPU ms per MiB agent / Fleet / Log / PostgreSQL / Redis", `${cpuPerMiB("agent")} / ${cpuPerMiB("fleet")} / ${cpuPerMiB("log")} / ${cpuPerMiB("postgres")} / ${cpuPerMiB("redis")}`, "where the time goes; 50 MiB/s needs the sum under 40 ms on 2 cores"],
    ["follow: latency p50 / p90 / p99 / max", `${p.p50} / ${p.p90} / ${p.p99} / ${p.max} ms (${p.n} lines)`, `p99 < ${TARGET.followP99Ms} ms: ${p.p99 < TARGET.followP99Ms ? "PASS" : "FAIL"}`],
    ["follow, cold (the first after the services start): latency p50 / p99", `${cold.p50} / ${cold.p99} ms (${cold.n} lines, ${COLD_SEC} s)`, "not the target's: see bench/README.md"],
    ["follow: latency write → agent read, p50 / p99", `${pToAgent.p50} / ${pToAgent.p99} ms`, "LogLine.time (ms): inotify, flush delay, send windows"],
    ["follow: latency agent read → receipt, p50 / p99", `${pFromAgent.p50} / ${pFromAgent.p99} ms`, "Fleet, IngestLogs, the live stream, the follow"],
    ["follow: CPU agent / Fleet / Log / followers", `${followCpu("agent")} / ${followCpu("fleet")} / ${followCpu("log")} / ${followCpuBench} %`, "% of one core, while followed"],
    ["follow: CPU ms per MiB followed agent / Fleet / Log / followers", `${followCpuPerMiB("agent")} / ${followCpuPerMiB("fleet")} / ${followCpuPerMiB("log")} / ${followCpuPerMiBBench}`, "whatever else shares the machine"],
    ["follow: aggregate write rate", `${round((FOLLOWERS * 100 * 100 * 100) / MiB)} MiB/s`, `${FOLLOWERS} jobs`],
    ["load average 1 / 5 / 15 min, at the end", loadavg().map((l) => round(l)).join(" / "), `${machine().cpus} cores; other work inflates wall-clock figures, not CPU per MiB`],
  ];
  printTable("logs", table);
  writeResult({
    benchmark: "logs",
    date: new Date().toISOString(),
    machine: machine(),
    durationSec: round((performance.now() - started) / 1000),
    table,
    details: { client: CLIENT, followToAgent: pToAgent, followFromAgent: pFromAgent, totalMiB: TOTAL_MIB, printers: PRINTERS, followers: FOLLOWERS, followSec: FOLLOW_SEC, ingestSec, mibPerSec, cpuPercent: { agent: cpuPct("agent"), fleet: cpuPct("fleet"), log: cpuPct("log"), postgres: cpuPct("postgres"), redis: cpuPct("redis") }, cpuMsPerMiB: { agent: cpuPerMiB("agent"), fleet: cpuPerMiB("fleet"), log: cpuPerMiB("log"), postgres: cpuPerMiB("postgres"), redis: cpuPerMiB("redis") }, loadAverage: loadavg(), follow: p, followCold: cold, coldSec: COLD_SEC, startDelayMs: START_DELAY_MS, followCpuPercent: { agent: followCpu("agent"), fleet: followCpu("fleet"), log: followCpu("log"), followers: followCpuBench }, followCpuMsPerMiB: { agent: followCpuPerMiB("agent"), fleet: followCpuPerMiB("fleet"), log: followCpuPerMiB("log"), followers: followCpuPerMiBBench }, linesFollowed, samples: samples.filter((_, i) => i % 5 === 0).map((s) => ({ atSec: round((s.atMs - firstAt) / 1000, 2), mib: round(s.bytes / MiB) })) },
  });
});
