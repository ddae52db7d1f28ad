// What the Scheduler says on the bus. Both are doorbells: losing one delays
// a waiter until its next poll, nothing more.
//
//   channel  scheduler:placeable    a job became placeable (the sending
//                                   replica's id): wakes ClaimPlaceableJobs
//                                   long-polls on the other replicas. This
//                                   replica's own are woken at once; the bus
//                                   hears one message per PLACEABLE_COALESCE_MS.
//   channel  scheduler:job-changes  JSON array of job ids that changed:
//                                   wakes WatchJob streams on every replica,
//                                   and the Deploy controller
//                                   (services/deploy/signals.ts).
//                                   The ids of every change within
//                                   CHANGES_COALESCE_MS go out as one message:
//                                   one per few batches instead of one per
//                                   statement (each is heard by every replica
//                                   and parsed again there).
//
// Two more live in this replica alone. A job that ends with a follow-up
// (a run's stage, a repeating job) wakes this replica's follow-up loop
// (followupsDue), which does the follow-up itself; the other replicas'
// loops are the fallback only, on their poll. And a claim that came back
// with room to spare notes the placeable wake-ups it started after
// (drained): until another rings, a new long poll waits instead of looking
// again at a queue just found empty.
//
// A doorbell costs each process it passes through a write, a read and a
// wake-up, and on a small or virtualised machine the wake-ups are what a
// job costs at a low rate (bench/README.md, scheduling): below a hundred
// jobs a second every change of every job rang its own.

import { randomUUID } from "node:crypto";
import type { Bus, Unsubscribe } from "../../lib/bus/bus.ts";
import type { Logger } from "../../lib/logger.ts";

const PLACEABLE = "scheduler:placeable";
const JOB_CHANGES = "scheduler:job-changes";
/** How long changed job ids wait for others to share their message, ms (what WatchJob streams and follow-ups may wait on top). */
export const CHANGES_COALESCE_MS = 10;
/** How long a placeable doorbell for other replicas waits for others to share its message, ms. */
export const PLACEABLE_COALESCE_MS = 10;
/**
 * While claimers wait, the longest a replica goes without a claim: jobs
 * whose not_before passes (a retry's backoff, a wait for capacity) come due
 * with no doorbell. One waiting claimer is woken, and only when no claim ran
 * meanwhile: under load the doorbells' claims make it unnecessary, and an
 * idle replica claims four times a second, not once per waiter.
 */
export const DUE_POLL_MS = 250;

/** Publishes and hears the Scheduler's doorbells; promises waiters are woken at least by their own timeouts. */
export class SchedulerSignals {
  private readonly placeableWaiters = new Set<() => void>();
  private readonly jobWatchers = new Map<string, Set<() => void>>();
  private unsubs: Unsubscribe[] = [];
  /** Changed job ids not published yet, and the timer that will. */
  private changes = new Set<string>();
  private changesTimer: NodeJS.Timeout | undefined;
  /** Marks this replica's placeable doorbells, whose echo it ignores: it woke its own claimer already. */
  private readonly self = new TextEncoder().encode(randomUUID());
  /** The timer that publishes a placeable doorbell (see PLACEABLE_COALESCE_MS). */
  private placeableTimer: NodeJS.Timeout | undefined;
  /** When this replica's last claim started (Date.now()), and the timer that polls for jobs come due (see DUE_POLL_MS). */
  private lastClaimAt = 0;
  private dueTimer: NodeJS.Timeout | undefined;
  /** Placeable wake-ups so far (doorbells heard or rung here, the due poll, nudges). */
  private rings = 0;
  /** `rings` when the latest claim that left nothing placeable behind started; -1: none yet. */
  private drainedAt = -1;
  private readonly followupListeners = new Set<() => void>();

  constructor(
    private readonly bus: Bus,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    this.unsubs.push(
      await this.bus.subscribe(PLACEABLE, (bytes) => {
        // Our own echo would wake a second claimer for the jobs the first is taking: an empty claim.
        if (!Buffer.from(bytes).equals(this.self)) this.wakePlaceable();
      }),
    );
    this.unsubs.push(
      await this.bus.subscribe(JOB_CHANGES, (bytes) => {
        if (this.jobWatchers.size === 0) return; // no WatchJob here: nothing to parse the ids for
        let ids: unknown;
        try {
          ids = JSON.parse(new TextDecoder().decode(bytes));
        } catch {
          return;
        }
        if (!Array.isArray(ids)) return;
        for (const id of ids) for (const wake of this.jobWatchers.get(String(id)) ?? []) wake();
      }),
    );
  }

