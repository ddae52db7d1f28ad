// What the Scheduler's stores (jobs, runs, schedules) share about raw SQL
// rows: timestamps that come back as strings from PGlite, and the
// newest-first keyset page every List call reads.

/** The raw-SQL part of a Prisma client, which its transaction clients share. */
export interface Sql {
  $queryRawUnsafe<T = unknown>(query: string, ...values: unknown[]): Promise<T>;
  $executeRawUnsafe(query: string, ...values: unknown[]): Promise<number>;
}

/** Turns the named fields of a raw row into Dates: pg gives Dates, PGlite may give strings. */
export function withDates<T extends object>(row: T, keys: readonly (keyof T)[]): T {
  for (const k of keys) {
    const v = row[k] as unknown;
    if (v !== null && v !== undefined && !(v instanceof Date)) (row as Record<keyof T, unknown>)[k] = new Date(v as string);
  }
  return row;
}

/**
 * One page of a table, newest first (created_at, then id), optionally in
 * one state, only the rows `ids` (UUIDs), after the row `afterId`:
 * `columns` selects from the table under `alias`.
 */
export function newestFirst<T>(
  db: Sql,
  table: string,
  alias: string,
  columns: string,
  opts: { state?: string; limit: number; afterId?: string; ids?: readonly string[] },
): Promise<T[]> {
  const params: unknown[] = [opts.limit];
  const where: string[] = [];
  if (opts.state) {
    params.push(opts.state);
    where.push(`${alias}.state = $${params.length}`);
  }
  if (opts.ids) {
    // Cast to uuid so the primary key answers.
    params.push(JSON.stringify(opts.ids));
    where.push(`${alias}.id IN (SELECT t.id::uuid FROM jsonb_array_elements_text($${params.length}::jsonb) AS t(id))`);
  }
  if (opts.afterId) {
    params.push(opts.afterId);
    where.push(`(${alias}.created_at, ${alias}.id) < (SELECT created_at, id FROM ${table} WHERE id = $${params.length}::uuid)`);
  }
  return db.$queryRawUnsafe<T[]>(
    `SELECT ${columns} FROM ${table} ${alias} ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY ${alias}.created_at DESC, ${alias}.id DESC LIMIT $1`,
    ...params,
  );
}
