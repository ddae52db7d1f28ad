// The rollout controller's decisions, as a pure function: (the deployment as
// wanted, its replicas as they are, now) → actions and the deployment's
// state. The loop (controller.ts) loads, calls decide() and applies; nothing
// here reads a clock, a database or the network, so every rule below is a
// unit test in rollout.test.ts.
//
// Rules, in the order decide() applies them:
//
// 1. A replica whose job ended without being asked to is marked ended; its
//    slot is empty again.
// 2. Stopped deployment: stop every replica; it is stopping until none is
//    left, then stopped.
// 3. A current replica (current revision and restart generation) healthy
//    for min_healthy_time is counted healthy, once (sticky).
// 4. Replicas in slots no longer wanted (scaled down, agent no longer
//    matches) are stopped.
// 5. A current replica that is not counted healthy within healthy_deadline,
//    that restarted 3 times without becoming healthy, or whose job ended, is
//    failing. During a rollout that fails the rollout: with auto_revert and
//    a stable revision to go back to, revert to it; else the deployment is
//    failed and the rollout starts nothing more. Outside a rollout the
//    replica is replaced on another agent.
// 6. Per slot: once a current replica is counted healthy, the slot's other
//    replicas (old revision, extra copies) are stopped — start before stop,
//    so capacity never drops. A counted replica unhealthy for
//    replace_unhealthy_after gets a replacement on another agent. An empty
//    slot is filled at once (capacity comes first, also while paused); a
//    slot whose only replicas are old gets a new one when the batch budget
//    allows: at most max_parallel current replicas not yet counted healthy.
// 7. Canaries: while a rollout from an earlier revision is not promoted,
//    only `canary` old slots get a new replica, and their old replicas stay;
//    once all canaries count healthy, auto_promote promotes, else the
//    deployment waits for PromoteDeployment.
// 8. Every wanted slot holding exactly one replica, current and counted, and
//    nothing else running: the rollout succeeded and the revision is stable.

import { durationText } from "../../lib/host/time.ts";

export type DeployState = "rolling_out" | "running" | "paused" | "waiting_promotion" | "failed" | "stopping" | "stopped" | "reverting";
export type Health = "unknown" | "healthy" | "unhealthy";

/** How a new revision replaces the old one, in milliseconds and counts. */
export interface Strategy {
  maxParallel: number;
  minHealthyMs: number;
  healthyDeadlineMs: number;
  autoRevert: boolean;
  canary: number;
  autoPromote: boolean;
  replaceUnhealthyMs: number;
}

export const DEFAULT_STRATEGY: Strategy = {
  maxParallel: 1,
  minHealthyMs: 10_000,
  healthyDeadlineMs: 5 * 60_000,
  autoRevert: true,
  canary: 0,
  autoPromote: false,
  replaceUnhealthyMs: 60_000,
};

/** A new replica restarted this many times without becoming healthy fails its rollout. */
export const FAILING_RESTARTS = 3;

/** The deployment as wanted, plus what the controller decided last time. */
export interface DeploymentView {
  revision: number;
  generation: number;
  stableRevision: number;
  /** Slots wanted: "0".."n-1", or agent ids for per_agent. */
  slots: readonly string[];
  /** per_agent: a replica's slot is the agent it must run on. */
  perAgent: boolean;
  strategy: Strategy;
  stopped: boolean;
  paused: boolean;
  promoted: boolean;
  state: DeployState;
}

/** A replica that is not over yet, with its job's view folded in. */
export interface ReplicaView {
  id: string;
  revision: number;
  generation: number;
  slot: string;
  canary: boolean;
  /** pending: waiting for an agent; running: on an agent; ended: its job is over. */
  phase: "pending" | "running" | "ended";
  /** A stop was asked for (the loop finishes it; decide() ignores the replica). */
  stopping: boolean;
  health: Health;
  healthMessage: string;
  /** ms since epoch; null when health is unknown. */
  healthSince: number | null;
  createdAt: number;
  /** When it was counted healthy, or null. */
  healthyAt: number | null;
  restarts: number;
  agentId: string | null;
  /** Why its job ended (phase "ended"). */
  endReason?: string;
  /** Why its job waits for an agent (phase "pending"), as the Scheduler says. */
  waitReason?: string;
}

