// Dev mode: all five services in one process, one port pair, an embedded
// PGlite database under the data directory, the in-process bus, and services
// calling each other through their generated clients over in-memory
// transports. The same service code runs in split mode (services/split.ts).

import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import type { ConnectRouter } from "@connectrpc/connect";
import { createConnectRouter, createRouterTransport } from "@connectrpc/connect";
import { Role } from "../../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { loadOrCreateAdminSecret } from "../../lib/admin_token.ts";
import { createMemoryBus } from "../../lib/bus/memory.ts";
import { bearer, createClients } from "../../lib/clients.ts";
import { SERVICE_NAMES, type DevConfig, type ServiceName } from "../../lib/config.ts";
import { openPglite, type Database } from "../../lib/db/database.ts";
import { EmbeddedVacuum } from "../../lib/db/embedded_vacuum.ts";
import { lockDataDir } from "../../lib/data_dir_lock.ts";
import { migrate } from "../../lib/db/migrate.ts";
import { collectUnaryRoutes, type UnaryRoute } from "../../lib/host/grpc_unary.ts";
import { createInProcessTransport } from "../../lib/host/in_process.ts";
import { accessPolicy } from "../../lib/host/interceptors.ts";
import { standardInterceptors, startServer, type RunningServer } from "../../lib/host/server.ts";
import type { Logger } from "../../lib/logger.ts";
import { CachingAuthenticator } from "../../lib/auth/tokens.ts";
import { TokenStore } from "../fleet/token_store.ts";
import { accessTables, services, startAll, stopAll } from "../registry.ts";

/** A running dev-mode control plane. */
export interface DevPlane {
  server: RunningServer;
  /** The admin token's secret, and the file it is kept in. */
  adminToken: string;
  adminTokenFile: string;
  /** Stops serving, then closes the bus and the database. Idempotent. */
  close(): Promise<void>;
}

export async function startDev(config: DevConfig, logger: Logger): Promise<DevPlane> {
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const unlock = lockDataDir(dataDir);
  let db: Database;
  try {
    db = await openPglite(join(dataDir, "pgdata"), { fsync: config.dbFsync });
  } catch (err) {
    unlock();
    throw err;
  }
  const bus = createMemoryBus();
  try {
    for (const name of SERVICE_NAMES) await migrate(db.executor, name);

    const tokens = new TokenStore(db.prismaFor("fleet"));
    const adminTokenFile = join(dataDir, "admin-token");
    const { secret: adminToken, created } = loadOrCreateAdminSecret(adminTokenFile);
    await tokens.ensure(adminToken, Role.ADMIN, "dev admin");

    // Fleet is in this process, so tokens are checked against its store
    // directly, remembered for a second (every in-process call between the
    // services carries the admin token); a revocation here clears it at once.
    const authenticator = new CachingAuthenticator(tokens, 1000, 200);
    const policy = accessPolicy(accessTables(SERVICE_NAMES));
    const interceptors = standardInterceptors(logger, authenticator, policy);

    // Each service is built once; the router and the in-memory transports
    // share the instances, so state held in memory (agent streams) is one.
    const registrars: ((router: ConnectRouter) => void)[] = [];
    const routes = (router: ConnectRouter) => registrars.forEach((register) => register(router));
    // Unary calls between the services go straight to the implementation, through the same
    // interceptors (lib/host/in_process.ts); streams through Connect's router transport.
    const unaryRoutes: UnaryRoute[] = [];
    const clients = createClients(() =>
      createInProcessTransport({
        routes: unaryRoutes,
        interceptors: [bearer(adminToken), ...interceptors],
        fallback: createRouterTransport(routes, { router: { interceptors }, transport: { interceptors: [bearer(adminToken)] } }),
      }),
    );
    const build = <N extends ServiceName>(name: N) =>
      services[name].build({
        db: db.prismaFor(name),
        sql: db.executor,
        bus,
        clients,
        logger: logger.child({ service: name }),
        settings: { fleet: config.fleet, scheduling: config.scheduling, log: config.log, deploy: config.deploy },
      });
    const instances = SERVICE_NAMES.map((name) => build(name));
    for (const instance of instances) registrars.push(instance.routes);
    routes(collectUnaryRoutes(createConnectRouter(), unaryRoutes));

    await startAll(instances);
    let server: RunningServer;
    try {
      server = await startServer({
        services: SERVICE_NAMES.map((n) => services[n].desc),
        routes,
        listen: config.listen,
        logger,
        authenticator,
        policy,
        shutdownGraceMs: config.shutdownGraceMs,
        keepaliveMs: config.keepaliveMs,
      });
    } catch (err) {
      await stopAll(instances);
      throw err;
    }
    if (created) logger.info({ adminTokenFile }, "created the dev admin token");
    const vacuum = new EmbeddedVacuum(db.executor, logger, config.vacuumIntervalMs);
    vacuum.start();

    let closing: Promise<void> | undefined;
    const close = () =>
      (closing ??= (async () => {
        // The server first (no calls in flight, streams ended), then the
        // services' background work, which may still write to both.
        await server.close();
        await stopAll(instances).catch((err) => logger.error({ err }, "a service failed to stop cleanly"));
        await vacuum.stop();
        await bus.close();
        await db.close();
        unlock();
      })());
    return { server, adminToken, adminTokenFile, close };
  } catch (err) {
    await bus.close();
    await db.close();
    unlock();
    throw err;
  }
}
