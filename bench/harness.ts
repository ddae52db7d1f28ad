// What every benchmark shares: spawning processes that are always stopped,
// a cleanup stack that runs on success, failure and SIGTERM alike, a health
// probe over HTTP/2, small statistics, and writing results.
//
// Benchmarks are scripts, not tests: each bounds its own time (every wait has
// a deadline) and undoes everything it made (processes, databases, Redis
// keys, temporary directories) through a Cleanup, whichever way it ends.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createHash, randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/ts/grpc/health/v1/health_pb.ts";
import { createTestDatabase } from "../lib/db/testing.ts";

/** The repository root. */
export const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const RESULTS_DIR = join(ROOT, "bench", "results");

/** A progress line on stderr, so that a long run shows where it is. */
export function progress(message: string): void {
  console.error(`[bench] ${message}`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects with a message naming `what` if `promise` has not settled after `ms`. */
export function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Things to undo, run last-registered first. run() is idempotent and never
 * throws: a failing step is reported and the others still run.
 */
export class Cleanup {
  private readonly steps: { label: string; fn: () => unknown }[] = [];
  private running: Promise<void> | undefined;

  /** Registers fn; once run() has begun (a signal arrived mid-step), runs it at once instead. */
  defer(label: string, fn: () => unknown): void {
    if (this.running) {
      void Promise.resolve()
        .then(fn)
        .catch((err) => console.error(`bench cleanup: ${label} failed: ${(err as Error).message}`));
      return;
    }
    this.steps.push({ label, fn });
  }

  run(): Promise<void> {
    return (this.running ??= (async () => {
      for (const { label, fn } of this.steps.splice(0).reverse()) {
        try {
          await fn();
        } catch (err) {
          console.error(`bench cleanup: ${label} failed: ${(err as Error).message}`);
        }
      }
    })());
  }
}

/**
 * Runs a benchmark's body with a Cleanup that runs when the body ends, and
 * also on SIGTERM/SIGINT (the runner sends SIGTERM when a benchmark overruns).
 */
export async function runBenchmark(name: string, body: (cleanup: Cleanup) => Promise<void>): Promise<void> {
  const cleanup = new Cleanup();
  const onSignal = (signal: NodeJS.Signals) => {
    console.error(`bench ${name}: ${signal}, cleaning up`);
    void cleanup.run().finally(() => process.exit(130));
  };
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
  try {
    await body(cleanup);
  } catch (err) {
    console.error(`bench ${name} failed:`, err);
    process.exitCode = 1;
  } finally {
    await cleanup.run();
  }
}

/** A TCP port for a server started soon after (lib/free_port.ts: outside the kernel's ephemeral range). */
export { freePort } from "../lib/free_port.ts";

/** A child process whose stdout is read as JSON log lines, and which stop() ends. */
export class ManagedProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Parsed stdout lines (JSON objects), in order; non-JSON lines are kept as { text }. */
  readonly lines: Record<string, unknown>[] = [];
  private stderrTail = "";
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly label: string,
    command: string,
    args: string[],
    env: NodeJS.ProcessEnv,
    /** "pipe" to write commands to the process's stdin (child.stdin). */
    stdin: "ignore" | "pipe" = "ignore",
  ) {
    this.child = spawn(command, args, { cwd: ROOT, env, stdio: [stdin, "pipe", "pipe"] });
    // Always drain both pipes: a child blocked on a full pipe would look like a slow server.
    createInterface({ input: this.child.stdout! }).on("line", (line) => {
      let parsed: Record<string, unknown>;
      try {
        parsed = JSON.parse(line) as Record<string, unknown>;
      } catch {
        parsed = { text: line };
      }
      this.lines.push(parsed);
      if (this.lines.length > 5000) this.lines.splice(0, 1000);
      for (const wake of this.waiters) wake();
    });
    this.child.stderr!.on("data", (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString()).slice(-4000);
    });
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => {
        for (const wake of this.waiters) wake();
        resolve({ code, signal });
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The last lines the process wrote to stderr, for error messages. */
  get stderr(): string {
    return this.stderrTail;
  }

  /** Resolves with the first stdout line matching `match`; rejects if the process exits first or after `ms`. */
  waitForLine(match: (line: Record<string, unknown>) => boolean, ms: number): Promise<Record<string, unknown>> {
    return within(
      ms,
      `${this.label}: waiting for a log line`,
      new Promise((resolve, reject) => {
        const check = () => {
          const found = this.lines.find(match);
          if (found) {
            this.waiters.delete(check);
            resolve(found);
          } else if (!this.running) {
            this.waiters.delete(check);
            reject(new Error(`${this.label} exited before the expected log line; stderr: ${this.stderr}`));
          }
        };
        this.waiters.add(check);
        check();
      }),
    );
  }

  /**
   * Sends SIGTERM and waits for the exit; SIGKILL after `graceMs`. Resolves
   * with how long the process took to exit after SIGTERM. Idempotent.
   */
  async stop(graceMs = 10_000): Promise<{ ms: number; code: number | null; signal: NodeJS.Signals | null; killed: boolean }> {
    const started = performance.now();
    let killed = false;
    if (this.running) {
      this.child.kill("SIGTERM");
      const timer = setTimeout(() => {
        killed = true;
        this.child.kill("SIGKILL");
      }, graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    const { code, signal } = await this.exited;
    return { ms: performance.now() - started, code, signal, killed };
  }
}

/** Spawns `node <args>` (typically `--import tsx file.ts`), registering its stop() with cleanup. */
export function spawnNode(
  cleanup: Cleanup,
  label: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
  stdin: "ignore" | "pipe" = "ignore",
): ManagedProcess {
  const proc = new ManagedProcess(label, process.execPath, args, { ...process.env, ...env }, stdin);
  cleanup.defer(`stop ${label} (pid ${proc.pid})`, () => proc.stop(3_000));
  return proc;
}

/** Runs `node <args>` to completion; resolves with its wall time in ms and its stdout lines. Rejects on a non-zero exit. */
export async function timeNodeRun(args: string[], timeoutMs = 30_000): Promise<{ ms: number; lines: Record<string, unknown>[] }> {
  const started = performance.now();
  const proc = new ManagedProcess(`node ${args.join(" ")}`, process.execPath, args, process.env);
  try {
    const { code } = await within(timeoutMs, proc.label, proc.exited);
    const ms = performance.now() - started;
    if (code !== 0) throw new Error(`${proc.label} exited with ${code}: ${proc.stderr}`);
    // The exit event can come before the last stdout line is read.
    await new Promise<void>((resolve) => (proc.child.stdout!.readableEnded ? resolve() : proc.child.stdout!.once("end", resolve)));
    return { ms, lines: proc.lines };
  } finally {
    await proc.stop(1_000);
  }
}

/**
 * Calls grpc.health.v1.Health/Check over HTTP/2 (gRPC) until it answers
 * SERVING, retrying every `intervalMs`; resolves with performance.now() of
 * the first SERVING answer. Rejects after `ms` or if `alive()` turns false.
 */
export async function waitForServing(
  baseUrl: string,
  opts: { ms: number; intervalMs?: number; alive?: () => boolean },
): Promise<number> {
  const deadline = performance.now() + opts.ms;
  // One session manager for all attempts: after a refused connection it is in
  // the "error" state and the next call dials again.
  const sessionManager = new Http2SessionManager(baseUrl);
  const client = createClient(Health, createGrpcTransport({ baseUrl, sessionManager }));
  let lastError: unknown;
  try {
    while (performance.now() < deadline) {
      if (opts.alive && !opts.alive()) throw new Error(`the server at ${baseUrl} exited before answering health checks`);
      try {
        const res = await client.check({ service: "" }, { timeoutMs: 1_000 });
        if (res.status === ServingStatus.SERVING) return performance.now();
        lastError = new Error(`status ${ServingStatus[res.status]}`);
      } catch (err) {
        lastError = err;
      }
      await sleep(opts.intervalMs ?? 5);
    }
    throw new Error(`no SERVING health answer from ${baseUrl} within ${opts.ms} ms (last: ${String(lastError)})`);
  } finally {
    sessionManager.abort();
  }
}

/** min / median / max of a sample, rounded to 0.1. */
export interface Summary {
  n: number;
  min: number;
  median: number;
  max: number;
}

export function summarize(values: number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { n: sorted.length, min: round(sorted[0]!), median: round(median), max: round(sorted.at(-1)!) };
}

/** p50/p90/p99/max of a sample (nearest rank), rounded to 0.1. */
export interface Percentiles {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** p50, p90, p99 and max, rounded to `digits` decimals. */
export function percentiles(values: number[], digits = 1): Percentiles {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  const at = (p: number) => round(sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN, digits);
  return { n: sorted.length, p50: at(50), p90: at(90), p99: at(99), max: round(sorted.at(-1) ?? NaN, digits) };
}

export function round(value: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** "min / median / max" of a summary, for tables. */
export function fmtSummary(s: Summary, unit = "ms"): string {
  return `${Math.round(s.min)} / ${Math.round(s.median)} / ${Math.round(s.max)} ${unit}`;
}

/** Where the numbers were measured; stored with every result. */
export function machine() {
  const cpuList = cpus();
  return {
    node: process.version,
    cpus: cpuList.length,
    cpuModel: cpuList[0]?.model ?? "unknown",
    memoryGiB: round(totalmem() / 2 ** 30),
    platform: `${process.platform}-${process.arch}`,
  };
}

/**
 * How fast this machine runs a fixed piece of single-threaded work right
 * now, in ms (lower is faster): JSON round trips of small job-like objects
 * and a SHA-256 of 4 MiB, the median of the last 5 of 10 passes (the first
 * ones wait for the JIT). The guests these benchmarks run on change speed
 * within minutes and report no steal time (the same code's split
 * throughput went from 1,522 to 972 jobs/s within the hour; this measure
 * went from ~21 to ~14 ms between two runs a minute apart), so a figure is
 * compared with another only beside this.
 */
export function calibrate(): number {
  const passes: number[] = [];
  let sink = 0;
  const block = Buffer.alloc(4 << 20, 7);
  for (let pass = 0; pass < 10; pass++) {
    const start = performance.now();
    for (let i = 0; i < 5000; i++) {
      const job = { id: `job-${i}`, spec: { commands: [{ argv: ["true", String(i)] }], resources: { cpu: i % 7, memory: i * 1024 } }, tags: [i, i + 1] };
      const text = JSON.stringify(job);
      sink += (JSON.parse(text) as typeof job).spec.resources.memory + text.length;
    }
    sink += createHash("sha256").update(block).digest()[0]!;
    passes.push(performance.now() - start);
  }
  if (sink === -1) console.log(sink); // keeps the work from being optimised away
  return round(passes.slice(5).sort((a, b) => a - b)[2]!);
}

/** A result file: bench/results/<name>.json. */
export interface BenchResult {
  benchmark: string;
  date: string;
  machine: ReturnType<typeof machine>;
  durationSec: number;
  /** Rows printed by the runner: [measure, value, target/verdict]. */
  table: [string, string, string][];
  conclusion?: string[];
  /** Everything measured, for whoever wants more than the table. */
  details: unknown;
}

export function writeResult(result: BenchResult): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `${result.benchmark}.json`);
  writeFileSync(file, JSON.stringify(result, null, 2) + "\n");
  return file;
}

/** Prints rows as a plain text table with a header. */
export function printTable(title: string, rows: string[][], header = ["measure", "value", "target / note"]): void {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) => r.map((cell, i) => (cell ?? "").padEnd(widths[i]!)).join("  ").trimEnd();
  console.log(`\n${title}`);
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const r of rows) console.log(line(r));
}

/** Reads VmRSS of a process from /proc (Linux), in bytes; undefined elsewhere. */
export async function rssOf(pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const kb = /VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1];
    return kb ? Number(kb) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** CPU time (user + system) a process has used, in ms, from /proc (Linux; clock ticks of 10 ms); undefined elsewhere. */
export async function cpuMsOf(pid: number): Promise<number | undefined> {
  try {
    return statCpuMs(await readFile(`/proc/${pid}/stat`, "utf8"), false);
  } catch {
    return undefined;
  }
}

/** The CPU ms a /proc/<pid>/stat line counts: utime + stime, and with `children` the reaped children's too. */
function statCpuMs(stat: string, children: boolean): number {
  // Fields after the command name (which may contain spaces) start at state, field 3:
  // utime, stime, cutime, cstime (fields 14-17) are 11-14 here.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12]) + (children ? Number(f[13]) + Number(f[14]) : 0)) * 10;
}

/**
 * CPU time (ms) used by every process whose command name is `name` (e.g.
 * "postgres", "redis-server"), including what their exited children used
 * (PostgreSQL's backends are the postmaster's children), from /proc (Linux);
 * undefined when no such process is visible (a server on another machine).
 */
export async function cpuMsOfCommand(name: string): Promise<number | undefined> {
  let total: number | undefined;
  for (const { stat } of await processesNamed(name)) total = (total ?? 0) + statCpuMs(stat, true);
  return total;
}

/** Every live process whose command name is `name`, with its /proc/<pid>/stat line. */
async function processesNamed(name: string): Promise<{ pid: number; stat: string }[]> {
  const found: { pid: number; stat: string }[] = [];
  for (const entry of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => ""); // "": gone meanwhile
    if (stat && stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")) === name) found.push({ pid: Number(entry), stat });
  }
  return found;
}

/**
 * Context switches (voluntary and not) of every thread of a process, from
 * /proc (Linux): each is a wake-up or a preemption, which on a virtualised
 * machine can cost more than the work it wakes for.
 */
export async function switchesOf(pid: number): Promise<number | undefined> {
  try {
    let n = 0;
    for (const tid of await readdir(`/proc/${pid}/task`)) n += threadSwitches(await readFile(`/proc/${pid}/task/${tid}/status`, "utf8").catch(() => ""));
    return n;
  } catch {
    return undefined;
  }
}

function threadSwitches(status: string): number {
  let n = 0;
  for (const m of status.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)$/gm)) n += Number(m[1]);
  return n;
}

