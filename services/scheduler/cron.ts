// Cron expressions and the decisions a schedule's tick needs, as pure
// functions over plain data: no clock, no database, no timers.
//
//   parseCron(expr, tz)            the expression, through croner (a maintained
//                                  library: names, macros, L/W/#, IANA zones)
//   dueTicks(schedule, now, tol)   which ticks to fire now, which to skip, and
//                                  the next tick to wait for (missed policy)
//   overlapAction(policy, going)   what a tick does while the previous one's
//                                  job or run is still going
//
// Time zones and DST (croner's rules, checked in cron.test.ts): a fixed-time
// expression ("30 2 * * *": one value each for second, minute and hour)
// whose local time falls in a spring-forward gap fires once at the first
// valid time after the gap (03:00 in Europe/Berlin), and fires once, at the
// first occurrence, when its local time happens twice (fall back). Interval
// expressions ("*/30 * * * *") skip local times that do not exist and fire
// on both occurrences of a repeated one: they keep their elapsed-time rhythm.

import { Cron } from "croner";

/** A parsed cron expression in a time zone; promises ticks strictly after/before the instant given. */
export interface CronSchedule {
  /** The first tick strictly after `after`; null when there is none. */
  next(after: Date): Date | null;
  /** Up to n ticks strictly before `before`, latest first. */
  previous(before: Date, n: number): Date[];
}

/** A bad expression or time zone; `field` names the ScheduleSpec field at fault. */
export class CronError extends Error {
  constructor(
    readonly field: "cron" | "time_zone",
    message: string,
  ) {
    super(message);
    this.name = "CronError";
  }
}

/** The time zone ticks are computed in when a spec leaves it empty. */
export const DEFAULT_TIME_ZONE = "UTC";

/** Throws CronError unless tz is an IANA time zone this runtime knows. */
export function checkTimeZone(tz: string): void {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
  } catch {
    throw new CronError("time_zone", `unknown time zone ${JSON.stringify(tz)}`);
  }
}

/**
 * Parses a cron expression: five fields, or six with seconds first; names
 * (MON, JAN), macros (@hourly, @daily, ...), L, W and #. Day-of-month and
 * day-of-week combine with OR, as in Vixie cron. Throws CronError naming the
 * field at fault. (An expression that never fires, Feb 30, parses: its
 * next() is null; CreateSchedule refuses it.)
 */
export function parseCron(expr: string, timeZone: string): CronSchedule {
  const tz = timeZone === "" ? DEFAULT_TIME_ZONE : timeZone;
  checkTimeZone(tz);
  let cron: Cron;
  try {
    cron = new Cron(expr.trim(), { timezone: tz, mode: "5-or-6-parts" });
  } catch (err) {
    // croner's messages start with its class name ("CronPattern: ..."): keep what follows.
    const message = err instanceof Error ? err.message.replace(/^Cron\w*:\s*/, "") : String(err);
    throw new CronError("cron", `${JSON.stringify(expr)}: ${message}`);
  }
  return {
    next: (after) => cron.nextRun(after),
    previous: (before, n) => (n <= 0 ? [] : cron.previousRuns(n, before)),
  };
}

/** What a schedule does with ticks missed during downtime (MissedPolicy, by name). */
export type MissedPolicyName = "skip" | "run_once" | "backfill";

/** What a tick does while the previous tick's job or run is going (OverlapPolicy, by name). */
export type OverlapPolicyName = "skip" | "allow" | "cancel_previous";

/** A schedule as dueTicks needs it. */
export interface DueInput {
  cron: CronSchedule;
  /** The tick it waits for; dueTicks is asked only once it is not after now. */
  nextFireAt: Date;
  missed: MissedPolicyName;
  /** With backfill: the most missed ticks fired; 0 means DEFAULT_BACKFILL_LIMIT. */
  backfillLimit: number;
}

/** What to do now. */
export interface Due {
  /** Ticks to fire, oldest first (each its own job or run). */
  fire: Date[];
  /** Ticks that fire nothing (missed SKIP, backfill beyond its limit); a lower bound when `skippedAtLeast`. */
  skipped: number;
  skippedAtLeast: boolean;
  /** Why, in words, when skipped > 0. */
  skipReason: string | null;
  /** The first tick after now; null when the expression has none left. */
  next: Date | null;
}

/** backfill_limit 0 means this many. */
export const DEFAULT_BACKFILL_LIMIT = 10;
/** The most backfill_limit may be (the proto's bound; enforced here too, for callers that skip validation). */
export const MAX_BACKFILL_LIMIT = 1000;