export type Action =
  | { kind: "start"; slot: string; revision: number; generation: number; canary: boolean; pinAgent: string | null; avoidAgents: string[]; reason: string }
  | { kind: "stop"; replicaId: string; reason: string }
  | { kind: "counted"; replicaId: string }
  | { kind: "ended"; replicaId: string; reason: string }
  | { kind: "revert"; toRevision: number; reason: string; failedReplicaIds: string[] }
  | { kind: "promote" };

export interface Progress {
  desired: number;
  healthy: number;
  inFlight: number;
  batch: number;
  batches: number;
}

export interface Decision {
  actions: Action[];
  state: DeployState;
  message: string;
  /** Set when the current revision just became stable. */
  stable?: number;
  /** Replicas whose trouble made the decision (for the failure's log lines). */
  failing: string[];
  progress: Progress;
}

/** The states in which a rollout is under way (paused and waiting for promotion included). */
export const IN_ROLLOUT: ReadonlySet<DeployState> = new Set(["rolling_out", "reverting", "paused", "waiting_promotion"]);

export function decide(d: DeploymentView, replicas: readonly ReplicaView[], now: number): Decision {
  const actions: Action[] = [];
  const s = d.strategy;
  const isCurrent = (r: ReplicaView) => r.revision === d.revision && r.generation === d.generation;

  // 1. Jobs that ended on their own.
  const ended = replicas.filter((r) => r.phase === "ended" && !r.stopping);
  for (const r of ended) actions.push({ kind: "ended", replicaId: r.id, reason: r.endReason ?? "its job ended" });
  const live = replicas.filter((r) => r.phase !== "ended" && !r.stopping);

  // 2. Stopped.
  if (d.stopped) {
    for (const r of live) actions.push({ kind: "stop", replicaId: r.id, reason: "the deployment is stopped" });
    const left = replicas.filter((r) => r.phase !== "ended").length;
    if (left === 0) return result(actions, "stopped", "stopped", [], progressOf(d, live, isCurrent, () => false));
    return result(actions, "stopping", `stopping ${left} replica${left === 1 ? "" : "s"}`, [], progressOf(d, live, isCurrent, () => false));
  }

  // 3. Counted healthy.
  const counted = new Set<string>();
  for (const r of live) {
    if (!isCurrent(r)) continue;
    if (r.healthyAt !== null) counted.add(r.id);
    else if (r.health === "healthy" && r.healthSince !== null && now - r.healthSince >= s.minHealthyMs) {
      counted.add(r.id);
      actions.push({ kind: "counted", replicaId: r.id });
    }
  }
  const isCounted = (r: ReplicaView) => counted.has(r.id);

  // 4. Unwanted slots.
  const wanted = new Set(d.slots);
  const stopped = new Set<string>();
  const stop = (r: ReplicaView, reason: string) => {
    if (stopped.has(r.id)) return;
    stopped.add(r.id);
    actions.push({ kind: "stop", replicaId: r.id, reason });
  };
  for (const r of live) if (!wanted.has(r.slot)) stop(r, d.perAgent ? `agent ${r.slot} no longer matches` : "scaled down");

  // 5. Failing new replicas.
  const inRollout = IN_ROLLOUT.has(d.state);
  const failing: { r: ReplicaView; why: string }[] = [];
  for (const r of replicas) {
    if (r.stopping || !isCurrent(r) || isCounted(r) || stopped.has(r.id)) continue;
    const why = failure(r, s, now);
    if (why) failing.push({ r, why });
  }
  const failedIds = failing.map((f) => f.r.id);
  if (failing.length > 0 && inRollout) {
    const why = failing[0]!.why + (failing.length > 1 ? ` (and ${failing.length - 1} more)` : "");
    if (s.autoRevert && d.stableRevision > 0 && d.stableRevision !== d.revision && d.state !== "reverting") {
      actions.push({ kind: "revert", toRevision: d.stableRevision, reason: why, failedReplicaIds: failedIds });
      return result(actions, "reverting", `revision ${d.revision} failed: ${why}; reverting to revision ${d.stableRevision}`, failedIds, progressOf(d, live, isCurrent, isCounted));
    }
    return result(actions, "failed", `revision ${d.revision} failed: ${why}`, failedIds, progressOf(d, live, isCurrent, isCounted));
  }
  if (d.state === "failed") {
    // A failed rollout stays where it stopped until a new apply, a rollback
    // or a restart; only unwanted slots and ended jobs are still handled.
    return result(actions, "failed", "", [], progressOf(d, live, isCurrent, isCounted));
  }
  const replaced = new Set<string>();
  for (const { r, why } of failing) {
    // Outside a rollout: replace it elsewhere (a pending one is only stopped).
    if (r.phase === "ended") continue; // its slot is refilled below
    stop(r, `replaced: ${why}`);
    replaced.add(r.id);
  }

  // 6 and 7. Per slot.
  const canaryPhase = s.canary > 0 && !d.promoted && d.stableRevision > 0 && d.stableRevision !== d.revision && d.state !== "reverting";
  const alive = live.filter((r) => !stopped.has(r.id));
  const inFlight = alive.filter((r) => isCurrent(r) && !isCounted(r)).length;
  let budget = Math.max(0, s.maxParallel - inFlight);
  let canaries = alive.filter((r) => isCurrent(r) && r.canary).length;
  const bySlot = new Map<string, ReplicaView[]>();
  for (const r of alive) bySlot.set(r.slot, [...(bySlot.get(r.slot) ?? []), r]);
  const start = (slot: string, reason: string, canary: boolean, avoid: string[] = []) =>
    actions.push({ kind: "start", slot, revision: d.revision, generation: d.generation, canary, pinAgent: d.perAgent ? slot : null, avoidAgents: avoid, reason });

  for (const slot of d.slots) {
    const here = bySlot.get(slot) ?? [];
    const cur = here.filter(isCurrent);
    const old = here.filter((r) => !isCurrent(r));
    const good = cur.filter(isCounted);
    if (good.length > 0) {
      const keep = pickKeeper(good);
      const holdOld = keep.canary && canaryPhase;
      for (const r of cur) if (r !== keep) stop(r, `replica ${short(keep.id)} serves slot ${slot}`);
      if (!holdOld) for (const r of old) stop(r, `replaced by revision ${d.revision} (replica ${short(keep.id)})`);
      const sick = keep.health === "unhealthy" && keep.healthSince !== null && now - keep.healthSince >= s.replaceUnhealthyMs;
      if (sick && cur.length === 1 && !d.perAgent) {
        start(slot, `replica ${short(keep.id)} unhealthy for ${durationText(now - keep.healthSince!)}: ${keep.healthMessage}`, false, keep.agentId ? [keep.agentId] : []);
      }
      continue;
    }
    if (cur.length > 0) continue; // in flight
    const replacedHere = replicas.find((r) => replaced.has(r.id) && r.slot === slot);
    const avoid = replacedHere?.agentId && !d.perAgent ? [replacedHere.agentId] : [];
    if (old.length === 0) {
      start(slot, replacedHere ? `replacing replica ${short(replacedHere.id)}` : "slot is empty", false, avoid);
      continue;
    }
    if (d.paused) continue;
    if (canaryPhase) {
      if (canaries < s.canary) {
        canaries++;
        start(slot, `canary ${canaries} of ${s.canary} for revision ${d.revision}`, true);
      }
      continue;
    }
    if (budget > 0) {
      budget--;
      start(slot, `rolling out revision ${d.revision}`, false);
    }
  }

  const progress = progressOf(d, live.filter((r) => !stopped.has(r.id)), isCurrent, isCounted);
  // Done: every wanted slot holds one current replica, counted, and nothing
  // else (unwanted slots were stopped in step 4). A replica this pass stops
  // counts as gone already, as it does in every later pass.
  const done =
    d.slots.every((slot) => {
      const here = (bySlot.get(slot) ?? []).filter((r) => !stopped.has(r.id));
      return here.length === 1 && isCurrent(here[0]!) && isCounted(here[0]!);
    }) && !actions.some((a) => a.kind === "start");
  const sick = alive.filter((r) => isCounted(r) && !stopped.has(r.id) && r.health === "unhealthy").length;
  const healthyText = `${progress.healthy - sick} of ${progress.desired} healthy`;
  if (done) {
    const stable = d.stableRevision !== d.revision ? d.revision : undefined;
    return result(actions, "running", sick > 0 ? `degraded: ${healthyText}` : healthyText, [], progress, stable);
  }
  if (canaryPhase) {
    const mine = alive.filter((r) => isCurrent(r) && r.canary);
    const wantedCanaries = Math.min(s.canary, d.slots.length);
    if (mine.length >= wantedCanaries && mine.every(isCounted)) {
      if (s.autoPromote) {
        actions.push({ kind: "promote" });
        return result(actions, "rolling_out", `canaries healthy, promoted; ${healthyText}`, [], progress);
      }
      return result(actions, "waiting_promotion", `${mine.length} canar${mine.length === 1 ? "y" : "ies"} healthy: waiting for promotion`, [], progress);
    }
  }
  if (d.paused && inRollout) return result(actions, "paused", `paused at ${healthyText}`, [], progress);
  if (d.state === "reverting") return result(actions, "reverting", `reverting to revision ${d.revision}: ${healthyText}`, [], progress);
  if (d.state === "running") return result(actions, "running", `degraded: ${healthyText}`, [], progress);
  return result(actions, "rolling_out", `rolling out revision ${d.revision}: ${healthyText}, batch ${progress.batch} of ${progress.batches}`, [], progress);
}

