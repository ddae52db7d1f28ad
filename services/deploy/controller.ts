// The rollout loop: every tick, claim the deployments nobody else drives
// (a lease in Postgres, renewed while held), and for each: load its
// replicas, fold in their jobs' state and health from the Scheduler, ask
// decide() (rollout.ts) what to do, write the decision in one transaction
// that checks the deployment did not change meanwhile, then submit and
// cancel the replicas' jobs.
//
// Between ticks, the Scheduler's job-changes doorbell (signals.ts) wakes a
// pass over just the deployments whose replicas' jobs changed (placed,
// running, healthy, ended), and a timer wakes one when a replica will have
// been healthy for min_healthy_time: a rollout waits on its replicas, not
// on the tick.
//
// Restart-safe by construction: a replica row is written before its job is
// submitted, and the job is submitted with the idempotency key
// deploy:replica:<id>; a replica without a job id is submitted again on the
// next tick, so a Deploy killed between the two never starts a replica twice.

import { hostname } from "node:os";
import { randomUUID } from "node:crypto";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { PrismaClient } from "../../gen/prisma/deploy/client.ts";
import { HealthState } from "../../gen/ts/drover/common/v1/service_pb.ts";
import { ServiceSpecSchema, type ServiceSpec } from "../../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import { AgentStatus, Schedulability } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { JobState, type Job } from "../../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import type { DroverClients } from "../../lib/clients.ts";
import type { DeploySettings } from "../../lib/config.ts";
import type { SqlExecutor } from "../../lib/db/executor.ts";
import { decide, short, type Decision, type DeployState, type DeploymentView, type Health, type ReplicaView } from "./rollout.ts";
import { NEW_REPLICA, insertEvents, insertReplicas, patchDeployment, readDeployment, readLiveReplicas, writeJobIds, writeReplicas, writeStopRequested, type DeploymentRow, type EventRow, type ReplicaRow } from "./rows.ts";
import type { DeploySignals } from "./signals.ts";
import { replicaJobSpec, strategyOf } from "./spec.ts";

const ENDED: ReadonlySet<JobState> = new Set([JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT, JobState.DEAD]);
/** A stop not confirmed after this long is asked for again. */
const CANCEL_AGAIN_MS = 10_000;
/**
 * Replicas that come due this close together are counted in one pass, at
 * the last one's time: a batch's replicas turn healthy a few ms apart, and
 * counting the first alone would leave its siblings waiting for that whole
 * pass (tens of ms) and split the next batch in two.
 */
export const DUE_TOGETHER_MS = 20;
/**
 * Doorbells that ring this close before a replica comes due wait for that
 * pass (about a pass's length, so one started earlier has ended by then).
 */
export const QUIET_BEFORE_DUE_MS = 50;
/**
 * A pass that starts replicas and stops others sends the stops once the
 * started ones are placed, and at most this long after (a replica waiting
 * for capacity that a stopped sibling holds gets it then): placing them is
 * what the rollout waits on, and a stop's work (the cancel, the agent
 * ending the process, its events) competed with it for the control plane.
 * The stop is written at once (state stopping); the replicas it stops run
 * that much longer.
 */
export const STOPS_AFTER_STARTS_MS = 500;
/** Revisions' specs kept parsed in memory. */
const SPECS_KEPT = 512;

export interface ControllerDeps {
  db: PrismaClient;
  /** The same database below Prisma, for the rows every pass reads and writes (rows.ts). */
  sql: SqlExecutor;
  clients: DroverClients;
  logger: Logger;
  settings: DeploySettings;
  /** Told which deployments a pass changed (WatchDeployment streams wait on it). */
  signals?: DeploySignals;
}

