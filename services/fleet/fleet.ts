// Fleet, assembled: the stores, the hub holding this replica's agent
// streams, the sweeper, the event fan-out and the service on top. Both
// wirings build it through services/registry.ts; tests build it directly.

import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { ConnectRouter } from "@connectrpc/connect";
import type { PrismaClient } from "../../gen/prisma/fleet/client.ts";
import type { Bus } from "../../lib/bus/bus.ts";
import type { FleetSettings } from "../../lib/config.ts";
import type { SqlExecutor } from "../../lib/db/executor.ts";
import type { Logger } from "../../lib/logger.ts";
import { AgentStore } from "./agent_store.ts";
import { AgentTokenStore } from "./agent_token_store.ts";
import { AgentEvents } from "./events.ts";
import { AgentHub } from "./hub.ts";
import { startLoadLog } from "./load_log.ts";
import { OfferRouter } from "./offers.ts";
import { Outbox } from "./outbox.ts";
import { FleetServiceImpl, fleetRoutes } from "./service.ts";
import { CountingSink, type AgentMessageSink } from "./sink.ts";
import { Sweeper } from "./sweeper.ts";
import { TokenStore } from "./token_store.ts";
import { Transitions } from "./transitions.ts";

export interface FleetDeps {
  db: PrismaClient;
  /** The same database below Prisma, for the outbox's hot statements. */
  sql: SqlExecutor;
  bus: Bus;
  settings: FleetSettings;
  logger: Logger;
  /** Where agents' work messages go; by default they are counted and logged. */
  sink?: AgentMessageSink;
  /** This replica's name in presence and logs; by default host:pid:random. */
  replica?: string;
}

/** A built Fleet: its routes and the background work that goes with them. */
export interface Fleet {
  impl: FleetServiceImpl;
  routes: (router: ConnectRouter) => void;
  hub: AgentHub;
  sweeper: Sweeper;
  tokens: TokenStore;
  replica: string;
  /** Subscribes to agent events and starts the monitor and the sweeper; before the server serves. */
  start(): Promise<void>;
  /** Stops them, ends streams still held and waits for their clean-up; after the server closed, before the bus and database do. */
  stop(): Promise<void>;
}

export function createFleet(deps: FleetDeps): Fleet {
  const replica = deps.replica ?? `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
  const log = deps.logger.child({ component: "fleet", replica });
  const tokens = new TokenStore(deps.db);
  const store = new AgentStore(deps.db);
  const outbox = new Outbox(deps.db, deps.sql);
  const events = new AgentEvents(deps.bus, log);
  const transitions = new Transitions(store, events, log);
  const sink = deps.sink ?? new CountingSink(log.child({ component: "agent-sink" }));
  const offers = new OfferRouter({ bus: deps.bus, replica, session: (agentId) => hub.session(agentId), log: log.child({ component: "offers" }) });
  const hub: AgentHub = new AgentHub({
    store,
    outbox,
    events,
    transitions,
    bus: deps.bus,
    sink,
    offers,
    settings: deps.settings,
    replica,
    log: log.child({ component: "agent-hub" }),
  });
  const sweeper = new Sweeper({ store, outbox, transitions, bus: deps.bus, settings: deps.settings, log: log.child({ component: "sweeper" }) });
  const impl = new FleetServiceImpl(tokens, {
    agentTokens: new AgentTokenStore(deps.db),
    store,
    outbox,
    hub,
    offers,
    events,
    bus: deps.bus,
    settings: deps.settings,
    log,
  });

  let started = false;
  let stopLoadLog: (() => void) | undefined;
  let stopping: Promise<void> | undefined;
  return {
    impl,
    routes: fleetRoutes(impl),
    hub,
    sweeper,
    tokens,
    replica,
    async start() {
      if (started) return;
      started = true;
      await events.start();
      await offers.start();
      hub.start();
      sweeper.start();
      stopLoadLog = startLoadLog(hub, log.child({ component: "load" }));
    },
    stop() {
      stopping ??= (async () => {
        if (!started) return;
        stopLoadLog?.();
        await sweeper.stop();
        await offers.stop();
        await hub.stop();
        await events.stop();
      })();
      return stopping;
    },
  };
}
