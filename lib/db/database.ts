// Opens the database for one of Drover's two wirings and hands each service
// its own Prisma client:
//
//   dev mode    openPglite(dir)    one embedded PGlite for the whole process;
//                                  all five services share it, each through
//                                  its own client and its own schema.
//   split mode  openPostgres(url)  a pg Pool on PostgreSQL; a service process
//                                  normally asks only for its own client.
//
// A client only ever touches its service's schema: every model carries
// @@schema, so its queries name the schema and do not depend on search_path.

import fs, { closeSync, mkdirSync, openSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";

import type { PGlite } from "@electric-sql/pglite";
import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import type { PrismaPGlite } from "pglite-prisma-adapter";

import type { ServiceName } from "../config.ts";
import { PrismaClient as BidClient } from "../../gen/prisma/bid/client.ts";
import { PrismaClient as DeployClient } from "../../gen/prisma/deploy/client.ts";
import { PrismaClient as FleetClient } from "../../gen/prisma/fleet/client.ts";
import { PrismaClient as LogClient } from "../../gen/prisma/log/client.ts";
import { PrismaClient as SchedulerClient } from "../../gen/prisma/scheduler/client.ts";
import { pgExecutor, pgliteExecutor, type PgExecutorOptions, type SqlExecutor } from "./executor.ts";

/** Each service's generated Prisma client type. */
export interface PrismaClients {
  fleet: FleetClient;
  scheduler: SchedulerClient;
  bid: BidClient;
  deploy: DeployClient;
  log: LogClient;
}

type Adapter = PrismaPg | PrismaPGlite;

const clientClasses: { [S in ServiceName]: new (options: { adapter: Adapter }) => PrismaClients[S] } = {
  fleet: FleetClient,
  scheduler: SchedulerClient,
  bid: BidClient,
  deploy: DeployClient,
  log: LogClient,
};

/** An open database; promises one Prisma client per service and a close() that releases everything. */
export interface Database {
  /** "pglite": dev mode's embedded database; "postgres": a PostgreSQL server. */
  readonly kind: "pglite" | "postgres";
  /** Raw SQL access, for the migrator and tests. */
  readonly executor: SqlExecutor;
  /** The service's Prisma client, created on first use and shared afterwards. */
  prismaFor<S extends ServiceName>(service: S): PrismaClients[S];
  /** Disconnects the Prisma clients, then closes the connections. Safe to call twice. */
  close(): Promise<void>;
}

/** Options for openPostgres; anything pg.Pool accepts except the URL, and how raw SQL is sent. */
export type PostgresOptions = Omit<pg.PoolConfig, "connectionString"> & PgExecutorOptions;

/** Connects to PostgreSQL at url (split mode) through one pool shared by the process's clients. */
export function openPostgres(url: string, options: PostgresOptions = {}): Database {
  const { prepare, ...poolOptions } = options;
  const pool = new pg.Pool({ ...poolOptions, connectionString: url });
  // An idle connection that the server drops emits "error" on the pool, and
  // an unhandled "error" event would end the process. The pool discards that
  // connection; the next query opens a new one or fails where it is awaited.
  pool.on("error", () => {});
  return database("postgres", pgExecutor(pool, { prepare }), () => new PrismaPg(pool), () => pool.end());
}

// Resolved data directories of the PGlite instances open in this process.
const openPgliteDirs = new Set<string>();

export interface PgliteOptions {
  /**
   * Flush each commit to the disk, as PostgreSQL does (default true; a
   * "memory://" database has no disk). See durableStart().
   */
  fsync?: boolean;
}

/**
 * Opens (creating on first use) the embedded database persisted in dataDir,
 * for dev mode. One instance serves the whole process: opening the same
 * directory twice would corrupt it, so that throws. "memory://" gives an
 * in-memory database.
 */
export async function openPglite(dataDir: string, options: PgliteOptions = {}): Promise<Database> {
  const inMemory = dataDir.startsWith("memory://");
  const key = inMemory ? undefined : resolve(dataDir);
  if (key !== undefined) {
    if (openPgliteDirs.has(key)) throw new Error(`the embedded database in ${key} is already open in this process`);
    mkdirSync(key, { recursive: true });
    openPgliteDirs.add(key);
  }
  // Loaded here, not at the top: split mode never uses PGlite, and importing
  // it (and its Prisma adapter) costs ~200 ms of every service's start-up.
  const [{ PGlite, protocol, parse }, { PrismaPGlite }] = await Promise.all([import("@electric-sql/pglite"), import("pglite-prisma-adapter")]);
  const durable = key !== undefined && options.fsync !== false;
  // As PostgreSQL does after a crash: what the last server left in the page
  // cache reaches the disk before recovery builds on it, and what recovery
  // wrote (before NODEFS had an fsync) reaches it afterwards.
  const recovering = durable && crashedLastTime(key);
  let pglite: PGlite | undefined;
  try {
    if (recovering) syncTree(key);
    pglite = await PGlite.create(key ?? dataDir, durable ? { startParams: durableStartParams(PGlite.defaultStartParams) } : {});
    if (durable) await durableStart(pglite);
    if (recovering) syncTree(key);
  } catch (error) {
    await pglite?.close().catch(() => {});
    if (key !== undefined) openPgliteDirs.delete(key);
    throw error;
  }
  const opened = pglite;
  return database("pglite", pgliteExecutor(opened, { protocol, parse }), () => new PrismaPGlite(opened), async () => {
    try {
      await opened.close();
    } finally {
      if (key !== undefined) openPgliteDirs.delete(key);
    }
  });
}

// PGlite starts PostgreSQL with -F (fsync off), and the Emscripten file
// system it keeps a data directory on (NODEFS) has no fsync: a commit reaches
// the kernel's page cache and no further. That survives a crash of the
// process, not of the machine: a power loss could drop acknowledged writes,
// or leave data pages on the disk ahead of the WAL that describes them, a
// corrupt database. So a durable PGlite starts without -F, flushes the WAL
// with fsync() (Emscripten makes fdatasync() a no-op, and fsync() calls the
// file system's own), and NODEFS gets the fsync it lacks.

/** PGlite's start parameters with fsync on and the WAL flushed with fsync(). */
function durableStartParams(defaults: readonly string[]): string[] {
  return [...defaults.filter((p) => p !== "-F"), "-c", "wal_sync_method=fsync"];
}

/** Gives the instance's NODEFS an fsync, then checkpoints what start-up wrote before it had one. */
async function durableStart(pglite: PGlite): Promise<void> {
  const nodefs = (pglite as unknown as { mod?: { NODEFS?: { stream_ops?: Record<string, unknown> } } }).mod?.NODEFS;
  if (!nodefs?.stream_ops) {
    throw new Error("this PGlite build does not expose its file system (NODEFS), so commits cannot be flushed to the disk; DROVER_DB_FSYNC=off runs without");
  }
  nodefs.stream_ops.fsync = (stream: { nfd?: number }) => {
    if (stream.nfd !== undefined) fsync(stream.nfd);
    return 0;
  };
  await pglite.exec("CHECKPOINT");
}

/**
 * True when the data directory's last server did not shut down cleanly:
 * pg_control's state (a 32-bit field after the system identifier and two
 * version numbers) is neither "shut down" (1) nor "shut down in recovery" (2).
 */
function crashedLastTime(dir: string): boolean {
  let control: Buffer;
  try {
    control = readFileSync(join(dir, "global", "pg_control"));
  } catch {
    return false; // a new directory
  }
  const state = control.length >= 20 ? control.readInt32LE(16) : -1;
  return state !== 1 && state !== 2;
}

/** fsync()s every file and directory under dir, dir included. */
function syncTree(dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) syncTree(join(dir, entry.name));
    else if (entry.isFile()) syncPath(join(dir, entry.name));
  }
  syncPath(dir);
}

