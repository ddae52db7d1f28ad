// What the Deploy service says and hears on the bus. Both are doorbells:
// losing one delays a waiter until its next poll, nothing more.
//
//   channel  deploy:changes         JSON array of deployment ids whose rows,
//                                   replicas or events changed: wakes
//                                   WatchDeployment streams on every replica
//   channel  scheduler:job-changes  (the Scheduler's, services/scheduler/signals.ts)
//                                   JSON array of job ids that changed: the
//                                   controller reconciles the deployments
//                                   whose replicas they are at once, instead
//                                   of at its next tick

import type { Bus, Unsubscribe } from "../../lib/bus/bus.ts";
import type { Logger } from "../../lib/logger.ts";

const DEPLOY_CHANGES = "deploy:changes";
const SCHEDULER_JOB_CHANGES = "scheduler:job-changes";

export class DeploySignals {
  private readonly watchers = new Map<string, Set<() => void>>();
  private unsubs: Unsubscribe[] = [];

  constructor(
    private readonly bus: Bus,
    private readonly log: Logger,
  ) {}

  /** Hears both channels; `onJobs` gets the ids of every job-changes doorbell. */
  async start(onJobs: (ids: string[]) => void): Promise<void> {
    this.unsubs.push(await this.bus.subscribe(DEPLOY_CHANGES, (bytes) => this.wake(ids(bytes))));
    this.unsubs.push(
      await this.bus.subscribe(SCHEDULER_JOB_CHANGES, (bytes) => {
        const list = ids(bytes);
        if (list.length > 0) onJobs(list);
      }),
    );
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.unsubs.map((u) => u()));
    this.unsubs = [];
  }

  /** Deployments changed: this replica's watchers at once, the others' through the bus. */
  changed(deploymentIds: Iterable<string>): void {
    const list = [...new Set(deploymentIds)];
    if (list.length === 0) return;
    this.wake(list);
    this.bus.publish(DEPLOY_CHANGES, new TextEncoder().encode(JSON.stringify(list))).catch((err) => this.log.debug({ err }, "could not publish deployment changes"));
  }

  /** Resolves when the deployment may have changed, after ms at the latest, or when the signal aborts. */
  untilChanged(id: string, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      let set = this.watchers.get(id);
      if (!set) this.watchers.set(id, (set = new Set()));
      const done = () => {
        clearTimeout(timer);
        set.delete(done);
        if (set.size === 0 && this.watchers.get(id) === set) this.watchers.delete(id);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      set.add(done);
      signal?.addEventListener("abort", done, { once: true });
    });
  }

  private wake(deploymentIds: readonly string[]): void {
    for (const id of deploymentIds) for (const done of [...(this.watchers.get(id) ?? [])]) done();
  }
}

/** The ids a doorbell carries; nothing for a malformed one (another version, or noise). */
function ids(bytes: Uint8Array): string[] {
  try {
    const parsed: unknown = JSON.parse(new TextDecoder().decode(bytes));
    return Array.isArray(parsed) ? parsed.map(String) : [];
  } catch {
    return [];
  }
}
