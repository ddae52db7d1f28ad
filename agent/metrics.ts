// The machine's vital signs and capacity, for Hello and every Heartbeat.
//
// Cheap on purpose: the agent's idle budget is 60 MiB and 0.5 % of a core.
// CPU load is a difference of the kernel's CPU counters since the previous
// call (CpuCounter), so each heartbeat reports the load over its own
// interval; memory comes from /proc/meminfo via systeminformation's mem(), load
// average, uptime and the agent's RSS from Node. Disk is the expensive one
// (fsSize runs `df`), and it changes slowly, so it is refreshed at most
// every diskRefreshMs and reused in between.

import { readFile, realpath, statfs } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";

import { create } from "@bufbuild/protobuf";
import type * as SI from "systeminformation";

import { ResourcesSchema, type Resources } from "../gen/ts/drover/common/v1/resources_pb.ts";
import { MetricsSchema, type Metrics } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";

/** One reading of the machine. */
export interface MachineSample {
  /** What a Heartbeat reports. */
  metrics: Metrics;
  /** The machine's capacity (Hello.total). */
  total: Resources;
  /** Capacity not in use right now (Hello.free, Heartbeat.free). */
  free: Resources;
}

/** Reads the machine; sample() never throws for a reading it cannot take (that field is 0). */
export interface MachineProbe {
  sample(): Promise<MachineSample>;
}

/** One filesystem as systeminformation's fsSize reports it, bytes. */
export interface FsEntry {
  mount: string;
  size: number;
  used: number;
  available: number;
}

/** Where readings come from; tests replace them. */
export interface SystemSources {
  /** CPU busy since the previous call, 0-100 across all cores. */
  cpuPercent(): Promise<number>;
  /** Installed and available memory, bytes. */
  memory(): Promise<{ total: number; available: number }>;
  /** Every mounted filesystem. */
  filesystems(): Promise<FsEntry[]>;
  /** The filesystem holding path, when filesystems() does not list it. */
  statfs(path: string): Promise<{ size: number; used: number; available: number }>;
  /** Cores this process may use. */
  cores(): number;
  /** Load average over 1, 5 and 15 minutes. */
  loadavg(): number[];
  /** Seconds since boot. */
  uptime(): number;
  /** The agent's resident memory, bytes. */
  rss(): number;
  /** Milliseconds, for the disk cache. */
  now(): number;
}

// Only the two parts of systeminformation the agent reads: its index loads
// all twenty (graphics, wifi, docker, printers...), which costs about 7 MiB
// of RSS for nothing.
const require = createRequire(import.meta.url);
const si = {
  ...(require("systeminformation/lib/memory.js") as Pick<typeof SI, "mem">),
  ...(require("systeminformation/lib/filesystem.js") as Pick<typeof SI, "fsSize">),
};

export const systemSources: SystemSources = {
  cpuPercent: () => cpuCounter.percent(),
  memory: async () => {
    const m = await si.mem();
    return { total: m.total, available: m.available };
  },
  filesystems: async () => (await si.fsSize()).map((f) => ({ mount: f.mount, size: f.size, used: f.used, available: f.available })),
  statfs: async (path) => {
    const s = await statfs(path);
    return { size: s.blocks * s.bsize, used: (s.blocks - s.bfree) * s.bsize, available: s.bavail * s.bsize };
  },
  cores: () => os.availableParallelism(),
  loadavg: () => os.loadavg(),
  uptime: () => os.uptime(),
  rss: () => process.memoryUsage.rss(),
  now: () => Date.now(),
};

/** The kernel's CPU time counters, all cores together (any unit, as long as it is the same). */
export interface CpuTimes {
  busy: number;
  total: number;
}

/**
 * The `cpu` line of /proc/stat (clock ticks since boot, all cores): user,
 * nice, system, idle, iowait, irq, softirq, steal (guest time is already in
 * user). Idle and iowait are not busy.
 */
export function parseProcStat(text: string): CpuTimes | undefined {
  const line = text.split("\n", 1)[0] ?? "";
  const fields = line.trim().split(/\s+/);
  if (fields[0] !== "cpu" || fields.length < 5) return undefined;
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = fields.slice(1).map(Number);
  const busy = user + nice + system + irq + softirq + steal;
  const total = busy + idle + iowait;
  return Number.isFinite(total) ? { busy, total } : undefined;
}

/** This machine's CPU times: /proc/stat read without blocking on Linux, os.cpus() elsewhere. */
async function readCpuTimes(): Promise<CpuTimes> {
  if (process.platform === "linux") {
    const times = parseProcStat(await readFile("/proc/stat", "utf8"));
    if (times) return times;
  }
  let busy = 0;
  let total = 0;
  for (const { times: t } of os.cpus()) {
    busy += t.user + t.nice + t.sys + t.irq;
    total += t.user + t.nice + t.sys + t.irq + t.idle;
  }
  return { busy, total };
}

/**
 * CPU busy since the previous reading, 0-100 (the first reading: since
 * boot). Not systeminformation's currentLoad: on Linux it runs `cat
 * /proc/stat | grep cpu` through execSync, a shell forked from the agent's
 * process with its event loop stopped until the shell is done: 71-85 ms a
 * call in a CPU profile of the agent under bench/logs (profiled, so
 * inflated; forking alone costs ~8 ms at the agent's ~160 MB RSS). Every
 * frame of output and every bid waited for it.
 */
