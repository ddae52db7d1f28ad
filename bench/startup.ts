// Start-up time of Drover's processes, measured from spawn to the first
// SERVING answer of grpc.health.v1.Health/Check over HTTP/2 — what a
// supervisor or a load balancer waits for, not the "ready" log line.
//
//   1. dev mode on an existing data directory (initialised once beforehand,
//      not measured), N times;                              target < 3 s
//   2. split mode, fleet and scheduler, on an already-migrated PostgreSQL
//      database made for this run (dropped afterwards), N times each;
//                                                           target < 1 s
//   3. where the time goes: bare `node`, `node --import tsx`, and loading
//      each wiring's module graph without starting it.
//
// 1 and 2 start each process as users do, `node services/bin.mjs NAME`,
// from its bundle (built by the unmeasured first start), and then as
// before the bundle, `node --import tsx services/NAME/main.ts`.
//
// Run alone with `node --import tsx bench/startup.ts`; `npm run bench` runs it
// with the others. Results: bench/results/startup.json.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  fmtSummary,
  freePort,
  machine,
  printTable,
  round,
  runBenchmark,
  summarize,
  timeNodeRun,
  waitForServing,
  writeResult,
  type Cleanup,
  type Summary,
  progress,
  spawnNode,
  splitBackends,
} from "./harness.ts";

const N = 5;
const DEV_TARGET_MS = 3_000;
const SPLIT_TARGET_MS = 1_000;
const START_TIMEOUT_MS = 30_000;


/** One measured start of a server process. */
interface StartSample {
  /** Spawn → first SERVING answer to Health/Check over HTTP/2. */
  spawnToServingMs: number;
  /** Spawn → the ready log line read from the child's stdout. */
  spawnToReadyLogMs: number;
  /** Ready log line read → SERVING answer (negative when the answer came first). */
  readyLogToServingMs: number;
  /** The process's own `ms` in its ready line: from main.ts's first statement (after its imports loaded) to ready. */
  inProcessMs: number;
  /** SIGTERM → exit. */
  stopMs: number;
  exitCode: number | null;
}

async function startOnce(
  cleanup: Cleanup,
  label: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  readyMsg: string,
): Promise<StartSample> {
  const port = await freePort();
  const started = performance.now();
  const proc = spawnNode(cleanup, label, args, { ...env, DROVER_GRPC_PORT: String(port), DROVER_HTTP_PORT: "0" });
  let readyLogAt = NaN;
  const readyLine = proc.waitForLine((l) => l.msg === readyMsg, START_TIMEOUT_MS).then((line) => {
    readyLogAt = performance.now();
    return line;
  });
  readyLine.catch(() => {}); // awaited below; a failed health wait reports first
  try {
    const servingAt = await waitForServing(`http://127.0.0.1:${port}`, { ms: START_TIMEOUT_MS, alive: () => proc.running });
    const line = await readyLine;
    const stop = await proc.stop();
    if (stop.killed) throw new Error(`${label} did not exit within 10 s of SIGTERM`);
    return {
      spawnToServingMs: round(servingAt - started),
      spawnToReadyLogMs: round(readyLogAt - started),
      readyLogToServingMs: round(servingAt - readyLogAt),
      inProcessMs: Number(line.ms),
      stopMs: round(stop.ms),
      exitCode: stop.code,
    };
  } catch (err) {
    throw new Error(`${label}: ${(err as Error).message}\nstderr: ${proc.stderr}`);
  } finally {
    await proc.stop();
  }
}

async function repeat(n: number, fn: () => Promise<StartSample>): Promise<StartSample[]> {
  const samples: StartSample[] = [];
  for (let i = 0; i < n; i++) samples.push(await fn());
  return samples;
}

function summaryOf(samples: StartSample[]) {
  const pick = (key: keyof StartSample) => summarize(samples.map((s) => s[key] as number));
  return {
    spawnToServingMs: pick("spawnToServingMs"),
    spawnToReadyLogMs: pick("spawnToReadyLogMs"),
    readyLogToServingMs: pick("readyLogToServingMs"),
    inProcessMs: pick("inProcessMs"),
    stopMs: pick("stopMs"),
    exitCodes: [...new Set(samples.map((s) => s.exitCode))],
    samples,
  };
}

/** How a service process is started: from its bundle (services/bin.mjs, what users run) or its sources through tsx. */
type Form = "bundle" | "tsx";

function serviceArgs(form: Form, name: string, args: string[] = []): string[] {
  return form === "bundle" ? ["services/bin.mjs", name, ...args] : ["--import", "tsx", `services/${name}/main.ts`, ...args];
}

