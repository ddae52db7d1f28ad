// Submits `echo hello from the typescript sdk`, follows its output with
// FollowLogs until the job has ended and its output is complete, then prints
// the state it ended in. Run it next to dev mode:
//
//   DROVER_ADDR=http://127.0.0.1:7070 DROVER_TOKEN=$(cat .drover/admin-token) \
//     node --import tsx sdk/typescript/example.ts
//
// The job's stdout goes to stdout and its stderr to stderr, byte for byte;
// the last line is "<job id> <state>". It exits 0 if the job succeeded.

import { randomUUID } from "node:crypto";
import { pathToFileURL } from "node:url";
import { createDroverClient, logv1, schedulerv1, type DroverClient } from "./index.ts";

const { JobState } = schedulerv1;

/** Submits one job that runs `argv`; resolves its id. */
export async function submit(drover: DroverClient, argv: string[]): Promise<string> {
  // The key makes SubmitJob safe to retry: were the first try to reach the
  // server and the answer be lost, the retry returns the same job.
  const { job } = await drover.scheduler.submitJob({
    spec: { name: "sdk-example", exec: { commands: [{ argv }] } },
    idempotencyKey: `sdk-example-${randomUUID()}`,
  });
  if (!job) throw new Error("SubmitJob answered without a job");
  return job.id;
}

/**
 * Follows a job's output to its end, handing `write` the bytes of each
 * stdout and stderr line as they are stored (the system stream, what the
 * agent writes about the attempt, is left out). Resolves the job as it ended.
 */
export async function followToEnd(
  drover: DroverClient,
  jobId: string,
  write: (stream: logv1.Stream, data: Uint8Array) => void,
): Promise<schedulerv1.Job> {
  // FollowLogs is a stream, so the SDK does not retry it. It sends what is
  // stored of every attempt of the job, then each line as it is stored, and
  // ends once the job has ended and its output is complete.
  for await (const { lines } of drover.log.followLogs({ jobId })) {
    for (const line of lines) {
      if (line.stream === logv1.Stream.STDOUT || line.stream === logv1.Stream.STDERR) write(line.stream, line.data);
    }
  }
  // The follow ended, so the job has too: ask how.
  const { job } = await drover.scheduler.getJob({ id: jobId });
  if (!job) throw new Error("GetJob answered without a job");
  return job;
}

async function main(): Promise<number> {
  const drover = createDroverClient(); // DROVER_ADDR, DROVER_TOKEN
  const id = await submit(drover, ["echo", "hello from the typescript sdk"]);
  const job = await followToEnd(drover, id, (stream, data) => (stream === logv1.Stream.STDERR ? process.stderr : process.stdout).write(data));
  console.log(`${job.id} ${JobState[job.state]}${job.endReason ? `: ${job.endReason}` : ""}`);
  return job.state === JobState.SUCCEEDED ? 0 : 1;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      console.error(`example: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(1);
    },
  );
}
