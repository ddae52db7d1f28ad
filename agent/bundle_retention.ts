// Retention of execution bundles: removes closed bundles once they are old,
// or oldest first while all bundles together take more disk than allowed.
//
//   every intervalMs (the first round soon after start):
//     scan    every bundle under <state dir>/runs: its manifest, its size
//             (every file, work/ included) and when it ended
//     plan    (retentionPlan, pure) which closed bundles expired, and in
//             what order the others go if the total is over maxBytes
//     remove  the expired ones, then the size candidates until the total
//             is at most maxBytes; then the parents left empty
//
// What is never removed, whatever its age or size, and still counts toward
// the total: an open bundle (its attempt runs, or waits for recovery after a
// restart) and any bundle whose attempt isActive says is running. A closed
// bundle whose final JobEvent Fleet has not confirmed (manifest.reported not
// true) goes for age, but for size only after every reported one: it is the
// only record of a result Fleet may not have yet. A closed bundle whose logs
// the Log service does not have complete yet (manifest.logsShipped not true,
// log_shipper.ts) never goes for age, and for size only after all the
// others: its files are the only copy of output not stored yet. Retention
// removes it under the size cap all the same, last; the shipper then stops
// shipping it.
//
// A directory without a readable manifest is an attempt the agent crashed in
// before writing its first manifest, or one being created right now: it is
// removed only when nothing in it changed for maxAgeMs.
//
// Closed bundles' files are 0444 in writable directories, so `rm -r` removes
// them; a job may also leave read-only directories in work/ (Go's module
// cache does), so a removal refused for permissions makes the directories
// writable and tries once more.

import { chmod, lstat, readdir, rm, rmdir, stat } from "node:fs/promises";
import { basename, dirname, join, relative, sep } from "node:path";

import type { Logger } from "../lib/logger.ts";
import { listBundles, MANIFEST, readManifest } from "./bundle.ts";

/** Rounds are an hour apart unless the caller says otherwise. */
export const DEFAULT_RETENTION_INTERVAL_MS = 60 * 60 * 1000;
/** The first round waits this long after start() (less when intervalMs is shorter), so it does not compete with the agent's start-up. */
const FIRST_ROUND_DELAY_MS = 10_000;
/** The longest delay setTimeout honours; a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface BundleRetentionOptions {
  /** The agent's state directory; bundles are under <stateDir>/runs. */
  stateDir: string;
  /** Closed bundles that ended longer ago than this are removed, ms (Infinity: never for age). */
  maxAgeMs: number;
  /** The most bytes all bundles together may take before closed ones are removed oldest first (Infinity: no cap). */
  maxBytes: number;
  logger: Logger;
  /** Time between rounds, ms. Default DEFAULT_RETENTION_INTERVAL_MS. */
  intervalMs?: number;
  /** The clock, ms since the epoch. Default Date.now. */
  now?: () => number;
  /** Whether an attempt is running on this agent now: its bundle is never touched. Default: none is. */
  isActive?: (attemptId: string) => boolean;
}

/** What one round did. */
export interface PruneResult {
  /** Bundle directories removed, in the order they went. */
  removed: string[];
  /** Bytes those bundles held. */
  freedBytes: number;
  /** Bytes all bundles left on disk hold. */
  keptBytes: number;
}

/** A bundle as one round sees it: the input of retentionPlan. */
export interface StoredBundle {
  dir: string;
  /** Every file's size, recursively, work/ included. */
  bytes: number;
  /**
   * open: its attempt runs or awaits recovery; active: isActive says its
   * attempt runs; closed: it ended; unreadable: no manifest that can be read.
   */
  kind: "open" | "active" | "closed" | "unreadable";
  /** closed: when the attempt ended; unreadable: the newest mtime in the directory. Ms since the epoch. */
  atMs: number;
  /** closed: whether Fleet confirmed the final JobEvent. */
  reported: boolean;
  /** closed: its logs are not stored complete by the Log service yet (manifest.logsShipped not set). Default false. */
  logsPending?: boolean;
}

/** Which bundles a round removes. */
export interface RetentionPlan {
  /** Closed bundles that ended, and unreadable ones unchanged, longer than maxAgeMs ago, except those with logs pending: removed in any case. */
  expired: StoredBundle[];
  /**
   * The other closed bundles in the order they go while the total is over
   * maxBytes: reported ones oldest first, then unreported ones oldest first,
   * then those with logs pending oldest first.
   */
  bySize: StoredBundle[];
}

/**
 * Sorts a round's bundles into those that expired and those that may go for
 * size, in order. Open and active bundles are in neither list; neither are
 * unreadable ones that changed within maxAgeMs.
 */
