// A periodic debug line of how busy this replica is: streams held,
// heartbeats handled, and the event-loop delay. Heartbeats are handled on
// the event loop as their frames are read (a few field writes each), so how
// late the loop runs is how late a heartbeat is handled: the delay's p99 is
// the figure the load benchmark (bench/fleet_load.ts) reads and reports.
// Two figures say what a long delay was: the garbage collector's pauses in
// the same 5 s, and how often the kernel took the CPU away from the process
// (involuntary context switches: a machine busy with other work).

import { constants, monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks";
import type { Logger } from "../../lib/logger.ts";
import type { AgentHub } from "./hub.ts";

/** Every this often, at debug level only (the histogram is not enabled otherwise). */
export const LOAD_LOG_INTERVAL_MS = 5_000;

/** Starts logging "fleet load" every LOAD_LOG_INTERVAL_MS when the logger is at debug; returns the stop. */
export function startLoadLog(hub: AgentHub, log: Logger): () => void {
  if (!log.isLevelEnabled("debug")) return () => {};
  const resolutionMs = 10;
  const delay = monitorEventLoopDelay({ resolution: resolutionMs });
  delay.enable();
  let lastHeartbeats = hub.getStats().heartbeats;
  let lastAt = performance.now();
  let lastSwitches = process.resourceUsage().involuntaryContextSwitches;
  // Scavenges of the young generation apart from the rest (mark-compact and its incremental steps).
  const newGc = () => ({ pauses: 0, totalMs: 0, maxMs: 0, minorMs: 0, minorMaxMs: 0 });
  let gc = newGc();
  const gcObserver = new PerformanceObserver((entries) => {
    for (const entry of entries.getEntries()) {
      gc.pauses++;
      gc.totalMs += entry.duration;
      gc.maxMs = Math.max(gc.maxMs, entry.duration);
      if ((entry as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) {
        gc.minorMs += entry.duration;
        gc.minorMaxMs = Math.max(gc.minorMaxMs, entry.duration);
      }
    }
  });
  gcObserver.observe({ entryTypes: ["gc"] });
  // The histogram records the time between two ticks of a `resolutionMs`
  // timer; the delay is what exceeds the period.
  const ms = (ns: number) => Math.max(0, Math.round((ns / 1e6 - resolutionMs) * 100) / 100);
  const timer = setInterval(() => {
    const now = performance.now();
    const stats = hub.getStats();
    const memory = process.memoryUsage();
    const switches = process.resourceUsage().involuntaryContextSwitches;
    log.debug(
      {
        sessions: stats.sessions,
        heartbeatsPerSec: Math.round(((stats.heartbeats - lastHeartbeats) * 1000) / (now - lastAt)),
        eventLoopDelayMs: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max), samples: delay.count },
        heapUsedMiB: Math.round(memory.heapUsed / 2 ** 20),
        heapTotalMiB: Math.round(memory.heapTotal / 2 ** 20),
        arrayBuffersMiB: Math.round(memory.arrayBuffers / 2 ** 20),
        externalMiB: Math.round(memory.external / 2 ** 20),
        rssMiB: Math.round(memory.rss / 2 ** 20),
        gc: {
          pauses: gc.pauses,
          totalMs: Math.round(gc.totalMs),
          maxMs: Math.round(gc.maxMs * 10) / 10,
          minorMs: Math.round(gc.minorMs),
          minorMaxMs: Math.round(gc.minorMaxMs * 10) / 10,
        },
        involuntarySwitches: switches - lastSwitches,
      },
      "fleet load",
    );
    lastHeartbeats = stats.heartbeats;
    lastAt = now;
    lastSwitches = switches;
    gc = newGc();
    delay.reset();
  }, LOAD_LOG_INTERVAL_MS);
  timer.unref();
  return () => {
    clearInterval(timer);
    gcObserver.disconnect();
    delay.disable();
  };
}
