// The Scheduler, assembled: store, doorbells, the service, and the sweeper.
// Both wirings build it through services/registry.ts.

import type { PrismaClient } from "../../gen/prisma/scheduler/client.ts";
import type { Bus } from "../../lib/bus/bus.ts";
import type { DroverClients } from "../../lib/clients.ts";
import type { SchedulingSettings } from "../../lib/config.ts";
import type { Logger } from "../../lib/logger.ts";
import type { ServiceInstance } from "../registry.ts";
import { JobStore } from "./job_store.ts";
import { SchedulerServiceImpl, schedulerRoutes } from "./service.ts";
import { SchedulerSignals } from "./signals.ts";
import { SchedulerSweeper } from "./sweeper.ts";

export interface SchedulerBuildDeps {
  db: PrismaClient;
  bus: Bus;
  clients: Pick<DroverClients, "fleet">;
  settings: SchedulingSettings;
  logger: Logger;
}

export function createScheduler(deps: SchedulerBuildDeps): ServiceInstance & { impl: SchedulerServiceImpl; sweeper: SchedulerSweeper } {
  const log = deps.logger.child({ component: "scheduler" });
  const store = new JobStore(deps.db);
  const signals = new SchedulerSignals(deps.bus, log);
  const impl = new SchedulerServiceImpl({ store, signals, clients: deps.clients, settings: deps.settings, log });
  const sweeper = new SchedulerSweeper({ store, signals, impl, clients: deps.clients, settings: deps.settings, log: log.child({ component: "scheduler-sweeper" }) });
  let stopped: Promise<void> | undefined;
  return {
    impl,
    sweeper,
    routes: schedulerRoutes(impl),
    async start() {
      await signals.start();
      sweeper.start();
    },
    stop() {
      stopped ??= (async () => {
        await sweeper.stop();
        await signals.stop();
      })();
      return stopped;
    },
  };
}
