// The five services as the wirings see them: what each serves, who may call
// it, and how to build it from its dependencies: its routes, and the
// background work (loops, bus subscriptions) it runs while the process
// serves. Dev mode builds all five into one router; split mode builds one
// per process. Nothing else differs between the two.
//
// A wiring runs each service's lifecycle in this order:
//   build → start() → the server listens → ... → server.close() (no calls in
//   flight, streams ended) → stop() → the bus and the database close.

import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { BidService } from "../gen/ts/drover/bid/v1/bid_service_pb.ts";
import { DeployService } from "../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import { FleetService } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { LogService } from "../gen/ts/drover/log/v1/log_service_pb.ts";
import { SchedulerService } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import type { Bus } from "../lib/bus/bus.ts";
import type { DroverClients } from "../lib/clients.ts";
import type { PrismaClients } from "../lib/db/database.ts";
import type { SqlExecutor } from "../lib/db/executor.ts";
import type { DeploySettings, FleetSettings, LogSettings, SchedulingSettings, ServiceName } from "../lib/config.ts";
import type { AccessRule } from "../lib/host/interceptors.ts";
import type { Logger } from "../lib/logger.ts";
import { createBid } from "./bid/bid.ts";
import { bidAccess } from "./bid/service.ts";
import { createDeploy } from "./deploy/deploy.ts";
import { deployAccess } from "./deploy/service.ts";
import { createFleet } from "./fleet/fleet.ts";
import { LogSink } from "./fleet/log_sink.ts";
import { SchedulerSink } from "./fleet/scheduler_sink.ts";
import { fleetAccess } from "./fleet/service.ts";
import { WorkSink } from "./fleet/sink.ts";
import { createLog } from "./log/log.ts";
import { logAccess } from "./log/service.ts";
import { createScheduler } from "./scheduler/scheduler.ts";
import { schedulerAccess } from "./scheduler/service.ts";

/** What a service is built from. */
export interface ServiceDeps<N extends ServiceName> {
  /** The service's own Prisma client: never another service's. */
  db: PrismaClients[N];
  /** Raw SQL on the same database, for the few hot paths where Prisma costs too much (the Log service's ingestion, the Scheduler's job store). */
  sql: SqlExecutor;
  bus: Bus;
  /** Clients of the other services (and of itself). */
  clients: DroverClients;
  logger: Logger;
  /** Settings read at start-up (lib/config.ts). */
  settings: { fleet: FleetSettings; scheduling: SchedulingSettings; log: LogSettings; deploy: DeploySettings };
}

/** A built service: promises its routes, and background work that runs between start() and stop(). */
export interface ServiceInstance {
  routes: (router: ConnectRouter) => void;
  /** Starts background work; called once, before the server listens. */
  start(): Promise<void>;
  /** Stops it and waits for it; called once, after the server has closed and before the bus and database close. Idempotent. */
  stop(): Promise<void>;
}

/** How the wirings see one service. */
export interface ServiceDefinition<N extends ServiceName> {
  name: N;
  desc: DescService;
  /** Roles per method name; unlisted methods allow admin and operator. */
  access: Record<string, AccessRule>;
  build(deps: ServiceDeps<N>): ServiceInstance;
}

export const services: { [N in ServiceName]: ServiceDefinition<N> } = {
  fleet: {
    name: "fleet",
    desc: FleetService,
    access: fleetAccess,
    build: ({ db, sql, bus, logger, settings, clients }) => {
      // Job events to the Scheduler, log frames to the Log service; LogSink
      // stops after the hub has (no more frames come), before the Log client goes.
      const logs = new LogSink(clients.log, logger.child({ component: "log-sink" }));
      const sink = new WorkSink({ jobs: new SchedulerSink(clients.scheduler, logger.child({ component: "scheduler-sink" })), logs });
      const fleet = createFleet({ db, sql, bus, logger, settings: settings.fleet, sink });
      return { routes: fleet.routes, start: () => fleet.start(), stop: async () => { await fleet.stop(); await logs.close(); } };
    },
  },
  scheduler: {
    name: "scheduler",
    desc: SchedulerService,
    access: schedulerAccess,
    build: ({ db, sql, bus, clients, logger, settings }) => createScheduler({ db, sql, bus, clients, logger, settings: settings.scheduling }),
  },
  bid: {
    name: "bid",
    desc: BidService,
    access: bidAccess,
    build: ({ db, sql, clients, logger, settings }) => createBid({ db, sql, clients, logger, settings: settings.scheduling }),
  },
  deploy: {
    name: "deploy",
    desc: DeployService,
    access: deployAccess,
    build: ({ db, sql, bus, clients, logger, settings }) => createDeploy({ db, sql, bus, clients, logger, settings: settings.deploy }),
  },
  log: {
    name: "log",
    desc: LogService,
    access: logAccess,
    build: ({ db, sql, bus, clients, logger, settings }) => createLog({ db, sql, bus, clients, logger, settings: settings.log }),
  },
};

/** Starts instances in order; if one fails, stops those already started and rethrows. */
export async function startAll(instances: readonly ServiceInstance[]): Promise<void> {
  const started: ServiceInstance[] = [];
  try {
    for (const instance of instances) {
      await instance.start();
      started.push(instance);
    }
  } catch (err) {
    await stopAll(started);
    throw err;
  }
}

/** Stops instances in reverse order; every one is stopped even if another fails, and the first failure is rethrown. */
export async function stopAll(instances: readonly ServiceInstance[]): Promise<void> {
  const results = [];
  for (const instance of [...instances].reverse()) results.push(await instance.stop().then(() => null, (err: unknown) => err));
  const failure = results.find((r) => r !== null);
  if (failure !== undefined) throw failure;
}

/** The access tables of the given services, keyed by their full names, for accessPolicy(). */
export function accessTables(names: readonly ServiceName[]): Record<string, Record<string, AccessRule>> {
  return Object.fromEntries(names.map((n) => [services[n].desc.typeName, services[n].access]));
}
