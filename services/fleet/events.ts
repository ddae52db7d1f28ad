// Changes of agents, across replicas: every replica publishes the changes it
// makes on the bus and hears everyone's (its own included) through one
// subscription, which it fans out to its listeners (WatchAgents streams, the
// hub). Events are signals, not history: a watcher that misses one (the bus
// was down) still sees the agent's current state on its next event or watch.

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  WatchAgentsResponseSchema,
  WatchAgentsResponse_Kind as Kind,
  type Agent,
  type WatchAgentsResponse,
} from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import type { Bus, Unsubscribe } from "../../lib/bus/bus.ts";
import type { Logger } from "../../lib/logger.ts";
import { AGENT_EVENTS_CHANNEL } from "./bus_protocol.ts";

export { Kind as AgentEventKind };

/** Hears one event; must not modify it (all listeners share it). */
export type AgentEventListener = (event: WatchAgentsResponse) => void;

export class AgentEvents {
  private readonly listeners = new Set<AgentEventListener>();
  private unsubscribe?: Unsubscribe;

  constructor(
    private readonly bus: Bus,
    private readonly log: Logger,
  ) {}

  /** Subscribes to the bus; events published before this resolves are not heard. */
  async start(): Promise<void> {
    this.unsubscribe = await this.bus.subscribe(AGENT_EVENTS_CHANNEL, (bytes) => {
      let event: WatchAgentsResponse;
      try {
        event = fromBinary(WatchAgentsResponseSchema, bytes);
      } catch (err) {
        this.log.warn({ err }, "dropped an agent event that does not decode");
        return;
      }
      for (const listener of this.listeners) {
        try {
          listener(event);
        } catch (err) {
          this.log.error({ err }, "an agent event listener threw");
        }
      }
    });
  }

  async stop(): Promise<void> {
    await this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  /** Calls listener with every event from now on, until the returned function is called. */
  listen(listener: AgentEventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Tells every replica that an agent changed. A bus failure is logged, not thrown: the change itself is stored. */
  async publish(kind: Kind, agent: Agent): Promise<void> {
    try {
      await this.bus.publish(AGENT_EVENTS_CHANNEL, toBinary(WatchAgentsResponseSchema, create(WatchAgentsResponseSchema, { kind, agent })));
    } catch (err) {
      this.log.warn({ err, agentId: agent.id }, "could not publish an agent event");
    }
  }
}
