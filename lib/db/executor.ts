// Raw SQL access for the few places that work below Prisma: the migrator and
// tests. One small interface with two implementations, node-postgres (a Pool
// or a single Client) and PGlite, so that the migrator is written once and
// runs the same in dev mode (embedded PGlite) and split mode (PostgreSQL).

import type { PGlite, Transaction as PGliteTransaction } from "@electric-sql/pglite";
import pg from "pg";

/** Runs SQL statements; what a transaction body is given. */
export interface SqlQueryable {
  /** Runs one statement with $1, $2... parameters and resolves its rows. */
  query<Row = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<Row[]>;
  /** Runs a script of several statements separated by semicolons; no parameters. */
  exec(script: string): Promise<void>;
}

/** Raw SQL on one database; promises that transaction and session each hold one connection for their body. */
export interface SqlExecutor extends SqlQueryable {
  /**
   * Runs fn in one transaction: commits when it resolves, rolls back when it
   * throws. Inside, use only tx: on PGlite (one connection) a query issued
   * through anything else waits for the transaction to end, which is never.
   */
  transaction<T>(fn: (tx: SqlQueryable) => Promise<T>): Promise<T>;
  /**
   * Runs fn with one connection held for it alone, for session state such as
   * advisory locks. Sessions on a single-connection executor run one at a
   * time. Inside, use only the executor fn is given.
   */
  session<T>(fn: (session: SqlExecutor) => Promise<T>): Promise<T>;
}

/** Wraps a node-postgres Pool (a connection per session or transaction) or a Client (one connection). */
export function pgExecutor(db: pg.Pool | pg.Client | pg.PoolClient): SqlExecutor {
  if (db instanceof pg.Pool) return poolExecutor(db);
  return connectionExecutor(db, sessionLock(db));
}

function poolExecutor(pool: pg.Pool): SqlExecutor {
  const withClient = async <T>(fn: (session: SqlExecutor) => Promise<T>): Promise<T> => {
    const client = await pool.connect();
    let broken: unknown;
    try {
      // A fresh executor per checkout: the connection is ours alone here.
      return await fn(connectionExecutor(client, new Mutex()));
    } catch (error) {
      broken = error;
      throw error;
    } finally {
      // Handing back a connection after an error could leak session state
      // (an advisory lock, an aborted transaction) to its next user, so it
      // is destroyed instead; the pool opens a new one when needed.
      client.release(broken === undefined ? undefined : true);
    }
  };
  return {
    async query<Row>(sql: string, params?: unknown[]) {
      return (await pool.query(sql, params)).rows as Row[];
    },
    async exec(script: string) {
      await pool.query(script);
    },
    transaction: (fn) => withClient((session) => session.transaction(fn)),
    session: withClient,
  };
}

// One connection: statements go straight to it. `lock` serialises sessions so
// that two users of the same connection cannot interleave a session's state.
function connectionExecutor(client: pg.Client | pg.PoolClient, lock: Mutex): SqlExecutor {
  const conn: SqlExecutor = {
    async query<Row>(sql: string, params?: unknown[]) {
      return (await client.query(sql, params)).rows as Row[];
    },
    async exec(script: string) {
      // Without parameters node-postgres uses the simple query protocol,
      // which accepts several statements in one string.
      await client.query(script);
    },
    async transaction(fn) {
      await client.query("BEGIN");
      try {
        const result = await fn({ query: conn.query, exec: conn.exec });
        await client.query("COMMIT");
        return result;
      } catch (error) {
        await client.query("ROLLBACK").catch(() => {});
        throw error;
      }
    },
    session: (fn) => lock.run(() => fn(inSession)),
  };
  // Within a session the connection is already held: nested sessions just run.
  const inSession: SqlExecutor = { ...conn, session: (fn) => fn(inSession) };
  return conn;
}

/** Wraps a PGlite instance, the embedded database of dev mode (a single connection). */
export function pgliteExecutor(db: PGlite): SqlExecutor {
  const lock = sessionLock(db);
  const base: SqlExecutor = {
    async query<Row>(sql: string, params?: unknown[]) {
      return (await db.query<Row>(sql, params)).rows;
    },
    async exec(script: string) {
      await db.exec(script);
    },
    // PGlite's own transaction() holds its connection exclusively, so
    // Prisma's queries wait rather than land inside our transaction.
    transaction: (fn) => db.transaction((tx) => fn(pgliteTx(tx))),
    session: (fn) => lock.run(() => fn(inSession)),
  };
  const inSession: SqlExecutor = { ...base, session: (fn) => fn(inSession) };
  return base;
}

function pgliteTx(tx: PGliteTransaction): SqlQueryable {
  return {
    async query<Row>(sql: string, params?: unknown[]) {
      return (await tx.query<Row>(sql, params)).rows;
    },
    async exec(script: string) {
      await tx.exec(script);
    },
  };
}

// Every executor over the same single connection shares one lock.
const sessionLocks = new WeakMap<object, Mutex>();
function sessionLock(connection: object): Mutex {
  let lock = sessionLocks.get(connection);
  if (!lock) sessionLocks.set(connection, (lock = new Mutex()));
  return lock;
}

/** Runs async functions one at a time, in call order. */
class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    // The next caller waits for this one to settle, whether it failed or not.
    this.tail = result.catch(() => {});
    return result;
  }
}
