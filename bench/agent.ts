// The agent's execution path (issue 4, "Performance"), on a real
// drover-agent process connected to FakeFleet (agent/testing/fake_fleet.ts,
// a real HTTP/2 port in this process; bench/agent/fleet_side.ts plays
// Fleet's side of the stream and confirms every JobEvent at once):
//
//   first byte  Assignment → first byte of the child's stdout in its bundle
//               (`cmd-000.stdout.log` under bundleDir()), for trivial jobs
//               (`/bin/echo x`): one at a time (each waits for the previous
//               one's SUCCEEDED), then IN_FLIGHT at a time. Timed from
//               FakeStream.send() to the inotify notification that finds the
//               file non-empty (bench/agent/first_byte.ts): an upper bound of
//               the agent's own time by the loopback hop and the watch.
//               Alongside, the agent's own account: JobEvent.time of STARTING
//               and RUNNING (its wall clock, ms resolution) minus the send
//               time. Target: p50 ≤ 5 ms.
//   printers    PRINTERS jobs at once, each printing an 80-byte line about
//               100 times a second, 10 lines every 100 ms (bash, a builtin
//               `read -t 0.1` on a FIFO nobody writes as the pause: no
//               process per line), for
//               WINDOW_SEC after all are RUNNING; then a Cancel each, and
//               every one must end. The agent's CPU (/proc/<pid>/stat, % of
//               one core) and RSS (VmRSS) every 500 ms; RSS idle before.
//               Target: RSS ≤ 150 MiB.
//
// The agent runs as it ships, the bundle scripts/build-agent.sh makes (built
// into dist/ for the run and removed after), with the node flags of its #! line;
// BENCH_AGENT_ENTRY=tsx runs agent/main.ts under tsx instead.
//
//   node --import tsx bench/agent.ts          (npm run bench -- agent), ~2 min
//   BENCH_AGENT_QUICK=1                       100 jobs, 20 printers for 5 s (checks the bench works)
//   BENCH_AGENT_JOBS=1000                     first-byte jobs per series
//   BENCH_AGENT_IN_FLIGHT=4                   jobs at once in the second series
//   BENCH_AGENT_PRINTERS=200                  printing jobs
//   BENCH_AGENT_WINDOW_SEC=15                 how long they print once all are RUNNING
//   BENCH_AGENT_ENTRY=bundle|tsx
//   BENCH_AGENT_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof"   Node flags for the agent alone
//
// Results: bench/results/agent.json.

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";

import { bundleDir, logFileName } from "../agent/bundle.ts";
import { FakeFleet } from "../agent/testing/fake_fleet.ts";
import { AttemptState } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { AgentSession, FINAL, type SeenEvent } from "./agent/fleet_side.ts";
import { watchFirstByte, type FirstByte } from "./agent/first_byte.ts";
import { killLeftovers } from "./agent/leftovers.ts";
import {
  buildAgentBundle,
  hashbangNodeFlags,
  cpuMsOf,
  machine,
  ManagedProcess,
  percentiles,
  printTable,
  progress,
  ROOT,
  round,
  rssOf,
  runBenchmark,
  sleep,
  within,
  writeResult,
  type Cleanup,
  type Percentiles,
} from "./harness.ts";

const QUICK = process.env.BENCH_AGENT_QUICK === "1";
const JOBS = Number(process.env.BENCH_AGENT_JOBS ?? (QUICK ? 100 : 1000));
const IN_FLIGHT = Number(process.env.BENCH_AGENT_IN_FLIGHT ?? 4);
/** Jobs run one at a time before the first series and not counted: the first spawns and file opens are slower. */
const WARMUP_JOBS = QUICK ? 10 : 20;
const PRINTERS = Number(process.env.BENCH_AGENT_PRINTERS ?? (QUICK ? 20 : 200));
const WINDOW_SEC = Number(process.env.BENCH_AGENT_WINDOW_SEC ?? (QUICK ? 5 : 15));
const ENTRY = process.env.BENCH_AGENT_ENTRY === "tsx" ? "tsx" : "bundle";
/** Idle watch after the agent connected (and again before the printers). */
const IDLE_SEC = QUICK ? 3 : 5;
const SAMPLE_MS = 500;
/** Heartbeats as Fleet's default sets them. */
const HEARTBEAT_MS = 5_000;
/** SIGTERM → SIGKILL grace in the printers' Cancels. */
const CANCEL_GRACE_MS = 5_000;