/** Why a current replica not yet counted healthy is failing, or undefined. */
function failure(r: ReplicaView, s: Strategy, now: number): string | undefined {
  const detail = r.healthMessage ? `: ${r.healthMessage}` : "";
  if (r.phase === "ended") return `replica ${short(r.id)} ended: ${r.endReason ?? "its job ended"}`;
  if (r.restarts >= FAILING_RESTARTS && r.health !== "healthy") return `replica ${short(r.id)} restarted ${r.restarts} times without becoming healthy${detail}`;
  if (now - r.createdAt > s.healthyDeadlineMs) {
    // Never placed: the deadline passed waiting for an agent, and the reason is the Scheduler's, not health.
    if (r.phase === "pending") return `replica ${short(r.id)} not placed within ${durationText(s.healthyDeadlineMs)}: ${r.waitReason || "no agent took it"}`;
    return `replica ${short(r.id)} not healthy within ${durationText(s.healthyDeadlineMs)}${detail}`;
  }
  return undefined;
}

/** The replica a slot keeps: healthy now before not, then the newest. */
function pickKeeper(good: readonly ReplicaView[]): ReplicaView {
  return [...good].sort((a, b) => rank(b) - rank(a) || b.createdAt - a.createdAt || (a.id < b.id ? -1 : 1))[0]!;
}

function rank(r: ReplicaView): number {
  return r.health === "healthy" ? 2 : r.health === "unknown" ? 1 : 0;
}

function progressOf(d: DeploymentView, live: readonly ReplicaView[], isCurrent: (r: ReplicaView) => boolean, isCounted: (r: ReplicaView) => boolean): Progress {
  const desired = d.slots.length;
  const wanted = new Set(d.slots);
  const healthySlots = new Set(live.filter((r) => wanted.has(r.slot) && isCurrent(r) && isCounted(r)).map((r) => r.slot));
  const healthy = healthySlots.size;
  const inFlight = live.filter((r) => isCurrent(r) && !isCounted(r)).length;
  const per = Math.max(1, d.strategy.maxParallel);
  const batches = Math.max(1, Math.ceil(desired / per));
  const batch = Math.min(batches, Math.floor(healthy / per) + 1);
  return { desired, healthy, inFlight, batch, batches };
}

function result(actions: Action[], state: DeployState, message: string, failing: string[], progress: Progress, stable?: number): Decision {
  return { actions, state, message, failing, progress, ...(stable !== undefined ? { stable } : {}) };
}

export function short(id: string): string {
  return id.slice(0, 8);
}
