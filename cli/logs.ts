// `drover logs`: the output of a job, an attempt, a run's stages or a
// deployment's replicas, from the Log service. Without -f it pages through
// ReadLogs and exits; with -f it follows FollowLogs until every followed
// attempt's output is complete (and the job or run has ended; a
// deployment's until it is deleted, or Ctrl-C). `drover run --follow` streams a job's output
// the same way (followJobOutput).
//
// Text output writes the bytes as they are: stdout lines to stdout, stderr
// and system lines to stderr, with a source prefix only when several
// sources are merged (logs_view.ts). -o json prints one object per line.
// A read of several pages into a file or a pipe shows its progress on a
// terminal's stderr (progress.ts).

import { once } from "node:events";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { Command } from "commander";
import { FollowFrom, Stream, type LogLine } from "../gen/ts/drover/log/v1/log_service_pb.ts";
import type { Job } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import type { CliClients } from "./connection.ts";
import { CALL_TIMEOUT_MS, contextFor, type CommandContext } from "./context.ts";
import { CliError } from "./errors.ts";
import { formatYaml } from "./output.ts";
import { parseInteger } from "./parse.ts";
import { addPage, progressEnabled, ProgressLine, readLine, type ReadProgress } from "./progress.ts";
import { lineJson, parseStream, parseTarget, parseTime, sourceLabel, TARGET_HELP, TextLineWriter, type LogTarget, type Outputs } from "./logs_view.ts";

const timeout = { timeoutMs: CALL_TIMEOUT_MS };

/** The options of `drover logs`, as commander gives them. */
interface LogsOptions {
  attempt?: string;
  follow?: boolean;
  tail?: string;
  since?: string;
  until?: string;
  stream?: string;
  grep?: string;
  regex?: boolean;
}

export function logsCommand(): Command {
  return new Command("logs")
    .description("print the output of a job, an attempt, a run's stages or a deployment's replicas; with -f, follow it as it is written")
    .argument("[target]", "a job id, run:RUN_ID, RUN_ID/STAGE or deployment/NAME (see below)")
    .option("--attempt <id>", "one attempt's output (instead of TARGET)")
    .option("-f, --follow", "print stored output, then new output as it comes, until it is complete and the job or run has ended (a deployment: until it is deleted)")
    .option("--tail <n>", "only the last N lines (of each attempt, with -f); with -f, --tail 0 prints only new output")
    .option("--since <when>", "only lines written since: a duration ago (10m, 2h) or an RFC 3339 time")
    .option("--until <when>", "only lines written before: a duration ago or an RFC 3339 time (not with -f)")
    .option("--stream <name>", "only one output: stdout, stderr or system (lines the agent writes about the attempt)")
    .option("--grep <text>", "only lines containing TEXT")
    .option("--regex", "--grep TEXT is a regular expression (JavaScript syntax)")
    .addHelpText(
      "after",
      `
${TARGET_HELP}

Output (-o): text (the default; "table" is the same) writes the bytes as
they were written: stdout lines to stdout, stderr and system lines to
stderr. When several sources are merged (a run's stages, a job's attempts,
a deployment's replicas) each line starts with its source: "[build] ",
"[attempt 2] ", "[build attempt 2] ", "[slot 1] " ("[slot 1 rev 3] " once
lines of several revisions were seen). -o json prints one JSON object per
line: attemptId, jobId, stageName, stream, commandIndex, offset, time, text,
and source, replicaId, replicaSlot, revision, partial (the line goes on in
the next) and marker (a line of the Log service's own, such as "truncated")
when they apply.

Examples:
  drover logs 6f1c…                    every attempt of a job
  drover logs -f --tail 20 6f1c…       its last 20 lines, then follow
  drover logs run:9a0e… --stream stderr --since 1h
  drover logs 9a0e…/build --grep 'error|warn' --regex
  drover logs --attempt 3b7d… -o json
  drover logs -f --tail 10 deployment/web   every replica of web, as rollouts replace them
  drover logs deployment/web/2 --since 10m  the replica in slot 2`,
    )
    .action(async (target: string | undefined, opts: LogsOptions, cmd: Command) => {
      const ctx = contextFor(cmd);
      if (ctx.format === "yaml") throw new CliError(Code.InvalidArgument, "-o: logs prints text or json, not yaml");
      const query = queryFrom(opts);
      const parsed = parseTarget(target, opts.attempt);
      exitQuietlyOnClosedPipe();
      const { whose, names } = await resolveTarget(ctx.clients, parsed);
      const printer = new LinePrinter(ctx.format, names, processOutputs);
      if (opts.follow) await follow(ctx.clients, whose, query, printer);
      else await read(ctx.clients, whose, query, printer, readProgress(ctx.format));
    });
}

