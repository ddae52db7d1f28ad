// How long the agent waits before it dials Fleet again.
//
// Exponential backoff with full jitter (the "Full Jitter" of the AWS
// architecture blog): the wait is uniform in [0, min(cap, base * 2^attempt)).
// When a Fleet process restarts, every agent it held loses its stream at the
// same instant; full jitter spreads their returns over the whole window
// instead of bunching them at its edges, so the fleet does not come back in
// step and knock the replacement over.

/** The shape of the backoff: where it starts and where it stops growing. */
export interface BackoffPolicy {
  /** The window of the first retry, milliseconds. */
  baseMs: number;
  /** The largest window, milliseconds (DROVER_RECONNECT_MAX_MS). */
  capMs: number;
}

/**
 * The wait before retry number `attempt` (0 for the first retry after a
 * failure): uniform in [0, min(capMs, baseMs * 2^attempt)). `random` returns
 * a number in [0, 1), as Math.random does.
 */
export function backoffDelayMs(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  return random() * backoffWindowMs(attempt, policy);
}

/** The upper bound of the wait before retry number `attempt`. */
export function backoffWindowMs(attempt: number, { baseMs, capMs }: BackoffPolicy): number {
  // 2 ** 1100 is Infinity and min() still answers capMs, but a negative or
  // fractional attempt is a caller's bug that should not shrink the window.
  const n = Math.max(0, Math.floor(attempt));
  return Math.min(capMs, baseMs * 2 ** n);
}

/** What the agent knows about the stream that just ended. */
export interface SessionSummary {
  /** The server answered Hello with Welcome. */
  welcomed: boolean;
  /** From dialling to the end of the stream, milliseconds. */
  durationMs: number;
}

/**
 * The attempt number of the wait that follows `session`, given the attempt
 * number of the wait before it (undefined when there was none). A session
 * that was welcomed and stayed up for `stableMs` proves the path to Fleet
 * works, so the backoff starts over at 0; anything shorter (refused,
 * rejected, dropped right after Welcome) is one more failure in a row, so a
 * Fleet that accepts and then drops every stream is not hammered at the
 * base rate.
 */
export function nextAttempt(previous: number | undefined, session: SessionSummary, stableMs: number): number {
  if (previous === undefined || (session.welcomed && session.durationMs >= stableMs)) return 0;
  return previous + 1;
}