// Counting missed ticks walks them one by one (croner takes ~0.3 ms per
// tick), so counting stops here: skip counts after a long downtime are lower
// bounds, and say so.
export const MAX_COUNTED_TICKS = 100;
// More on-time ticks than this in one tolerance window would take a
// tolerance of minutes; past it, the rest are dropped.
const MAX_ON_TIME_TICKS = 20;

/**
 * Which ticks are due at `now`. A tick no older than `toleranceMs` is on
 * time and fires; older ones were missed (no replica was running, or it was
 * far behind) and the missed policy applies to them:
 *
 *   skip      fire none of them; count them as skipped
 *   run_once  fire the latest of them only
 *   backfill  fire the latest backfillLimit of them, oldest first; count the
 *             older ones as skipped
 *
 * Either way the schedule then waits for the first tick after now.
 */
export function dueTicks(s: DueInput, now: Date, toleranceMs: number): Due {
  const onTimeFrom = new Date(now.getTime() - toleranceMs);
  const fire: Date[] = [];
  let skipped = 0;
  let skippedAtLeast = false;
  let skipReason: string | null = null;

  if (s.nextFireAt < onTimeFrom) {
    // Missed ticks are those in [nextFireAt, onTimeFrom).
    const want = s.missed === "skip" ? 0 : s.missed === "run_once" ? 1 : Math.min(s.backfillLimit || DEFAULT_BACKFILL_LIMIT, MAX_BACKFILL_LIMIT);
    const latest = ticksBetween(s.cron, s.nextFireAt, onTimeFrom, want);
    // nextFireAt is itself a tick, so with want ≥ 1 there is at least one.
    if (latest.length === 0 && want > 0) latest.push(s.nextFireAt);
    fire.push(...latest);
    // The ticks before those fired are not fired; count them, up to a bound.
    // run_once stands for all of them ("fire once for all"), so counts none.
    if (s.missed !== "run_once") {
      const until = latest[0] ?? onTimeFrom;
      const counted = countTicks(s.cron, s.nextFireAt, until);
      skipped = counted.count;
      skippedAtLeast = counted.atLeast;
      if (skipped > 0) {
        const n = `${skippedAtLeast ? "at least " : ""}${skipped} missed tick${skipped === 1 && !skippedAtLeast ? "" : "s"}`;
        skipReason = s.missed === "skip"
          ? `${n} skipped (missed policy SKIP), from ${s.nextFireAt.toISOString()}`
          : `${n} beyond the backfill limit of ${want} not fired, from ${s.nextFireAt.toISOString()}`;
      }
    }
  }

  // On-time ticks: [max(nextFireAt, onTimeFrom), now].
  let t: Date | null = s.nextFireAt >= onTimeFrom ? s.nextFireAt : s.cron.next(new Date(onTimeFrom.getTime() - 1));
  let onTime = 0;
  while (t !== null && t <= now && onTime < MAX_ON_TIME_TICKS) {
    fire.push(t);
    onTime++;
    t = s.cron.next(t);
  }
  const next = t !== null && t <= now ? s.cron.next(now) : t;
  return { fire, skipped, skippedAtLeast, skipReason, next };
}

/** The latest `want` ticks in [from, before), oldest first; asks croner in small steps so a short downtime costs little. */
function ticksBetween(cron: CronSchedule, from: Date, before: Date, want: number): Date[] {
  const latestFirst: Date[] = [];
  let ref = before;
  while (latestFirst.length < want) {
    const chunk = cron.previous(ref, Math.min(want - latestFirst.length, 16));
    for (const t of chunk) {
      if (t < from) return latestFirst.reverse();
      latestFirst.push(t);
    }
    if (chunk.length === 0) break;
    ref = chunk[chunk.length - 1]!;
  }
  return latestFirst.reverse();
}

/** Ticks in [from, until): from must be a tick. Stops counting at MAX_COUNTED_TICKS. */
function countTicks(cron: CronSchedule, from: Date, until: Date): { count: number; atLeast: boolean } {
  let count = 0;
  for (let t: Date | null = from; t !== null && t < until; t = cron.next(t)) {
    if (count === MAX_COUNTED_TICKS) return { count, atLeast: true };
    count++;
  }
  return { count, atLeast: false };
}

/** What a tick does about the previous tick's job or run. */
export type OverlapAction = "fire" | "skip" | "cancel_previous";

/** Decides a tick's overlap: only a previous job or run still going matters. */
export function overlapAction(policy: OverlapPolicyName, previousGoing: boolean): OverlapAction {
  if (!previousGoing || policy === "allow") return "fire";
  return policy === "skip" ? "skip" : "cancel_previous";
}