export function retentionPlan(bundles: readonly StoredBundle[], policy: { nowMs: number; maxAgeMs: number }): RetentionPlan {
  const cutoff = policy.nowMs - policy.maxAgeMs;
  const pending = (b: StoredBundle) => b.kind === "closed" && b.logsPending === true;
  const expired = bundles.filter((b) => (b.kind === "closed" || b.kind === "unreadable") && b.atMs < cutoff && !pending(b));
  const rank = (b: StoredBundle) => (pending(b) ? 2 : b.reported === false ? 1 : 0);
  const bySize = bundles
    .filter((b) => b.kind === "closed" && (b.atMs >= cutoff || pending(b)))
    .sort((a, b) => rank(a) - rank(b) || a.atMs - b.atMs || (a.dir < b.dir ? -1 : a.dir > b.dir ? 1 : 0));
  return { expired, bySize };
}

/** Keeps the bundles under <stateDir>/runs within an age and a total size; see the top of the file. */
export class BundleRetention {
  private readonly o: Required<Omit<BundleRetentionOptions, "logger">>;
  private readonly log: Logger;
  private readonly runsDir: string;
  /** Sizes of closed bundles, which no longer change: a round walks only the trees it has not measured. */
  private readonly closedBytes = new Map<string, number>();
  private inFlight?: Promise<PruneResult>;
  private timer?: NodeJS.Timeout;
  private state: "idle" | "started" | "stopped" = "idle";

  constructor(options: BundleRetentionOptions) {
    const intervalMs = options.intervalMs ?? DEFAULT_RETENTION_INTERVAL_MS;
    if (!(options.maxAgeMs > 0)) throw new RangeError(`maxAgeMs must be positive, got ${options.maxAgeMs}`);
    if (!(options.maxBytes >= 0)) throw new RangeError(`maxBytes must be 0 or more, got ${options.maxBytes}`);
    if (!(intervalMs > 0 && intervalMs <= MAX_TIMER_MS)) throw new RangeError(`intervalMs must be within 1..${MAX_TIMER_MS}, got ${intervalMs}`);
    this.o = {
      stateDir: options.stateDir,
      maxAgeMs: options.maxAgeMs,
      maxBytes: options.maxBytes,
      intervalMs,
      now: options.now ?? Date.now,
      isActive: options.isActive ?? (() => false),
    };
    this.log = options.logger.child({ component: "bundle_retention" });
    this.runsDir = join(options.stateDir, "runs");
  }

  /** Runs a round soon, then one every intervalMs until stop(). The timers do not keep the process alive. Once only. */
  start(): void {
    if (this.state !== "idle") return;
    this.state = "started";
    this.schedule(Math.min(FIRST_ROUND_DELAY_MS, this.o.intervalMs));
  }

  /** No more rounds; resolves when the round under way, if any, has finished. Idempotent. */
  async stop(): Promise<void> {
    this.state = "stopped";
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.inFlight?.catch(() => undefined);
  }

