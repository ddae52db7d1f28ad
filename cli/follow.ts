// Following one job: WatchJob streamed to stdout, one line per change, until
// the job ends. Shared by `drover jobs watch` and `drover run --follow`.
//
// Ctrl-C detaches and leaves the job alone (as `nomad job run` does); the
// process exits 130 with a hint on how to cancel it.

import { toJson } from "@bufbuild/protobuf";
import { JobSchema, type Job } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import type { CommandContext } from "./context.ts";
import { isFinal, watchKey, watchLine, WATCH_HEADER } from "./job_view.ts";
import { formatYaml } from "./output.ts";

/**
 * Streams the job's changes until it ends and resolves it as it ended. Table
 * output prints a header then a line per visible change; JSON prints one
 * compact Job per line (NDJSON); YAML one document per change.
 */
export async function followJob(ctx: CommandContext, id: string, write: (text: string) => void = (t) => process.stdout.write(t)): Promise<Job> {
  const detach = () => {
    process.stderr.write(`\ndrover: detached; job ${id} goes on (drover jobs cancel ${id} stops it)\n`);
    process.exit(130);
  };
  process.once("SIGINT", detach);
  try {
    let lastKey = "";
    for (;;) {
      // No deadline: a job may run for hours. The server ends the stream once the job has ended.
      for await (const { job } of ctx.clients.scheduler.watchJob({ id })) {
        if (!job) continue;
        const key = watchKey(job);
        if (key !== lastKey) {
          // The header waits for the first change, so an unknown id prints only its error.
          if (lastKey === "" && ctx.format === "table") write(`${ctx.bold(WATCH_HEADER)}\n`);
          lastKey = key;
          write(render(ctx.format, job));
        }
        if (isFinal(job.state)) return job;
      }
      // The stream ended before the job did (a server going away gracefully): watch
      // again, after a pause so a server that keeps ending streams is not hammered;
      // the first message is the job as it stands, printed only if it changed.
      await new Promise((res) => setTimeout(res, 1000));
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
