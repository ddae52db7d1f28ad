// How jobs, their attempts and their placement read on a terminal, and what
// a followed job's ending means as an exit status. Pure: every function takes
// `now` where time matters, so the tests fix it.

import { timestampMs, type Duration, type Timestamp } from "@bufbuild/protobuf/wkt";
import { constants } from "node:os";
import {
  AuctionState,
  Candidate_Outcome,
  type ExplainPlacementResponse,
} from "../gen/ts/drover/bid/v1/bid_service_pb.ts";
import type { CommandResult } from "../gen/ts/drover/common/v1/exec_pb.ts";
import { AttemptState, JobState, type Attempt, type Job, type RetryPolicy, type RunMode } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { durationText } from "../lib/host/time.ts";
import { DEFAULT_RETRY } from "../services/scheduler/retry.ts";
import { ago, enumText, formatFields, formatTable, labelText } from "./output.ts";
import { enumWords, parseEnumWord } from "./parse.ts";

// ---- States ----------------------------------------------------------------------

/** The job states `--state` accepts, as people type them. */
export const JOB_STATE_WORDS: Record<string, JobState> = enumWords<JobState>(JobState);

/** "dead", "DEAD" or "timed-out" → the JobState; anything else names the valid words. */
export function parseJobState(flag: string, text: string): JobState {
  return parseEnumWord(flag, text, JOB_STATE_WORDS, "a job state");
}

const FINAL_STATES = new Set([JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT, JobState.DEAD]);

/** Whether the job has ended: it will not change again. */
export function isFinal(state: JobState): boolean {
  return FINAL_STATES.has(state);
}

// ---- Exit status -----------------------------------------------------------------

/** What `jobs watch` and `run --follow` exit with once the job ends; `drover run --help` prints this. */
export const jobExitHelp = `Exit status once the job ends:
  0        it succeeded
  1-255    it failed or went dead: the last attempt's exit code
  128+N    it failed or went dead: its last command was killed by signal N (137: SIGKILL)
  124      it timed out, or went dead after its last attempt did (as timeout(1) does)
  1        it was cancelled, or ended without an exit code (the command could not start, lost agents)`;

/** The exit status for an ended job (see jobExitHelp); undefined while it has not ended. */
export function jobExitStatus(job: Job): number | undefined {
  if (!isFinal(job.state)) return undefined;
  if (job.state === JobState.SUCCEEDED) return 0;
  if (job.state === JobState.TIMED_OUT) return 124;
  if (job.state === JobState.CANCELLED) return 1;
  const last = job.attempts.at(-1);
  // A job that went dead after timing out is still one that timed out.
  if (last?.state === AttemptState.TIMED_OUT) return 124;
  if (last && last.exitCode >= 1 && last.exitCode <= 255) return last.exitCode;
  const signal = last?.signal ? (constants.signals as Record<string, number>)[last.signal] : undefined;
  if (signal !== undefined) return 128 + signal;
  return 1;
}

// ---- Small pieces ----------------------------------------------------------------

/** A command line as a person would retype it: arguments with blanks or quotes are quoted. */
export function commandText(argv: string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)).join(" ");
}

/** The job's commands, joined as a shell would run them in order. */
export function jobCommandText(job: Job): string {
  return job.spec?.exec?.commands.map((c) => commandText(c.argv)).join(" && ") || "-";
}

/** At most `max` characters on one line, with an ellipsis when cut. */
export function truncate(text: string, max: number): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length <= max ? line : `${line.slice(0, max - 1)}…`;
}


/** 0 → "-" (not measured), 512 → "512B", 5_242_880 → "5.0Mi", 3 GiB → "3.0Gi": binary units, as --mem takes them. */
export function bytesText(bytes: bigint): string {
  if (bytes <= 0n) return "-";
  const units = ["B", "Ki", "Mi", "Gi", "Ti", "Pi"];
  let n = Number(bytes);
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return u === 0 ? `${n}B` : `${n.toFixed(n < 10 ? 1 : 0)}${units[u]}`;
}

