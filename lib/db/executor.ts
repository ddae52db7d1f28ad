// Raw SQL access for the places that work below Prisma: the migrator, the
// hot statements of the job store, the outbox and the log store, and tests.
// One small interface with two implementations, node-postgres (a Pool or a
// single Client) and PGlite, so that each is written once and runs the same
// in dev mode (embedded PGlite) and split mode (PostgreSQL). Both send a
// repeated statement as a named prepared statement, parsed once per
// connection (StatementNames, PreparedStatements).

import type { PGlite, Transaction as PGliteTransaction, messages as pgliteMessages, parse as pgliteParse, protocol as pgliteProtocol } from "@electric-sql/pglite";
import pg from "pg";
import { bindExecuteSync, columnsOf, readRows, WireOutput, type Columns } from "./pglite_wire.js";

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

/** How a node-postgres executor sends its statements. */
export interface PgExecutorOptions {
  /**
   * As named prepared statements (default true): each connection parses a
   * statement text once, and PostgreSQL plans it once when a generic plan
   * serves as well as planning each run again. Off: each run is parsed and
   * planned (what a pooler in transaction mode that does not keep prepared
   * statements needs, such as PgBouncer before 1.21).
   */
  prepare?: boolean;
}

/** Wraps a node-postgres Pool (a connection per session or transaction) or a Client (one connection). */
export function pgExecutor(db: pg.Pool | pg.Client | pg.PoolClient, options: PgExecutorOptions = {}): SqlExecutor {
  const names = new StatementNames(options.prepare ?? true);
  if (db instanceof pg.Pool) return poolExecutor(db, names);
  return connectionExecutor(db, sessionLock(db), names);
}

/**
 * Names for statement texts, the same on every connection of an executor
 * (node-postgres remembers per connection which names it parsed there). At
 * most MAX_PREPARED texts get one; the rest run unnamed, so SQL built with
 * varying text cannot grow every connection's statements without end.
 */
class StatementNames {
  private readonly names = new Map<string, string>();

  constructor(private readonly enabled: boolean) {}

  /** The query to send for this text: named when it has (or may take) a name. */
  query(text: string, values: unknown[] | undefined): pg.QueryConfig {
    if (!this.enabled) return { text, values };
    let name = this.names.get(text);
    if (name === undefined && this.names.size < MAX_PREPARED) this.names.set(text, (name = newStatementName()));
    return name === undefined ? { text, values } : { name, text, values };
  }

  /**
   * Whether the error says the text's prepared plan went stale (a schema
   * change altered its result's columns). The text then gets a new name, so
   * that it is prepared afresh: the statement did not run and may be sent again.
   */
  stale(error: unknown, text: string): boolean {
    if ((error as { code?: unknown }).code !== STALE_PLAN || !this.names.delete(text)) return false;
    this.names.set(text, newStatementName());
    return true;
  }
}

// Unique in the process: two executors over one connection must not give one name to two texts.
let statementCount = 0;
const newStatementName = () => `drover_${statementCount++}`;

