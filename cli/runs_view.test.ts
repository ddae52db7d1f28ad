// The pure parts of the runs, schedules and run-mode commands: reading a run
// spec file, the run-mode options, and how runs, stages and schedules print.

import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  JobSchema,
  JobState,
  MissedPolicy,
  OverlapPolicy,
  RunSchema,
  RunState,
  ScheduleSchema,
  ScheduleSpecSchema,
  StageState,
  type Run,
} from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { jobSpecFrom, type JobSpecOptions } from "./job_spec.ts";
import { jobDetails } from "./job_view.ts";
import { parseRunSpec } from "./run_spec.ts";
import { changedStages, parseRunState, runDetails, runEndLine, runExitStatus, runRow, runWatchHeader, stageWatchLine } from "./run_view.ts";
import { MISSED_WORDS, OVERLAP_WORDS, scheduleDetails, scheduleRow, templateText, zonedTime } from "./schedule_view.ts";

const NOW = Date.parse("2030-01-01T12:00:00Z");
const RUN_ID = "7a000000-0000-4000-8000-000000000001";
const JOB_A = "6f1c0d3e-0000-4000-8000-00000000000a";
const JOB_B = "6f1c0d3e-0000-4000-8000-00000000000b";

// ---- Run spec files ----------------------------------------------------------------

const YAML_SPEC = `
name: nightly
stages:
  - name: build
    job: {exec: {commands: [{argv: [make]}]}}
  - name: test
    requires: [build]
    job:
      exec: {commands: [{argv: [make, test]}], env: {CI: "1"}}
      resources: {cpuMillis: 2000, memoryBytes: 1073741824}
      timeout: 600s
`;

test("a YAML run spec becomes a RunSpec with its stages in order and their edges", () => {
  const spec = parseRunSpec("run.yaml", YAML_SPEC);
  assert.equal(spec.name, "nightly");
  assert.deepEqual(spec.stages.map((s) => s.name), ["build", "test"]);
  assert.deepEqual(spec.stages[1]!.requires, ["build"]);
  assert.deepEqual(spec.stages[1]!.job?.exec?.commands[0]?.argv, ["make", "test"]);
  assert.deepEqual(spec.stages[1]!.job?.exec?.env, { CI: "1" }, '"1" stays a string');
  assert.equal(spec.stages[1]!.job?.resources?.memoryBytes, 1n << 30n);
  assert.equal(spec.stages[1]!.job?.timeout?.seconds, 600n);
});

test("a JSON run spec with proto field names reads the same, from a .json file or as YAML from stdin", () => {
  const json = JSON.stringify({ name: "ci", stages: [{ name: "build", requires: [], job: { exec: { commands: [{ argv: ["make"] }] } } }] });
  for (const label of ["run.json", "stdin"]) {
    const spec = parseRunSpec(label, json);
    assert.equal(spec.stages[0]!.job?.exec?.commands[0]?.argv[0], "make", label);
  }
});

test("a malformed run spec is a usage error naming the file, the field path and the problem", () => {
  const fails = (label: string, text: string, message: string) =>
    assert.throws(() => parseRunSpec(label, text), (err: Error & { code?: number }) => {
      assert.equal(err.message, message);
      assert.equal(err.code, 3, "InvalidArgument: exit 2");
      return true;
    });
  const stage = (job: string, extra = "") => `stages:\n  - name: a\n    job: {exec: {commands: [{argv: [make]}]}}\n  - name: b${extra}\n    job: ${job}\n`;
  fails("run.yaml", stage("{exec: {commands: [{argv: make}]}}"), 'run.yaml: stages[1].job.exec.commands[0].argv: expected Array, got "make"');
  fails("run.yaml", stage("{exec: {commands: [{argv: [x]}]}}", "\n    require: [a]"), 'run.yaml: stages[1]: key "require" is unknown');
  fails("run.yaml", stage("{timeout: 10m, exec: {commands: [{argv: [x]}]}}"), 'run.yaml: stages[1].job.timeout: "10m" is not a duration; write seconds with an "s": "90s", "0.5s", "3600s"');
  fails("run.yaml", stage("{priority: high, exec: {commands: [{argv: [x]}]}}"), 'run.yaml: stages[1].job.priority: expected number (int32), got "high"');
  fails("run.yaml", "nme: x\nstages: []\n", 'run.yaml: the run spec: key "nme" is unknown');
  fails("run.yaml", "stages: [\n", "run.yaml: not valid YAML: Flow sequence in block collection must be sufficiently indented and end with a ] at line 2, column 1");
  fails("run.json", "{,}", "run.json: not valid JSON: Expected property name or '}' in JSON at position 1");
  fails("stdin", "", "stdin: the run spec is empty");
  fails("stdin", "- a\n- b\n", 'stdin: a run spec is a mapping with "name" and "stages", not a list');
});