  async stop(): Promise<void> {
    clearTimeout(this.dueTimer);
    this.dueTimer = undefined;
    if (this.placeableTimer) this.publishPlaceable();
    this.publishChanges();
    await Promise.allSettled(this.unsubs.map((u) => u()));
    this.unsubs = [];
    this.wakePlaceable(true);
  }

  /** Jobs became placeable: this replica's waiters at once, the other replicas' within PLACEABLE_COALESCE_MS. */
  placeable(): void {
    this.wakePlaceable();
    this.placeableTimer ??= setTimeout(() => this.publishPlaceable(), PLACEABLE_COALESCE_MS);
  }

  private publishPlaceable(): void {
    clearTimeout(this.placeableTimer);
    this.placeableTimer = undefined;
    this.bus.publish(PLACEABLE, this.self).catch((err) => this.log.debug({ err }, "could not publish the placeable doorbell"));
  }

  /** Jobs changed: published within CHANGES_COALESCE_MS, with the other changes of that time. */
  changed(ids: Iterable<string>): void {
    for (const id of ids) this.changes.add(id);
    if (this.changes.size === 0 || this.changesTimer) return;
    this.changesTimer = setTimeout(() => this.publishChanges(), CHANGES_COALESCE_MS);
  }

  private publishChanges(): void {
    clearTimeout(this.changesTimer);
    this.changesTimer = undefined;
    if (this.changes.size === 0) return;
    const list = [...this.changes];
    this.changes = new Set();
    this.bus.publish(JOB_CHANGES, new TextEncoder().encode(JSON.stringify(list))).catch((err) => this.log.debug({ err }, "could not publish job changes"));
  }

  /**
   * A claim is about to look at the placeable jobs: the due poll waits
   * DUE_POLL_MS from now. Returns the wake-ups so far, for drained().
   */
  claiming(): number {
    this.lastClaimAt = Date.now();
    return this.rings;
  }

  /**
   * The claim that started when claiming() returned `rings` took fewer jobs
   * than it could: nothing else was placeable for it.
   */
  drained(rings: number): void {
    this.drainedAt = Math.max(this.drainedAt, rings);
  }

  /**
   * True while no placeable wake-up came since a claim found nothing left:
   * a claim now would find nothing either. A change that rang no doorbell
   * here (one lost on the bus) is found by the due poll, as for a claimer
   * already waiting.
   */
  get drainedSinceLastRing(): boolean {
    return this.drainedAt === this.rings;
  }

  /**
   * Resolves when jobs may have become placeable (a doorbell, or the due
   * poll), after ms at the latest, or when the signal aborts.
   */
  untilPlaceable(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.placeableWaiters.delete(done);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.placeableWaiters.add(done);
      signal?.addEventListener("abort", done, { once: true });
      this.armDuePoll();
    });
  }

  /** Runs while claimers wait: wakes one when DUE_POLL_MS passed since the last claim. */
  private armDuePoll(): void {
    if (this.dueTimer) return;
    this.dueTimer = setTimeout(() => {
      this.dueTimer = undefined;
      if (this.placeableWaiters.size === 0) return; // the next waiter arms it again
      if (Date.now() - this.lastClaimAt >= DUE_POLL_MS) {
        this.wakePlaceable();
        this.lastClaimAt = Date.now(); // the woken claimer is about to claim
      }
      this.armDuePoll();
    }, Math.max(0, this.lastClaimAt + DUE_POLL_MS - Date.now()));
    this.dueTimer.unref();
  }

  /** Calls wake whenever the job may have changed, until the returned function is called. */
  watchJob(id: string, wake: () => void): () => void {
    let set = this.jobWatchers.get(id);
    if (!set) this.jobWatchers.set(id, (set = new Set()));
    set.add(wake);
    return () => {
      set.delete(wake);
      if (set.size === 0) this.jobWatchers.delete(id);
    };
  }

  /** Jobs with a follow-up ended on this replica: its follow-up loop looks now. */
  followupsDue(): void {
    for (const listener of this.followupListeners) listener();
  }

  /** Calls listener whenever followupsDue() is called here, until the returned function is called. */
  onFollowupsDue(listener: () => void): () => void {
    this.followupListeners.add(listener);
    return () => this.followupListeners.delete(listener);
  }

  /**
   * Wakes one claimer of this replica, not all: they would all race for the
   * same jobs and all but one come back empty. A claimer that takes a full
   * batch wakes the next (nudge), so a backlog still gets every claimer.
   */
  private wakePlaceable(all = false): void {
    this.rings++;
    for (const wake of [...this.placeableWaiters]) {
      wake();
      if (!all) return;
    }
  }

  /** More placeable jobs may be left (a claim came back full): wake one more claimer here. */
  nudge(): void {
    this.wakePlaceable();
  }
}
