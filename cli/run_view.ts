// How DAG runs and their stages read on a terminal, and what a followed
// run's ending means as an exit status. Pure: every function takes `now`
// where time matters, so the tests fix it.

import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { RunState, StageState, type Run, type Stage } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { truncate } from "./job_view.ts";
import { ago, enumText, formatFields, formatTable } from "./output.ts";
import { enumWords, parseEnumWord } from "./parse.ts";

// ---- States ----------------------------------------------------------------------

/** The run states `runs ls --state` accepts. */
export const RUN_STATE_WORDS: Record<string, RunState> = enumWords<RunState>(RunState);

export function parseRunState(flag: string, text: string): RunState {
  return parseEnumWord(flag, text, RUN_STATE_WORDS, "a run state");
}

/** Whether the run has ended: every stage has settled and it will not change again. */
export function isRunFinal(state: RunState): boolean {
  return state !== RunState.RUNNING && state !== RunState.UNSPECIFIED;
}

/** What `runs watch` and `runs submit --follow` exit with; their --help prints this. */
export const runExitHelp = `Exit status once the run ends:
  0  every stage succeeded
  1  a stage failed or was skipped, or the run was cancelled`;

/** The exit status for an ended run (see runExitHelp); undefined while it runs. */
export function runExitStatus(run: Run): number | undefined {
  if (!isRunFinal(run.state)) return undefined;
  return run.state === RunState.SUCCEEDED ? 0 : 1;
}

// ---- Small pieces ----------------------------------------------------------------

const iso = (t: Timestamp | undefined) => (t ? new Date(timestampMs(t)).toISOString() : "-");
const when = (t: Timestamp | undefined, now: number) => (t ? ago(timestampMs(t), now) : "-");

/** "2 succeeded, 1 running, 1 blocked": how many stages are in each state, in the order a run moves through them. */
export function stageSummary(run: Run): string {
  const counts = new Map<StageState, number>();
  for (const s of run.stages) counts.set(s.state, (counts.get(s.state) ?? 0) + 1);
  return [...counts.entries()]
    .sort(([a], [b]) => a - b)
    .map(([state, n]) => `${n} ${enumText(StageState, state)}`)
    .join(", ");
}

// ---- ls and get ------------------------------------------------------------------

export const RUN_LIST_HEADERS = ["ID", "STATE", "NAME", "STAGES", "CREATED", "ENDED"];

/** One run in `runs ls` (ListRuns sends no stage states, so STAGES counts the spec's). */
export function runRow(run: Run, now = Date.now()): string[] {
  return [run.id, enumText(RunState, run.state), truncate(run.spec?.name || "-", 40), String(run.spec?.stages.length ?? 0), when(run.createTime, now), when(run.endTime, now)];
}

/** One run in detail, then its stages in definition order: each with what it requires, so the graph reads top down. */
export function runDetails(run: Run, opts: { created?: boolean; bold?: (s: string) => string; now?: number } = {}): string {
  const now = opts.now ?? Date.now();
  const fields: [string, string][] = [
    ["id", run.id],
    ["state", enumText(RunState, run.state)],
    ["name", run.spec?.name || "-"],
    ["stages", `${run.stages.length}: ${stageSummary(run) || "-"}`],
    ["created", `${iso(run.createTime)} (${when(run.createTime, now)})`],
  ];
  if (run.endTime) fields.push(["ended", `${iso(run.endTime)} (${when(run.endTime, now)})`]);
  if (run.idempotencyKey) fields.push(["idempotency key", run.idempotencyKey]);
  if (run.scheduleId) fields.push(["schedule", run.scheduleId]);
  const note = opts.created === false ? "An existing run with this idempotency key; nothing new was submitted.\n" : "";
  return `${formatFields(fields)}${note}\n${stagesTable(run.stages, opts.bold)}`;
}

/** A run's stages as a table: stage, state, requires, job, attempts, reason. */
export function stagesTable(stages: Stage[], bold: (s: string) => string = (s) => s): string {
  return formatTable(
    {
      headers: ["STAGE", "STATE", "REQUIRES", "JOB", "ATTEMPTS", "REASON"],
      rows: stages.map((s) => [s.name, enumText(StageState, s.state), s.requires.join(",") || "-", s.jobId || "-", s.jobId ? String(s.attemptCount) : "-", s.reason]),
    },
    bold,
  );
}

// ---- watch -----------------------------------------------------------------------

/** The STAGE cell of the line that reports the run itself (no stage name can have parentheses). */
export const RUN_LINE_NAME = "(run)";

/** What a watch line shows of a stage: a change in any of these is a new line. */
export function stageKey(stage: Stage): string {
  return [stage.state, stage.jobId, stage.attemptCount, stage.reason].join("\u0000");
}

/** Column widths for a run's watch lines: the stage column fits its longest name, since all are known up front. */
function watchCells(run: Run, cells: string[]): string {
  const widths = [8, Math.max(5, RUN_LINE_NAME.length, ...run.stages.map((s) => s.name.length)), 9, 36];
  return cells.map((c, i) => (i < widths.length ? c.padEnd(widths[i]!) : c)).join("  ").trimEnd();
}

/** The header over a run's watch lines. */
export function runWatchHeader(run: Run): string {
  return watchCells(run, ["TIME", "STAGE", "STATE", "JOB", "REASON"]);
}

/** One stage's change, seen at `now` (local time): its state, its job, why. */
export function stageWatchLine(run: Run, stage: Stage, now = Date.now()): string {
  return watchCells(run, [clock(now), stage.name, enumText(StageState, stage.state), stage.jobId || "-", stage.reason]);
}

/** The last line once the run has ended: its state and how its stages ended. */
export function runEndLine(run: Run, now = Date.now()): string {
  return watchCells(run, [clock(now), RUN_LINE_NAME, enumText(RunState, run.state), "-", stageSummary(run)]);
}

const clock = (ms: number) => new Date(ms).toTimeString().slice(0, 8);

/**
 * The stages whose watch key changed since `seen` (stage name → key), in
 * definition order; `seen` is updated, so the next call reports only newer changes.
 */
export function changedStages(run: Run, seen: Map<string, string>): Stage[] {
  const changed = run.stages.filter((s) => seen.get(s.name) !== stageKey(s));
  for (const s of changed) seen.set(s.name, stageKey(s));
  return changed;
}