const MiB = 2 ** 20;
const TARGET = { firstByteP50Ms: 5, rssBytes: 150 * MiB };
/** 79 characters and a newline. */
const LINE = "drover-bench printer line: the quick brown fox jumps over the lazy dog 0123456";
/**
 * $1: a FIFO nobody writes (opened read-write, so `read` waits its whole
 * timeout: a pause without a process); $2: the line. Ten lines every 100 ms,
 * one write each: a line every 10 ms costs bash enough CPU that 200 of them
 * saturate 2 cores and starve the agent, and a program whose stdout is a
 * file writes in blocks anyway (stdio buffering).
 */
const PRINTER_SCRIPT =
  'exec 3<>"$1"; b=$(for i in 1 2 3 4 5 6 7 8 9 10; do printf "%s\\n" "$2"; done); while :; do printf "%s\\n" "$b"; read -t 0.1 -u 3; done';

const fmtP = (p: Percentiles) => `${p.p50} / ${p.p90} / ${p.p99} / ${p.max} ms`;
const mib = (bytes: number) => `${round(bytes / MiB)} MiB`;
const verdict = (ok: boolean) => (ok ? "PASS" : "FAIL");

/** The agent's CPU and RSS every SAMPLE_MS, each sample labelled with the phase it fell in. */
class Sampler {
  phase = "idle";
  readonly samples: { phase: string; atSec: number; cpuPercent: number; rssBytes: number }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly t0 = performance.now();

  constructor(private readonly pid: number) {}

  async start(): Promise<void> {
    let lastCpu = (await cpuMsOf(this.pid)) ?? 0;
    let lastAt = performance.now();
    this.timer = setInterval(async () => {
      const [cpu, rss] = [await cpuMsOf(this.pid), await rssOf(this.pid)];
      const at = performance.now();
      if (cpu === undefined || rss === undefined) return;
      this.samples.push({ phase: this.phase, atSec: round((at - this.t0) / 1000, 2), cpuPercent: round(((cpu - lastCpu) / (at - lastAt)) * 100), rssBytes: rss });
      lastCpu = cpu;
      lastAt = at;
    }, SAMPLE_MS);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Mean and max CPU %, mean and max RSS over the samples of these phases. */
  summary(...phases: string[]) {
    const s = this.samples.filter((x) => phases.includes(x.phase));
    const cpu = s.map((x) => x.cpuPercent);
    const rss = s.map((x) => x.rssBytes);
    return {
      samples: s.length,
      cpuMeanPercent: round(cpu.reduce((a, b) => a + b, 0) / (cpu.length || 1)),
      cpuMaxPercent: Math.max(...cpu),
      rssMeanBytes: Math.round(rss.reduce((a, b) => a + b, 0) / (rss.length || 1)),
      rssMaxBytes: Math.max(...rss),
    };
  }
}

/** Busy share of the whole machine between two readings of /proc/stat. */
function machineTicks(): { busy: number; total: number } {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  return { busy: total - fields[3]! - (fields[4] ?? 0), total };
}

/** What the agent logged at warn or above, by message (from its own stdout, read alongside ManagedProcess). */
function collectWarnings(proc: ManagedProcess): { byMessage: Map<string, number>; examples: Record<string, unknown>[] } {
  const byMessage = new Map<string, number>();
  const examples: Record<string, unknown>[] = [];
  createInterface({ input: proc.child.stdout! }).on("line", (line) => {
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(line) as Record<string, unknown>;
    } catch {
      parsed = { level: 40, msg: `(not JSON) ${line.slice(0, 200)}` };
    }
    if (typeof parsed.level !== "number" || parsed.level < 40) return;
    const msg = String(parsed.msg);
    byMessage.set(msg, (byMessage.get(msg) ?? 0) + 1);
    if (examples.length < 10) examples.push(parsed);
  });
  return { byMessage, examples };
}


