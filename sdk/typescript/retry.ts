// Which calls the SDK retries after UNAVAILABLE, and how long it waits
// between tries. The policy and the backoff are pure; `retryUnavailable` is
// the thin interceptor that applies them to real calls.

import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/**
 * UNAVAILABLE means "the call did not get through, or the server gave up
 * before finishing": the server may or may not have acted on it. So a call
 * is retried only when doing it twice is the same as doing it once:
 *
 * - reads (Get*, List*, ExplainPlacement, ReadLogs, AuthenticateToken);
 * - writes the contract documents as idempotent (cancel, drain, cordon,
 *   pause, revoke and their inverses), SetAgentLabels (it replaces the labels)
 *   and ApplyDeployment (the same spec again changes nothing);
 * - SubmitJob, ResubmitJob and SubmitRun only when the request carries an
 *   idempotency key: the server then returns the job or run first created
 *   with that key instead of creating a second one. Without a key a retry
 *   could run the work twice, so the SDK does not retry, and it does not
 *   invent a key either: the key is kept on the job, and only the caller
 *   knows what counts as "the same submission" (across its own restarts too).
 *
 * Never retried: streams (WatchJob, WatchAgents, Connect — a retried stream
 * would replay messages the caller has already seen; reopen it yourself),
 * calls that mint something new each time (CreateApiToken,
 * CreateAgentToken, CreateSchedule), DeleteAgent and DeleteSchedule (a
 * second try would answer NOT_FOUND for a success), and the internal calls
 * services make to each other (SendToAgent, RequestBids, ClaimPlaceableJobs, ...).
 */
const IDEMPOTENT = new Set([
  "drover.bid.v1.BidService/ListAuctions",
  "drover.bid.v1.BidService/ExplainPlacement",
  "drover.deploy.v1.DeployService/ApplyDeployment",
  "drover.deploy.v1.DeployService/GetDeployment",
  "drover.fleet.v1.FleetService/ListApiTokens",
  "drover.fleet.v1.FleetService/RevokeApiToken",
  "drover.fleet.v1.FleetService/AuthenticateToken",
  "drover.fleet.v1.FleetService/ListAgentTokens",
  "drover.fleet.v1.FleetService/RevokeAgentToken",
  "drover.fleet.v1.FleetService/ListAgents",
  "drover.fleet.v1.FleetService/GetAgent",
  "drover.fleet.v1.FleetService/SetAgentLabels",
  "drover.fleet.v1.FleetService/DrainAgent",
  "drover.fleet.v1.FleetService/UndrainAgent",
  "drover.fleet.v1.FleetService/CordonAgent",
  "drover.fleet.v1.FleetService/UncordonAgent",
  "drover.log.v1.LogService/ReadLogs",
  "drover.scheduler.v1.SchedulerService/GetJob",
  "drover.scheduler.v1.SchedulerService/ListJobs",
  "drover.scheduler.v1.SchedulerService/CancelJob",
  "drover.scheduler.v1.SchedulerService/GetRun",
  "drover.scheduler.v1.SchedulerService/ListRuns",
  "drover.scheduler.v1.SchedulerService/CancelRun",
  "drover.scheduler.v1.SchedulerService/GetSchedule",
  "drover.scheduler.v1.SchedulerService/ListSchedules",
  "drover.scheduler.v1.SchedulerService/PauseSchedule",
  "drover.scheduler.v1.SchedulerService/ResumeSchedule",
]);

/** Calls that create something, safe to repeat only with an idempotency key. */
const IDEMPOTENT_WITH_KEY = new Set([
  "drover.scheduler.v1.SchedulerService/SubmitJob",
  "drover.scheduler.v1.SchedulerService/ResubmitJob",
  "drover.scheduler.v1.SchedulerService/SubmitRun",
]);

/** Whether a unary call ("package.Service/Method" with its request) may be sent again after UNAVAILABLE. */
export function isSafeToRetry(method: string, request: { idempotencyKey?: unknown }): boolean {
  if (IDEMPOTENT.has(method)) return true;
  if (IDEMPOTENT_WITH_KEY.has(method)) return typeof request.idempotencyKey === "string" && request.idempotencyKey !== "";
  return false;
}

/** How the SDK waits between tries. */
export interface Backoff {
  /** The wait before the first retry is drawn from [0, baseMs]; it doubles each retry. */
  baseMs: number;
  /** No wait exceeds this. */
  maxMs: number;
}

/** 100 ms, 200 ms, 400 ms ... capped at 2 s: four tries span about 1.5 s at most. */
export const DEFAULT_BACKOFF: Backoff = { baseMs: 100, maxMs: 2000 };

/**
 * The wait before retry number `retry` (0 for the first): "full jitter",
 * uniformly random in [0, min(maxMs, baseMs * 2^retry)], so that many
 * clients cut off by the same restart do not come back in step.
 * `random` returns a number in [0, 1).
 */
export function backoffMs(retry: number, backoff: Backoff, random: () => number = Math.random): number {
  const ceiling = Math.min(backoff.maxMs, backoff.baseMs * 2 ** retry);
  return Math.floor(random() * (ceiling + 1));
}

/**
 * Retries a unary call that isSafeToRetry up to `retries` more times while
 * it fails with UNAVAILABLE, waiting backoffMs between tries. Streams pass
 * through untouched. A call's own timeout or abort signal still bounds the
 * whole sequence: the wait ends early and the last error is thrown.
 */
export function retryUnavailable(retries: number, backoff: Backoff = DEFAULT_BACKOFF): Interceptor {
  return (next) => async (req) => {
    if (req.stream || retries <= 0) return next(req);
    const method = `${req.service.typeName}/${req.method.name}`;
    if (!isSafeToRetry(method, req.message as { idempotencyKey?: unknown })) return next(req);
    for (let retry = 0; ; retry++) {
      try {
        return await next(req);
      } catch (err) {
        if (retry >= retries || ConnectError.from(err).code !== Code.Unavailable || req.signal.aborted) throw err;
        if (!(await sleep(backoffMs(retry, backoff), req.signal))) throw err;
      }
    }
  };
}

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (slept: boolean) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", aborted);
      resolve(slept);
    };
    const aborted = () => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal.addEventListener("abort", aborted, { once: true });
  });
}