// ---- Run modes -----------------------------------------------------------------------

const defaults: JobSpecOptions = { label: [], env: [], secretEnv: [], priority: "0" };

test("--times and --forever make a run mode with its delay, and clash with each other", () => {
  const times = jobSpecFrom(["echo", "hi"], { ...defaults, times: "3" }).runMode;
  assert.deepEqual(times?.mode, { case: "nTimes", value: 3 });
  assert.equal(times?.delay, undefined, "no --repeat-delay: the server's default");
  const forever = jobSpecFrom(["./poll.sh"], { ...defaults, forever: true, repeatDelay: "5s" }).runMode;
  assert.deepEqual(forever?.mode, { case: "forever", value: true });
  assert.equal(forever?.delay?.seconds, 5n);
  assert.equal(jobSpecFrom(["true"], defaults).runMode, undefined, "once");
  assert.throws(() => jobSpecFrom(["true"], { ...defaults, times: "2", forever: true }), /--times and --forever: choose one/);
  assert.throws(() => jobSpecFrom(["true"], { ...defaults, repeatDelay: "5s" }), /--repeat-delay: needs --times or --forever/);
  assert.throws(() => jobSpecFrom(["true"], { ...defaults, times: "0" }), /--times: "0" must be 1 to 100000/);
  assert.throws(() => jobSpecFrom(["true"], { ...defaults, times: "x" }), /--times: "x" is not a whole number/);
});

test("a job's details show its run mode, its place in the chain, the next job, its run and stage, its schedule", () => {
  const repeated = create(JobSchema, {
    id: JOB_B,
    state: JobState.SUCCEEDED,
    spec: { exec: { commands: [{ argv: ["echo", "hi"] }] }, runMode: { mode: { case: "nTimes", value: 3 }, delay: durationFromMs(5000) } },
    repeatIndex: 2,
    repeatOf: JOB_A,
    nextJobId: "6f1c0d3e-0000-4000-8000-00000000000c",
    scheduleId: "5c000000-0000-4000-8000-000000000001",
    createTime: timestampFromMs(NOW),
  });
  const text = jobDetails(repeated, { now: NOW });
  assert.match(text, /^run mode:\s+3 times, 5s apart$/m);
  assert.match(text, new RegExp(`^repeat:\\s+2 of 3, first job ${JOB_A}$`, "m"));
  assert.match(text, /^next job:\s+6f1c0d3e-0000-4000-8000-00000000000c$/m);
  assert.match(text, /^schedule:\s+5c000000-0000-4000-8000-000000000001$/m);
  assert.doesNotMatch(text, /^run:/m);

  const forever = jobDetails(create(JobSchema, { id: JOB_A, spec: { exec: { commands: [{ argv: ["x"] }] }, runMode: { mode: { case: "forever", value: true } } }, repeatIndex: 1 }), { now: NOW });
  assert.match(forever, /^run mode:\s+forever, 1s apart$/m, "forever's default delay is 1 s");
  assert.match(forever, /^repeat:\s+1 \(forever\)$/m);

  const stage = jobDetails(create(JobSchema, { id: JOB_A, runId: RUN_ID, stageName: "build", spec: { exec: { commands: [{ argv: ["make"] }] } } }), { now: NOW });
  assert.match(stage, new RegExp(`^run:\\s+${RUN_ID}, stage build$`, "m"));
  assert.doesNotMatch(stage, /^(run mode|repeat|next job|schedule):/m, "nothing about chains or schedules when unset");
});

