// Liveness is a pure function of how long an agent has been silent. The
// monitor (agents a replica holds) and the sweeper (agents no replica holds)
// both ask it; neither decides anything else about status.
//
//   silence = now - last heartbeat
//   silence <  staleAfter                -> online
//   staleAfter <= silence < offlineAfter -> stale
//   offlineAfter <= silence              -> offline
//
// A heartbeat "from the future" (clock skew between replicas, or a snapshot
// written by a replica whose clock runs ahead) counts as silence 0.

/** An agent's liveness as stored ("online" | "stale" | "offline"). */
export type Liveness = "online" | "stale" | "offline";

export const LIVENESS: readonly Liveness[] = ["online", "stale", "offline"];

/** When silence turns an agent stale, then offline. */
export interface LivenessThresholds {
  /** Silence, in ms, from which an agent is stale. */
  staleAfterMs: number;
  /** Silence, in ms, from which an agent is offline; more than staleAfterMs. */
  offlineAfterMs: number;
}

/** The liveness of an agent whose last heartbeat arrived at lastHeartbeatMs, seen at nowMs. */
export function livenessAt(lastHeartbeatMs: number, nowMs: number, thresholds: LivenessThresholds): Liveness {
  const silence = nowMs - lastHeartbeatMs;
  if (!(silence >= thresholds.staleAfterMs)) return "online"; // also NaN: no evidence of silence
  if (silence < thresholds.offlineAfterMs) return "stale";
  return "offline";
}

/** Why an agent has the liveness it has, in words for the status history. */
export function livenessReason(to: Liveness, lastHeartbeatMs: number, nowMs: number): string {
  if (to === "online") return "heartbeats arrive";
  const seconds = Math.max(0, nowMs - lastHeartbeatMs) / 1000;
  return `no heartbeat for ${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)}s`;
}
