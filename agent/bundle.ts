// An attempt's execution bundle: the record, on the agent's disk, of what it
// ran and what came out.
//
//   <state dir>/runs/<run or job>/<stage or job>/<attempt>/
//     manifest.json          what ran and how it ended (below); replaced
//                            atomically as the attempt goes on, never again
//                            once it says closed
//     assignment.pb          the Assignment as received (mode 0600: the
//                            spec's secret values are in it), kept only while
//                            the attempt runs, to continue it after an agent
//                            restart
//     cmd-000.stdout.log     output of command 0, appended by the command itself
//     cmd-000.stderr.log
//     cmd-000.status         "<exit code>" written by the process driver's shim
//                            when the command ends, even with the agent down
//     system.log             lines the agent and drivers write about the
//                            attempt (docker pull progress); may not exist
//     log-acks.json          how far the Log service has each log stream
//                            (log_shipper.ts): agent bookkeeping, replaced by
//                            rename, written in closed bundles too
//     work/                  the commands' working directory
//
// When the attempt ends the manifest gets the size and SHA-256 of every log
// file, the bundle is closed, and its files are made read-only: from then on
// nothing in it changes until retention removes the whole directory.
//
// The bundle is also the agent's memory across a restart (recovery.ts): an
// open manifest names the command running and its handle; nothing else is
// kept. One small file per attempt, replaced by rename, cannot be corrupted
// by a crash halfway through a write and needs no database in the agent.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { chmod, mkdir, readFile, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";

import type { SavedHandle } from "./runner.ts";

export const MANIFEST = "manifest.json";
export const ASSIGNMENT = "assignment.pb";
/** Ids and names become directory names, so they are held to a safe alphabet. */
export const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** One command as the manifest records it. */
export interface CommandRecord {
  index: number;
  argv: string[];
  /** ISO times; endTime unset while it runs. */
  startTime?: string;
  endTime?: string;
  durationMs?: number;
  exitCode?: number;
  signal?: string;
  peakRssBytes?: number;
  /** What went wrong, in words. */
  failure?: string;
  /** The driver's handle while it runs (for reattach). */
  handle?: SavedHandle;
}

/** A service replica's bookkeeping (Assignment.service): what must survive an agent restart. */
export interface ServiceRecord {
  /** The port assigned at the attempt's start (assign_port), kept across restarts; 0: none. */
  port: number;
  /** The restart delay used last, ms (it doubles on each quick exit); unset before the first restart. */
  delayMs?: number;
  /** The run (command index) whose end delayMs was chosen for. */
  delayFor?: number;
  /**
   * The last health event reported: its number n (event id
   * `<attempt>:health-<n>`), sequence and HealthStatus. A restarted agent
   * sends it again (Fleet applies it once) and numbers new ones after it.
   */
  health?: { n: number; sequence: number; state: string; message: string; since: string; restarts: number; port: number; time: string };
}

export interface LogFileRecord {
  bytes: number;
  sha256: string;
}

export interface Manifest {
  version: 1;
  attemptId: string;
  jobId: string;
  runId?: string;
  stageName?: string;
  agentId?: string;
  hostname: string;
  driver: string;
  /** The ExecSpec as JSON, secret env values replaced by [REDACTED]. */
  spec: unknown;
  timeoutMs?: number;
  assignedTime: string;
  startTime?: string;
  endTime?: string;
  /** The attempt's state name (AttemptState without the prefix: RUNNING, SUCCEEDED...). */
  state: string;
  message?: string;
  exitCode?: number;
  signal?: string;
  /**
   * One record per run of a command. A service replica's last command is run
   * again on every restart under the next index (cmd-NNN files of its own).
   */
  commands: CommandRecord[];
  /** Set when the attempt is a service replica. */
  service?: ServiceRecord;
  /** Set when the bundle is closed: size and hash of each log file. */
  logs?: Record<string, LogFileRecord>;
  closed: boolean;
  /** The last JobEvent sequence number used for the attempt. */
  sequence?: number;
  /** Set when Fleet confirmed the final JobEvent: recovery need not report it again. */
  reported?: boolean;
  /**
   * Set when the Log service has every log stream of the attempt complete
   * (or refused it for good): the shipper need not look at the bundle
   * again, and retention may treat it like any other closed bundle.
   */
  logsShipped?: boolean;
}

/** Where an attempt's bundle lives: runs/<run>/<stage>/<attempt> for a stage, runs/<job>/<job>/<attempt> otherwise. */
export function bundleDir(stateDir: string, ids: { attemptId: string; jobId: string; runId?: string; stageName?: string }): string {
  const inRun = ids.runId && ids.stageName && SAFE_NAME.test(ids.runId) && SAFE_NAME.test(ids.stageName);
  return inRun ? join(stateDir, "runs", ids.runId!, ids.stageName!, ids.attemptId) : join(stateDir, "runs", ids.jobId, ids.jobId, ids.attemptId);
}