/**
 * Context switches of every live process whose command name is `name`, by
 * pid: a process that exits between two readings (a PostgreSQL backend)
 * is left out of their difference by `switchesBetween`.
 */
export async function switchesOfCommand(name: string): Promise<Map<number, number>> {
  const found = new Map<number, number>();
  for (const { pid } of await processesNamed(name)) {
    const n = await switchesOf(pid);
    if (n !== undefined) found.set(pid, n);
  }
  return found;
}

/** The context switches between two readings of `switchesOfCommand`, over the processes in both; undefined when there are none. */
export function switchesBetween(before: Map<number, number>, after: Map<number, number>): number | undefined {
  let total: number | undefined;
  for (const [pid, n] of after) if (before.has(pid)) total = (total ?? 0) + n - before.get(pid)!;
  return total;
}

/** PostgreSQL (maintenance database) and Redis the benchmarks run split mode against. */
export const ADMIN_PG_URL = process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
export const REDIS_URL = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";

/**
 * A fresh database and Redis key prefix for one benchmark, both removed by
 * `cleanup`, and the split-mode environment pointing at them (with a random
 * admin token).
 */
export async function splitBackends(cleanup: Cleanup): Promise<{ env: NodeJS.ProcessEnv; adminToken: string }> {
  const db = await createTestDatabase(ADMIN_PG_URL);
  cleanup.defer(`drop database ${db.name}`, () => db.drop());
  const redisPrefix = `drover-bench-${randomBytes(5).toString("hex")}:`;
  cleanup.defer(`delete Redis keys ${redisPrefix}*`, () => deleteRedisKeys(redisPrefix));
  const adminToken = `bench-${randomBytes(16).toString("hex")}`;
  return {
    env: { DATABASE_URL: db.url, REDIS_URL, DROVER_REDIS_PREFIX: redisPrefix, DROVER_ADMIN_TOKEN: adminToken },
    adminToken,
  };
}

