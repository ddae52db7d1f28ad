import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { CpuCounter, filesystemOf, parseProcStat, SystemMetrics, type CpuTimes, type FsEntry, type SystemSources } from "./metrics.ts";

const GiB = 1024 ** 3;

/** Sources that read a made-up machine; counts how often the disk is read. */
type FakeSources = SystemSources & { diskReads: number; clock: number };

function fakeSources(overrides: Partial<SystemSources> = {}): FakeSources {
  const sources: FakeSources = {
    diskReads: 0,
    clock: 1_000_000,
    cpuPercent: async () => 25,
    memory: async () => ({ total: 16 * GiB, available: 12 * GiB }),
    filesystems: async (): Promise<FsEntry[]> => {
      sources.diskReads++;
      return [
        { mount: "/", size: 100 * GiB, used: 40 * GiB, available: 55 * GiB },
        { mount: "/var", size: 500 * GiB, used: 100 * GiB, available: 400 * GiB },
      ];
    },
    statfs: async () => ({ size: 1, used: 1, available: 0 }),
    cores: () => 8,
    loadavg: () => [1.5, 1.25, 1],
    uptime: () => 3_600,
    rss: () => 50 * 1024 * 1024,
    now: (): number => sources.clock,
    ...overrides,
  };
  return sources;
}

describe("SystemMetrics", () => {
  let stateDir: string;
  before(async () => {
    stateDir = await mkdtemp(join(tmpdir(), "drover-metrics-"));
  });
  after(async () => {
    await rm(stateDir, { recursive: true, force: true });
  });

  it("reports capacity as cores x 1000 millis, installed memory and the state directory's filesystem", async () => {
    const { total, free, metrics } = await new SystemMetrics({ stateDir, sources: fakeSources() }).sample();
    assert.equal(total.cpuMillis, 8_000);
    assert.equal(total.memoryBytes, BigInt(16 * GiB));
    assert.equal(total.diskBytes, BigInt(100 * GiB), "the state directory is under / in the fake mount table");
    assert.equal(free.cpuMillis, 6_000, "25 % busy leaves 6 of 8 cores");
    assert.equal(free.memoryBytes, BigInt(12 * GiB));
    assert.equal(free.diskBytes, BigInt(55 * GiB));
    assert.equal(metrics.cpuPercent, 25);
    assert.equal(metrics.memoryUsedBytes, BigInt(4 * GiB), "used is installed minus available");
    assert.equal(metrics.diskUsedBytes, BigInt(40 * GiB));
    assert.deepEqual([metrics.load1, metrics.load5, metrics.load15], [1.5, 1.25, 1]);
    assert.equal(metrics.uptimeSeconds, 3_600n);
    assert.equal(metrics.agentRssBytes, BigInt(50 * 1024 * 1024));
  });

  it("reads the disk at most once per refresh interval", async () => {
    const sources = fakeSources();
    const probe = new SystemMetrics({ stateDir, sources, diskRefreshMs: 60_000 });
    await probe.sample();
    sources.clock += 59_999;
    await probe.sample();
    assert.equal(sources.diskReads, 1);
    sources.clock += 1;
    await probe.sample();
    assert.equal(sources.diskReads, 2);
  });

  it("falls back to statfs when the mount table is unavailable", async () => {
    const sources = fakeSources({
      filesystems: async () => {
        throw new Error("df: not found");
      },
      statfs: async () => ({ size: 10 * GiB, used: 3 * GiB, available: 7 * GiB }),
    });
    const { total, free } = await new SystemMetrics({ stateDir, sources }).sample();
    assert.equal(total.diskBytes, BigInt(10 * GiB));
    assert.equal(free.diskBytes, BigInt(7 * GiB));
  });

  it("reports zero instead of failing when a reading cannot be taken", async () => {
    const sources = fakeSources({
      cpuPercent: async () => Number.NaN,
      memory: async () => {
        throw new Error("no /proc");
      },
    });
    const { metrics, free } = await new SystemMetrics({ stateDir: join(stateDir, "missing"), sources }).sample();
    assert.equal(metrics.cpuPercent, 0);
    assert.equal(metrics.memoryTotalBytes, 0n);
    assert.equal(metrics.diskTotalBytes, 0n, "the state directory does not exist");
    assert.equal(free.cpuMillis, 8_000);
  });

  it("reads plausible figures from this machine", async () => {
    const probe = new SystemMetrics({ stateDir });
    await probe.sample();
    const { metrics, total, free } = await probe.sample();
    assert.ok(total.cpuMillis >= 1_000 && total.cpuMillis % 1_000 === 0);
    assert.ok(free.cpuMillis >= 0 && free.cpuMillis <= total.cpuMillis);
    assert.ok(metrics.cpuPercent >= 0 && metrics.cpuPercent <= 100);
    assert.ok(metrics.memoryTotalBytes > 0n && metrics.memoryUsedBytes > 0n && metrics.memoryUsedBytes < metrics.memoryTotalBytes);
    assert.ok(metrics.diskTotalBytes > 0n && metrics.diskUsedBytes > 0n && metrics.diskUsedBytes <= metrics.diskTotalBytes);
    assert.ok(free.diskBytes > 0n && free.diskBytes <= total.diskBytes);
    assert.ok(metrics.uptimeSeconds > 0n);
    assert.ok(metrics.agentRssBytes > 0n);
  });
});

