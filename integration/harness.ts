// Starts real Drover processes for integration tests, the same commands that
// docker-compose.yml names, on free ports, and always cleans up after them.
//
//   const dev = await startDev({ dataDir });
//   try { ... } finally { await dev.stop(); }

import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

import { preparedDataDir } from "../lib/testing/dev_data.ts";

/** A TCP port for a process that must come back on the same port after a restart (lib/free_port.ts: outside the kernel's ephemeral range). */
export { freePort } from "../lib/free_port.ts";

export { createTestDatabase } from "../lib/db/testing.ts";

/** The repository root, where the processes run. */
export const ROOT = resolve(import.meta.dirname, "..");

/** A Drover process under test. */
export interface DroverProcess {
  child: ChildProcess;
  grpcUrl: string;
  httpUrl: string;
  /** Every JSON log line the process wrote so far. */
  logs: Record<string, unknown>[];
  /** Its stderr so far. */
  stderr(): string;
  /** Sends `signal` (default SIGTERM) and resolves how it ended and how long that took; kills it after `timeoutMs`. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
}

/**
 * Spawns `node services/bin.mjs <service>` (dev mode or a split-mode
 * service, from its bundle, as users start it) and resolves once it logs
 * `readyMsg` with its URLs. Rejects (and kills it) if it exits or stays
 * silent for `timeoutMs`.
 */
export async function spawnDrover(
  service: string,
  args: string[],
  env: Record<string, string>,
  readyMsg: string,
  timeoutMs = 30_000,
): Promise<DroverProcess> {
  const entry = ["services/bin.mjs", service];
  const script = entry.join(" ");
  const child = spawn(process.execPath, [...entry, ...args], {
    cwd: ROOT,
    env: { ...process.env, DROVER_GRPC_PORT: "0", DROVER_HTTP_PORT: "0", DROVER_LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: Record<string, unknown>[] = [];
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.once("exit", (code, signal) => res({ code, signal })),
  );

  const ready = new Promise<Record<string, unknown>>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`${script} not ready after ${timeoutMs} ms; stderr:\n${stderr}`)), timeoutMs);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      logs.push(entry);
      if (entry.msg === readyMsg) {
        clearTimeout(timer);
        res(entry);
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      rej(new Error(`${script} exited (code ${code}, signal ${signal}) before it was ready; stderr:\n${stderr}`));
    });
  });

  let readyEntry: Record<string, unknown>;
  try {
    readyEntry = await ready;
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  }

  const stop = stopper(child, exited);

  return {
    child,
    grpcUrl: String(readyEntry.grpcUrl),
    httpUrl: String(readyEntry.httpUrl),
    logs,
    stderr: () => stderr,
    stop,
  };
}

type Exit = { code: number | null; signal: NodeJS.Signals | null };

/**
 * A child's stop(): sends `signal` (default SIGTERM), kills it after
 * `timeoutMs`, and resolves how it ended and how long that took. Idempotent.
 */
function stopper(child: ChildProcess, exited: Promise<Exit>): (signal?: NodeJS.Signals, timeoutMs?: number) => Promise<Exit & { ms: number }> {
  let stopping: Promise<Exit & { ms: number }> | undefined;
  return (signal = "SIGTERM", timeoutMs = 10_000) =>
    (stopping ??= (async () => {
      const started = performance.now();
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      const result = await exited;
      clearTimeout(timer);
      return { ...result, ms: performance.now() - started };
    })());
}

/** A dev-mode process plus its admin token. */
export interface DevProcess extends DroverProcess {
  dataDir: string;
  adminToken: string;
}

/**
 * Starts dev mode on `dataDir`, or when omitted on a new temporary directory:
 * an empty one, as a new user's, or with `prepared` one whose database is
 * already created and migrated, which saves seconds (lib/testing/dev_data.ts).
 */