/**
 * Dev mode (services/dev/main.ts) on a fresh data directory, removed by
 * `cleanup`, with ephemeral ports; resolves once it logged ready, with its
 * gRPC URL and the admin token it wrote. `nodeArgs` go before the script
 * (--cpu-prof, say).
 */
export async function startDevMode(cleanup: Cleanup, nodeArgs: string[] = []): Promise<{ proc: ManagedProcess; url: string; adminToken: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), "drover-bench-dev-"));
  cleanup.defer(`remove ${dataDir}`, () => rmSync(dataDir, { recursive: true, force: true }));
  const proc = spawnNode(cleanup, "dev", [...nodeArgs, "--import", "tsx", "services/dev/main.ts", "--data-dir", dataDir], {
    DROVER_GRPC_PORT: "0",
    DROVER_HTTP_PORT: "0",
    DROVER_LOG_LEVEL: "info",
  });
  const line = await proc.waitForLine((l) => l.msg === "drover dev mode ready", 60_000);
  return { proc, url: String(line.grpcUrl), adminToken: readFileSync(join(dataDir, "admin-token"), "utf8").trim() };
}

async function deleteRedisKeys(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}

/**
 * Builds the agent bundle (scripts/build-agent.sh) into dist/, inside the
 * repository so that it finds systeminformation; cleanup removes it, and
 * dist/ too when the build made it. `tag` names the file.
 */
export function buildAgentBundle(cleanup: Cleanup, tag: string): string {
  const distExisted = existsSync(join(ROOT, "dist"));
  const file = join(ROOT, "dist", `drover-agent-${tag}-${process.pid}.mjs`);
  cleanup.defer(`remove ${file}`, () => {
    rmSync(file, { force: true });
    if (!distExisted && readdirSync(join(ROOT, "dist")).length === 0) rmdirSync(join(ROOT, "dist"));
  });
  const built = spawnSync("bash", [join(ROOT, "scripts", "build-agent.sh"), file], { cwd: ROOT, encoding: "utf8" });
  if (built.status !== 0) throw new Error(`scripts/build-agent.sh failed: ${built.stderr}`);
  return file;
}

/** The Node flags on a script's `#!/usr/bin/env -S node ...` line: the bundle runs as its own executable would. */
export function hashbangNodeFlags(file: string): string[] {
  const first = readFileSync(file, "utf8").slice(0, 200).split("\n", 1)[0]!;
  const words = first.startsWith("#!") ? first.slice(2).trim().split(/\s+/) : [];
  const node = words.indexOf("node");
  return node >= 0 ? words.slice(node + 1) : [];
}
