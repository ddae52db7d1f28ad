import type { Logger } from "../../lib/logger.ts";
import type { AgentStore, TransitionGuard } from "./agent_store.ts";
import { agentMessage } from "./convert.ts";
import { AgentEventKind, type AgentEvents } from "./events.ts";
import type { Liveness } from "./liveness.ts";

/**
 * Applies a change of status decided by the monitor or the sweeper: stores
 * it with its history row, then tells every replica (the bus event is what
 * WatchAgents and, later, the scheduler act on; "offline" reclaims leases).
 */
export class Transitions {
  constructor(
    private readonly store: AgentStore,
    private readonly events: AgentEvents,
    private readonly log: Logger,
  ) {}

  /** Resolves the status changed from, or null when nothing changed (already there, or the guard failed). */
  async apply(agentId: string, to: Liveness, reason: string, at: Date, guard: TransitionGuard = {}): Promise<Liveness | null> {
    const from = await this.store.transition(agentId, to, reason, at, guard);
    if (from === null) return null;
    this.log.info({ agentId, from, to, reason }, "agent status changed");
    const row = await this.store.get(agentId);
    if (row) await this.events.publish(AgentEventKind.UPDATED, agentMessage(row));
    return from;
  }
}