  /**
   * One round now. While a round runs, a second call gets that round's result
   * rather than starting another, so no bundle is removed twice. Rejects only
   * when the bundles cannot be listed at all; a bundle that cannot be measured
   * or removed is logged and skipped.
   */
  pruneOnce(): Promise<PruneResult> {
    this.inFlight ??= this.prune().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => void this.round(), ms);
    this.timer.unref();
  }

  private async round(): Promise<void> {
    try {
      await this.pruneOnce();
    } catch (err) {
      this.log.error({ err }, "bundle retention round failed");
    }
    if (this.state === "started") this.schedule(this.o.intervalMs);
  }

  private async prune(): Promise<PruneResult> {
    const nowMs = this.o.now();
    const bundles = await this.scan();
    const plan = retentionPlan(bundles, { nowMs, maxAgeMs: this.o.maxAgeMs });
    let total = bundles.reduce((sum, b) => sum + b.bytes, 0);
    const removed: string[] = [];
    let freedBytes = 0;
    const take = async (b: StoredBundle, reason: "age" | "size"): Promise<void> => {
      if (!(await this.remove(b, reason, nowMs))) return;
      removed.push(b.dir);
      freedBytes += b.bytes;
      total -= b.bytes;
    };

    for (const b of plan.expired) await take(b, "age");
    for (const b of plan.bySize) {
      if (total <= this.o.maxBytes) break;
      await take(b, "size");
    }
    if (total > this.o.maxBytes) {
      this.log.warn({ keptBytes: total, maxBytes: this.o.maxBytes }, "execution bundles are over the size cap, but those left are open, running, or could not be removed");
    }
    if (removed.length > 0) this.log.info({ removed: removed.length, freedBytes, keptBytes: total }, "removed execution bundles");
    return { removed, freedBytes, keptBytes: total };
  }

  /** Every bundle with its kind, size and time. One at a time: the walk is background work. */
  private async scan(): Promise<StoredBundle[]> {
    const dirs = await listBundles(this.o.stateDir);
    const listed = new Set(dirs);
    for (const dir of this.closedBytes.keys()) if (!listed.has(dir)) this.closedBytes.delete(dir);

    const out: StoredBundle[] = [];
    for (const dir of dirs) {
      try {
        out.push(await this.describe(dir));
      } catch (err) {
        // Counted as open: what cannot be looked at is not removed.
        this.log.warn({ err, dir }, "could not read an execution bundle; keeping it");
      }
    }
    return out;
  }

  private async describe(dir: string): Promise<StoredBundle> {
    const manifest = await readManifest(dir);
    const attemptId = manifest?.attemptId ?? basename(dir);
    if (!manifest) {
      const tree = await measure(dir);
      const kind = this.o.isActive(attemptId) ? "active" : "unreadable";
      return { dir, bytes: tree.bytes, kind, atMs: tree.newestMs, reported: false };
    }
    if (!manifest.closed || this.o.isActive(attemptId)) {
      return { dir, bytes: (await measure(dir)).bytes, kind: manifest.closed ? "active" : "open", atMs: 0, reported: false };
    }
    let bytes = this.closedBytes.get(dir);
    if (bytes === undefined) {
      bytes = (await measure(dir)).bytes;
      this.closedBytes.set(dir, bytes);
    }
    // A closed manifest without a readable endTime: the manifest's own mtime
    // is when it was closed, near enough.
    const ended = manifest.endTime === undefined ? NaN : Date.parse(manifest.endTime);
    const atMs = Number.isFinite(ended) ? ended : (await stat(join(dir, MANIFEST))).mtimeMs;
    return { dir, bytes, kind: "closed", atMs, reported: manifest.reported === true, logsPending: manifest.logsShipped !== true };
  }

  /** Removes one bundle and the parents it leaves empty; false (logged) when it could not. */
  private async remove(b: StoredBundle, reason: "age" | "size", nowMs: number): Promise<boolean> {
    // The attempt may have started since the scan (an unreadable directory
    // is how every bundle begins): look once more right before removing.
    if (this.o.isActive(basename(b.dir))) return false;
    if (b.kind === "unreadable") {
      this.log.warn({ dir: b.dir, unchangedMs: nowMs - b.atMs }, "removing a stale bundle directory without a readable manifest (the agent stopped before writing it)");
    }
    try {
      await removeTree(b.dir);
    } catch (err) {
      this.log.error({ err, dir: b.dir, reason }, "could not remove an execution bundle");
      return false;
    }
    this.closedBytes.delete(b.dir);
    this.log.debug({ dir: b.dir, reason, bytes: b.bytes }, "removed an execution bundle");
    await this.removeEmptyParents(b.dir);
    return true;
  }

  /** <stage or job>, then <run or job>, when empty; never runs/ itself. rmdir refuses a directory that is not empty, so a bundle created meanwhile is safe. */
  private async removeEmptyParents(bundle: string): Promise<void> {
    for (let dir = dirname(bundle); isStrictlyInside(this.runsDir, dir); dir = dirname(dir)) {
      try {
        await rmdir(dir);
      } catch {
        return;
      }
    }
  }
}

function isStrictlyInside(parent: string, path: string): boolean {
  const rel = relative(parent, path);
  return rel !== "" && rel !== ".." && !rel.startsWith(`..${sep}`);
}

/** Total size of the files under dir and the newest mtime in it (directories included); entries that vanish meanwhile are skipped. */
async function measure(dir: string): Promise<{ bytes: number; newestMs: number }> {
  let bytes = 0;
  let newestMs = 0;
  const pending = [dir];
  for (let path = pending.pop(); path !== undefined; path = pending.pop()) {
    let st;
    try {
      st = await lstat(path);
    } catch (err) {
      if (path === dir || !isGone(err)) throw err;
      continue;
    }
    newestMs = Math.max(newestMs, st.mtimeMs);
    if (st.isFile()) bytes += st.size;
    else if (st.isDirectory()) {
      try {
        for (const name of await readdir(path)) pending.push(join(path, name));
      } catch (err) {
        if (!isGone(err)) throw err;
      }
    }
  }
  return { bytes, newestMs };
}

/** `rm -r`; when refused for permissions (a read-only directory left in work/), makes every directory writable and tries once more. */
async function removeTree(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "EACCES" && code !== "EPERM") throw err;
    await makeDirectoriesWritable(dir);
    await rm(dir, { recursive: true, force: true });
  }
}

async function makeDirectoriesWritable(dir: string): Promise<void> {
  const pending = [dir];
  for (let path = pending.pop(); path !== undefined; path = pending.pop()) {
    const st = await lstat(path).catch(() => undefined);
    if (!st?.isDirectory()) continue;
    await chmod(path, (st.mode & 0o7777) | 0o700).catch(() => undefined);
    for (const name of await readdir(path).catch(() => [] as string[])) pending.push(join(path, name));
  }
}

function isGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENOTDIR";
}
