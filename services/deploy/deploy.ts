// The Deploy service assembled: the RPCs and the rollout controller, which
// the RPCs wake after each change.

import type { Logger } from "pino";
import type { PrismaClient } from "../../gen/prisma/deploy/client.ts";
import type { DroverClients } from "../../lib/clients.ts";
import type { DeploySettings } from "../../lib/config.ts";
import { Controller } from "./controller.ts";
import { DeployServiceImpl, deployRoutes } from "./service.ts";

export interface DeployDeps {
  db: PrismaClient;
  clients: DroverClients;
  logger: Logger;
  settings: DeploySettings;
}

export function createDeploy(deps: DeployDeps) {
  const controller = new Controller({ db: deps.db, clients: deps.clients, logger: deps.logger.child({ component: "deploy-controller" }), settings: deps.settings });
  const impl = new DeployServiceImpl({ db: deps.db, wake: () => controller.wake() });
  return {
    impl,
    controller,
    routes: deployRoutes(impl),
    start: async () => controller.start(),
    stop: async () => controller.stop(),
  };
}
