// The Deploy service assembled: the RPCs and the rollout controller, which
// the RPCs wake after each change, and the bus doorbells (signals.ts) that
// wake the controller when replicas' jobs change and watchers when
// deployments do.

import type { Logger } from "pino";
import type { PrismaClient } from "../../gen/prisma/deploy/client.ts";
import type { Bus } from "../../lib/bus/bus.ts";
import type { DroverClients } from "../../lib/clients.ts";
import type { DeploySettings } from "../../lib/config.ts";
import type { SqlExecutor } from "../../lib/db/executor.ts";
import { Controller } from "./controller.ts";
import { DeployServiceImpl, deployRoutes } from "./service.ts";
import { DeploySignals } from "./signals.ts";

export interface DeployDeps {
  db: PrismaClient;
  /** The same database below Prisma, for the rows every controller pass and GetDeployment read (rows.ts). */
  sql: SqlExecutor;
  bus: Bus;
  clients: DroverClients;
  logger: Logger;
  settings: DeploySettings;
}

export function createDeploy(deps: DeployDeps) {
  const signals = new DeploySignals(deps.bus, deps.logger);
  const controller = new Controller({ db: deps.db, sql: deps.sql, clients: deps.clients, logger: deps.logger.child({ component: "deploy-controller" }), settings: deps.settings, signals });
  const impl = new DeployServiceImpl({ db: deps.db, sql: deps.sql, wake: () => controller.wake(), signals });
  return {
    impl,
    controller,
    routes: deployRoutes(impl),
    start: async () => {
      await signals.start((jobs) => controller.jobsChanged(jobs));
      controller.start();
    },
    stop: async () => {
      await controller.stop();
      await signals.stop();
    },
  };
}