function poolExecutor(pool: pg.Pool, names: StatementNames): SqlExecutor {
  const withClient = async <T>(fn: (session: SqlExecutor) => Promise<T>): Promise<T> => {
    const client = await pool.connect();
    let broken: unknown;
    try {
      // A fresh executor per checkout: the connection is ours alone here.
      return await fn(connectionExecutor(client, new Mutex(), names));
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
      try {
        return (await pool.query(names.query(sql, params))).rows as Row[];
      } catch (error) {
        // Outside a transaction a statement whose plan went stale can simply be sent again.
        if (!names.stale(error, sql)) throw error;
        return (await pool.query(names.query(sql, params))).rows as Row[];
      }
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
function connectionExecutor(client: pg.Client | pg.PoolClient, lock: Mutex, names: StatementNames): SqlExecutor {
  const conn: SqlExecutor = {
    async query<Row>(sql: string, params?: unknown[]) {
      try {
        return (await client.query(names.query(sql, params))).rows as Row[];
      } catch (error) {
        // Within a transaction the error has ended it: the next run prepares the statement afresh.
        names.stale(error, sql);
        throw error;
      }
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

/** What the executor uses of the PGlite module besides the instance (database.ts loads it lazily). */
export interface PgliteModule {
  protocol: typeof pgliteProtocol;
  parse: typeof pgliteParse;
}

/**
 * Wraps a PGlite instance, the embedded database of dev mode (a single
 * connection). Statements run as named prepared statements (PreparedStatements, below).
 */
export function pgliteExecutor(db: PGlite, mod: PgliteModule): SqlExecutor {
  const lock = sessionLock(db);
  const prepared = new PreparedStatements(db, mod);
  const base: SqlExecutor = {
    async query<Row>(sql: string, params?: unknown[]) {
      return prepared.query<Row>(sql, params ?? [], false);
    },
    async exec(script: string) {
      await db.exec(script);
    },
    // PGlite's own transaction() holds its connection exclusively, so
    // Prisma's queries wait rather than land inside our transaction.
    transaction: (fn) => db.transaction((tx) => fn(pgliteTx(tx, prepared))),
    session: (fn) => lock.run(() => fn(inSession)),
  };
  const inSession: SqlExecutor = { ...base, session: (fn) => fn(inSession) };
  return base;
}

function pgliteTx(tx: PGliteTransaction, prepared: PreparedStatements): SqlQueryable {
  return {
    async query<Row>(sql: string, params?: unknown[]) {
      if (tx.closed) throw new Error("Transaction is closed"); // as tx.query() says it
      return prepared.query<Row>(sql, params ?? [], true);
    },
    async exec(script: string) {
      await tx.exec(script);
    },
  };
}

/** Most statements kept prepared; past it the least recently run is closed (SQL built with varying text must not grow the cache without end). */
export const MAX_PREPARED = 256;

/** A statement prepared on the connection: its name, its parameters' types and its rows' description. */
interface Prepared {
  name: string;
  paramTypes: number[];
  /** Its rows' columns (from the RowDescription), undefined for a statement that returns no rows. */
  columns: Columns | undefined;
}

/**
 * Named prepared statements on PGlite. Its query() sends each statement as
 * six protocol messages, one call into the wasm backend each: Parse,
 * Describe, Bind (which plans it again), Describe, Execute, Sync. Here a
 * statement is parsed and described once, the first time its text is seen;
 * afterwards a run is Bind, Execute and Sync in one call, and PostgreSQL
 * keeps the plan once a generic one is as good. A point select went from
 * ~150 to ~45 µs; dev mode's job store, whose statements are few and
 * repeated, spends most of its database time in them. A statement run once
 * costs two calls instead of six. At most MAX_PREPARED are kept, the least
 * recently run closed first. A run's Bind is written and its output read by
 * hand (pglite_wire.ts), not through PGlite's serializer and message
 * parser: a select of 100 rows of 9 columns went from ~2.25 ms to ~0.64 ms,
 * one row from ~170 to ~110 µs, and a statement given 30 KB of JSON from
 * ~380 to ~200 µs.
 *
 * Locks as PGlite's query() takes them: outside a transaction, its
 * transaction lock then its query lock; inside one (whose body holds the
 * transaction lock), the query lock. Errors are PGlite's own (DatabaseError,
 * with the code); the Sync goes with the Bind, so the connection is ready
 * again after one. A statement a schema change made stale ("cached plan must
 * not change result type") is prepared again once.
 */
class PreparedStatements {
  private readonly statements = new Map<string, Prepared>();
  private next = 0;
  // One statement runs at a time (under PGlite's lock), so one buffer serves them all.
  private readonly wire = new WireOutput();

  constructor(
    private readonly db: PGlite,
    private readonly mod: PgliteModule,
  ) {}

  /** The rows PGlite's query() resolves; `inTransaction`: called from a transaction's body. */
  async query<Row>(sql: string, params: unknown[], inTransaction: boolean): Promise<Row[]> {
    const run = () =>
      this.db.runExclusive(async () => {
        let result: Row[];
        try {
          result = await this.run<Row>(sql, params);
        } catch (err) {
          if ((err as { code?: unknown }).code !== STALE_PLAN) throw err;
          this.statements.delete(sql);
          result = await this.run<Row>(sql, params);
        }
        if (!inTransaction) await this.db.syncToFs();
        return result;
      });
    return inTransaction ? run() : this.db._runExclusiveTransaction(run);
  }

  private async run<Row>(sql: string, params: unknown[]): Promise<Row[]> {
    let st = this.statements.get(sql);
    if (st) {
      this.statements.delete(sql); // re-inserted last: the map stays in order of use
      this.statements.set(sql, st);
    } else {
      st = await this.prepare(sql);
    }
    // PGlite's serializers all give text (bytea as hex).
    const values = params.map((value, i): string | null => {
      if (value === null || value === undefined) return null;
      const serializer = this.db.serializers[st.paramTypes[i]!];
      return serializer ? String(serializer(value)) : String(value);
    });
    const wire = this.wire;
    wire.reset();
    await this.db.execProtocolRawStream(bindExecuteSync(st.name, values), {
      syncToFs: false,
      onRawData: wire.push,
    });
    const read = readRows(wire.bytes(), st.columns);
    if (read.error) throw this.databaseError(wire.bytes());
    return read.rows as Row[];
  }

  /** PGlite's own DatabaseError for an output that holds an ErrorResponse, parsed as its execProtocol would. */
  private databaseError(wire: Uint8Array): Error {
    let error: Error | undefined;
    new this.mod.protocol.Parser().parse(wire, (message) => {
      if (message.name === "error") error ??= message as unknown as Error;
    });
    return error ?? new Error("PGlite reported an error that could not be parsed");
  }

  private async prepare(sql: string): Promise<Prepared> {
    const { serialize } = this.mod.protocol;
    const name = `drover_${this.next++}`;
    const evicted: Uint8Array[] = [];
    for (const [text, old] of this.statements) {
      if (this.statements.size < MAX_PREPARED) break;
      this.statements.delete(text);
      evicted.push(serialize.close({ type: "S", name: old.name }));
    }
    const { messages } = await this.db.execProtocol(Buffer.concat([...evicted, serialize.parse({ name, text: sql }), serialize.describe({ type: "S", name }), serialize.sync()]), {
      syncToFs: false,
    });
    const rowDescription = messages.find((m): m is pgliteMessages.RowDescriptionMessage => m.name === "rowDescription");
    const st: Prepared = {
      name,
      paramTypes: this.mod.parse.parseDescribeStatementResults(messages),
      columns: rowDescription && columnsOf(rowDescription.fields, this.db.parsers),
    };
    this.statements.set(sql, st);
    return st;
  }
}

/** PostgreSQL's "cached plan must not change result type" (feature_not_supported). */
const STALE_PLAN = "0A000";

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