/** drover-agent against the FakeFleet, registered and welcomed; resolves its process and the session. */
async function startAgent(cleanup: Cleanup, fleet: FakeFleet, stateDir: string) {
  // Node flags for the agent alone, e.g. --cpu-prof --cpu-prof-dir=/tmp/prof (written when it exits).
  const nodeArgs = (process.env.BENCH_AGENT_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const bundle = ENTRY === "bundle" ? buildAgentBundle(cleanup, "bench") : undefined;
  const entry = [...nodeArgs, ...(bundle ? [...hashbangNodeFlags(bundle), bundle] : ["--import", "tsx", join(ROOT, "agent", "main.ts")])];
  // The caller's DROVER_* variables stay out: the agent is configured here alone.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("DROVER_")));
  const agent = new ManagedProcess("drover-agent", process.execPath, [...entry, "--server", fleet.url, "--token", "bench", "--state-dir", stateDir], {
    ...env,
    DROVER_LOG_LEVEL: "info",
    DROVER_MAX_ATTEMPTS: String(Math.max(PRINTERS, IN_FLIGHT) + 8),
  });
  cleanup.defer(`stop drover-agent (pid ${agent.pid})`, () => agent.stop(10_000));
  const warnings = collectWarnings(agent);
  const stream = await fleet.nextStream(30_000);
  await stream.next("hello", 30_000);
  const session = new AgentSession(stream);
  stream.welcome({ agentId: "bench-agent", agentCredential: "bench-credential", heartbeatIntervalMs: HEARTBEAT_MS });
  await agent.waitForLine((l) => l.msg === "connected to Fleet", 30_000);
  return { agent, session, warnings };
}

/** One trivial job's timings, ms from the Assignment's send. */
interface JobTiming {
  attemptId: string;
  /** First byte of stdout seen in the bundle (bench clock). */
  firstByteMs: number;
  /** The bytes were there before the file could be watched (firstByteMs is later than the write). */
  late: boolean;
  /** JobEvent.time of STARTING and RUNNING (agent's wall clock, ms resolution) minus the send's wall time. */
  agentStartingMs: number;
  agentRunningMs: number;
  /** The RUNNING and final events' arrival here. */
  runningSeenMs: number;
  doneSeenMs: number;
}

/** Where the attempt's directory actually is under <stateDir>/runs, if anywhere. */
function findAttemptDir(stateDir: string, attemptId: string): string | undefined {
  const runs = join(stateDir, "runs");
  if (!existsSync(runs)) return undefined;
  const hit = readdirSync(runs, { recursive: true, encoding: "utf8" }).find((p) => p.split("/").at(-1) === attemptId);
  return hit && join(runs, hit);
}

async function runTrivialJob(session: AgentSession, stateDir: string, attemptId: string, jobId: string): Promise<JobTiming> {
  // The bundle's parent is made here, before the Assignment, so that the
  // watch can see the bundle appear (the agent refuses an existing bundle).
  const dir = bundleDir(stateDir, { attemptId, jobId });
  mkdirSync(dirname(dir), { recursive: true });
  const watch = watchFirstByte(dir, logFileName(0, "stdout"));
  const { sentAt, sentWallMs } = session.assign(attemptId, jobId, { commands: [{ argv: ["/bin/echo", "x"] }] });
  const finalEvent = session.waitFor(attemptId, FINAL, 15_000);
  // Awaited below, or in the error path; never left rejected and unhandled.
  finalEvent.catch(() => undefined);
  let firstByte: FirstByte;
  try {
    firstByte = await within(15_000, `the first byte of ${attemptId}'s stdout`, watch.firstByte);
  } catch (err) {
    watch.close();
    const final = await finalEvent.catch(() => undefined);
    const actual = findAttemptDir(stateDir, attemptId);
    throw new Error(
      `${(err as Error).message}; the attempt ended ${final ? AttemptState[final.state] : "not at all"} (${final?.message ?? ""}); ` +
        `its directory: ${actual ?? "none under runs/"} (expected ${dir})`,
    );
  }
  const final = await finalEvent;
  if (final.state !== AttemptState.SUCCEEDED) throw new Error(`attempt ${attemptId} ended ${AttemptState[final.state]}: ${final.message}`);
  const events = session.events.get(attemptId)!;
  const of = (state: AttemptState): SeenEvent | undefined => events.find((e) => e.state === state);
  return {
    attemptId,
    firstByteMs: firstByte.at - sentAt,
    late: firstByte.late,
    agentStartingMs: (of(AttemptState.STARTING)?.agentTimeMs ?? NaN) - sentWallMs,
    agentRunningMs: (of(AttemptState.RUNNING)?.agentTimeMs ?? NaN) - sentWallMs,
    runningSeenMs: (of(AttemptState.RUNNING)?.arrivedAt ?? NaN) - sentAt,
    doneSeenMs: final.arrivedAt - sentAt,
  };
}

/** `jobs` trivial jobs, `inFlight` at a time (each slot sends its next job when its last one SUCCEEDED). */
async function trivialSeries(session: AgentSession, stateDir: string, label: string, jobs: number, inFlight: number) {
  const timings: JobTiming[] = [];
  let next = 0;
  const started = performance.now();
  const slot = async () => {
    while (next < jobs) {
      const i = next++;
      timings.push(await runTrivialJob(session, stateDir, `${label}-a${i}`, `${label}-j${i}`));
    }
  };
  await Promise.all(Array.from({ length: inFlight }, slot));
  const sec = (performance.now() - started) / 1000;
  const series = {
    label,
    jobs,
    inFlight,
    jobsPerSec: round(jobs / sec),
    firstByte: percentiles(timings.map((t) => t.firstByteMs)),
    /** Jobs whose first byte came before its file could be watched (their time is a later bound). */
    late: timings.filter((t) => t.late).length,
    agentStarting: percentiles(timings.map((t) => t.agentStartingMs)),
    agentRunning: percentiles(timings.map((t) => t.agentRunningMs)),
    runningSeen: percentiles(timings.map((t) => t.runningSeenMs)),
    doneSeen: percentiles(timings.map((t) => t.doneSeenMs)),
  };
  progress(`agent: ${label}: ${jobs} jobs, ${inFlight} in flight, ${series.jobsPerSec} jobs/s; first byte ${fmtP(series.firstByte)}`);
  return { ...series, samplesMs: timings.map((t) => round(t.firstByteMs, 2)) };
}

/** Bytes in the printers' stdout logs now. */
function printedBytes(stateDir: string, ids: { attemptId: string; jobId: string }[]): number {
  let sum = 0;
  for (const id of ids) {
    try {
      sum += statSync(join(bundleDir(stateDir, id), logFileName(0, "stdout"))).size;
    } catch {
      // Not created yet.
    }
  }
  return sum;
}

async function printers(session: AgentSession, stateDir: string, scratch: string, sampler: Sampler) {
  const fifo = join(scratch, "never-written.fifo");
  execFileSync("mkfifo", [fifo]);
  const ids = Array.from({ length: PRINTERS }, (_, i) => ({ attemptId: `print-a${i}`, jobId: `print-j${i}` }));
  sampler.phase = "printers starting";
  const rampStarted = performance.now();
  for (const { attemptId, jobId } of ids) {
    session.assign(attemptId, jobId, { commands: [{ argv: ["bash", "-c", PRINTER_SCRIPT, "printer", fifo, LINE] }] });
  }
  const started = new Set([AttemptState.RUNNING, ...FINAL]);
  const firstSeen = await Promise.all(ids.map(({ attemptId }) => session.waitFor(attemptId, started, 90_000)));
  const early = firstSeen.filter((e) => FINAL.has(e.state));
  if (early.length) throw new Error(`${early.length} printers ended before running: ${early[0]!.message}`);
  const rampSec = round((performance.now() - rampStarted) / 1000, 2);
  progress(`agent: ${PRINTERS} printers RUNNING after ${rampSec} s; printing for ${WINDOW_SEC} s`);

  sampler.phase = "printers running";
  const bytesBefore = printedBytes(stateDir, ids);
  const ticksBefore = machineTicks();
  const windowStarted = performance.now();
  await sleep(WINDOW_SEC * 1000);
  const windowSec = (performance.now() - windowStarted) / 1000;
  const bytesInWindow = printedBytes(stateDir, ids) - bytesBefore;
  const ticksAfter = machineTicks();

  sampler.phase = "printers cancelled";
  const cancelStarted = performance.now();
  for (const { attemptId } of ids) session.cancel(attemptId, CANCEL_GRACE_MS, "the benchmark is over");
  const ends = await Promise.allSettled(ids.map(({ attemptId }) => session.waitFor(attemptId, FINAL, CANCEL_GRACE_MS + 30_000)));
  const cancelSec = round((performance.now() - cancelStarted) / 1000, 2);
  const endedBy: Record<string, number> = {};
  for (const end of ends) {
    const key = end.status === "fulfilled" ? AttemptState[end.value.state] : "did not end";
    endedBy[key] = (endedBy[key] ?? 0) + 1;
  }
  const totalBytes = printedBytes(stateDir, ids);
  progress(`agent: printers ended after ${cancelSec} s: ${JSON.stringify(endedBy)}`);
  return {
    printers: PRINTERS,
    rampSec,
    windowSec: round(windowSec, 2),
    bytesInWindow,
    linesPerSecPerJob: round(bytesInWindow / (LINE.length + 1) / windowSec / PRINTERS),
    totalBytes,
    machineBusyPercent: round(((ticksAfter.busy - ticksBefore.busy) / (ticksAfter.total - ticksBefore.total)) * 100),
    cancelSec,
    endedBy,
  };
}

await runBenchmark("agent", async (cleanup) => {
  const began = performance.now();
  const loadAtStart = loadavg().map((l) => round(l, 2));
  const scratch = mkdtempSync(join(tmpdir(), "drover-bench-agent-"));
  cleanup.defer(`remove ${scratch}`, () => rmSync(scratch, { recursive: true, force: true }));
  // After the agent's stop: whatever of its jobs outlived it (bench/agent/leftovers.ts).
  cleanup.defer("kill the jobs that outlived the agent", () => {
    const groups = killLeftovers(scratch);
    if (groups.length) console.error(`bench agent: killed ${groups.length} process groups the agent left running`);
  });
  const stateDir = join(scratch, "state");
  const fleet = await FakeFleet.start();
  cleanup.defer("close the FakeFleet", () => fleet.close());

  progress(`agent: starting drover-agent (${ENTRY === "bundle" ? "bundle, with the node flags of its #! line" : "agent/main.ts under tsx"}); machine load ${loadAtStart.join(" ")}`);
  const { agent, session, warnings } = await startAgent(cleanup, fleet, stateDir);
  // Registered after the agent's stop, so it runs before it: on a failure, what the agent last said.
  let finished = false;
  cleanup.defer("show the agent's last lines", () => {
    if (finished) return;
    console.error(`drover-agent's last log lines:\n${agent.lines.slice(-15).map((l) => JSON.stringify(l)).join("\n")}\nstderr: ${agent.stderr}`);
  });
  const sampler = new Sampler(agent.pid);
  await sampler.start();
  cleanup.defer("stop sampling", () => sampler.stop());

  sampler.phase = "settling";
  await sleep(2_000);
  sampler.phase = "idle";
  await sleep(IDLE_SEC * 1000);

  progress(`agent: ${WARMUP_JOBS} warm-up jobs, then ${JOBS} one at a time, then ${JOBS} with ${IN_FLIGHT} in flight`);
  sampler.phase = "warm-up";
  const warmup = await trivialSeries(session, stateDir, "warmup", WARMUP_JOBS, 1);
  sampler.phase = "first byte, 1 in flight";
  const serial = await trivialSeries(session, stateDir, "serial", JOBS, 1);
  sampler.phase = `first byte, ${IN_FLIGHT} in flight`;
  const parallel = await trivialSeries(session, stateDir, "parallel", JOBS, IN_FLIGHT);

  sampler.phase = "idle again";
  await sleep(IDLE_SEC * 1000);
  const printing = await printers(session, stateDir, scratch, sampler);
  await sleep(1_000);
  sampler.stop();

  const idle = sampler.summary("idle");
  const idleAgain = sampler.summary("idle again");
  const running = sampler.summary("printers running");
  const whole = sampler.summary("printers starting", "printers running", "printers cancelled");
  const serialCpu = sampler.summary("first byte, 1 in flight");
  const parallelCpu = sampler.summary(`first byte, ${IN_FLIGHT} in flight`);
  const allEnded = (printing.endedBy["did not end"] ?? 0) === 0;
  const warningsByMessage = Object.fromEntries(warnings.byMessage);

  const table: [string, string, string][] = [
    ["agent", ENTRY === "bundle" ? "dist bundle, with the node flags of its #! line" : "agent/main.ts under tsx", `FakeFleet on loopback HTTP/2; machine load at start ${loadAtStart.join(" ")}`],
    [
      `send → first stdout byte, 1 in flight (n=${serial.firstByte.n})`,
      fmtP(serial.firstByte),
      `p50/p90/p99/max; target p50 ≤ ${TARGET.firstByteP50Ms} ms: ${verdict(serial.firstByte.p50 <= TARGET.firstByteP50Ms)} (upper bound: + loopback, + inotify)`,
    ],
    ["  agent's RUNNING time − send", fmtP(serial.agentRunning), `JobEvent.time, ms resolution; STARTING p50 ${serial.agentStarting.p50} ms; ${serial.late} first bytes seen late`],
    ["  RUNNING event back at Fleet", fmtP(serial.runningSeen), `SUCCEEDED back p50 ${serial.doneSeen.p50} ms; ${serial.jobsPerSec} jobs/s; agent CPU ${serialCpu.cpuMeanPercent} %`],
    [
      `send → first stdout byte, ${IN_FLIGHT} in flight (n=${parallel.firstByte.n})`,
      fmtP(parallel.firstByte),
      `target p50 ≤ ${TARGET.firstByteP50Ms} ms: ${verdict(parallel.firstByte.p50 <= TARGET.firstByteP50Ms)}`,
    ],
    ["  agent's RUNNING time − send", fmtP(parallel.agentRunning), `STARTING p50 ${parallel.agentStarting.p50} ms; ${parallel.late} first bytes seen late`],
    ["  RUNNING event back at Fleet", fmtP(parallel.runningSeen), `SUCCEEDED back p50 ${parallel.doneSeen.p50} ms; ${parallel.jobsPerSec} jobs/s; agent CPU ${parallelCpu.cpuMeanPercent} %`],
    ["idle agent: RSS / CPU", `${mib(idle.rssMeanBytes)} / ${idle.cpuMeanPercent} %`, `before any job; after the first-byte series: ${mib(idleAgain.rssMeanBytes)}`],
    [
      `${PRINTERS} printers: agent RSS max`,
      mib(running.rssMaxBytes),
      `target ≤ 150 MiB: ${verdict(whole.rssMaxBytes <= TARGET.rssBytes)} (max over start, run and cancel: ${mib(whole.rssMaxBytes)})`,
    ],
    [`${PRINTERS} printers: agent CPU mean / max`, `${running.cpuMeanPercent} % / ${running.cpuMaxPercent} %`, `of one core, ${SAMPLE_MS} ms samples over ${printing.windowSec} s; machine ${printing.machineBusyPercent} % busy`],
    [
      `${PRINTERS} printers: bytes written`,
      `${mib(printing.totalBytes)} in all`,
      `${mib(printing.bytesInWindow)} in the window, ${printing.linesPerSecPerJob} lines/s per job; all RUNNING after ${printing.rampSec} s`,
    ],
    [`${PRINTERS} printers: cancelled`, Object.entries(printing.endedBy).map(([k, v]) => `${v} ${k}`).join(", "), `${verdict(allEnded)}: all ended ${printing.cancelSec} s after the Cancels (grace ${CANCEL_GRACE_MS / 1000} s)`],
    ["agent warnings and errors", String([...warnings.byMessage.values()].reduce((a, b) => a + b, 0)), Object.entries(warningsByMessage).map(([m, n]) => `${n}× ${m}`).join("; ") || "none"],
  ];
  const conclusion = [
    `Assignment → first stdout byte, one job at a time: p50 ${serial.firstByte.p50} ms, p99 ${serial.firstByte.p99} ms ` +
      `(target p50 ≤ ${TARGET.firstByteP50Ms} ms: ${verdict(serial.firstByte.p50 <= TARGET.firstByteP50Ms)}); ${IN_FLIGHT} in flight: p50 ${parallel.firstByte.p50} ms.`,
    `${PRINTERS} jobs printing ~${printing.linesPerSecPerJob} lines/s each: agent RSS max ${mib(whole.rssMaxBytes)} ` +
      `(target ≤ 150 MiB: ${verdict(whole.rssMaxBytes <= TARGET.rssBytes)}; idle ${mib(idle.rssMeanBytes)}), CPU mean ${running.cpuMeanPercent} % of a core.`,
    ...(QUICK ? ["QUICK run (BENCH_AGENT_QUICK=1): fewer jobs and printers, a shorter window; not the issue's figures."] : []),
  ];
  printTable(`agent (${ENTRY}; ${QUICK ? "QUICK" : `${JOBS} jobs per series, ${PRINTERS} printers for ${WINDOW_SEC} s`})`, table);
  for (const line of conclusion) console.log(line);
  const file = writeResult({
    benchmark: "agent",
    date: new Date().toISOString(),
    machine: machine(),
    durationSec: round((performance.now() - began) / 1000),
    table,
    conclusion,
    details: {
      quick: QUICK,
      entry: ENTRY,
      agentNodeArgs: process.env.BENCH_AGENT_NODE_ARGS ?? "",
      loadAtStart,
      measuredFrom: "FakeStream.send() of the Assignment (queued, then serialised and written to the HTTP/2 stream)",
      firstByteBy: "fs.watch (inotify) on the pre-created bundle directory; time of the first notification that finds cmd-000.stdout.log non-empty",
      job: ["/bin/echo", "x"],
      printer: { argv: ["bash", "-c", PRINTER_SCRIPT, "printer", "<fifo>", LINE], lineBytes: LINE.length + 1 },
      warmup,
      serial,
      parallel,
      printing,
      agent: { idle, idleAgain, serialCpu, parallelCpu, printersRunning: running, printersWhole: whole },
      warnings: { byMessage: warningsByMessage, examples: warnings.examples },
      agentSamples: sampler.samples.map((s) => ({ ...s, rssMiB: round(s.rssBytes / MiB), rssBytes: undefined })),
    },
  });
  console.log(`results: ${file}`);
  finished = true;
});
