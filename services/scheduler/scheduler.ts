// The Scheduler, assembled: store, doorbells, the service, and the sweeper.
// Both wirings build it through services/registry.ts.

import type { PrismaClient } from "../../gen/prisma/scheduler/client.ts";
import type { Bus } from "../../lib/bus/bus.ts";
import type { DroverClients } from "../../lib/clients.ts";
import type { SchedulingSettings } from "../../lib/config.ts";
import type { SqlExecutor } from "../../lib/db/executor.ts";
import type { Logger } from "../../lib/logger.ts";
import type { ServiceInstance } from "../registry.ts";
import { JobStore } from "./job_store.ts";
import { SchedulerRuns } from "./runs.ts";
import { SchedulerSchedules } from "./schedules.ts";
import { SchedulerServiceImpl, schedulerRoutes } from "./service.ts";
import { SchedulerSignals } from "./signals.ts";
import { SchedulerSweeper } from "./sweeper.ts";

export interface SchedulerBuildDeps {
  db: PrismaClient;
  /** Raw SQL on the same database, for the job store's statements (job_store.ts); without it they go through Prisma. */
  sql?: SqlExecutor;
  bus: Bus;
  clients: Pick<DroverClients, "fleet">;
  settings: SchedulingSettings;
  logger: Logger;
}

export function createScheduler(deps: SchedulerBuildDeps): ServiceInstance & { impl: SchedulerServiceImpl; runs: SchedulerRuns; schedules: SchedulerSchedules; sweeper: SchedulerSweeper } {
  const log = deps.logger.child({ component: "scheduler" });
  const store = new JobStore(deps.db, deps.sql);
  const signals = new SchedulerSignals(deps.bus, log);
  const impl = new SchedulerServiceImpl({ store, signals, clients: deps.clients, settings: deps.settings, log });
  const runs = new SchedulerRuns({ db: deps.db, store, signals, jobs: impl, settings: deps.settings, log: log.child({ component: "scheduler-runs" }) });
  const schedules = new SchedulerSchedules({ db: deps.db, store, signals, jobs: impl, runs, settings: deps.settings, log: log.child({ component: "scheduler-schedules" }) });
  const sweeper = new SchedulerSweeper({ store, signals, impl, clients: deps.clients, settings: deps.settings, log: log.child({ component: "scheduler-sweeper" }) });
  let stopped: Promise<void> | undefined;
  return {
    impl,
    runs,
    schedules,
    sweeper,
    routes: schedulerRoutes(impl, runs, schedules),
    async start() {
      await signals.start();
      sweeper.start();
      runs.start();
      schedules.start();
    },
    stop() {
      stopped ??= (async () => {
        await Promise.all([schedules.stop(), runs.stop(), sweeper.stop()]);
        await signals.stop();
      })();
      return stopped;
    },
  };
}
