// Finds the real Redis and PostgreSQL that integration tests run against.
//
// On a laptop a missing service skips the tests that need it, with a reason
// saying what to start; in CI (CI=true) it fails them, because a skipped
// suite there would report green without having tested anything.
//
//   const url = await requireRedis();        // at the top of a test file
//   if (url === null) it("...", (t) => requireRedis(t));   // shows the skip reason
//
// Probes are cached per URL, so asking again (for instance to skip a test
// with the reason) costs nothing.

import pg from "pg";
import { Redis } from "ioredis";

/** Anything that can be skipped with a reason; node:test's TestContext is one. */
export interface Skippable {
  /** Marks the test as skipped, showing message. */
  skip(message?: string): void;
}

// Long enough for a service on this machine or next to it in CI, short enough
// that a laptop without one does not stall the test run.
const CONNECT_TIMEOUT_MS = 1_000;

/**
 * Resolves the Redis URL (REDIS_URL, or the local default) if Redis answers
 * PING. Otherwise throws in CI, or resolves null and skips t if given.
 */
export async function requireRedis(t?: Skippable): Promise<string | null> {
  const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
  return requireService("Redis", "REDIS_URL", url, probeRedis, t);
}

/**
 * Resolves the PostgreSQL URL (DATABASE_URL, or the local default) if it
 * answers SELECT 1. Otherwise throws in CI, or resolves null and skips t if given.
 */
export async function requirePostgres(t?: Skippable): Promise<string | null> {
  const url = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
  return requireService("PostgreSQL", "DATABASE_URL", url, probePostgres, t);
}

// url -> why it is unreachable, or null when it answered.
const probes = new Map<string, Promise<string | null>>();

async function requireService(
  service: string,
  variable: string,
  url: string,
  probe: (url: string) => Promise<void>,
  t: Skippable | undefined,
): Promise<string | null> {
  let failure = probes.get(url);
  if (!failure) {
    failure = probe(url).then(() => null, explain);
    probes.set(url, failure);
  }
  const why = await failure;
  if (why === null) return url;
  // URLs may carry a password; say where, not how.
  const where = redact(url);
  if (process.env.CI === "true") {
    throw new Error(`${service} is required in CI but unreachable at ${where} (${variable}): ${why}`);
  }
  t?.skip(`${service} is unreachable at ${where} (${why}); start it or set ${variable}`);
  return null;
}

async function probeRedis(url: string): Promise<void> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: CONNECT_TIMEOUT_MS,
    // One attempt: a probe that reconnects forever would hang the test file.
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    // Otherwise a refused socket holds the process open for two seconds.
    disconnectTimeout: 0,
  });
  // connect() only rejects with "Connection is closed."; the cause comes as an event.
  let cause: Error | undefined;
  client.on("error", (err: Error) => (cause ??= err));
  try {
    await client.connect();
    await client.ping();
  } catch (err) {
    throw cause ?? err;
  } finally {
    client.disconnect();
  }
}

async function probePostgres(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  client.on("error", () => {}); // the rejected connect() carries the error
  try {
    await client.connect();
    await client.query("SELECT 1");
  } finally {
    await client.end().catch(() => {});
  }
}

function explain(err: unknown): string {
  // Node reports a refused "localhost" (tried on ::1 and 127.0.0.1) as an
  // AggregateError with an empty message; its parts say what happened.
  if (err instanceof AggregateError && !err.message) return err.errors.map(explain).join("; ");
  if (err instanceof Error) return err.message || (err as NodeJS.ErrnoException).code || err.name;
  return String(err);
}

function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(an unparsable URL)";
  }
}
