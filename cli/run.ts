// `drover run`: submit a job in one step and, with --follow, wait for it like
// a local command: its state changes print as they happen and drover exits
// with the job's exit status.

import { toJson } from "@bufbuild/protobuf";
import { Command } from "commander";
import { JobSchema } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { CALL_TIMEOUT_MS, contextFor } from "./context.ts";
import { addJobSpecOptions, jobSpecFrom, type JobSpecOptions } from "./job_spec.ts";
import { jobExitHelp } from "./job_view.ts";
import { watchAndExit } from "./jobs.ts";
import { render } from "./output.ts";

export function runCommand(): Command {
  const run = addJobSpecOptions(
    new Command("run").description("submit a job that runs CMD ARGS... and print its id; with --follow, wait for it to end"),
  )
    .option("-f, --follow", "print the job's state changes until it ends, then exit with its status")
    .addHelpText(
      "after",
      `
The command's output is not streamed yet (that comes with the Log service);
it stays on the agent. --follow shows the job's state changes; with --times
or --forever it follows the first job of the chain (jobs get shows the next).

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
    await watchAndExit(ctx, job!.id);
  });
}
