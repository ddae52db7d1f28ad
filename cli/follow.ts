// Following one job: WatchJob streamed to stdout, one line per change, until
// the job ends. Shared by `drover jobs watch` and `drover run --follow`.
// Following one run: GetRun polled (there is no WatchRun), one line per stage
// change, until the run ends; for `drover runs watch` and `runs submit --follow`.
//
// Ctrl-C detaches and leaves the job or run alone (as `nomad job run` does);
// the process exits 130 with a hint on how to cancel it.
//
// While a followed job waits to be placed, a terminal also shows how long it
// has waited and why, on one line of stderr rewritten every second
// (progress.ts); the watch lines say only what changed.

import { toJson } from "@bufbuild/protobuf";
import { JobSchema, RunSchema, type Job, type Run } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { CALL_TIMEOUT_MS, type CommandContext } from "./context.ts";
import { isFinal, watchKey, watchLine, WATCH_HEADER } from "./job_view.ts";
import { formatYaml } from "./output.ts";
import { placementLine, stderrProgress, waitsForPlacement, type ProgressLine } from "./progress.ts";
import { changedStages, isRunFinal, runEndLine, runWatchHeader, stageWatchLine } from "./run_view.ts";

/**
 * Streams the job's changes until it ends and resolves it as it ended. Table
 * output prints a header then a line per visible change; JSON prints one
 * compact Job per line (NDJSON); YAML one document per change. beforeEnd
 * runs once the job has ended, before its last line is printed. While the
 * job waits for placement, `progress` (by default a line on stderr, shown
 * only on a terminal with table output) says for how long and why; whoever
 * else prints while it may be shown should clear it first.
 */
export async function followJob(
  ctx: CommandContext,
  id: string,
  write: (text: string) => void = (t) => process.stdout.write(t),
  opts: { beforeEnd?: () => Promise<void>; progress?: ProgressLine } = {},
): Promise<Job> {
  const progress = opts.progress ?? stderrProgress(ctx.format);
  const watchedSince = Date.now();
  let waiting: Job | undefined;
  const showWaiting = () => {
    const line = waiting && placementLine(waiting, Date.now(), watchedSince);
    if (line) progress.show(line);
    else progress.clear();
  };
  // The clock of the line ticks between the watch's messages.
  const ticker = progress.enabled ? setInterval(showWaiting, 1000) : undefined;
  ticker?.unref();
  const detach = detachOnInterrupt(`job ${id} goes on (drover jobs cancel ${id} stops it)`, () => progress.clear());
  try {
    let lastKey = "";
    for (;;) {
      // No deadline: a job may run for hours. The server ends the stream once the job has ended.
      for await (const { job } of ctx.clients.scheduler.watchJob({ id })) {
        if (!job) continue;
        waiting = waitsForPlacement(job) ? job : undefined;
        progress.clear();
        const key = watchKey(job);
        // The job's end is printed last, after whatever must come before it (run --follow: the job's output).
        if (isFinal(job.state)) await opts.beforeEnd?.();
        if (key !== lastKey) {
          // The header waits for the first change, so an unknown id prints only its error.
          if (lastKey === "" && ctx.format === "table") write(`${ctx.bold(WATCH_HEADER)}\n`);
          lastKey = key;
          write(render(ctx.format, job));
        }
        if (isFinal(job.state)) return job;
        showWaiting();
      }
      // The stream ended before the job did (a server going away gracefully): watch
      // again, after a pause so a server that keeps ending streams is not hammered;
      // the first message is the job as it stands, printed only if it changed.
      await new Promise((res) => setTimeout(res, 1000));
    }
  } finally {
    clearInterval(ticker);
    progress.clear();
    process.removeListener("SIGINT", detach);
  }
}

/** On Ctrl-C: say what goes on without us, and exit 130. Returns the listener, to remove once done. */
function detachOnInterrupt(what: string, before?: () => void): () => void {
  const detach = () => {
    before?.();
    process.stderr.write(`\ndrover: detached; ${what}\n`);
    process.exit(130);
  };
  process.once("SIGINT", detach);
  return detach;
}

/** How often `runs watch` asks for the run, give or take a fifth so that many watchers do not ask in step. */
export const RUN_POLL_MS = 500;

/**
 * Polls the run until it ends and resolves it as it ended. Table output
 * prints a header, then a line per stage change, then a line for the run's
 * end; JSON prints one compact Run per poll that saw a change (NDJSON); YAML
 * one document per such poll.
 */
export async function followRun(
  ctx: CommandContext,
  id: string,
  write: (text: string) => void = (t) => process.stdout.write(t),
  pollMs = RUN_POLL_MS,
): Promise<Run> {
  const detach = detachOnInterrupt(`run ${id} goes on (drover runs cancel ${id} stops it)`);
  try {
    const seen = new Map<string, string>();
    let printed = false;
    for (;;) {
      const { run } = await ctx.clients.scheduler.getRun({ id }, { timeoutMs: CALL_TIMEOUT_MS });
      const changed = changedStages(run!, seen);
      const ended = isRunFinal(run!.state);
      if (changed.length > 0 || ended) {
        if (ctx.format === "table") {
          const now = Date.now();
          // The header waits for the first answer, so an unknown id prints only its error.
          if (!printed) write(`${ctx.bold(runWatchHeader(run!))}\n`);
          for (const stage of changed) write(`${stageWatchLine(run!, stage, now)}\n`);
          if (ended) write(`${runEndLine(run!, now)}\n`);
        } else {
          write(ctx.format === "json" ? `${JSON.stringify(toJson(RunSchema, run!))}\n` : `---\n${formatYaml(toJson(RunSchema, run!))}`);
        }
        printed = true;
      }
      if (ended) return run!;
      await new Promise((res) => setTimeout(res, pollMs * (0.8 + Math.random() * 0.4)));
    }
  } finally {
    process.removeListener("SIGINT", detach);
  }
}

function render(format: CommandContext["format"], job: Job): string {
  switch (format) {
    case "json":
      return `${JSON.stringify(toJson(JobSchema, job))}\n`;
    case "yaml":
      return `---\n${formatYaml(toJson(JobSchema, job))}`;
    case "table":
      return `${watchLine(job)}\n`;
  }
}
