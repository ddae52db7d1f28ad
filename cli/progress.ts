// Progress for the CLI's long waits: a job waiting to be placed (`drover run
// --follow`, `drover jobs watch`) and a large stored log being read
// (`drover logs` without -f). One line on stderr, rewritten in place, and
// only on a terminal with text output: scripts (stderr not a terminal, or
// -o json/yaml) never see it. Whoever prints anything else clears it first,
// so it never ends up in the middle of a printed line.
//
// The texts are pure functions of what the server said and the time, tested
// in progress.test.ts; ProgressLine is the only part that writes.

import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { JobState, type Job } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { durationText } from "../lib/host/time.ts";
import { bytesText } from "./job_view.ts";
import type { Format } from "./output.ts";

/** Where a progress line goes: process.stderr, or a fake in tests. */
export interface ProgressStream {
  isTTY?: boolean;
  /** The terminal's width; unknown: 80. */
  columns?: number;
  write(text: string): unknown;
}

/** Whether to show progress: text output and a terminal to show it on. */
export function progressEnabled(format: Format, stream: Pick<ProgressStream, "isTTY">): boolean {
  return format === "table" && stream.isTTY === true;
}

/** One row of the terminal at most: a line that wrapped could not be rewritten in place. */
export function fitLine(text: string, columns = 80): string {
  const width = Math.max(10, columns - 1);
  const line = text.replace(/\s+/g, " ").trim();
  return line.length <= width ? line : `${line.slice(0, width - 1)}…`;
}

/** "7s", "2m5s": whole seconds, at least one, for a clock that ticks once a second. */
export function elapsedText(ms: number): string {
  return durationText(Math.max(1, Math.floor(ms / 1000)) * 1000);
}

// ---- Waiting for placement --------------------------------------------------------

/** Whether the job waits to be placed on an agent: accepted or offered, not yet assigned, not ended. */
export function waitsForPlacement(job: Job): boolean {
  return job.state === JobState.PENDING || job.state === JobState.OFFERED;
}

/**
 * Since when the job has been waiting, ms: the end of its last attempt
 * when it waits to be placed again (a retry, a lost agent), else its
 * creation; undefined when the job says neither.
 */
export function waitingSinceMs(job: Job): number | undefined {
  const ended = job.attempts.at(-1)?.endTime;
  const since: Timestamp | undefined = ended ?? job.createTime;
  return since ? timestampMs(since) : undefined;
}

/**
 * The progress line of a job that waits to be placed, or undefined once it
 * is placed or ended: how long it has waited and why, as the Scheduler
 * says ("waiting for placement for 12s: no eligible agent: ...").
 * `fallbackSinceMs` stands in for a job that says nothing of its times.
 */
export function placementLine(job: Job, nowMs: number, fallbackSinceMs = nowMs): string | undefined {
  if (!waitsForPlacement(job)) return undefined;
  const waited = elapsedText(nowMs - (waitingSinceMs(job) ?? fallbackSinceMs));
  const what = job.state === JobState.OFFERED ? "offered to agents" : "waiting for placement";
  const why = job.waitReason || (job.state === JobState.OFFERED ? "collecting bids" : "");
  return `${what} for ${waited}${why ? `: ${why}` : ""}`;
}

// ---- Reading stored output ----------------------------------------------------------

/** How much of a stored log has been read so far. */
export interface ReadProgress {
  /** ReadLogs pages received. */
  pages: number;
  /** Bytes of line data received. */
  bytes: number;
  lines: number;
}

/** The line while `drover logs` pages through stored output: "reading stored output: 12 pages, 11.5Mi, 80312 lines (4s)". */
export function readLine(p: ReadProgress, elapsedMs: number): string {
  const pages = `${p.pages} ${p.pages === 1 ? "page" : "pages"}`;
  const lines = `${p.lines} ${p.lines === 1 ? "line" : "lines"}`;
  return `reading stored output: ${pages}, ${p.bytes > 0 ? bytesText(BigInt(p.bytes)) : "0B"}, ${lines} (${elapsedText(elapsedMs)})`;
}

/** Adds one ReadLogs page to the tally. */
export function addPage(p: ReadProgress, lines: readonly { data: Uint8Array }[]): ReadProgress {
  return { pages: p.pages + 1, bytes: p.bytes + lines.reduce((n, l) => n + l.data.length, 0), lines: p.lines + lines.length };
}

// ---- The line itself ----------------------------------------------------------------

/** The rewritten line; a disabled one writes nothing. show() and clear() may be called any number of times. */
export class ProgressLine {
  private shown = false;

  constructor(
    private readonly stream: ProgressStream,
    readonly enabled: boolean,
  ) {}

  /** Replaces what the line says. */
  show(text: string): void {
    if (!this.enabled) return;
    this.stream.write(`\r\x1b[K${fitLine(text, this.stream.columns || 80)}`);
    this.shown = true;
  }

  /** Removes the line (before anything else is printed, and at the end). */
  clear(): void {
    if (!this.shown) return;
    this.stream.write("\r\x1b[K");
    this.shown = false;
  }
}

/** The progress line for process.stderr, shown only as progressEnabled says. */
export function stderrProgress(format: Format): ProgressLine {
  return new ProgressLine(process.stderr, progressEnabled(format, process.stderr));
}
