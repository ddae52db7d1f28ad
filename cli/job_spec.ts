// The options that describe a job, shared by `drover jobs submit` and
// `drover run`, and the JobSpec they make.

import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import type { Command } from "commander";
import { JobSpecSchema, type JobSpec } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { CliError } from "./errors.ts";
import { parseBytes, parseCpu, parseDurationMs, parseInteger, parseLabels } from "./parse.ts";

/** What commander collects from the spec options (all strings, as typed). */
export interface JobSpecOptions {
  name?: string;
  label: string[];
  env: string[];
  cpu?: string;
  mem?: string;
  priority: string;
  timeout?: string;
  retries?: string;
  idempotencyKey?: string;
}

const collect = (value: string, previous: string[]) => [...previous, value];

/** Adds the spec options to a command that takes `-- CMD [ARGS...]`. */
export function addJobSpecOptions(cmd: Command): Command {
  return cmd
    .usage("[options] -- CMD [ARGS...]")
    .argument("<command...>", "the command and its arguments, after -- (an argv, not a shell line)")
    .option("--name <name>", "a name for people")
    .option("--label <k=v>", "run only on agents with this label (repeatable; all must match)", collect, [])
    .option("--env <K=V>", "environment variable for the command (repeatable)", collect, [])
    .option("--cpu <cores>", "CPU it needs: cores (2, 0.5) or millicores (500m)")
    .option("--mem <bytes>", "memory it needs: 512Mi, 1G or bytes")
    .option("--priority <n>", "-1000..1000; higher goes first", "0")
    .option("--timeout <duration>", "longest one attempt may run, e.g. 90s, 10m (default: no limit; at least 1s)")
    .option("--retries <n>", "retries after a failed attempt, 0 for none (default: the server's policy, 4 with backoff)")
    .option("--idempotency-key <key>", "submitting again with the same key returns the first job");
}

/** The JobSpec the options describe; throws CliError(InvalidArgument) naming the flag on a bad value. */
export function jobSpecFrom(argv: string[], opts: JobSpecOptions): JobSpec {
  const retries = opts.retries === undefined ? undefined : parseInteger("--retries", opts.retries);
  // max_retries is unsigned: a negative count would not reach the server's own check intact.
  if (retries !== undefined && retries < 0) throw new CliError(Code.InvalidArgument, `--retries: "${opts.retries}" must be 0 or more`);
  return create(JobSpecSchema, {
    name: opts.name ?? "",
    exec: { commands: [{ argv }], env: parseLabels("--env", opts.env) },
    constraints: { labels: parseLabels("--label", opts.label) },
    resources: {
      cpuMillis: opts.cpu === undefined ? 0 : parseCpu("--cpu", opts.cpu),
      memoryBytes: opts.mem === undefined ? 0n : parseBytes("--mem", opts.mem),
    },
    priority: parseInteger("--priority", opts.priority),
    timeout: opts.timeout === undefined ? undefined : durationFromMs(parseDurationMs("--timeout", opts.timeout)),
    retry: retries === undefined ? undefined : { maxRetries: retries },
  });
}
