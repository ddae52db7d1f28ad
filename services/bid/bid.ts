// The Bid service, assembled: the auction record (service.ts) and the
// auction loop (auctioneer.ts). Both wirings build it through
// services/registry.ts.

import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { PrismaClient } from "../../gen/prisma/bid/client.ts";
import type { DroverClients } from "../../lib/clients.ts";
import type { SchedulingSettings } from "../../lib/config.ts";
import type { SqlExecutor } from "../../lib/db/executor.ts";
import type { Logger } from "../../lib/logger.ts";
import type { ServiceInstance } from "../registry.ts";
import { Auctioneer } from "./auctioneer.ts";
import { BidServiceImpl, bidRoutes } from "./service.ts";

export interface BidBuildDeps {
  db: PrismaClient;
  /** Raw SQL on the same database, for the statement every round runs (storing its auctions); without it, Prisma's raw queries. */
  sql?: SqlExecutor;
  clients: Pick<DroverClients, "fleet" | "scheduler">;
  settings: SchedulingSettings;
  logger: Logger;
}

export function createBid(deps: BidBuildDeps): ServiceInstance & { auctioneer: Auctioneer } {
  const bidder = `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
  const log = deps.logger.child({ component: "bid", bidder });
  const auctioneer = new Auctioneer({ db: deps.db, sql: deps.sql, clients: deps.clients, settings: deps.settings, bidder, log: log.child({ component: "auctioneer" }) });
  let stopped: Promise<void> | undefined;
  return {
    auctioneer,
    routes: bidRoutes(new BidServiceImpl(deps.db)),
    async start() {
      auctioneer.start();
    },
    stop() {
      return (stopped ??= auctioneer.stop());
    },
  };
}