async function measureDev(cleanup: Cleanup, form: Form) {
  const dataDir = mkdtempSync(join(tmpdir(), "drover-bench-dev-"));
  cleanup.defer(`remove ${dataDir}`, () => rmSync(dataDir, { recursive: true, force: true }));
  const args = serviceArgs(form, "dev", ["--data-dir", dataDir]);
  // Not measured: creates the embedded database and the admin token.
  const init = await startOnce(cleanup, "dev (initialise)", args, {}, "drover dev mode ready");
  const samples = await repeat(N, () => startOnce(cleanup, "dev", args, {}, "drover dev mode ready"));
  return { initialiseMs: init.spawnToServingMs, ...summaryOf(samples) };
}

async function measureSplit(cleanup: Cleanup, form: Form) {
  const { env } = await splitBackends(cleanup);
  const fleetArgs = serviceArgs(form, "fleet");
  const schedulerArgs = serviceArgs(form, "scheduler");

  // Not measured: each service applies its migrations on its first start.
  const fleetMigrate = await startOnce(cleanup, "fleet (migrate)", fleetArgs, env, "ready");
  const fleetSamples = await repeat(N, () => startOnce(cleanup, "fleet", fleetArgs, env, "ready"));

  // The scheduler checks callers' tokens with Fleet, so a Fleet runs beside it
  // (health checks are open, so start-up itself does not call Fleet).
  const fleetPort = await freePort();
  const fleet = spawnNode(cleanup, "fleet (for scheduler)", fleetArgs, {
    ...env,
    DROVER_GRPC_PORT: String(fleetPort),
    DROVER_HTTP_PORT: "0",
  });
  await waitForServing(`http://127.0.0.1:${fleetPort}`, { ms: START_TIMEOUT_MS, alive: () => fleet.running });
  const schedulerEnv = { ...env, DROVER_FLEET_URL: `http://127.0.0.1:${fleetPort}` };
  let schedulerMigrate: StartSample;
  let schedulerSamples: StartSample[];
  try {
    schedulerMigrate = await startOnce(cleanup, "scheduler (migrate)", schedulerArgs, schedulerEnv, "ready");
    schedulerSamples = await repeat(N, () => startOnce(cleanup, "scheduler", schedulerArgs, schedulerEnv, "ready"));
  } finally {
    await fleet.stop();
  }
  return {
    database: "fresh database per run, dropped afterwards",
    fleet: { migrateFirstStartMs: fleetMigrate.spawnToServingMs, ...summaryOf(fleetSamples) },
    scheduler: { migrateFirstStartMs: schedulerMigrate.spawnToServingMs, ...summaryOf(schedulerSamples) },
  };
}

/**
 * Wall time of processes that only load code, to split start-up into loading
 * and starting; and, for the heaviest dependencies, the in-process time of
 * importing each alone (shared dependencies count in each).
 */
async function measureLoading() {
  const wall = async (args: string[]) => {
    await timeNodeRun(args); // warm the OS file cache and tsx's transform cache
    const samples: number[] = [];
    for (let i = 0; i < N; i++) samples.push((await timeNodeRun(args)).ms);
    return summarize(samples);
  };
  const importOnly = async (target: string, runs = 3) => {
    const args = ["--import", "tsx", "bench/import_only.ts", target];
    await timeNodeRun(args);
    const samples: number[] = [];
    for (let i = 0; i < runs; i++) {
      const { lines } = await timeNodeRun(args);
      samples.push(Number(lines.find((l) => "importMs" in l)?.importMs));
    }
    return summarize(samples);
  };
  const modules: Record<string, Summary> = {};
  for (const target of SPLIT_MODULES) modules[target] = await importOnly(target);
  return {
    nodeBare: await wall(["-e", "0"]),
    nodeTsx: await wall(["--import", "tsx", "-e", "0"]),
    splitGraph: await wall(["--import", "tsx", "bench/import_only.ts", "services/split.ts"]),
    devGraph: await wall(["--import", "tsx", "bench/import_only.ts", "services/dev/dev.ts"]),
    importMsByModule: modules,
  };
}

/** Parts of the split-mode graph whose import time is measured alone. */
const SPLIT_MODULES = [
  "services/split.ts",
  "lib/host/server.ts",
  "lib/db/database.ts",
  "services/registry.ts",
  "@connectrpc/connect-node",
  "@bufbuild/protovalidate",
  "@electric-sql/pglite",
  "pglite-prisma-adapter",
  "ioredis",
  "pg",
];

function verdict(s: Summary, target: number): string {
  return `target < ${target} ms: ${s.max < target ? "PASS" : s.median < target ? "PASS (median; max over)" : "FAIL"}`;
}