function syncPath(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * fsync(), passed over where the file system has none to give (EINVAL,
 * EBADF, ENOTSUP): some refuse it on a directory, as PostgreSQL's
 * fsync_fname() allows for. Any other error is thrown. Looked up on node:fs
 * at each call, so that a test can count the calls.
 */
function fsync(fd: number): void {
  try {
    fs.fsyncSync(fd);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "EINVAL" && code !== "EBADF" && code !== "ENOTSUP") throw error;
  }
}

function database(
  kind: Database["kind"],
  executor: SqlExecutor,
  adapter: () => Adapter,
  closeConnections: () => Promise<void>,
): Database {
  const clients = new Map<ServiceName, PrismaClients[ServiceName]>();
  let closing: Promise<void> | undefined;
  return {
    kind,
    executor,
    prismaFor<S extends ServiceName>(service: S): PrismaClients[S] {
      if (closing) throw new Error(`prismaFor(${service}): the database is closed`);
      let client = clients.get(service) as PrismaClients[S] | undefined;
      if (!client) {
        const Client = clientClasses[service];
        if (!Client) throw new Error(`prismaFor: unknown service ${JSON.stringify(service)}`);
        client = new Client({ adapter: adapter() });
        clients.set(service, client);
      }
      return client;
    },
    close() {
      // Clients first: they must finish with the connections before those go.
      closing ??= Promise.allSettled([...clients.values()].map((client) => client.$disconnect())).then(
        closeConnections,
      );
      return closing;
    },
  };
}