// ---- Runs ----------------------------------------------------------------------------

/** A four-stage diamond, build → (test, lint) → deploy, as GetRun sends it while build runs. */
function diamond(fields: Partial<Pick<Run, "state" | "stages">> = {}): Run {
  const job = { exec: { commands: [{ argv: ["make"] }] } };
  const run = create(RunSchema, {
    id: RUN_ID,
    state: RunState.RUNNING,
    spec: { name: "nightly", stages: ["build", "test", "lint", "deploy"].map((name) => ({ name, job })) },
    createTime: timestampFromMs(NOW - 60_000),
    stages: [
      { name: "build", state: StageState.RUNNING, jobId: JOB_A, attemptCount: 1, reason: "attempt 1 running" },
      { name: "test", requires: ["build"], state: StageState.BLOCKED, reason: "waiting for build" },
      { name: "lint", requires: ["build"], state: StageState.BLOCKED, reason: "waiting for build" },
      { name: "deploy", requires: ["test", "lint"], state: StageState.BLOCKED, reason: "waiting for test, lint" },
    ],
  });
  return Object.assign(run, fields);
}

test("run states are lowercase words, and a bad one lists them", () => {
  assert.equal(parseRunState("--state", "Succeeded"), RunState.SUCCEEDED);
  assert.throws(() => parseRunState("--state", "done"), (err: Error) => err.message === '--state: "done" is not a run state; use one of running, succeeded, failed, cancelled');
});

test("a run's details list its stages in definition order with what each requires", () => {
  assert.equal(
    runDetails(diamond(), { now: NOW }),
    [
      `id:      ${RUN_ID}`,
      "state:   running",
      "name:    nightly",
      "stages:  4: 3 blocked, 1 running",
      "created: 2030-01-01T11:59:00.000Z (1m ago)",
      "",
      "STAGE   STATE    REQUIRES   JOB                                   ATTEMPTS  REASON",
      `build   running  -          ${JOB_A}  1         attempt 1 running`,
      "test    blocked  build      -                                     -         waiting for build",
      "lint    blocked  build      -                                     -         waiting for build",
      "deploy  blocked  test,lint  -                                     -         waiting for test, lint",
      "",
    ].join("\n"),
  );
  assert.match(runDetails(diamond(), { now: NOW, created: false }), /An existing run with this idempotency key/);
  assert.deepEqual(runRow(diamond({ stages: [] }), NOW), [RUN_ID, "running", "nightly", "4", "1m ago", "-"], "ls counts the spec's stages");
});

test("a followed run exits 0 only when it succeeded", () => {
  assert.equal(runExitStatus(diamond()), undefined);
  assert.equal(runExitStatus(diamond({ state: RunState.SUCCEEDED })), 0);
  assert.equal(runExitStatus(diamond({ state: RunState.FAILED })), 1);
  assert.equal(runExitStatus(diamond({ state: RunState.CANCELLED })), 1);
});

test("watching a run prints each stage once per change, aligned to the longest stage name, then the run's end", () => {
  const seen = new Map<string, string>();
  const first = diamond();
  assert.deepEqual(changedStages(first, seen).map((s) => s.name), ["build", "test", "lint", "deploy"], "the first poll shows every stage");
  assert.deepEqual(changedStages(first, seen), [], "nothing changed, nothing printed");

  const next = diamond();
  next.stages[0]!.state = StageState.SUCCEEDED;
  next.stages[0]!.reason = "attempt 1 succeeded";
  next.stages[1]!.state = StageState.PENDING;
  next.stages[1]!.jobId = JOB_B;
  assert.deepEqual(changedStages(next, seen).map((s) => s.name), ["build", "test"]);

  assert.match(runWatchHeader(first), /^TIME {6}STAGE {3}STATE {6}JOB {35}REASON$/);
  assert.match(stageWatchLine(next, next.stages[1]!, NOW), new RegExp(`^\\d\\d:\\d\\d:\\d\\d  test    pending    ${JOB_B}  waiting for build$`));
  const failed = diamond({ state: RunState.FAILED });
  failed.stages[0]!.state = StageState.FAILED;
  for (const s of failed.stages.slice(1)) s.state = StageState.SKIPPED;
  assert.match(runEndLine(failed, NOW), /^\d\d:\d\d:\d\d {2}\(run\) {3}failed {5}- {37}1 failed, 3 skipped$/);
});

