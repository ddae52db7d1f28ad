// The Scheduler's background work, on every replica:
//
//   agent view   WatchAgents from Fleet: which agents are online; an agent
//                going offline ends its attempts' leases at once
//   every sweep  lapsed claims → pending; expired leases → renewed when the
//                attempt runs on an agent that is still online (its
//                heartbeats keep it so: that is how heartbeats renew leases),
//                otherwise lost, the job placed again, and the agent told to
//                cancel should it come back
//
// Replicas sweep the same rows without coordinating: every write is a
// compare-and-set on the state it read (job_store.ts), so for each lease
// exactly one replica's write lands and the others change nothing.
// Without a synced view of the agents (Fleet unreachable) nothing is
// declared lost: reclaiming waits rather than killing healthy work.

import { AgentStatus, WatchAgentsResponse_Kind as Kind } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { followAgents } from "../../lib/agent_watch.ts";
import type { DroverClients } from "../../lib/clients.ts";
import type { SchedulingSettings } from "../../lib/config.ts";
import type { Logger } from "../../lib/logger.ts";
import { Alarm } from "../../lib/timers.ts";
import type { JobStore } from "./job_store.ts";
import { onLeaseLapsed } from "./lifecycle.ts";
import { DEFAULT_CANCEL_GRACE_MS, type SchedulerServiceImpl } from "./service.ts";
import type { SchedulerSignals } from "./signals.ts";

const LEASES_PER_ROUND = 500;

export interface SweeperDeps {
  store: JobStore;
  signals: SchedulerSignals;
  impl: SchedulerServiceImpl;
  clients: Pick<DroverClients, "fleet">;
  settings: SchedulingSettings;
  log: Logger;
}

/** Keeps claims and leases honest; promises to reclaim work only on evidence that its agent is gone. */
export class SchedulerSweeper {
  private readonly agents = new Map<string, AgentStatus>();
  private synced = false;
  private readonly stopping = new AbortController();
  private loops: Promise<void>[] = [];
  private readonly alarm = new Alarm();

  constructor(private readonly deps: SweeperDeps) {}

  start(): void {
    this.loops = [this.watchLoop(), this.sweepLoop()];
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    this.alarm.ring();
    await Promise.allSettled(this.loops);
  }

  /** One round (tests call it directly). */
  async sweep(): Promise<void> {
    const { store, signals, settings, log, impl } = this.deps;
    const released = await store.releaseLapsedClaims();
    if (released.length > 0) {
      log.info({ jobs: released.length }, "claims lapsed; jobs are placeable again");
      signals.changed(released);
      signals.placeable();
    }
    const expired = await store.expiredLeases(LEASES_PER_ROUND);
    if (expired.length === 0) return;
    const renew: string[] = [];
    const lapse: { attemptId: string; why: string }[] = [];
    for (const a of expired) {
      const status = this.agents.get(a.agentId);
      const up = status === AgentStatus.ONLINE || status === AgentStatus.STALE;
      if (!this.synced || (up && a.state === "running")) renew.push(a.id);
      else if (!up) lapse.push({ attemptId: a.id, why: status === undefined ? `agent ${a.agentId} is gone` : `agent ${a.agentId} is offline` });
      else lapse.push({ attemptId: a.id, why: `agent ${a.agentId} did not confirm the assignment within ${settings.confirmMs} ms` });
    }
    await store.renew(renew, settings.leaseMs);
    if (lapse.length === 0) return;
    const rows = new Map((await store.attemptsWithJobs(lapse.map((l) => l.attemptId))).map((x) => [x.attempt.id, x]));
    const changes = lapse.flatMap(({ attemptId, why }) => {
      const x = rows.get(attemptId);
      if (!x || (x.attempt.state !== "assigned" && x.attempt.state !== "running")) return [];
      return [onLeaseLapsed(x.attempt, x.job, why, Date.now())];
    });
    const applied = await store.applyAttemptChanges(changes);
    const lost = changes.filter((c) => applied.attempts.has(c.attemptId));
    if (lost.length === 0) return;
    log.warn({ attempts: lost.map((c) => c.attemptId), reasons: [...new Set(lost.map((c) => c.reason))] }, "leases lapsed; jobs placed again");
    // Should the agent come back still running one, it stops it.
    await impl.sendCancels(lost.map((c) => ({ agentId: c.agentId, attemptId: c.attemptId, graceMs: DEFAULT_CANCEL_GRACE_MS, reason: `lease lapsed: ${c.reason}` })));
    signals.changed(applied.jobs);
    signals.placeable();
    if (applied.followups.size > 0) signals.followupsDue(); // dead after too many lost attempts
  }

  private async sweepLoop(): Promise<void> {
    const signal = this.stopping.signal;
    while (!signal.aborted) {
      try {
        await this.sweep();
      } catch (err) {
        this.deps.log.warn({ err }, "a scheduler sweep failed; trying again");
      }
      await this.alarm.sleep(this.deps.settings.sweepIntervalMs, signal);
    }
  }

  // Follows Fleet's view of the agents; an agent going offline or deleted has its leases ended now.
  private watchLoop(): Promise<void> {
    return followAgents(
      this.deps.clients.fleet,
      {
        onEvent: async (res) => {
          if (res.kind === Kind.SYNCED) {
            this.synced = true;
            return;
          }
          const agent = res.agent;
          if (!agent) return;
          if (res.kind === Kind.DELETED) this.agents.delete(agent.id);
          else this.agents.set(agent.id, agent.status);
          if (this.synced && (res.kind === Kind.DELETED || agent.status === AgentStatus.OFFLINE)) {
            const ended = await this.deps.store.expireLeasesOf(agent.id);
            if (ended > 0) this.alarm.ring();
          }
        },
        onLost: () => {
          this.synced = false;
          this.agents.clear();
        },
      },
      this.stopping.signal,
      this.deps.log,
    );
  }
}
