// The options that describe a job, shared by `drover jobs submit`,
// `drover run` and (without the run mode) `drover schedules create`, and the
// JobSpec they make.

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { Option, type Command } from "commander";
import { JobSpecSchema, type JobSpec, type RetryPolicySchema, type RunModeSchema } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { DEFAULT_RETRY } from "../services/scheduler/retry.ts";
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
  disk?: string;
  agent?: string[];
  avoidAgent?: string[];
  concurrencyKey?: string;
  concurrencyLimit?: string;
  retryBackoff?: string;
  retryMaxBackoff?: string;
  retryMultiplier?: string;
  nonRetryableExit?: string[];
  shell?: boolean;
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
    .option("--stop-grace <duration>", "SIGTERM to SIGKILL when a timeout stops it (default 10s)")
    .option("--disk <bytes>", "disk it needs: 10Gi, 500M or bytes")
    .option("--agent <id>", "run only on this agent (repeatable: any of them)", collect, [])
    .option("--avoid-agent <id>", "never run on this agent (repeatable)", collect, [])
    .option("--concurrency-key <key>", "jobs with this key run at most --concurrency-limit at a time, across the fleet; the others wait")
    .option("--concurrency-limit <n>", "with --concurrency-key: how many may run at once, 1 to 10000 (default 1)")
    .option("--retry-backoff <duration>", "the first retry's delay, before jitter (default 1s)")
    .option("--retry-max-backoff <duration>", "the longest delay between retries (default 5m)")
    .option("--retry-multiplier <x>", "how much the delay grows per retry, 1 to 10 (default 2)")
    .option("--non-retryable-exit <codes>", "exit codes that fail the job at once, without a retry: 2 or 2,64 (repeatable)", collect, [])
    .option("--shell", "run the command through /bin/sh -c, as one line (-- 'make && make test'); refused unless the server and the agent allow shells");
}

/** The option names addJobOptions adds, as commander keys them (to tell whether any was given). */
export const JOB_OPTION_KEYS = [
  "name",
  "label",
  "env",
  "cpu",
  "mem",
  "priority",
  "timeout",
  "retries",
  "secretEnv",
  "image",
  "cwd",
  "memLimit",
  "nice",
  "inheritEnv",
  "stopGrace",
  "disk",
  "agent",
  "avoidAgent",
  "concurrencyKey",
  "concurrencyLimit",
  "retryBackoff",
  "retryMaxBackoff",
  "retryMultiplier",
  "nonRetryableExit",
  "shell",
] as const;

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
      allowShell: opts.shell ?? false,
      env: { ...parseLabels("--env", opts.env), ...secrets },
      secretEnv: Object.keys(secrets),
      image: opts.image ?? "",
      inheritEnv: opts.inheritEnv ?? false,
      memoryLimitBytes: opts.memLimit === undefined ? 0n : parseBytes("--mem-limit", opts.memLimit),
      nice,
      stopGracePeriod: opts.stopGrace === undefined ? undefined : durationFromMs(parseDurationMs("--stop-grace", opts.stopGrace)),
    },
    constraints: { labels: parseLabels("--label", opts.label), agentIds: opts.agent ?? [], avoidAgentIds: opts.avoidAgent ?? [] },
    resources: {
      cpuMillis: opts.cpu === undefined ? 0 : parseCpu("--cpu", opts.cpu),
      memoryBytes: opts.mem === undefined ? 0n : parseBytes("--mem", opts.mem),
      diskBytes: opts.disk === undefined ? 0n : parseBytes("--disk", opts.disk),
    },
    priority: parseInteger("--priority", opts.priority),
    timeout: opts.timeout === undefined ? undefined : durationFromMs(parseDurationMs("--timeout", opts.timeout)),
    retry: retryPolicyFrom(retries, opts),
    ...concurrencyFrom(opts),
    runMode: runModeFrom(opts),
  });
}

/**
 * --retries and the backoff flags → a RetryPolicy; undefined (the server's
 * default policy) when none is given. A policy states its retry count, so
 * backoff flags alone keep the default count.
 */
function retryPolicyFrom(retries: number | undefined, opts: JobSpecOptions): MessageInitShape<typeof RetryPolicySchema> | undefined {
  const multiplier = opts.retryMultiplier === undefined ? 0 : Number(opts.retryMultiplier);
  if (opts.retryMultiplier !== undefined && !(multiplier >= 1 && multiplier <= 10)) {
    throw new CliError(Code.InvalidArgument, `--retry-multiplier: "${opts.retryMultiplier}" must be a number from 1 to 10`);
  }
  const exitCodes = (opts.nonRetryableExit ?? []).flatMap((list) => list.split(",")).map((code) => parseInteger("--non-retryable-exit", code.trim()));
  const backoff = (flag: string, text: string | undefined) => (text === undefined ? undefined : durationFromMs(parseDurationMs(flag, text)));
  const policy = {
    initialBackoff: backoff("--retry-backoff", opts.retryBackoff),
    maxBackoff: backoff("--retry-max-backoff", opts.retryMaxBackoff),
    multiplier,
    nonRetryableExitCodes: exitCodes,
  };
  const shaped = policy.initialBackoff || policy.maxBackoff || multiplier || exitCodes.length > 0;
  if (retries === undefined && !shaped) return undefined;
  return { maxRetries: retries ?? DEFAULT_RETRY.maxRetries, ...policy };
}

/** --concurrency-key and --concurrency-limit → the spec's two fields; a limit needs a key. */
function concurrencyFrom(opts: JobSpecOptions): { concurrencyKey: string; concurrencyLimit: number } {
  if (opts.concurrencyLimit !== undefined && opts.concurrencyKey === undefined) {
    throw new CliError(Code.InvalidArgument, "--concurrency-limit: needs --concurrency-key (the jobs the limit counts)");
  }
  const limit = opts.concurrencyLimit === undefined ? 0 : parseInteger("--concurrency-limit", opts.concurrencyLimit);
  if (opts.concurrencyLimit !== undefined && (limit < 1 || limit > 10_000)) {
    throw new CliError(Code.InvalidArgument, `--concurrency-limit: "${opts.concurrencyLimit}" must be 1 to 10000`);
  }
  return { concurrencyKey: opts.concurrencyKey ?? "", concurrencyLimit: limit };
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