export async function startDev(opts: { dataDir?: string; prepared?: boolean; env?: Record<string, string> } = {}): Promise<DevProcess> {
  const dataDir = opts.dataDir ?? (opts.prepared ? await preparedDataDir() : tempDir("drover-dev-"));
  const proc = await spawnDrover("dev", ["--data-dir", dataDir], opts.env ?? {}, "drover dev mode ready", 60_000);
  const adminToken = readFileSync(join(dataDir, "admin-token"), "utf8").trim();
  return { ...proc, dataDir, adminToken };
}

/** The environment of a split-mode service. */
export interface SplitEnv {
  databaseUrl: string;
  redisUrl: string;
  adminToken: string;
  redisPrefix: string;
  fleetUrl?: string;
}

/** Starts one split-mode service process. */
export function startSplit(service: string, env: SplitEnv, extra: Record<string, string> = {}): Promise<DroverProcess> {
  return spawnDrover(
    service,
    [],
    {
      DATABASE_URL: env.databaseUrl,
      REDIS_URL: env.redisUrl,
      DROVER_ADMIN_TOKEN: env.adminToken,
      DROVER_REDIS_PREFIX: env.redisPrefix,
      ...(env.fleetUrl ? { DROVER_FLEET_URL: env.fleetUrl } : {}),
      ...extra,
    },
    "ready",
  );
}

/** A temporary directory, removed by `removeDir`. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** A random secret usable as DROVER_ADMIN_TOKEN. */
export function randomToken(): string {
  return `it_${randomBytes(24).toString("hex")}`;
}

/** A running `drover-agent` under test. */
export interface AgentProcess {
  child: ChildProcess;
  /** Every JSON log line it wrote so far. */
  logs: Record<string, unknown>[];
  stderr(): string;
  /** Resolves the first log line (from the start, or after `from` lines) that `match` accepts; rejects after `timeoutMs` or if the agent exits first. */
  waitForLog(match: (entry: Record<string, unknown>) => boolean, timeoutMs?: number, from?: number): Promise<Record<string, unknown>>;
  /** Resolves how it ended; undefined until it has. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends `signal` (default SIGTERM) and resolves how it ended; kills it after `timeoutMs`. Idempotent. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
}

/**
 * Starts the real `drover-agent` (`node agent/bin.mjs ARGS`, as installed: from its bundle),
 * optionally behind a command prefix such as `ip netns exec NS`. It does not
 * wait for anything: use waitForLog.
 */
export function startAgent(args: string[], opts: { env?: Record<string, string>; prefix?: string[] } = {}): AgentProcess {
  const argv = [process.execPath, "agent/bin.mjs", ...args];
  const [command, ...rest] = [...(opts.prefix ?? []), ...argv];
  const child = spawn(command!, rest, {
    cwd: ROOT,
    env: { ...process.env, DROVER_LOG_LEVEL: "info", ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: Record<string, unknown>[] = [];
  const listeners = new Set<() => void>();
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  createInterface({ input: child.stdout! }).on("line", (line) => {
    try {
      logs.push(JSON.parse(line));
    } catch {
      return;
    }
    listeners.forEach((notify) => notify());
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.once("exit", (code, signal) => {
      res({ code, signal });
      listeners.forEach((notify) => notify());
    }),
  );
  let gone = false;
  void exited.then(() => (gone = true));

  const waitForLog: AgentProcess["waitForLog"] = (match, timeoutMs = 10_000, from = 0) =>
    new Promise((res, rej) => {
      const check = () => {
        const found = logs.slice(from).find(match);
        if (found) return done(() => res(found));
        if (gone || child.exitCode !== null || child.signalCode !== null) {
          done(() => rej(new Error(`the agent exited (code ${child.exitCode}) before the awaited log line; stderr:\n${stderr}`)));
        }
      };
      const timer = setTimeout(
        () => done(() => rej(new Error(`the awaited agent log line did not come within ${timeoutMs} ms; last lines:\n${logs.slice(-5).map((l) => JSON.stringify(l)).join("\n")}`))),
        timeoutMs,
      );
      const done = (settle: () => void) => {
        clearTimeout(timer);
        listeners.delete(check);
        settle();
      };
      listeners.add(check);
      check();
    });

  const stop = stopper(child, exited);

  return { child, logs, stderr: () => stderr, waitForLog, exited, stop };
}
