// Split mode: one service per process, PostgreSQL for state, Redis for
// signals, and the other services reached over HTTP/2 at configured
// addresses. services/<name>/main.ts calls runSplitService(name).

import { Role } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { CachingAuthenticator, type Authenticator } from "../lib/auth/tokens.ts";
import { createRedisBus } from "../lib/bus/redis.ts";
import { bearer, createClients, FleetAuthenticator } from "../lib/clients.ts";
import { createDroverTransport } from "../lib/grpc_transport.ts";
import { ConfigError, readSplitConfig, type ServiceName, type SplitConfig } from "../lib/config.ts";
import { openPostgres } from "../lib/db/database.ts";
import { migrate } from "../lib/db/migrate.ts";
import { accessPolicy } from "../lib/host/interceptors.ts";
import { closeOnSignals, startServer, type RunningServer } from "../lib/host/server.ts";
import { createLogger, type Logger } from "../lib/logger.ts";
import { TokenStore } from "./fleet/token_store.ts";
import { accessTables, services, startAll, stopAll } from "./registry.ts";

/** A running split-mode service process. */
export interface SplitService {
  server: RunningServer;
  /** Stops serving, then closes Redis and PostgreSQL. Idempotent. */
  close(): Promise<void>;
}

export async function startSplitService<N extends ServiceName>(name: N, config: SplitConfig, logger: Logger): Promise<SplitService> {
  const db = await openPostgres(config.databaseUrl, { prepare: config.pgPrepare });
  const bus = createRedisBus({ url: config.redisUrl, keyPrefix: config.redisPrefix, logger });
  try {
    // Concurrent replicas serialise on an advisory lock inside migrate().
    await migrate(db.executor, name);

    const clients = createClients((target) => {
      const baseUrl = config.serviceUrls[target];
      if (!baseUrl) throw new Error(`no address for the ${target} service: set DROVER_${target.toUpperCase()}_URL`);
      // No Nagle between services: RequestBids, placements and events are small writes on a hot path.
      // No compression either: the services share a data centre (or a machine), and gzip on every
      // answer over 1 KiB (claims, job lists) costs both ends CPU that the wire does not need.
      return createDroverTransport({
        baseUrl,
        interceptors: [bearer(config.adminToken)],
        nodeOptions: { noDelay: true } as import("node:http2").SecureClientSessionOptions,
      });
    });

    let authenticator: Authenticator;
    if (name === "fleet") {
      const tokens = new TokenStore(db.prismaFor("fleet"));
      await tokens.ensure(config.adminToken, Role.ADMIN, "bootstrap admin");
      // Every call from another service carries the admin token: remember
      // answers for a second. A revocation on this replica clears it at once;
      // another Fleet replica's answer lasts at most that second.
      authenticator = new CachingAuthenticator(tokens, 1000, 200);
    } else {
      authenticator = new CachingAuthenticator(new FleetAuthenticator(clients.fleet));
    }

    const definition = services[name];
    const instance = definition.build({
      db: db.prismaFor(name),
      sql: db.executor,
      bus,
      clients,
      logger: logger.child({ service: name }),
      settings: { fleet: config.fleet, scheduling: config.scheduling, log: config.log, deploy: config.deploy },
    });
    await startAll([instance]);
    let server: RunningServer;
    try {
      server = await startServer({
        services: [definition.desc],
        routes: instance.routes,
        listen: config.listen,
        logger,
        authenticator,
        policy: accessPolicy(accessTables([name])),
        shutdownGraceMs: config.shutdownGraceMs,
        keepaliveMs: config.keepaliveMs,
      });
    } catch (err) {
      await stopAll([instance]);
      throw err;
    }

    let closing: Promise<void> | undefined;
    const close = () =>
      (closing ??= (async () => {
        // The server first (no calls in flight, streams ended), then the
        // service's background work, which may still write to both.
        await server.close();
        await stopAll([instance]).catch((err) => logger.error({ err }, "a service failed to stop cleanly"));
        await bus.close();
        await db.close();
      })());
    return { server, close };
  } catch (err) {
    await bus.close();
    await db.close();
    throw err;
  }
}

/** The entry point of a split-mode service process. */
export async function runSplitService(name: ServiceName): Promise<void> {
  const started = performance.now();
  let config: SplitConfig;
  try {
    config = readSplitConfig(name);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`drover ${name}: bad configuration: ${err.message}`);
    process.exit(2);
  }
  const logger = createLogger(config.logLevel, { service: name });
  const service = await startSplitService(name, config, logger);
  closeOnSignals(service.close, logger);
  logger.info(
    { ms: Math.round(performance.now() - started), grpcUrl: service.server.grpcUrl, httpUrl: service.server.httpUrl },
    "ready",
  );
}
