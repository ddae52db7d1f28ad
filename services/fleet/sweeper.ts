// The sweeper judges the agents that no replica holds: their presence key is
// gone because their stream ended, or because the replica holding it died
// (then the key expires). One replica at a time runs it, under a bus lock it
// renews every round; if that replica dies, the lock expires after three
// rounds and another takes over.
//
// Each round: list presence (the agents held somewhere, with their last
// heartbeat as of the last refresh), read the agents Postgres thinks are not
// offline, and for each one that nobody holds, apply livenessAt() to the best
// evidence of its last heartbeat (Postgres's snapshot, or what its presence
// said before it lapsed). The sweeper never brings an agent online: only a
// stream does that.

import type { Bus, Lock } from "../../lib/bus/bus.ts";
import type { FleetSettings } from "../../lib/config.ts";
import type { Logger } from "../../lib/logger.ts";
import type { AgentStore } from "./agent_store.ts";
import { PRESENCE_PREFIX, SWEEPER_LOCK, parsePresence, presenceKey } from "./bus_protocol.ts";
import { livenessAt, livenessReason } from "./liveness.ts";
import type { Outbox } from "./outbox.ts";
import { sleep } from "../../lib/timers.ts";
import type { Transitions } from "./transitions.ts";

// How often acknowledged outbox messages are pruned (by whoever sweeps).
const PRUNE_EVERY_MS = 10 * 60_000;

export interface SweeperDeps {
  store: AgentStore;
  outbox: Outbox;
  transitions: Transitions;
  bus: Bus;
  settings: FleetSettings;
  log: Logger;
}

export class Sweeper {
  private lock: Lock | null = null;
  // Last heartbeat each agent's presence reported, kept after the key lapses.
  private readonly lastSeen = new Map<string, number>();
  private prunedAt = 0;
  private loop?: { stop: AbortController; done: Promise<void> };
  sweeps = 0;

  constructor(private readonly deps: SweeperDeps) {}

  /** Whether this replica holds the sweeper lock now. */
  get holdsLock(): boolean {
    return this.lock !== null;
  }

  start(): void {
    const stop = new AbortController();
    this.loop = { stop, done: this.run(stop.signal) };
  }

  /** Stops sweeping and hands the lock back, so another replica can take over at once. */
  async stop(): Promise<void> {
    this.loop?.stop.abort();
    await this.loop?.done;
    const lock = this.lock;
    this.lock = null;
    await lock?.release().catch(() => {});
  }

  private async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.round(Date.now());
      } catch (err) {
        this.deps.log.warn({ err }, "a sweep failed; trying again next round");
      }
      await sleep(this.deps.settings.sweepIntervalMs, signal);
    }
  }

  /** Takes or keeps the lock, then sweeps if this replica holds it. */
  async round(now: number): Promise<void> {
    const ttl = 3 * this.deps.settings.sweepIntervalMs;
    if (!this.lock) {
      this.lock = await this.deps.bus.tryLock(SWEEPER_LOCK, ttl);
      if (!this.lock) return;
      this.deps.log.info("took the sweeper lock; sweeping agents no replica holds");
    } else if (!(await this.lock.extend(ttl))) {
      this.lock = null;
      this.deps.log.warn("lost the sweeper lock (a round took longer than its TTL?)");
      return;
    }
    await this.sweep(now);
  }

  /** One sweep; callable directly by tests. */
  async sweep(now: number): Promise<void> {
    const { bus, store, transitions, settings } = this.deps;
    this.sweeps++;
    const present = new Set<string>();
    for (const [key, value] of await bus.listPresence(PRESENCE_PREFIX)) {
      const agentId = key.slice(PRESENCE_PREFIX.length);
      present.add(agentId);
      const presence = parsePresence(value);
      if (presence) this.lastSeen.set(agentId, presence.lastHeartbeat);
    }
    const rows = await store.notOffline();
    const judged = new Set<string>();
    for (const row of rows) {
      judged.add(row.id);
      if (present.has(row.id)) continue;
      const last = Math.max(row.lastSeenMs, this.lastSeen.get(row.id) ?? 0);
      const to = livenessAt(last, now, settings);
      if (to === row.status || to === "online") continue;
      // A stream may have attached since the listing; look once more, right before writing.
      if ((await bus.getPresence(presenceKey(row.id))) !== null) continue;
      await transitions.apply(row.id, to, livenessReason(to, last, now), new Date(now), { from: row.status, sessionId: row.sessionId });
    }
    for (const agentId of this.lastSeen.keys()) if (!judged.has(agentId) && !present.has(agentId)) this.lastSeen.delete(agentId);

    if (now - this.prunedAt >= PRUNE_EVERY_MS) {
      this.prunedAt = now;
      const pruned = await this.deps.outbox.prune();
      if (pruned > 0) this.deps.log.info({ pruned }, "pruned acknowledged agent messages");
    }
  }
}