/** The log file of a command's stream. */
export function logFileName(index: number, stream: "stdout" | "stderr"): string {
  return `cmd-${String(index).padStart(3, "0")}.${stream}.log`;
}

/** The status file the process shim writes when a command ends. */
export function statusFileName(index: number): string {
  return `cmd-${String(index).padStart(3, "0")}.status`;
}

/** Writes the manifest atomically (a temporary file, then rename). */
export async function writeManifest(dir: string, manifest: Manifest): Promise<void> {
  const tmp = join(dir, `.${MANIFEST}.${process.pid}.tmp`);
  await writeFile(tmp, JSON.stringify(manifest, null, 2) + "\n", { mode: 0o644 });
  await rename(tmp, join(dir, MANIFEST));
}

/** The manifest of a bundle, or undefined when it has none or it cannot be read. */
export async function readManifest(dir: string): Promise<Manifest | undefined> {
  try {
    const m = JSON.parse(await readFile(join(dir, MANIFEST), "utf8")) as Manifest;
    return m && m.version === 1 && typeof m.attemptId === "string" ? m : undefined;
  } catch {
    return undefined;
  }
}

/** Hashes every log file, closes the manifest, drops assignment.pb and makes the files read-only. */
export async function closeBundle(dir: string, manifest: Manifest): Promise<Manifest> {
  const logs: Record<string, LogFileRecord> = {};
  for (const name of (await readdir(dir)).filter((n) => n.endsWith(".log")).sort()) logs[name] = await hashFile(join(dir, name));
  const closed: Manifest = { ...manifest, logs, closed: true };
  await rm(join(dir, ASSIGNMENT), { force: true });
  await writeManifest(dir, closed);
  await Promise.all([...Object.keys(logs), MANIFEST].map((name) => chmod(join(dir, name), 0o444).catch(() => undefined)));
  return closed;
}

/**
 * Marks a closed bundle's final event as confirmed by Fleet. One of the two
 * changes a closed manifest gets (with markLogsShipped): bookkeeping, not
 * the record of the run.
 */
export function markReported(dir: string, manifest: Manifest): Promise<void> {
  return markClosed(dir, manifest, { reported: true });
}

/** Marks a closed bundle's logs as stored complete by the Log service (every stream acked complete or refused). */
export function markLogsShipped(dir: string, manifest: Manifest): Promise<void> {
  return markClosed(dir, manifest, { logsShipped: true });
}

/** Marks being written, per bundle directory: two marks at once must not undo each other (or share the temporary file). */
const marking = new Map<string, Promise<void>>();

/**
 * Sets bookkeeping fields in a closed manifest. Marks of one bundle are
 * applied one after another, each on the manifest as it is on disk then
 * (`manifest` only when it cannot be read), so the reported and logsShipped
 * marks, set by different components, never undo each other.
 */
function markClosed(dir: string, manifest: Manifest, mark: Pick<Manifest, "reported" | "logsShipped">): Promise<void> {
  const previous = marking.get(dir) ?? Promise.resolve();
  const next = previous.then(async () => {
    const path = join(dir, MANIFEST);
    const current = (await readManifest(dir)) ?? manifest;
    await chmod(path, 0o644).catch(() => undefined);
    await writeManifest(dir, { ...current, ...mark });
    await chmod(path, 0o444).catch(() => undefined);
  });
  const settled = next.catch(() => undefined);
  marking.set(dir, settled);
  void settled.then(() => {
    if (marking.get(dir) === settled) marking.delete(dir);
  });
  return next;
}

/** Every bundle directory under <stateDir>/runs (three levels down), whatever its state. */
export async function listBundles(stateDir: string): Promise<string[]> {
  const root = join(stateDir, "runs");
  const out: string[] = [];
  for (const a of await dirs(root)) for (const b of await dirs(join(root, a))) for (const c of await dirs(join(root, a, b))) out.push(join(root, a, b, c));
  return out;
}

/** Creates the bundle directory and its work directory. */
export async function createBundle(dir: string): Promise<void> {
  await mkdir(join(dir, "work"), { recursive: true });
}

async function dirs(path: string): Promise<string[]> {
  try {
    return (await readdir(path, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch {
    return [];
  }
}

async function hashFile(path: string): Promise<LogFileRecord> {
  const hash = createHash("sha256");
  let bytes = 0;
  // 1 MiB reads, not the stream's 64 KiB: a closing bundle hashes every byte its commands wrote.
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { bytes, sha256: hash.digest("hex") };
}

/** Size of a file, 0 when it does not exist. */
export async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}