await runBenchmark("startup", async (cleanup) => {
  const began = performance.now();
  progress("startup: module loading");
  const loading = await measureLoading();
  progress("startup: dev mode");
  const dev = await measureDev(cleanup, "bundle");
  progress("startup: split mode (fleet, scheduler)");
  const split = await measureSplit(cleanup, "bundle");
  progress("startup: dev and split mode through tsx");
  const devTsx = await measureDev(cleanup, "tsx");
  const splitTsx = await measureSplit(cleanup, "tsx");

  const ms = (s: Summary) => fmtSummary(s);
  const med = (s: Summary) => `${Math.round(s.median)} ms`;
  const table: [string, string, string][] = [
    ["dev: spawn → first SERVING health answer", ms(dev.spawnToServingMs), verdict(dev.spawnToServingMs, DEV_TARGET_MS)],
    ["dev:   of which in-process start (log `ms`)", ms(dev.inProcessMs), "PGlite open, migrations check, listen"],
    ["dev:   spawn → ready log line", ms(dev.spawnToReadyLogMs), `ready log → SERVING: ${ms(dev.readyLogToServingMs)}`],
    ["dev: SIGTERM → exit", ms(dev.stopMs), `exit codes ${dev.exitCodes.join(",")}`],
    ["dev: first start (initdb), not in the sample", `${Math.round(dev.initialiseMs)} ms`, ""],
    ["fleet: spawn → first SERVING health answer", ms(split.fleet.spawnToServingMs), verdict(split.fleet.spawnToServingMs, SPLIT_TARGET_MS)],
    ["fleet:   of which in-process start (log `ms`)", ms(split.fleet.inProcessMs), "pg pool, migrations check, Redis, listen"],
    ["scheduler: spawn → first SERVING health answer", ms(split.scheduler.spawnToServingMs), verdict(split.scheduler.spawnToServingMs, SPLIT_TARGET_MS)],
    ["scheduler:   of which in-process start (log `ms`)", ms(split.scheduler.inProcessMs), ""],
    ["split: SIGTERM → exit (fleet / scheduler median)", `${med(split.fleet.stopMs)} / ${med(split.scheduler.stopMs)}`, ""],
    ["through tsx: dev, spawn → SERVING", ms(devTsx.spawnToServingMs), "node --import tsx services/dev/main.ts, as before services/bin.mjs"],
    ["through tsx: fleet, spawn → SERVING", ms(splitTsx.fleet.spawnToServingMs), ""],
    ["through tsx: scheduler, spawn → SERVING", ms(splitTsx.scheduler.spawnToServingMs), ""],
    ["load: node -e 0", ms(loading.nodeBare), "bare Node"],
    ["load: node --import tsx -e 0", ms(loading.nodeTsx), "Node + tsx hooks"],
    ["load: import services/split.ts (tsx)", ms(loading.splitGraph), "split-mode module graph, not started"],
    ["load: import services/dev/dev.ts (tsx)", ms(loading.devGraph), "dev-mode module graph, not started"],
    ...Object.entries(loading.importMsByModule).map(
      ([target, s]): [string, string, string] => [`import alone: ${target}`, ms(s), "in-process import time, N=3"],
    ),
  ];
  const conclusion = [
    `Split-mode start from the bundle (median ${Math.round(split.fleet.spawnToServingMs.median)} ms fleet, ` +
      `${Math.round(split.scheduler.spawnToServingMs.median)} ms scheduler; through tsx ${Math.round(splitTsx.fleet.spawnToServingMs.median)} / ` +
      `${Math.round(splitTsx.scheduler.spawnToServingMs.median)} ms): ~${Math.round(split.fleet.inProcessMs.median)} ms of it is the service starting ` +
      `(through tsx, loading the module graph took ~${Math.round(loading.splitGraph.median)} ms, ${Math.round(loading.nodeTsx.median)} ms of it Node+tsx alone).`,
    `Dev-mode start from the bundle (median ${Math.round(dev.spawnToServingMs.median)} ms; through tsx ${Math.round(devTsx.spawnToServingMs.median)} ms): ` +
      `~${Math.round(dev.inProcessMs.median)} ms starting (mostly PGlite).`,
  ];
  printTable(`startup (N=${N}; min / median / max)`, table);
  for (const line of conclusion) console.log(line);
  const file = writeResult({
    benchmark: "startup",
    date: new Date().toISOString(),
    machine: machine(),
    durationSec: round((performance.now() - began) / 1000),
    table,
    conclusion,
    details: { n: N, targetsMs: { dev: DEV_TARGET_MS, split: SPLIT_TARGET_MS }, started: "node services/bin.mjs NAME (the bundle)", loading, dev, split, tsx: { dev: devTsx, split: splitTsx } },
  });
  console.log(`results: ${file}`);
});
