// Submits `echo hello from the typescript sdk` and follows it with WatchJob
// until it ends. Run it next to dev mode:
//
//   DROVER_ADDR=http://127.0.0.1:7070 DROVER_TOKEN=$(cat .drover/admin-token) \
//     node --import tsx sdk/typescript/example.ts
//
// It prints each state the job passes through and exits 0 if the job succeeded.

import { randomUUID } from "node:crypto";
import { pathToFileURL } from "node:url";
import { createDroverClient, schedulerv1, type DroverClient } from "./index.ts";

const { JobState } = schedulerv1;

/** The states after which a job never changes again. */
const FINAL = new Set<schedulerv1.JobState>([JobState.SUCCEEDED, JobState.FAILED, JobState.DEAD, JobState.CANCELLED]);

/**
 * Submits one job and watches it to its end, calling `onChange` with each
 * version of the job the server sends. Resolves the job as it ended.
 */
export async function submitAndWatch(
  drover: DroverClient,
  argv: string[],
  onChange: (job: schedulerv1.Job) => void = () => {},
): Promise<schedulerv1.Job> {
  // The key makes SubmitJob safe to retry: were the first try to reach the
  // server and the answer be lost, the retry returns the same job.
  const { job } = await drover.scheduler.submitJob({
    spec: { name: "sdk-example", exec: { commands: [{ argv }] } },
    idempotencyKey: `sdk-example-${randomUUID()}`,
  });
  if (!job) throw new Error("SubmitJob answered without a job");

  // WatchJob is a stream: the SDK does not retry it. It sends the job as it
  // stands, then each change, and ends once the job is final.
  let last = job;
  for await (const { job: seen } of drover.scheduler.watchJob({ id: job.id })) {
    if (!seen) continue;
    last = seen;
    onChange(seen);
    if (FINAL.has(seen.state)) break;
  }
  return last;
}

async function main(): Promise<number> {
  const drover = createDroverClient(); // DROVER_ADDR, DROVER_TOKEN
  const job = await submitAndWatch(drover, ["echo", "hello from the typescript sdk"], (j) =>
    console.log(`${j.id} ${JobState[j.state]}${j.endReason ? `: ${j.endReason}` : ""}`),
  );
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
