// The Log service, assembled: ingestion of agents' frames (ingest.ts) hands
// what it stored to the live side (live.ts), which followers on every
// replica read (follow.ts); reads come from storage (read.ts); one replica
// at a time enforces retention (retention.ts). Both wirings build it
// through services/registry.ts; tests build it directly.

import type { PrismaClient } from "../../gen/prisma/log/client.ts";
import type { Bus } from "../../lib/bus/bus.ts";
import type { DroverClients } from "../../lib/clients.ts";
import type { LogSettings } from "../../lib/config.ts";
import type { SqlExecutor } from "../../lib/db/executor.ts";
import type { Logger } from "../../lib/logger.ts";
import type { ServiceInstance } from "../registry.ts";
import { LogFollower } from "./follow.ts";
import { Ingest } from "./ingest.ts";
import { BusLivePublisher } from "./live.ts";
import { LogReader } from "./read.ts";
import { Retention } from "./retention.ts";
import { LogServiceImpl, logRoutes } from "./service.ts";

export interface LogDeps {
  db: PrismaClient;
  /** The same database in raw SQL, for ingestion (see IngestDeps.sql). */
  sql: SqlExecutor;
  bus: Bus;
  /** The Scheduler, for whose attempts are (DescribeAttempts) and whether jobs ended; Deploy, for a deployment's replicas. */
  clients: DroverClients;
  logger: Logger;
  settings: LogSettings;
}

export interface Log extends ServiceInstance {
  impl: LogServiceImpl;
  ingest: Ingest;
  live: BusLivePublisher;
  retention: Retention;
}

export function createLog(deps: LogDeps): Log {
  const log = deps.logger.child({ component: "log" });
  const reader = new LogReader({ db: deps.db, clients: deps.clients, logger: log.child({ component: "log-read" }) });
  const follower = new LogFollower({ db: deps.db, bus: deps.bus, clients: deps.clients, logger: log.child({ component: "log-follow" }), reader });
  // Follows on this replica get what it stores straight from the publisher; the bus carries it to other replicas'.
  const live = new BusLivePublisher({ bus: deps.bus, logger: log.child({ component: "log-live" }), local: follower });
  const ingest = new Ingest({ sql: deps.sql, clients: deps.clients, logger: log.child({ component: "log-ingest" }), settings: deps.settings, live });
  const retention = new Retention({ db: deps.db, logger: log.child({ component: "log-retention" }), settings: deps.settings });
  const impl = new LogServiceImpl({ ingest, reader, follower });
  return {
    impl,
    ingest,
    live,
    retention,
    routes: logRoutes(impl),
    start: async () => retention.start(),
    stop: async () => {
      await retention.stop();
      await live.close();
    },
  };
}