export class CpuCounter {
  private last: CpuTimes | undefined;
  private lastPercent = 0;

  constructor(private readonly read: () => Promise<CpuTimes> = readCpuTimes) {}

  async percent(): Promise<number> {
    const now = await this.read();
    const before = this.last ?? { busy: 0, total: 0 };
    this.last = now;
    const total = now.total - before.total;
    // No tick since the previous reading (two heartbeats in the same tick): the same answer.
    if (total > 0) this.lastPercent = clamp(((now.busy - before.busy) / total) * 100, 0, 100);
    return this.lastPercent;
  }
}

const cpuCounter = new CpuCounter();

export interface SystemMetricsOptions {
  /** The agent's state directory: disk figures are those of its filesystem. */
  stateDir: string;
  /** Longest reuse of a disk reading, milliseconds. Default 60 000. */
  diskRefreshMs?: number;
  sources?: SystemSources;
}

interface DiskReading {
  size: number;
  used: number;
  available: number;
  at: number;
}

/** Samples this machine through systeminformation and Node. */
export class SystemMetrics implements MachineProbe {
  private readonly stateDir: string;
  private readonly diskRefreshMs: number;
  private readonly sources: SystemSources;
  private disk: DiskReading | undefined;
  private stateDirReal: string | undefined;

  constructor(options: SystemMetricsOptions) {
    this.stateDir = options.stateDir;
    this.diskRefreshMs = options.diskRefreshMs ?? 60_000;
    this.sources = options.sources ?? systemSources;
  }

  async sample(): Promise<MachineSample> {
    const s = this.sources;
    const [cpu, memory, disk] = await Promise.all([
      s.cpuPercent().catch(() => 0),
      s.memory().catch(() => ({ total: 0, available: 0 })),
      this.readDisk(),
    ]);
    const cpuPercent = clamp(Number.isFinite(cpu) ? cpu : 0, 0, 100);
    const cores = s.cores();
    const [load1 = 0, load5 = 0, load15 = 0] = s.loadavg();
    const memoryUsed = Math.max(0, memory.total - memory.available);
    return {
      metrics: create(MetricsSchema, {
        cpuPercent,
        memoryUsedBytes: bytes(memoryUsed),
        memoryTotalBytes: bytes(memory.total),
        diskUsedBytes: bytes(disk.used),
        diskTotalBytes: bytes(disk.size),
        load1,
        load5,
        load15,
        uptimeSeconds: bytes(s.uptime()),
        agentRssBytes: bytes(s.rss()),
      }),
      total: create(ResourcesSchema, { cpuMillis: cores * 1000, memoryBytes: bytes(memory.total), diskBytes: bytes(disk.size) }),
      free: create(ResourcesSchema, {
        cpuMillis: Math.round(cores * 1000 * (1 - cpuPercent / 100)),
        memoryBytes: bytes(memory.available),
        diskBytes: bytes(disk.available),
      }),
    };
  }

  private async readDisk(): Promise<DiskReading> {
    const now = this.sources.now();
    if (this.disk && now - this.disk.at < this.diskRefreshMs) return this.disk;
    try {
      this.stateDirReal ??= await realpath(this.stateDir);
      const entry = filesystemOf(this.stateDirReal, await this.sources.filesystems().catch(() => []));
      // fsSize depends on `df`, which a minimal container may not have.
      const reading = entry ?? (await this.sources.statfs(this.stateDirReal));
      this.disk = { size: reading.size, used: reading.used, available: reading.available, at: now };
    } catch {
      // The state directory vanished or the filesystem will not say: report
      // zeros (and the last good reading is not reused as if it were fresh).
      this.disk = { size: 0, used: 0, available: 0, at: now };
    }
    return this.disk;
  }
}

/** The entry whose mount point is the longest prefix of path (path is absolute and resolved). */
export function filesystemOf(path: string, entries: FsEntry[]): FsEntry | undefined {
  let best: FsEntry | undefined;
  for (const entry of entries) {
    const mount = entry.mount;
    if (!mount.startsWith("/")) continue;
    const inside = path === mount || path.startsWith(mount.endsWith("/") ? mount : `${mount}/`);
    if (inside && (best === undefined || mount.length > best.mount.length)) best = entry;
  }
  return best;
}

function bytes(n: number): bigint {
  return Number.isFinite(n) && n > 0 ? BigInt(Math.round(n)) : 0n;
}

function clamp(n: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, n));
}

/**
 * A MachineProbe that keeps its last reading, for decisions that cannot wait
 * for a new one: a bid has ~50 ms, and a sample taken for it would also cut
 * short the CPU interval the next heartbeat reports. The worker samples
 * before Hello and at every heartbeat, so the reading is at most one
 * heartbeat interval old.
 */
export class RememberingProbe implements MachineProbe {
  private last: MachineSample | undefined;

  constructor(private readonly inner: MachineProbe) {}

  /** The last reading, or undefined before the first. */
  get latest(): MachineSample | undefined {
    return this.last;
  }

  async sample(): Promise<MachineSample> {
    const sample = await this.inner.sample();
    this.last = sample;
    return sample;
  }
}