/** The filters, checked before any call. */
interface Query {
  stream: Stream;
  tail: number | undefined;
  since: number | undefined;
  until: number | undefined;
  filter: string;
  regex: boolean;
}

function queryFrom(opts: LogsOptions): Query {
  const now = Date.now();
  const tail = opts.tail === undefined ? undefined : parseInteger("--tail", opts.tail);
  if (tail !== undefined && (tail < 0 || tail > 100_000)) throw new CliError(Code.InvalidArgument, `--tail: "${opts.tail}" must be 0 to 100000`);
  if (tail === 0 && !opts.follow) throw new CliError(Code.InvalidArgument, "--tail 0 prints nothing without -f");
  if (opts.until !== undefined && opts.follow) throw new CliError(Code.InvalidArgument, "--until cannot be used with -f (following has no end time)");
  if (opts.regex && opts.grep === undefined) throw new CliError(Code.InvalidArgument, "--regex needs --grep");
  if (opts.regex) {
    try {
      new RegExp(opts.grep!);
    } catch (err) {
      throw new CliError(Code.InvalidArgument, `--grep: "${opts.grep}" is not a regular expression: ${(err as Error).message}`);
    }
  }
  return {
    stream: parseStream(opts.stream),
    tail,
    since: opts.since === undefined ? undefined : parseTime("--since", opts.since, now),
    until: opts.until === undefined ? undefined : parseTime("--until", opts.until, now),
    filter: opts.grep ?? "",
    regex: opts.regex === true,
  };
}

/** Whose output, as ReadLogs and FollowLogs name it. */
type Whose = { attemptId: string } | { jobId: string } | { runId: string; stageName?: string } | { deployment: string; replica: string };

/**
 * Checks the target exists (so a typo is NOT_FOUND rather than no output)
 * and learns what the source prefixes need: a bare id that is no job's is
 * taken as an attempt's.
 */
async function resolveTarget(clients: CliClients, target: LogTarget): Promise<{ whose: Whose; names: SourceNames }> {
  switch (target.kind) {
    case "attempt":
      return { whose: { attemptId: target.attemptId }, names: new SourceNames("attempt", clients) };
    case "job": {
      let job: Job | undefined;
      try {
        job = (await clients.scheduler.getJob({ id: target.jobId }, timeout)).job;
      } catch (err) {
        const code = ConnectError.from(err).code;
        // A job id must be a UUID; an attempt id need not be.
        if (code !== Code.NotFound && code !== Code.InvalidArgument) throw err;
        // The Log service answers an attempt it has nothing of with no lines:
        // a typo would print nothing and succeed. One small read tells.
        const probe = await clients.log.readLogs({ attemptId: target.jobId, limitBytes: 1 }, timeout);
        if (probe.lines.length === 0 && !probe.truncated && probe.nextPageToken === "") {
          throw new CliError(Code.NotFound, `no job has the id ${target.jobId}, and no output is stored for an attempt with that id`);
        }
        return { whose: { attemptId: target.jobId }, names: new SourceNames("attempt", clients) };
      }
      const names = new SourceNames("job", clients, target.jobId);
      if (job) names.learn(job);
      return { whose: { jobId: target.jobId }, names };
    }
    case "run": {
      await clients.scheduler.getRun({ id: target.runId }, timeout);
      return { whose: { runId: target.runId }, names: new SourceNames("run", clients) };
    }
    case "stage": {
      const { run } = await clients.scheduler.getRun({ id: target.runId }, timeout);
      const stage = run?.stages.find((s) => s.name === target.stageName);
      if (!stage) {
        const known = run?.stages.map((s) => s.name).join(", ") || "none";
        throw new CliError(Code.NotFound, `run ${target.runId} has no stage "${target.stageName}" (its stages: ${known})`);
      }
      return { whose: { runId: target.runId, stageName: target.stageName }, names: new SourceNames("stage", clients, stage.jobId) };
    }
    case "deployment":
      // The Log service asks Deploy: an unknown deployment or replica is its NOT_FOUND.
      return { whose: { deployment: target.deployment, replica: target.replica }, names: new SourceNames("deployment", clients) };
  }
}