describe("CPU busy", () => {
  it("reads /proc/stat's cpu line: idle and iowait are not busy, steal is", () => {
    const text = "cpu  100 5 20 800 50 3 2 10 7 0\ncpu0 50 2 10 400 25 1 1 5 3 0\nintr 12345\n";
    assert.deepEqual(parseProcStat(text), { busy: 140, total: 990 });
    assert.equal(parseProcStat("intr 1 2 3\n"), undefined);
  });

  it("reports the share busy since the previous reading, and the last share while no tick passed", async () => {
    const readings: CpuTimes[] = [{ busy: 100, total: 1000 }, { busy: 160, total: 1100 }, { busy: 160, total: 1100 }, { busy: 160, total: 1300 }];
    const counter = new CpuCounter(async () => readings.shift()!);
    assert.equal(await counter.percent(), 10, "first: since boot");
    assert.equal(await counter.percent(), 60);
    assert.equal(await counter.percent(), 60, "no tick passed");
    assert.equal(await counter.percent(), 0);
  });

  it("reads this machine's counters and sees a busy core", async () => {
    const counter = new CpuCounter();
    await counter.percent();
    // Keep a core busy for a while: the next reading must see it.
    const until = Date.now() + 300;
    while (Date.now() < until);
    const busy = await counter.percent();
    // One core of availableParallelism() kept busy, counted at half to spare a loaded machine: a
    // counter that reads no busy time (busy fields misread, a reading that fails) does not pass.
    const oneCore = 100 / availableParallelism();
    assert.ok(busy >= oneCore / 2 && busy <= 100, `busy ${busy} %, one core is ${oneCore} %`);
  });
});

describe("filesystemOf", () => {
  const entries = [
    { mount: "/", size: 1, used: 0, available: 1 },
    { mount: "/var", size: 2, used: 0, available: 2 },
    { mount: "/var/lib/drover", size: 3, used: 0, available: 3 },
    { mount: "C:", size: 4, used: 0, available: 4 },
  ];

  it("picks the longest mount point that contains the path", () => {
    assert.equal(filesystemOf("/var/lib/drover/agent", entries)?.size, 3);
    assert.equal(filesystemOf("/var/lib/other", entries)?.size, 2);
    assert.equal(filesystemOf("/home/me", entries)?.size, 1);
  });

  it("matches a mount point itself, but not a sibling that shares its prefix", () => {
    assert.equal(filesystemOf("/var", entries)?.size, 2);
    assert.equal(filesystemOf("/variant/x", entries)?.size, 1);
  });

  it("finds nothing when no mount point contains the path", () => {
    assert.equal(filesystemOf("/x", entries.slice(1)), undefined);
  });
});
