// The five services as the wirings see them: what each serves, who may call
// it, and how to build its routes from its dependencies. Dev mode builds all
// five into one router; split mode builds one per process. Nothing else
// differs between the two.

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
import type { ServiceName } from "../lib/config.ts";
import type { AccessRule } from "../lib/host/interceptors.ts";
import type { Logger } from "../lib/logger.ts";
import { BidServiceImpl, bidAccess, bidRoutes } from "./bid/service.ts";
import { DeployServiceImpl, deployAccess, deployRoutes } from "./deploy/service.ts";
import { FleetServiceImpl, fleetAccess, fleetRoutes } from "./fleet/service.ts";
import { TokenStore } from "./fleet/token_store.ts";
import { LogServiceImpl, logAccess, logRoutes } from "./log/service.ts";
import { SchedulerServiceImpl, schedulerAccess, schedulerRoutes } from "./scheduler/service.ts";

/** What a service is built from. */
export interface ServiceDeps<N extends ServiceName> {
  /** The service's own Prisma client: never another service's. */
  db: PrismaClients[N];
  bus: Bus;
  /** Clients of the other services (and of itself). */
  clients: DroverClients;
  logger: Logger;
}

/** How the wirings see one service. */
export interface ServiceDefinition<N extends ServiceName> {
  name: N;
  desc: DescService;
  /** Roles per method name; unlisted methods allow admin and operator. */
  access: Record<string, AccessRule>;
  routes(deps: ServiceDeps<N>): (router: ConnectRouter) => void;
}

export const services: { [N in ServiceName]: ServiceDefinition<N> } = {
  fleet: {
    name: "fleet",
    desc: FleetService,
    access: fleetAccess,
    routes: ({ db }) => fleetRoutes(new FleetServiceImpl(new TokenStore(db))),
  },
  scheduler: {
    name: "scheduler",
    desc: SchedulerService,
    access: schedulerAccess,
    routes: ({ db }) => schedulerRoutes(new SchedulerServiceImpl(db)),
  },
  bid: {
    name: "bid",
    desc: BidService,
    access: bidAccess,
    routes: ({ db }) => bidRoutes(new BidServiceImpl(db)),
  },
  deploy: {
    name: "deploy",
    desc: DeployService,
    access: deployAccess,
    routes: ({ db }) => deployRoutes(new DeployServiceImpl(db)),
  },
  log: {
    name: "log",
    desc: LogService,
    access: logAccess,
    routes: ({ db }) => logRoutes(new LogServiceImpl(db)),
  },
};

/** The access tables of the given services, keyed by their full names, for accessPolicy(). */
export function accessTables(names: readonly ServiceName[]): Record<string, Record<string, AccessRule>> {
  return Object.fromEntries(names.map((n) => [services[n].desc.typeName, services[n].access]));
}
