// A periodic debug line of how busy this replica is: streams held,
// heartbeats handled, and the event-loop delay. Heartbeats are handled on
// the event loop as their frames are read (a few field writes each), so how
// late the loop runs is how late a heartbeat is handled: the delay's p99 is
// the figure the load benchmark (bench/fleet_load.ts) reads and reports.

import { monitorEventLoopDelay } from "node:perf_hooks";
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
  // The histogram records the time between two ticks of a `resolutionMs`
  // timer; the delay is what exceeds the period.
  const ms = (ns: number) => Math.max(0, Math.round((ns / 1e6 - resolutionMs) * 100) / 100);
  const timer = setInterval(() => {
    const now = performance.now();
    const stats = hub.getStats();
    const memory = process.memoryUsage();
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
      },
      "fleet load",
    );
    lastHeartbeats = stats.heartbeats;
    lastAt = now;
    delay.reset();
  }, LOAD_LOG_INTERVAL_MS);
  timer.unref();
  return () => {
    clearInterval(timer);
    delay.disable();
  };
}
