// The options that describe a job, shared by `drover jobs submit`,
// `drover run` and (without the run mode) `drover schedules create`, and the
// JobSpec they make.

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { Option, type Command } from "commander";
import { JobSpecSchema, type JobSpec, type RunModeSchema } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
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
  secretEnv: string[];
  image?: string;
  cwd?: string;
  memLimit?: string;
  nice?: string;
  inheritEnv?: boolean;
  stopGrace?: string;
  times?: string;
  forever?: boolean;
  repeatDelay?: string;
  idempotencyKey?: string;
}

const collect = (value: string, previous: string[]) => [...previous, value];

/** Adds the spec options to a command that takes `-- CMD [ARGS...]`. */
export function addJobSpecOptions(cmd: Command): Command {
  return addJobOptions(
    cmd.usage("[options] -- CMD [ARGS...]").argument("<command...>", "the command and its arguments, after -- (an argv, not a shell line)"),
  )
    .addOption(new Option("--times <n>", "run it n times in all, one after another (each a new job)").conflicts("forever"))
    .option("--forever", "run it again each time it ends, until a job of the chain is cancelled")
    .option("--repeat-delay <duration>", "with --times or --forever: pause between one job ending and the next (default 0, forever 1s)")
    .option("--idempotency-key <key>", "submitting again with the same key returns the first job");
}

/** The options that shape one job, without its command, run mode or key: a schedule's job template takes these. */
export function addJobOptions(cmd: Command): Command {
  return cmd
    .option("--name <name>", "a name for people")
    .option("--label <k=v>", "run only on agents with this label (repeatable; all must match)", collect, [])
    .option("--env <K=V>", "environment variable for the command (repeatable)", collect, [])
    .option("--cpu <cores>", "CPU it needs: cores (2, 0.5) or millicores (500m)")
    .option("--mem <bytes>", "memory it needs: 512Mi, 1G or bytes")
    .option("--priority <n>", "-1000..1000; higher goes first", "0")
    .option("--timeout <duration>", "longest one attempt may run, e.g. 90s, 10m (default: no limit; at least 1s)")
    .option("--retries <n>", "retries after a failed attempt, 0 for none (default: the server's policy, 4 with backoff)")
    .option("--secret-env <K=V>", "like --env, but the value is never shown back by the API nor written to the agent's manifest (repeatable)", collect, [])
    .option("--image <ref>", "run the command in a container of this image (the docker driver)")
    .option("--cwd <dir>", "working directory: relative to the attempt's work directory, or absolute under a root the agent allows")
    .option("--mem-limit <bytes>", "cap on the command's memory (RLIMIT_AS, or the container's limit): 256Mi, 1G")
    .option("--nice <n>", "CPU niceness, 0 (default) to 19")
    .option("--inherit-env", "give the command the agent's whole environment (default: PATH and HOME only)")
    .option("--stop-grace <duration>", "SIGTERM to SIGKILL when a timeout stops it (default 10s)");
}

/** The option names addJobOptions adds, as commander keys them (to tell whether any was given). */
export const JOB_OPTION_KEYS = ["name", "label", "env", "cpu", "mem", "priority", "timeout", "retries", "secretEnv", "image", "cwd", "memLimit", "nice", "inheritEnv", "stopGrace"] as const;

/** The JobSpec the options describe; throws CliError(InvalidArgument) naming the flag on a bad value. */
export function jobSpecFrom(argv: string[], opts: JobSpecOptions): JobSpec {
  const retries = opts.retries === undefined ? undefined : parseInteger("--retries", opts.retries);
  // max_retries is unsigned: a negative count would not reach the server's own check intact.
  if (retries !== undefined && retries < 0) throw new CliError(Code.InvalidArgument, `--retries: "${opts.retries}" must be 0 or more`);
  const secrets = parseLabels("--secret-env", opts.secretEnv ?? []);
  const nice = opts.nice === undefined ? 0 : parseInteger("--nice", opts.nice);
  if (nice < 0 || nice > 19) throw new CliError(Code.InvalidArgument, `--nice: "${opts.nice}" must be 0 to 19`);
  return create(JobSpecSchema, {
    name: opts.name ?? "",
    driver: opts.image ? "docker" : "",
    exec: {
      commands: [{ argv, cwd: opts.cwd ?? "" }],
      env: { ...parseLabels("--env", opts.env), ...secrets },
      secretEnv: Object.keys(secrets),
      image: opts.image ?? "",
      inheritEnv: opts.inheritEnv ?? false,
      memoryLimitBytes: opts.memLimit === undefined ? 0n : parseBytes("--mem-limit", opts.memLimit),
      nice,
      stopGracePeriod: opts.stopGrace === undefined ? undefined : durationFromMs(parseDurationMs("--stop-grace", opts.stopGrace)),
    },
    constraints: { labels: parseLabels("--label", opts.label) },
    resources: {
      cpuMillis: opts.cpu === undefined ? 0 : parseCpu("--cpu", opts.cpu),
      memoryBytes: opts.mem === undefined ? 0n : parseBytes("--mem", opts.mem),
    },
    priority: parseInteger("--priority", opts.priority),
    timeout: opts.timeout === undefined ? undefined : durationFromMs(parseDurationMs("--timeout", opts.timeout)),
    retry: retries === undefined ? undefined : { maxRetries: retries },
    runMode: runModeFrom(opts),
  });
}

/** --times / --forever / --repeat-delay → a RunMode; undefined when the job runs once. */
export function runModeFrom(opts: Pick<JobSpecOptions, "times" | "forever" | "repeatDelay">): MessageInitShape<typeof RunModeSchema> | undefined {
  if (opts.times !== undefined && opts.forever) throw new CliError(Code.InvalidArgument, "--times and --forever: choose one");
  const delay = opts.repeatDelay === undefined ? undefined : durationFromMs(parseDurationMs("--repeat-delay", opts.repeatDelay));
  if (opts.forever) return { mode: { case: "forever", value: true }, delay };
  if (opts.times !== undefined) {
    const times = parseInteger("--times", opts.times);
    if (times < 1 || times > 100_000) throw new CliError(Code.InvalidArgument, `--times: "${opts.times}" must be 1 to 100000`);
    return { mode: { case: "nTimes", value: times }, delay };
  }
  if (delay) throw new CliError(Code.InvalidArgument, "--repeat-delay: needs --times or --forever");
  return undefined;
}