/**
 * The progress of a read: on stderr, when it is a terminal and the output
 * goes elsewhere (`drover logs JOB > out.log`). Printed on the terminal,
 * the lines themselves show how far the read has come.
 */
function readProgress(format: CommandContext["format"]): ProgressLine {
  return new ProgressLine(process.stderr, progressEnabled(format, process.stderr) && process.stdout.isTTY !== true);
}

async function read(clients: CliClients, whose: Whose, query: Query, printer: LinePrinter, progress?: ProgressLine): Promise<void> {
  const started = Date.now();
  let tally: ReadProgress = { pages: 0, bytes: 0, lines: 0 };
  let pageToken = "";
  try {
    do {
      const res = await clients.log.readLogs(
        {
          ...whose,
          stream: query.stream,
          tailLines: query.tail ?? 0,
          since: query.since === undefined ? undefined : timestampFromMs(query.since),
          until: query.until === undefined ? undefined : timestampFromMs(query.until),
          filter: query.filter,
          regex: query.regex,
          pageToken,
        },
        timeout,
      );
      tally = addPage(tally, res.lines);
      // stderr lines of the log go to the same terminal as the progress line.
      progress?.clear();
      await printer.print(res.lines);
      pageToken = res.nextPageToken;
      // Only a read of more than one page is long enough to need it, and
      // never over the start of a stderr line that the next page goes on with.
      if (pageToken !== "" && !printer.midLine("stderr")) progress?.show(readLine(tally, Date.now() - started));
    } while (pageToken !== "");
  } finally {
    progress?.clear();
  }
}

async function follow(clients: CliClients, whose: Whose, query: Query, printer: LinePrinter, signal?: AbortSignal): Promise<void> {
  const from = query.tail === undefined ? FollowFrom.UNSPECIFIED : query.tail === 0 ? FollowFrom.END : FollowFrom.TAIL;
  // No deadline: output may go on for hours. FollowLogs has no time filter: --since is applied here.
  const stream = clients.log.followLogs(
    { ...whose, stream: query.stream, from, tailLines: query.tail ?? 0, filter: query.filter, regex: query.regex },
    { signal },
  );
  for await (const { lines } of stream) {
    await printer.print(query.since === undefined ? lines : lines.filter((l) => !l.time || timestampDate(l.time).getTime() >= query.since!));
  }
}

/**
 * Streams a job's output (stdout to stdout, stderr to stderr; the system
 * stream is left out) while `drover run --follow` prints its state changes.
 * A Log service that cannot be followed is said once on stderr and does
 * not fail the run. finish() waits, at most `graceMs`, for the output to be
 * complete, then ends an open line; call it before the last state line.
 */
