// `drover jobs`: submit a command as a job, list and inspect jobs, follow one
// until it ends, cancel it, see why it was placed where it was, and work the
// dead-letter queue. Agents run the jobs; `drover run` (run.ts) is the
// one-step submit-and-follow.

import { toJson } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Command } from "commander";
import { ExplainPlacementResponseSchema } from "../gen/ts/drover/bid/v1/bid_service_pb.ts";
import { JobSchema, JobState, type Job } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import type { CliClients } from "./connection.ts";
import { CALL_TIMEOUT_MS, contextFor, print, type CommandContext } from "./context.ts";
import { followJob } from "./follow.ts";
import { addJobSpecOptions, jobSpecFrom, type JobSpecOptions } from "./job_spec.ts";
import { explainText, isFinal, jobDetails, jobExitHelp, jobExitStatus, JOB_LIST_HEADERS, JOB_STATE_WORDS, jobRow, parseJobState } from "./job_view.ts";
import { formatTable } from "./output.ts";
import { addLimitOptions, collectPages, limitFrom } from "./pages.ts";
import { parseDurationMs } from "./parse.ts";
import type { ProgressLine } from "./progress.ts";

const timeout = { timeoutMs: CALL_TIMEOUT_MS };

/**
 * Jobs newest first, following next_page_token until `limit` jobs (undefined:
 * all of them); `more` says whether the server had more than were taken.
 */
export async function listJobs(clients: CliClients, state: JobState, limit: number | undefined): Promise<{ jobs: Job[]; more: boolean }> {
  const { items, more } = await collectPages(limit, async (pageSize, pageToken) => {
    const res = await clients.scheduler.listJobs({ state, pageSize, pageToken }, timeout);
    return { items: res.jobs, nextPageToken: res.nextPageToken };
  });
  return { jobs: items, more };
}

/** `jobs ls` and `jobs dead`: the same listing, the latter fixed to the dead-letter queue. */
function listCommand(name: string, description: string, fixedState?: JobState): Command {
  const cmd = new Command(name).description(description);
  if (fixedState === undefined) {
    cmd.option("--state <state>", `only jobs in this state: ${Object.keys(JOB_STATE_WORDS).join(", ")}`);
  }
  return addLimitOptions(cmd)
    .action((opts: { state?: string; limit: string; all?: boolean }, command: Command) =>
      print(command, async ({ clients, bold }) => {
        const state = fixedState ?? (opts.state === undefined ? JobState.UNSPECIFIED : parseJobState("--state", opts.state));
        const limit = limitFrom(opts);
        const { jobs, more } = await listJobs(clients, state, limit);
        if (more) process.stderr.write(`drover: showing the newest ${jobs.length} jobs; --limit N or --all for more\n`);
        const now = Date.now();
        return {
          json: () => jobs.map((j) => toJson(JobSchema, j)),
          table: () => formatTable({ headers: JOB_LIST_HEADERS, rows: jobs.map((j) => jobRow(j, now)) }, bold),
        };
      }),
    );
}

/** `jobs watch` and `run --follow`: follow the job, then exit with its status (jobExitHelp). */
export async function watchAndExit(ctx: CommandContext, id: string, opts: { beforeEnd?: () => Promise<void>; progress?: ProgressLine } = {}): Promise<void> {
  const job = await followJob(ctx, id, undefined, opts);
  process.exitCode = jobExitStatus(job) ?? 1;
}