const durationMs = (d: Duration) => Number(d.seconds) * 1000 + d.nanos / 1e6;
const iso = (t: Timestamp | undefined) => (t ? new Date(timestampMs(t)).toISOString() : "-");
const when = (t: Timestamp | undefined, now: number) => (t ? ago(timestampMs(t), now) : "-");

/** "3", "SIGKILL", or "-" while the attempt runs. */
export function exitText(a: Attempt): string {
  if (a.signal) return a.signal;
  if (!a.endTime || a.exitCode < 0) return "-";
  return String(a.exitCode);
}

/** Why the job is where it is: the wait reason while pending, the end reason once ended. */
export function jobReason(job: Job): string {
  return job.waitReason || job.endReason;
}

/**
 * The attempt that holds the job: a live one, or the last once the job has
 * ended. While the job waits for (re)placement an earlier attempt is history,
 * not current (the wait reason says what became of it).
 */
export function currentAttempt(job: Job): Attempt | undefined {
  const last = job.attempts.at(-1);
  if (!last) return undefined;
  const live = last.state === AttemptState.ASSIGNED || last.state === AttemptState.RUNNING;
  return live || isFinal(job.state) ? last : undefined;
}

// ---- ls and get ------------------------------------------------------------------

export const JOB_LIST_HEADERS = ["ID", "STATE", "NAME/COMMAND", "ATTEMPTS", "AGE", "REASON"];

/** One job in `jobs ls`: the name if it has one, else its command; the reason cut to fit a line. */
export function jobRow(job: Job, now = Date.now()): string[] {
  return [
    job.id,
    enumText(JobState, job.state),
    truncate(job.spec?.name || jobCommandText(job), 40),
    String(job.attemptCount),
    when(job.createTime, now),
    truncate(job.waitReason || job.endReason, 60),
  ];
}

/** One job in detail: its spec and where it stands, then its attempts. */
export function jobDetails(job: Job, opts: { created?: boolean; bold?: (s: string) => string; now?: number } = {}): string {
  const now = opts.now ?? Date.now();
  const spec = job.spec;
  const fields: [string, string][] = [
    ["id", job.id],
    ["state", enumText(JobState, job.state)],
    ["name", spec?.name || "-"],
    ["command", jobCommandText(job)],
  ];
  const env = spec?.exec?.env ?? {};
  if (Object.keys(env).length) fields.push(["env", labelText(env)]);
  fields.push(
    ["constraints", labelText(spec?.constraints?.labels ?? {})],
    ["priority", String(spec?.priority ?? 0)],
  );
  if (spec?.exec?.allowShell) fields.push(["shell", "yes (/bin/sh -c)"]);
  if (spec?.constraints?.agentIds.length) fields.push(["agents", spec.constraints.agentIds.join(", ")]);
  if (spec?.constraints?.avoidAgentIds.length) fields.push(["avoids agents", spec.constraints.avoidAgentIds.join(", ")]);
  const cpu = spec?.resources?.cpuMillis ?? 0;
  const mem = spec?.resources?.memoryBytes ?? 0n;
  const disk = spec?.resources?.diskBytes ?? 0n;
  if (cpu || mem || disk) {
    const mib = (bytes: bigint) => (bytes ? `${(Number(bytes) / 2 ** 20).toFixed(0)}Mi` : "-");
    fields.push(["resources", `cpu ${cpu ? `${cpu / 1000}` : "-"}, mem ${mib(mem)}${disk ? `, disk ${mib(disk)}` : ""}`]);
  }
  if (spec?.timeout) fields.push(["timeout", durationText(durationMs(spec.timeout))]);
  if (spec?.retry) fields.push(["retries", retryText(spec.retry)]);
  if (spec?.concurrencyKey) fields.push(["concurrency", `key ${spec.concurrencyKey}, at most ${spec.concurrencyLimit || 1} at a time`]);
  if (spec?.runMode?.mode.case) fields.push(["run mode", runModeText(spec.runMode)]);
  if (job.repeatIndex && spec?.runMode?.mode.case) fields.push(["repeat", repeatText(job)]);
  if (job.nextJobId) fields.push(["next job", job.nextJobId]);
  if (job.runId) fields.push(["run", `${job.runId}, stage ${job.stageName || "-"}`]);
  if (job.scheduleId) fields.push(["schedule", job.scheduleId]);
  fields.push(["created", iso(job.createTime)]);
  if (job.idempotencyKey) fields.push(["idempotency key", job.idempotencyKey]);
  fields.push(["attempts", String(job.attemptCount)]);
  if (job.waitReason) fields.push(["waiting", job.waitReason]);
  if (job.retryTime) fields.push(["retry at", `${iso(job.retryTime)} (${when(job.retryTime, now)})`]);
  if (job.endReason) fields.push(["ended", job.endReason]);
  const note = opts.created === false ? "An existing job with this idempotency key; nothing new was submitted.\n" : "";
  if (job.attempts.length === 0) return formatFields(fields) + note;
  const commands = job.attempts
    .filter((a) => a.commands.length > 0)
    .map((a) => `\nCommands of attempt ${a.number}:\n${commandsTable(a.commands, job, opts.bold)}`);
  return `${formatFields(fields)}${note}\n${attemptsTable(job.attempts, opts.bold, now)}${commands.join("")}`;
}

