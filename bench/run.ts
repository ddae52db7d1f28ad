// `npm run bench`: runs each benchmark in its own process, one after the
// other, each under a time limit, and prints a summary. Each benchmark prints
// its own table and writes bench/results/<name>.json.
//
//   npm run bench                     all of them
//   npm run bench -- startup          only the named ones
//
// A benchmark that overruns gets SIGTERM (it then stops what it started and
// drops what it created), and SIGKILL 20 s later if it is still there.

import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { printTable, RESULTS_DIR, ROOT, type BenchResult } from "./harness.ts";

/** The benchmarks, in the order they run, with the time each may take on 2 cores. */
const BENCHMARKS = [
  { name: "startup", file: "bench/startup.ts", limitSec: 150 },
  { name: "agent_stream_client", file: "bench/agent_stream_client.ts", limitSec: 240 },
  // 1k and 5k agents by default (~3 min); BENCH_FLEET_AGENTS=1000,5000,10000 adds 10k (~6 min).
  {
    name: "fleet_load",
    file: "bench/fleet_load.ts",
    limitSec: (process.env.BENCH_FLEET_AGENTS ?? "").split(",").some((n) => Number(n) > 5000) ? 600 : 240,
  },
  // Split and dev mode, each measured and then profiled (~3-4 min on a quiet machine).
  { name: "scheduling", file: "bench/scheduling.ts", limitSec: 330 },
  // The latency floor under submit → Assignment: hops and one durable write at 20, 100 and 500/s (~2 min).
  { name: "floor", file: "bench/floor.ts", limitSec: 240 },
  // 1,000 trivial jobs twice, then 200 printing jobs for 15 s (~3.5 min while the agent takes ~60 ms a job).
  { name: "agent", file: "bench/agent.ts", limitSec: 420 },
  // 256 MiB through agent → Fleet → Log → Postgres, then 10 MiB/s followed for 15 s (~2 min).
  { name: "logs", file: "bench/logs.ts", limitSec: 420 },
  // 100 replicas over 20 simulated agents: first rollout, rolling update (max_parallel 10), an agent lost (~1 min).
  { name: "deploy", file: "bench/deploy.ts", limitSec: 240 },
];

const wanted = process.argv.slice(2);
const unknown = wanted.filter((w) => !BENCHMARKS.some((b) => b.name === w));
if (unknown.length) {
  console.error(`unknown benchmark(s): ${unknown.join(", ")}; known: ${BENCHMARKS.map((b) => b.name).join(", ")}`);
  process.exit(2);
}
const selected = BENCHMARKS.filter((b) => wanted.length === 0 || wanted.includes(b.name));

let current: ReturnType<typeof spawn> | undefined;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    // The child cleans up on SIGTERM; the runner waits for it to exit.
    current?.kill("SIGTERM");
  });
}

function runOne(file: string, limitSec: number): Promise<{ code: number | null; timedOut: boolean; sec: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", file], { cwd: ROOT, stdio: "inherit" });
    current = child;
    let timedOut = false;
    let killer: NodeJS.Timeout | undefined;
    const limit = setTimeout(() => {
      timedOut = true;
      console.error(`\n${file}: over its ${limitSec} s limit, sending SIGTERM`);
      child.kill("SIGTERM");
      killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    }, limitSec * 1000);
    child.on("exit", (code) => {
      clearTimeout(limit);
      clearTimeout(killer);
      current = undefined;
      resolve({ code, timedOut, sec: (performance.now() - started) / 1000 });
    });
  });
}

const summary: string[][] = [];
let failed = false;
for (const b of selected) {
  console.log(`\n=== ${b.name} (limit ${b.limitSec} s)`);
  const { code, timedOut, sec } = await runOne(b.file, b.limitSec);
  const ok = code === 0 && !timedOut;
  failed ||= !ok;
  const file = join(RESULTS_DIR, `${b.name}.json`);
  const result = ok && existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as BenchResult) : undefined;
  summary.push([b.name, ok ? "ok" : timedOut ? "TIMED OUT" : `FAILED (exit ${code})`, `${Math.round(sec)} s`, result ? `bench/results/${b.name}.json` : "-"]);
}
printTable("bench summary", summary, ["benchmark", "status", "time", "results"]);
process.exitCode = failed ? 1 : 0;