export class Controller {
  readonly id = `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  /** Run again as soon as the running pass ends. */
  private wakeSoon = false;
  /** The next pass claims and looks at every deployment (an API call changed one, or the tick is due). */
  private fullSoon = true;
  private lastFull = 0;
  /**
   * Per deployment, when it next needs a pass of its own (ms since epoch):
   * when its earliest replica not yet counted will have been healthy for
   * min_healthy_time, or when its held stops are due to go out.
   */
  private readonly due = new Map<string, number>();
  /** The deployments this replica drives, as the last full pass claimed them. */
  private held: string[] = [];
  /** Job id → deployment, for the live replicas of the deployments held: which doorbells are ours. */
  private readonly replicaJobs = new Map<string, string>();
  private readonly jobsOfDeployment = new Map<string, string[]>();
  /** Deployments to look at in the next pass, with their replicas' jobs that changed since. */
  private readonly dirty = new Map<string, Set<string>>();
  /**
   * The replicas' jobs as the Scheduler last described them. A full pass
   * asks for every job; a doorbell's pass only for those that changed (and
   * any not held), so a rollout's stream of job changes does not cost a
   * ListJobs of every replica each time.
   */
  private readonly jobCache = new Map<string, Job>();
  /** "deployment:revision" → its spec, least recently used first. */
  private readonly specs = new Map<string, ServiceSpec>();
  /** Cancels still on their way (a pass does not wait for them; stop() does). */
  private readonly cancelling = new Set<Promise<void>>();
  /** Per deployment, stops waiting for the replicas started with them to be placed (see STOPS_AFTER_STARTS_MS). */
  private readonly heldStops = new Map<string, { rows: ReplicaRow[]; placing: Set<string>; until: number }[]>();

  constructor(private readonly deps: ControllerDeps) {}

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    for (const deployment of [...this.heldStops.keys()]) this.releaseStops(deployment);
    await Promise.all(this.cancelling);
    // Let another replica take over at once.
    await this.deps.db.deployment.updateMany({ where: { claimedBy: this.id }, data: { claimedBy: null, claimUntil: null } }).catch(() => {});
  }

  /** Run a full pass soon (after an API call changed a deployment). */
  wake(): void {
    this.fullSoon = true;
    this.kick();
  }

  /** The Scheduler says these jobs changed: look at the deployments whose replicas they are, soon. */
  jobsChanged(ids: readonly string[]): void {
    let ours = false;
    for (const id of ids) {
      const deployment = this.replicaJobs.get(id);
      if (deployment === undefined) continue;
      this.dirtied(deployment).add(id);
      ours = true;
    }
    if (ours) this.kick();
  }

  private dirtied(deployment: string): Set<string> {
    let jobs = this.dirty.get(deployment);
    if (!jobs) this.dirty.set(deployment, (jobs = new Set()));
    return jobs;
  }

  private kick(): void {
    if (this.running) this.wakeSoon = true;
    else if (!this.stopped) this.schedule(this.delay(true));
  }

  /**
   * How long until the next pass: `soon`, at once, unless a replica comes
   * due within QUIET_BEFORE_DUE_MS (then at that time: the pass that counts
   * it is the one a rollout waits on, it should not queue behind another,
   * and it takes the doorbells along); else at the tick or when the
   * earliest replica comes due.
   */
  private delay(soon: boolean): number {
    let earliest = Infinity;
    for (const at of this.due.values()) earliest = Math.min(earliest, at);
    const due = Math.max(0, earliest - Date.now());
    if (soon) return due <= QUIET_BEFORE_DUE_MS ? due : 0;
    return Math.min(due, Math.max(0, this.lastFull + this.deps.settings.tickMs - Date.now()));
  }

  private schedule(ms: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      const now = Date.now();
      for (const [id, at] of this.due) {
        if (at > now) continue;
        this.dirtied(id);
        this.due.delete(id);
      }
      // A doorbell's or a due replica's pass looks only at its deployments, unless the tick is due anyway: claims are renewed and new deployments taken by full passes.
      const full = this.fullSoon || this.dirty.size === 0 || now - this.lastFull >= this.deps.settings.tickMs;
      const only = full ? undefined : new Map(this.dirty);
      this.fullSoon = false;
      this.dirty.clear();
      this.running = this.tick(only)
        .catch((err: unknown) => this.deps.logger.warn({ err }, "deploy tick failed"))
        .finally(() => {
          this.running = undefined;
          if (this.stopped) return;
          const again = this.wakeSoon;
          this.wakeSoon = false;
          // Look again at the tick, or sooner when a replica will have been healthy long enough.
          this.schedule(this.delay(again));
        });
    }, ms);
    this.timer.unref?.();
  }

  /**
   * One pass: over every deployment this replica holds (claiming free ones
   * and renewing its claims, asking for every replica's job), or, given
   * `only`, over those of them, asking only for the jobs it names as
   * changed. Exposed for tests.
   */
  async tick(only?: ReadonlyMap<string, ReadonlySet<string>>): Promise<void> {
    const started = performance.now();
    let ids: string[];
    if (only) ids = this.held.filter((id) => only.has(id));
    else {
      this.lastFull = Date.now();
      ids = this.held = await this.claim();
      const held = new Set(ids);
      for (const deployment of [...this.jobsOfDeployment.keys()]) if (!held.has(deployment)) this.noteJobs(deployment, []);
      for (const deployment of [...this.due.keys()]) if (!held.has(deployment)) this.due.delete(deployment);
      for (const deployment of [...this.heldStops.keys()]) if (!held.has(deployment)) this.releaseStops(deployment);
    }
    const changed: string[] = [];
    for (const id of ids) {
      if (this.stopped) return;
      try {
        if (await this.reconcile(id, only?.get(id))) changed.push(id);
      } catch (err) {
        this.deps.logger.warn({ err, deployment: id }, "reconciling a deployment failed");
      }
    }
    this.deps.signals?.changed(changed);
    const ms = performance.now() - started;
    if (ids.length > 0) this.deps.logger.debug({ ms: Math.round(ms), deployments: ids.length, full: !only }, "deploy tick");
  }

  /**
   * Claims every deployment that is free, renews ours once half their claim
   * has run out (not every tick: a row write per deployment five times a
   * second adds up over thousands), and returns the ids of all ours.
   * Exposed for tests.
   */
  async claim(): Promise<string[]> {
    const done = `stopped AND state = 'stopped' AND NOT EXISTS (
                    SELECT 1 FROM deploy.replicas r WHERE r.deployment_id = d.id AND r.state IN ('pending', 'running', 'stopping'))`;
    const rows = await this.deps.sql.query<{ id: string }>(
      `WITH renewed AS (
         UPDATE deploy.deployments SET claimed_by = $1, claim_until = now() + $2::int * interval '1 millisecond'
          WHERE id IN (SELECT id FROM deploy.deployments d
                        WHERE ((claimed_by = $1 AND claim_until < now() + $2::int / 2 * interval '1 millisecond')
                               OR claim_until IS NULL OR claim_until < now())
                          AND NOT (${done})
                        FOR UPDATE SKIP LOCKED)
         RETURNING id
       )
       SELECT id FROM renewed
       UNION ALL
       SELECT id FROM deploy.deployments d
        WHERE claimed_by = $1 AND claim_until >= now() + $2::int / 2 * interval '1 millisecond' AND NOT (${done})`,
      [this.id, this.deps.settings.claimMs],
    );
    return rows.map((r) => r.id).sort();
  }

  /** A revision's spec; revisions never change, so each is read and parsed once (the latest few hundred kept). */
  private async specOf(deployment: string, revision: number): Promise<ServiceSpec> {
    const key = `${deployment}:${revision}`;
    let spec = this.specs.get(key);
    if (spec) {
      this.specs.delete(key); // most recently used goes last
    } else {
      const rev = await this.deps.db.revision.findUniqueOrThrow({ where: { deploymentId_number: { deploymentId: deployment, number: revision } } });
      spec = fromJson(ServiceSpecSchema, rev.spec as JsonValue);
    }
    this.specs.set(key, spec);
    if (this.specs.size > SPECS_KEPT) this.specs.delete(this.specs.keys().next().value!);
    return spec;
  }

  /** Which jobs are the deployment's live replicas' now, for jobsChanged. */
  private noteJobs(deployment: string, jobs: readonly string[]): void {
    const now = new Set(jobs);
    for (const job of this.jobsOfDeployment.get(deployment) ?? []) {
      this.replicaJobs.delete(job);
      if (!now.has(job)) this.jobCache.delete(job);
    }
    for (const job of jobs) this.replicaJobs.set(job, deployment);
    if (jobs.length > 0) this.jobsOfDeployment.set(deployment, [...jobs]);
    else this.jobsOfDeployment.delete(deployment);
  }

  /**
   * Looks at one deployment and acts; true when it wrote anything a watcher
   * would see. `changedJobs`: only these of its replicas' jobs need asking
   * about (undefined: all).
   */
  private async reconcile(id: string, changedJobs?: ReadonlySet<string>): Promise<boolean> {
    const { sql } = this.deps;
    const dep = await readDeployment(sql, { id });
    if (!dep || dep.claimedBy !== this.id) {
      this.noteJobs(id, []);
      return false;
    }
    const spec = await this.specOf(id, dep.currentRevision);
    const rows = await readLiveReplicas(sql, id, "created");

    // Jobs for replicas whose submit did not finish (a crash, the Scheduler down).
    await this.submit(dep, rows.filter((r) => !r.jobId && r.state !== "stopping"));
    this.noteJobs(id, rows.flatMap((r) => (r.jobId ? [r.jobId] : [])));

    const jobs = await this.jobsOf(rows, changedJobs);
    const now = Date.now();
    this.releaseStops(id, jobs);
    const views: ReplicaView[] = [];
    const changed: ReplicaRow[] = [];
    const cancelAgain: ReplicaRow[] = [];
    for (const r of rows) {
      const job = r.jobId ? jobs.get(r.jobId) : undefined;
      const synced = this.sync(r, job, now, changed, cancelAgain);
      if (synced) views.push(synced);
    }
    await writeReplicas(sql, changed);
    await this.cancel(cancelAgain, () => "stopping again", true);
    const slots = await this.slotsOf(dep, spec);
    const view: DeploymentView = {
      revision: dep.currentRevision,
      generation: dep.generation,
      stableRevision: dep.stableRevision,
      slots,
      perAgent: !!spec.perAgent,
      strategy: strategyOf(spec),
      stopped: dep.stopped,
      paused: dep.paused,
      promoted: dep.promoted,
      state: dep.state as DeployState,
    };
    const decision = decide(view, views, now);
    // The next look at this deployment: when a replica not yet counted will have been healthy long enough.
    const countedNow = new Set(decision.actions.flatMap((a) => (a.kind === "counted" ? [a.replicaId] : [])));
    const due = dueTime(views.flatMap((r) => (r.healthyAt === null && !countedNow.has(r.id) && r.health === "healthy" && r.healthSince !== null ? [r.healthSince] : [])), view.strategy.minHealthyMs);
    const next = Math.min(due ?? Infinity, ...(this.heldStops.get(id) ?? []).map((h) => h.until));
    if (next === Infinity) this.due.delete(id);
    else this.due.set(id, next);
    const wrote = await this.apply(dep, spec, view, views, new Map(rows.map((r) => [r.id, r])), decision);
    return wrote || changed.length > 0;
  }

  /** The deployment's replica slots: "0".."n-1", or the ids of matching agents not offline or draining. */
  private async slotsOf(dep: DeploymentRow, spec: ServiceSpec): Promise<string[]> {
    if (!spec.perAgent) return Array.from({ length: dep.desiredReplicas }, (_, i) => String(i));
    const ids: string[] = [];
    let pageToken = "";
    do {
      const page = await this.deps.clients.fleet.listAgents({ labelSelector: spec.perAgent.labels, pageSize: 1000, pageToken });
      for (const a of page.agents) {
        if (a.status === AgentStatus.OFFLINE) continue;
        // A draining agent gives its replicas up; a cordoned one keeps what it runs.
        if (a.schedulability === Schedulability.DRAINING) continue;
        ids.push(a.id);
      }
      pageToken = page.nextPageToken;
    } while (pageToken);
    return ids.sort();
  }

  /** The replicas' jobs: asked of the Scheduler (all, or the changed ones and those not held), the rest from jobCache. */
  private async jobsOf(rows: readonly ReplicaRow[], changed?: ReadonlySet<string>): Promise<Map<string, Job>> {
    const ids = rows.map((r) => r.jobId).filter((j): j is string => !!j);
    const ask = changed ? ids.filter((j) => changed.has(j) || !this.jobCache.has(j)) : ids;
    for (let i = 0; i < ask.length; i += 1000) {
      const chunk = ask.slice(i, i + 1000);
      const res = await this.deps.clients.scheduler.listJobs({ ids: chunk, pageSize: chunk.length });
      // A job the Scheduler no longer has is left out, as it answered.
      for (const id of chunk) this.jobCache.delete(id);
      for (const j of res.jobs) this.jobCache.set(j.id, j);
    }
    const out = new Map<string, Job>();
    for (const id of ids) {
      const job = this.jobCache.get(id);
      if (job) out.set(id, job);
    }
    return out;
  }

  /**
   * Copies the job's view into the replica row (agent, health, restarts) and
   * finishes stops whose job ended, noting the rows it changed (written
   * together by the caller); returns what decide() sees, null for a replica
   * that is over.
   */
  private sync(r: ReplicaRow, job: Job | undefined, now: number, changed: ReplicaRow[], cancelAgain: ReplicaRow[]): ReplicaView | null {
    const attempt = job?.attempts.at(-1);
    const liveAttempt = job && (job.state === JobState.ASSIGNED || job.state === JobState.RUNNING) ? attempt : undefined;
    const agentId = liveAttempt?.agentId || null;
    const h = liveAttempt?.health;
    const health: Health = h?.state === HealthState.HEALTHY ? "healthy" : h?.state === HealthState.UNHEALTHY ? "unhealthy" : "unknown";
    const healthSince = h?.since ? new Date(Number(timestampMs(h.since))) : null;
    const ended = !!job && ENDED.has(job.state);
    if (r.state === "stopping") {
      if (ended || !r.jobId) {
        Object.assign(r, { state: "stopped", endedAt: new Date(now), agentId: agentId ?? r.agentId });
        changed.push(r);
        return null;
      }
      if (r.stopRequestedAt && now - r.stopRequestedAt.getTime() > CANCEL_AGAIN_MS) cancelAgain.push(r);
    }
    const next: Partial<ReplicaRow> = {};
    if (agentId !== r.agentId && !ended) {
      next.agentId = agentId;
      if (r.agentId) next.healthyAt = null; // moved: count it again where it is now
    }
    if (health !== r.health) next.health = health;
    if ((h?.message ?? "") !== r.healthMessage) next.healthMessage = h?.message ?? "";
    if ((healthSince?.getTime() ?? null) !== (r.healthSince?.getTime() ?? null)) next.healthSince = healthSince;
    if ((h?.restarts ?? r.restarts) !== r.restarts) next.restarts = h!.restarts;
    if (h?.port && h.port !== r.port) next.port = h.port;
    const state = ended ? r.state : liveAttempt ? "running" : "pending";
    if (state !== r.state && r.state !== "stopping") next.state = state;
    if (Object.keys(next).length > 0) {
      Object.assign(r, next);
      changed.push(r);
    }
    return {
      id: r.id,
      revision: r.revision,
      generation: r.generation,
      slot: r.slot,
      canary: r.canary,
      phase: ended ? "ended" : r.state === "running" ? "running" : "pending",
      stopping: r.state === "stopping",
      health: r.health as Health,
      healthMessage: r.healthMessage,
      healthSince: r.healthSince?.getTime() ?? null,
      createdAt: r.createdAt.getTime(),
      healthyAt: r.healthyAt?.getTime() ?? null,
      restarts: r.restarts,
      agentId: r.agentId,
      endReason: ended ? job!.endReason || JobState[job!.state].toLowerCase() : undefined,
      waitReason: !ended && !liveAttempt ? job?.waitReason || undefined : undefined,
    };
  }

  /**
   * Writes the decision (if the deployment is as it was read and still
   * ours), then talks to the Scheduler; true when it wrote anything.
   */
  private async apply(dep: DeploymentRow, spec: ServiceSpec, view: DeploymentView, replicas: readonly ReplicaView[], rows: ReadonlyMap<string, ReplicaRow>, d: Decision): Promise<boolean> {
    const { sql } = this.deps;
    const byId = new Map(replicas.map((r) => [r.id, r]));
    const failureLines = d.failing.length > 0 && (d.state === "reverting" || d.state === "failed") && d.state !== dep.state ? await this.lastLines(d.failing[0]!) : "";
    const message = (d.message || dep.statusMessage) + failureLines;
    const events: { kind: string; message: string; revision: number; replicaId?: string }[] = [];
    const starts: ReplicaRow[] = [];
    const stops: ReplicaRow[] = [];
    const now = new Date();
    const applied = await sql.transaction(async (tx) => {
      const fresh = await tx.query<{ n: number }>(
        `SELECT 1 AS n FROM deploy.deployments
         WHERE id = $1::uuid AND claimed_by = $2 AND current_revision = $3 AND generation = $4 AND stopped = $5 AND paused = $6 AND promoted = $7
           AND desired_replicas = $8 AND state = $9 AND event_seq = $10::bigint
         FOR UPDATE`,
        [dep.id, this.id, dep.currentRevision, dep.generation, dep.stopped, dep.paused, dep.promoted, dep.desiredReplicas, dep.state, String(dep.eventSeq)],
      );
      if (fresh.length === 0) return false; // changed by an API call meanwhile: decide again next tick
      let revision = view.revision;
      const patch: Partial<DeploymentRow> = {};
      const touched = new Set<ReplicaRow>();
      for (const a of d.actions) {
        switch (a.kind) {
          case "start": {
            const row: ReplicaRow = {
              ...NEW_REPLICA,
              id: randomUUID(),
              deploymentId: dep.id,
              revision: a.revision,
              generation: a.generation,
              slot: a.slot,
              canary: a.canary,
              avoidAgents: a.avoidAgents,
              message: a.reason,
              createdAt: now,
            };
            starts.push(row);
            events.push({ kind: "replica_started", message: `replica ${short(row.id)} of revision ${a.revision} for slot ${a.slot}: ${a.reason}`, revision: a.revision, replicaId: row.id });
            break;
          }
          case "stop": {
            const row = rows.get(a.replicaId)!;
            Object.assign(row, { state: "stopping", stopRequestedAt: now, message: a.reason });
            stops.push(row);
            touched.add(row);
            events.push({ kind: "replica_stopped", message: `replica ${short(a.replicaId)} stopped: ${a.reason}`, revision: row.revision, replicaId: a.replicaId });
            break;
          }
          case "counted": {
            const row = rows.get(a.replicaId)!;
            row.healthyAt = now;
            touched.add(row);
            events.push({ kind: "replica_healthy", message: `replica ${short(a.replicaId)} healthy on ${byId.get(a.replicaId)?.agentId ?? "?"}`, revision: row.revision, replicaId: a.replicaId });
            break;
          }
          case "ended": {
            const row = rows.get(a.replicaId)!;
            Object.assign(row, { state: "failed", endedAt: now, message: a.reason });
            touched.add(row);
            events.push({ kind: "replica_failed", message: `replica ${short(a.replicaId)} ended: ${a.reason}`, revision: row.revision, replicaId: a.replicaId });
            break;
          }
          case "revert":
            revision = a.toRevision;
            Object.assign(patch, { currentRevision: a.toRevision, promoted: true, rolloutFrom: view.revision, rolloutStartedAt: now, rolloutEndedAt: null });
            events.push({ kind: "reverting", message: `revision ${view.revision} failed: ${a.reason}; reverting to revision ${a.toRevision}${failureLines}`, revision: a.toRevision });
            break;
          case "promote":
            patch["promoted"] = true;
            events.push({ kind: "promoted", message: "canaries healthy: promoted automatically", revision });
            break;
        }
      }
      await insertReplicas(tx, starts);
      await writeReplicas(tx, [...touched]);
      if (d.stable !== undefined) {
        patch.stableRevision = d.stable;
        patch.rolloutEndedAt = now;
      }
      if (d.state !== dep.state) {
        if (d.state === "running" && (dep.state === "rolling_out" || dep.state === "reverting")) {
          events.push({
            kind: dep.state === "reverting" ? "reverted" : "rollout_succeeded",
            message: dep.state === "reverting" ? `reverted to revision ${revision}: ${d.message}` : `revision ${revision} rolled out: ${d.message}`,
            revision,
          });
          patch.rolloutEndedAt = now;
        } else if (d.state === "failed") {
          events.push({ kind: "rollout_failed", message: message, revision });
          patch.rolloutEndedAt = now;
        } else if (d.state === "stopped") {
          events.push({ kind: "stopped", message: "every replica stopped", revision });
        } else if (d.state === "waiting_promotion") {
          events.push({ kind: "waiting_promotion", message: d.message, revision });
        }
      }
      if (d.state !== dep.state) patch.state = d.state;
      if (message !== dep.statusMessage) patch.statusMessage = message;
      if (events.length > 0) {
        const rows: EventRow[] = events.map((e, i) => ({ sequence: dep.eventSeq + BigInt(i + 1), kind: e.kind, message: e.message.slice(0, 8192), revision: e.revision, replicaId: e.replicaId ?? null }));
        await insertEvents(tx, dep.id, rows);
        patch.eventSeq = dep.eventSeq + BigInt(events.length);
      }
      await patchDeployment(tx, dep.id, patch);
      return starts.length > 0 || touched.size > 0 || events.length > 0 || Object.keys(patch).length > 0;
    });
    if (!applied) return false;
    // New replicas first (they are what the rollout waits for), all at once.
    await this.submit(dep, starts, spec);
    const placing = starts.flatMap((r) => (r.jobId ? [r.jobId] : []));
    if (stops.length > 0 && placing.length > 0) {
      // The stops wait for the new replicas' placement (see STOPS_AFTER_STARTS_MS).
      const until = Date.now() + STOPS_AFTER_STARTS_MS;
      this.heldStops.set(dep.id, [...(this.heldStops.get(dep.id) ?? []), { rows: stops, placing: new Set(placing), until }]);
      this.due.set(dep.id, Math.min(this.due.get(dep.id) ?? Infinity, until));
    } else this.stopNow(stops);
    return true;
  }

  /**
   * Sends the held stops of a deployment whose started replicas are placed
   * (their jobs as `jobs` says: neither pending nor offered) or whose time
   * is up; without `jobs`, all of them. A pending job with a wait reason is
   * not placed yet either: its offered agent may only have been slow to
   * answer, and it is auctioned again within ~250 ms (CI once saw the stop
   * sent 61 ms before such a retry placed the new replica).
   */
  private releaseStops(deployment: string, jobs?: ReadonlyMap<string, Job>): void {
    const held = this.heldStops.get(deployment);
    if (!held) return;
    const now = Date.now();
    const left = held.filter((h) => {
      for (const id of h.placing) {
        const job = jobs?.get(id);
        const placing = job && (job.state === JobState.OFFERED || job.state === JobState.PENDING);
        if (jobs && !placing) h.placing.delete(id);
      }
      if (jobs && h.placing.size > 0 && now < h.until) return true;
      this.stopNow(h.rows);
      return false;
    });
    if (left.length > 0) this.heldStops.set(deployment, left);
    else this.heldStops.delete(deployment);
  }

  /**
   * Cancels the stopped replicas' jobs without waiting (the pass goes on; a
   * replica counted healthy frees a batch slot, and its siblings due a few
   * ms later should not wait for the cancels' round trips). The stop is
   * already written (state stopping); a cancel that fails is asked again
   * after CANCEL_AGAIN_MS.
   */
  private stopNow(rows: readonly ReplicaRow[]): void {
    if (rows.length === 0) return;
    const cancelling = this.cancel(rows, (row) => row.message).finally(() => this.cancelling.delete(cancelling));
    this.cancelling.add(cancelling);
  }

  /**
   * Submits replicas' jobs in one SubmitJobs call (idempotent by key, so a
   * replica submitted before a crash gets its job back) and records their
   * ids in one statement. On a failure nothing is recorded, and the next
   * tick tries again.
   */
  private async submit(dep: DeploymentRow, all: readonly ReplicaRow[], current?: ServiceSpec): Promise<void> {
    // SubmitJobs takes at most 1000 jobs.
    for (let i = 0; i < all.length; i += 1000) await this.submitSome(dep, all.slice(i, i + 1000), current);
  }

  private async submitSome(dep: DeploymentRow, rows: readonly ReplicaRow[], current?: ServiceSpec): Promise<void> {
    const { sql, clients, logger } = this.deps;
    try {
      const specs = new Map<number, ServiceSpec>(current ? [[dep.currentRevision, current]] : []);
      for (const revision of new Set(rows.map((r) => r.revision))) {
        if (!specs.has(revision)) specs.set(revision, await this.specOf(dep.id, revision));
      }
      const { jobs } = await clients.scheduler.submitJobs({
        jobs: rows.map((r) => {
          const s = specs.get(r.revision)!;
          return {
            spec: replicaJobSpec(s, { deployment: dep.name, revision: r.revision, replicaId: r.id, slot: r.slot, pinAgent: s.perAgent ? r.slot : null, avoidAgents: r.avoidAgents }),
            idempotencyKey: `deploy:replica:${r.id}`,
          };
        }),
      });
      rows.forEach((r, i) => (r.jobId = jobs[i]!.job!.id));
      this.noteJobs(dep.id, [...(this.jobsOfDeployment.get(dep.id) ?? []), ...rows.map((r) => r.jobId!)]);
      await writeJobIds(sql, rows);
    } catch (err) {
      logger.warn({ err, replicas: rows.map((r) => r.id) }, "submitting replicas' jobs failed; trying again next tick");
    }
  }

  /**
   * Cancels the replicas' jobs in one CancelJobs call (per 1000); a failed
   * cancel is asked again CANCEL_AGAIN_MS after the stop was noted.
   * `again`: these were asked before, and the new time is noted (in one
   * statement); a first stop's time was written with the stop itself.
   */
  private async cancel(rows: readonly ReplicaRow[], reason: (r: ReplicaRow) => string, again = false): Promise<void> {
    const { clients, logger } = this.deps;
    const withJobs = rows.filter((r) => r.jobId);
    const asked: string[] = [];
    const request = (r: ReplicaRow) => ({ id: r.jobId!, reason: `deploy: ${reason(r)}`.slice(0, 1024) });
    for (let i = 0; i < withJobs.length; i += 1000) {
      const some = withJobs.slice(i, i + 1000);
      try {
        await clients.scheduler.cancelJobs({ jobs: some.map(request) });
        asked.push(...some.map((r) => r.id));
      } catch (err) {
        if (ConnectError.from(err).code !== Code.NotFound) {
          logger.warn({ err, replicas: some.length }, "cancelling replicas' jobs failed; trying again");
          continue;
        }
        // A job the Scheduler no longer has refuses the whole call: ask for the others one by one.
        await Promise.all(
          some.map(async (r) => {
            try {
              await clients.scheduler.cancelJob(request(r));
              asked.push(r.id);
            } catch (err) {
              logger.warn({ err, replica: r.id }, "cancelling a replica's job failed; trying again");
            }
          }),
        );
      }
    }
    if (!again) return;
    await writeStopRequested(this.deps.sql, asked, new Date()).catch((err: unknown) => logger.warn({ err, replicas: asked.length }, "could not note replicas' stops; they are asked again later"));
  }

  /** The failing replica's last lines of output, for the deployment's status. */
  private async lastLines(replicaId: string): Promise<string> {
    const row = await this.deps.db.replica.findUnique({ where: { id: replicaId } });
    if (!row?.jobId) return "";
    try {
      const res = await this.deps.clients.log.readLogs({ jobId: row.jobId, tailLines: 5 });
      const text = res.lines.map((l) => new TextDecoder().decode(l.data).replace(/\n$/, "")).join("\n");
      return text ? `\nlast output of replica ${short(replicaId)}:\n${text}` : "";
    } catch {
      return "";
    }
  }
}

/**
 * When to look at a deployment again, given the health_since times (ms) of
 * its healthy replicas not yet counted: when the earliest will have been
 * healthy for minHealthyMs, or up to DUE_TOGETHER_MS later, when the last
 * of those due within that span will have been (+1: the clock's ms
 * granularity). Undefined when none is waiting to be counted.
 */
export function dueTime(healthSince: readonly number[], minHealthyMs: number): number | undefined {
  if (healthSince.length === 0) return undefined;
  let first = Infinity;
  for (const t of healthSince) first = Math.min(first, t);
  let last = first;
  for (const t of healthSince) if (t - first <= DUE_TOGETHER_MS && t > last) last = t;
  return last + minHealthyMs + 1;
}