export function followJobOutput(ctx: CommandContext, jobId: string, outputs: Outputs = processOutputs): { finish(graceMs: number): Promise<void> } {
  const names = new SourceNames("job", ctx.clients, jobId);
  const printer = new LinePrinter(ctx.format, names, outputs, (line) => line.stream !== Stream.SYSTEM);
  const abort = new AbortController();
  const query: Query = { stream: Stream.UNSPECIFIED, tail: undefined, since: undefined, until: undefined, filter: "", regex: false };
  const done = follow(ctx.clients, { jobId }, query, printer, abort.signal).then(
    () => true,
    (err: unknown) => {
      if (abort.signal.aborted) return true;
      const error = ConnectError.from(err);
      outputs.stderr(`drover: cannot show the job's output (${Code[error.code] ?? error.code}: ${error.rawMessage}); drover logs ${jobId} shows it later\n`);
      return true;
    },
  );
  return {
    async finish(graceMs: number) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), graceMs)));
      const complete = await Promise.race([done, late]);
      clearTimeout(timer);
      abort.abort();
      printer.finish();
      if (!complete) outputs.stderr(`drover: the job's output is not all stored yet; drover logs ${jobId} shows it\n`);
    },
  };
}

/**
 * Names a line's source for its prefix. Attempt numbers come from GetJob,
 * asked again when an attempt not seen before shows up (a retry, while
 * following); if that fails, attempts are numbered as they show up.
 */
class SourceNames {
  // jobId → attemptId → number
  private readonly jobs = new Map<string, Map<string, number>>();
  private readonly asked = new Set<string>();
  // A deployment's revisions seen so far.
  private readonly revisions = new Set<number>();

  constructor(
    readonly kind: LogTarget["kind"],
    private readonly clients: CliClients,
    private readonly defaultJobId = "",
  ) {}

  learn(job: Job): void {
    this.jobs.set(job.id, new Map(job.attempts.map((a) => [a.id, a.number])));
  }

  async label(line: LogLine): Promise<string> {
    if (this.kind === "attempt") return "";
    if (this.kind === "deployment") {
      this.revisions.add(line.revision);
      return sourceLabel("deployment", line, { number: 1, of: 1 }, this.revisions.size);
    }
    const jobId = line.jobId || this.defaultJobId;
    if (!this.jobs.get(jobId)?.has(line.attemptId) && jobId !== "" && !this.asked.has(line.attemptId)) {
      this.asked.add(line.attemptId);
      try {
        const { job } = await this.clients.scheduler.getJob({ id: jobId }, timeout);
        if (job) this.learn(job);
      } catch {
        // Numbered as they show up, below.
      }
    }
    let attempts = this.jobs.get(jobId);
    if (!attempts) this.jobs.set(jobId, (attempts = new Map()));
    if (!attempts.has(line.attemptId)) attempts.set(line.attemptId, attempts.size + 1);
    return sourceLabel(this.kind, line, { number: attempts.get(line.attemptId)!, of: attempts.size });
  }
}

/** Prints lines in the chosen format, waiting for stdout to drain between batches. */
class LinePrinter {
  private readonly text: TextLineWriter;

  constructor(
    private readonly format: CommandContext["format"],
    private readonly names: SourceNames,
    private readonly out: Outputs,
    /** Lines to print; the others are skipped. */
    private readonly keep: (line: LogLine) => boolean = () => true,
  ) {
    this.text = new TextLineWriter(out);
  }

  async print(lines: readonly LogLine[]): Promise<void> {
    for (const line of lines) {
      if (!this.keep(line)) continue;
      const source = await this.names.label(line);
      switch (this.format) {
        case "table":
          this.text.write(line, source);
          break;
        case "json":
          this.out.stdout(`${JSON.stringify(lineJson(line, source))}\n`);
          break;
        case "yaml":
          this.out.stdout(`---\n${formatYaml(lineJson(line, source))}`);
          break;
      }
    }
    if (process.stdout.writableNeedDrain) await once(process.stdout, "drain");
  }

  finish(): void {
    if (this.format === "table") this.text.finish();
  }

  /** Whether a text line printed on `fd` has not ended yet. */
  midLine(fd: "stdout" | "stderr"): boolean {
    return this.format === "table" && this.text.isOpen(fd);
  }
}

const processOutputs: Outputs = {
  stdout: (bytes) => void process.stdout.write(bytes),
  stderr: (bytes) => void process.stderr.write(bytes),
};

/** `drover logs … | head`: a reader that went away ends the command quietly. */
function exitQuietlyOnClosedPipe(): void {
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(0);
    throw err;
  });
}