// ---- Schedules -----------------------------------------------------------------------

test("fire times read in the schedule's zone with its UTC offset, across DST", () => {
  const t = Date.parse("2026-03-29T01:00:00Z");
  assert.equal(zonedTime(t, "Europe/Berlin"), "2026-03-29 03:00:00 +02:00");
  assert.equal(zonedTime(t - 3_600_000, "Europe/Berlin"), "2026-03-29 01:00:00 +01:00");
  assert.equal(zonedTime(t, ""), "2026-03-29 01:00:00 +00:00");
  assert.equal(zonedTime(t, "Asia/Kolkata"), "2026-03-29 06:30:00 +05:30");
});

test("policy words are what people type: cancel-previous, run-once", () => {
  assert.deepEqual(Object.keys(OVERLAP_WORDS), ["skip", "allow", "cancel-previous"]);
  assert.deepEqual(Object.keys(MISSED_WORDS), ["skip", "run-once", "backfill"]);
});

test("a schedule's row and details show when it fires next and last, what, and its counts", () => {
  const schedule = create(ScheduleSchema, {
    id: "5c000000-0000-4000-8000-000000000001",
    spec: {
      name: "reports",
      cron: "0 9 * * MON-FRI",
      timeZone: "Europe/Paris",
      template: { case: "job", value: { exec: { commands: [{ argv: ["sh", "-c", "make report"] }] } } },
      missed: MissedPolicy.BACKFILL,
    },
    nextFireTime: timestampFromMs(NOW + 3600_000 * 20),
    lastFireTime: timestampFromMs(NOW - 3600_000 * 4),
    lastJobId: JOB_A,
    fireCount: 12n,
    skipCount: 1n,
    lastSkipReason: "tick skipped: job still going (overlap policy SKIP)",
    createTime: timestampFromMs(NOW - 86_400_000),
  });
  assert.deepEqual(scheduleRow(schedule, NOW), ["reports", "0 9 * * MON-FRI", "Europe/Paris", "no", "2030-01-02 09:00:00 +01:00 (in 20h)", "4h ago", "12", "1"]);
  const text = scheduleDetails(schedule, { now: NOW });
  assert.match(text, /^fires:\s+job: sh -c 'make report'$/m);
  assert.match(text, /^overlap:\s+skip$/m, "unspecified reads as the default");
  assert.match(text, /^missed:\s+backfill, at most 10$/m);
  assert.match(text, /^last fire:\s+2030-01-01 09:00:00 \+01:00 \(4h ago\)$/m);
  assert.match(text, new RegExp(`^last job:\\s+${JOB_A}$`, "m"));
  assert.match(text, /^last skipped:\s+tick skipped/m);

  const paused = create(ScheduleSchema, { ...schedule, paused: true, nextFireTime: undefined });
  assert.match(scheduleDetails(paused, { now: NOW }), /^next fire:\s+- \(paused\)$/m);
  assert.equal(scheduleRow(paused, NOW)[4], "-");
  assert.equal(
    templateText(create(ScheduleSpecSchema, { name: "n", overlap: OverlapPolicy.ALLOW, template: { case: "run", value: { name: "nightly", stages: [{ name: "build" }, { name: "test" }] } } })),
    "run: nightly (2 stages: build, test)",
  );
});