export function jobsCommand(): Command {
  const jobs = new Command("jobs").description("one-shot jobs: submit, list, follow, cancel, explain, resubmit");

  addJobSpecOptions(jobs.command("submit").description("submit a job that runs CMD ARGS... on an agent and print it"))
    .action((argv: string[], opts: JobSpecOptions, cmd: Command) =>
      print(cmd, async ({ clients, bold }) => {
        const spec = jobSpecFrom(argv, opts);
        const res = await clients.scheduler.submitJob({ spec, idempotencyKey: opts.idempotencyKey ?? "" }, timeout);
        return { json: () => toJson(JobSchema, res.job!), table: () => jobDetails(res.job!, { created: res.created, bold }) };
      }),
    );

  jobs.addCommand(listCommand("ls", "list jobs, newest first"));

  jobs
    .command("get")
    .description("show one job with its attempts and why it waits or ended")
    .argument("<id>", "the job's id")
    .action((id: string, _opts, cmd: Command) =>
      print(cmd, async ({ clients, bold }) => {
        const { job } = await clients.scheduler.getJob({ id }, timeout);
        return { json: () => toJson(JobSchema, job!), table: () => jobDetails(job!, { bold }) };
      }),
    );

  jobs
    .command("cancel")
    .description("cancel jobs: at once if not yet placed, else SIGTERM, then SIGKILL after the grace period")
    .argument("<id...>", "the jobs' ids (several: one CancelJobs call, up to 1000)")
    .option("--grace <duration>", "time between SIGTERM and SIGKILL, e.g. 30s (default: the server's, 10s)")
    .option("--reason <text>", "why, kept on the job")
    .action((ids: string[], opts: { grace?: string; reason?: string }, cmd: Command) =>
      print(cmd, async ({ clients, bold }) => {
        const gracePeriod = opts.grace === undefined ? undefined : durationFromMs(parseDurationMs("--grace", opts.grace));
        const reason = opts.reason ?? "";
        if (ids.length === 1) {
          const { job } = await clients.scheduler.cancelJob({ id: ids[0]!, gracePeriod, reason }, timeout);
          const note = isFinal(job!.state) ? "" : `\nCancel requested: its agent stops the attempt; drover jobs watch ${ids[0]} follows it.\n`;
          return { json: () => toJson(JobSchema, job!), table: () => jobDetails(job!, { bold }) + note };
        }
        const { jobs: cancelled } = await clients.scheduler.cancelJobs({ jobs: ids.map((id) => ({ id, gracePeriod, reason })) }, timeout);
        const now = Date.now();
        return {
          json: () => cancelled.map((j) => toJson(JobSchema, j)),
          table: () => formatTable({ headers: JOB_LIST_HEADERS, rows: cancelled.map((j) => jobRow(j, now)) }, bold),
        };
      }),
    );

  jobs
    .command("watch")
    .description("print a line per change of a job until it ends, then exit with its status")
    .argument("<id>", "the job's id")
    .addHelpText("after", `\n${jobExitHelp}\n\nCtrl-C stops watching (exit 130); the job goes on.`)
    .action((id: string, _opts, cmd: Command) => watchAndExit(contextFor(cmd), id));

  jobs
    .command("explain")
    .description("say where a job was placed and why: each auction's candidates and the agents left out")
    .argument("<id>", "the job's id")
    .action((id: string, _opts, cmd: Command) =>
      print(cmd, async ({ clients, bold }) => {
        // GetJob first, so an unknown id is NotFound rather than "not auctioned yet".
        const { job } = await clients.scheduler.getJob({ id }, timeout);
        const res = await clients.bid.explainPlacement({ jobId: id }, timeout);
        return { json: () => toJson(ExplainPlacementResponseSchema, res), table: () => explainText(job!, res, bold) };
      }),
    );

  jobs.addCommand(listCommand("dead", "list the dead-letter queue: jobs out of retries (same as ls --state dead)", JobState.DEAD));

  jobs
    .command("resubmit")
    .description("submit an ended job's spec again, as a new job (a dead letter, say), and print it")
    .argument("<id>", "the ended job's id")
    .option("--idempotency-key <key>", "resubmitting again with the same key returns the first new job")
    .action((id: string, opts: { idempotencyKey?: string }, cmd: Command) =>
      print(cmd, async ({ clients, bold }) => {
        const res = await clients.scheduler.resubmitJob({ id, idempotencyKey: opts.idempotencyKey ?? "" }, timeout);
        return { json: () => toJson(JobSchema, res.job!), table: () => jobDetails(res.job!, { created: res.created, bold }) };
      }),
    );
  return jobs;
}
