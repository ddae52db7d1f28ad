// `drover run`: submit a job in one step and, with --follow, wait for it like
// a local command: its output streams (stdout to stdout, stderr to stderr)
// between its state changes, and drover exits with the job's exit status.

import { toJson } from "@bufbuild/protobuf";
import { Command } from "commander";
import { JobSchema } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { CALL_TIMEOUT_MS, contextFor } from "./context.ts";
import { addJobSpecOptions, jobSpecFrom, type JobSpecOptions } from "./job_spec.ts";
import { jobExitHelp } from "./job_view.ts";
import { watchAndExit } from "./jobs.ts";
import { followJobOutput } from "./logs.ts";
import { render } from "./output.ts";
import { stderrProgress } from "./progress.ts";

/** How long run --follow waits, once the job ended, for the rest of its output to be stored. */
const OUTPUT_GRACE_MS = 5000;

export function runCommand(): Command {
  const run = addJobSpecOptions(
    new Command("run").description("submit a job that runs CMD ARGS... and print its id; with --follow, wait for it to end"),
  )
    .option("-f, --follow", "stream the job's output and state changes until it ends, then exit with its status")
    .addHelpText(
      "after",
      `
--follow streams the command's output as it runs (stdout to stdout, stderr
to stderr; "[attempt N] " before each line once the job is retried) between
lines for the job's state changes; the last line, its end, comes once its
output is all stored (waiting at most ${OUTPUT_GRACE_MS / 1000} s for it). With -o json, output
lines are objects with a "stream" (see drover logs --help) among the Jobs.
With --times or --forever it follows the first job of the chain (jobs get
shows the next). drover logs JOB shows the output again later, and the
lines the agent wrote about the attempt (--stream system).

${jobExitHelp}

Ctrl-C stops following (exit 130); the job goes on.`,
    );

  return run.action(async (argv: string[], opts: JobSpecOptions & { follow?: boolean }, cmd: Command) => {
    const ctx = contextFor(cmd);
    const spec = jobSpecFrom(argv, opts);
    const { job, created } = await ctx.clients.scheduler.submitJob(
      { spec, idempotencyKey: opts.idempotencyKey ?? "" },
      { timeoutMs: CALL_TIMEOUT_MS },
    );
    if (!opts.follow) {
      process.stdout.write(render(ctx.format, { json: () => toJson(JobSchema, job!), table: () => `${job!.id}\n` }));
      return;
    }
    // In a table, say which job this is before following it; JSON and YAML carry the id in every record.
    if (ctx.format === "table") {
      process.stdout.write(created ? `job ${job!.id}\n` : `job ${job!.id} (already submitted with this idempotency key)\n`);
    }
    // One progress line (waiting for placement, on a terminal) that the job's output clears before it prints.
    const progress = stderrProgress(ctx.format);
    const output = followJobOutput(ctx, job!.id, {
      stdout: (bytes) => {
        progress.clear();
        process.stdout.write(bytes);
      },
      stderr: (bytes) => {
        progress.clear();
        process.stderr.write(bytes);
      },
    });
    await watchAndExit(ctx, job!.id, { beforeEnd: () => output.finish(OUTPUT_GRACE_MS), progress });
  });
}