/** How each command of an attempt ended: its index, program (argv[0] from the spec), exit code or signal, duration, peak memory, message. */
export function commandsTable(commands: CommandResult[], job: Job, bold: (s: string) => string = (s) => s): string {
  return formatTable(
    {
      headers: ["#", "PROGRAM", "EXIT", "DURATION", "PEAK RSS", "MESSAGE"],
      rows: commands.map((c) => [
        String(c.index),
        job.spec?.exec?.commands[c.index]?.argv[0] ?? "-",
        c.signal || (c.exitCode < 0 ? "-" : String(c.exitCode)),
        c.duration ? durationText(durationMs(c.duration)) : "-",
        bytesText(c.peakRssBytes),
        c.message,
      ]),
    },
    bold,
  );
}

/** "4, backoff 1s ×2 up to 5m; exit 2, 64 final": a stated retry policy, defaults filled in as the server does. */
export function retryText(retry: RetryPolicy): string {
  const initial = retry.initialBackoff ? durationMs(retry.initialBackoff) : DEFAULT_RETRY.initialMs;
  const max = retry.maxBackoff ? durationMs(retry.maxBackoff) : DEFAULT_RETRY.maxMs;
  const multiplier = retry.multiplier || DEFAULT_RETRY.multiplier;
  const backoff = retry.maxRetries > 0 ? `, backoff ${durationText(initial)} ×${multiplier} up to ${durationText(max)}` : "";
  const final = retry.nonRetryableExitCodes.length ? `; exit ${retry.nonRetryableExitCodes.join(", ")} final` : "";
  return `${retry.maxRetries}${backoff}${final}`;
}

/** "3 times, 5s apart" or "forever, 1s apart": what --times / --forever asked for. */
export function runModeText(mode: RunMode): string {
  const how = mode.mode.case === "forever" ? "forever" : mode.mode.case === "nTimes" ? `${mode.mode.value} times` : "once";
  const delay = mode.delay ? Number(mode.delay.seconds) * 1000 + mode.delay.nanos / 1e6 : mode.mode.case === "forever" ? 1000 : 0;
  return delay ? `${how}, ${durationText(delay)} apart` : how;
}

/** Which job of its chain this is: "2 of 3, first job <id>" ("1 of 3" for the first; "2 (forever)" without a total). */
export function repeatText(job: Job): string {
  const mode = job.spec?.runMode?.mode;
  const of = mode?.case === "nTimes" ? ` of ${mode.value}` : mode?.case === "forever" ? " (forever)" : "";
  return `${job.repeatIndex}${of}${job.repeatOf ? `, first job ${job.repeatOf}` : ""}`;
}

/** A job's attempts, oldest first. */
export function attemptsTable(attempts: Attempt[], bold: (s: string) => string = (s) => s, now = Date.now()): string {
  return formatTable(
    {
      headers: ["#", "AGENT", "STATE", "EXIT", "STARTED", "DURATION", "REASON"],
      rows: attempts.map((a) => {
        const start = a.startTime ?? a.createTime;
        const duration = start && (a.endTime || a.state === AttemptState.RUNNING)
          ? durationText((a.endTime ? timestampMs(a.endTime) : now) - timestampMs(start))
          : "-";
        return [String(a.number), a.agentId || "-", enumText(AttemptState, a.state), exitText(a), when(a.startTime, now), duration, a.reason];
      }),
    },
    bold,
  );
}

// ---- watch -----------------------------------------------------------------------

const WATCH_WIDTHS = [8, 9, 7, 29];

function watchCells(cells: string[]): string {
  return cells.map((c, i) => (i < WATCH_WIDTHS.length ? c.padEnd(WATCH_WIDTHS[i]!) : c)).join("  ").trimEnd();
}

/** The header over watch lines (fixed widths, since the lines stream). */
export const WATCH_HEADER = watchCells(["TIME", "STATE", "ATTEMPT", "AGENT", "REASON"]);

/** What a watch line shows, without its time: a change in any of these is a new line. */
export function watchKey(job: Job): string {
  const current = currentAttempt(job);
  return [job.state, current?.number ?? 0, current?.state ?? 0, current?.agentId ?? "", jobReason(job)].join("\u0000");
}

/** One change of a watched job: when (local time), its state, the current attempt, its agent, why. */
export function watchLine(job: Job, now = Date.now()): string {
  const current = currentAttempt(job);
  const time = new Date(job.updateTime ? timestampMs(job.updateTime) : now).toTimeString().slice(0, 8);
  return watchCells([time, enumText(JobState, job.state), current ? String(current.number) : "-", current?.agentId || "-", jobReason(job)]);
}

// ---- explain ---------------------------------------------------------------------

const indent = (s: string) => s.replace(/^(?=.)/gm, "  ");

/** ExplainPlacement for people: the summary, then each auction's candidates and the agents left out. */
export function explainText(job: Job, res: ExplainPlacementResponse, bold: (s: string) => string = (s) => s, now = Date.now()): string {
  const head = formatFields([
    ["job", job.id],
    ["state", enumText(JobState, job.state)],
    ...(job.waitReason ? [["waiting", job.waitReason] as [string, string]] : []),
  ]);
  const blocks = res.auctions.map((a) => {
    const title = `Auction ${a.id} (${enumText(AuctionState, a.state)}, ${when(a.createTime, now)})`;
    // Each auction's summary is already a sentence of res.explanation, printed above.
    const fields = formatFields([
      ["winner", a.winnerAgentId || "none"],
      ["eligible agents", String(a.eligibleCount)],
    ]);
    const candidates = a.candidates.length
      ? formatTable(
          {
            headers: ["CANDIDATE", "OUTCOME", "SCORE", "REASON"],
            rows: a.candidates.map((c) => [c.agentId, enumText(Candidate_Outcome, c.outcome), c.score ? c.score.toFixed(3) : "-", c.reason]),
          },
          bold,
        )
      : "no agent was offered the job\n";
    const ineligible = a.ineligible.length
      ? formatTable(
          {
            headers: ["INELIGIBLE BECAUSE", "AGENTS", "FOR EXAMPLE"],
            rows: a.ineligible.map((g) => [g.reason, String(g.count), g.exampleAgentIds.join(",") || "-"]),
          },
          bold,
        )
      : "";
    return `${title}\n${indent(fields)}\n${indent(candidates)}${ineligible ? `\n${indent(ineligible)}` : ""}`;
  });
  return [head, `${res.explanation}\n`, ...blocks].join("\n");
}

export { durationText };
