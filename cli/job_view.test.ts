// The pure parts of the jobs commands: the spec the options make, the state
// words, how jobs and placements print, and what a followed job exits with.

import assert from "node:assert/strict";
import { test } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { AuctionState, Candidate_Outcome, ExplainPlacementResponseSchema } from "../gen/ts/drover/bid/v1/bid_service_pb.ts";
import { CommandResultSchema } from "../gen/ts/drover/common/v1/exec_pb.ts";
import { AttemptSchema, AttemptState, JobSchema, JobSpecSchema, JobState, type Job } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { jobSpecFrom, type JobSpecOptions } from "./job_spec.ts";
import {
  attemptsTable,
  bytesText,
  durationText,
  explainText,
  jobDetails,
  jobExitStatus,
  jobRow,
  parseJobState,
  truncate,
  watchKey,
  watchLine,
} from "./job_view.ts";
import { parseDurationMs } from "./parse.ts";

const NOW = Date.parse("2030-01-01T12:00:00Z");
const ID = "6f1c0d3e-0000-4000-8000-000000000001";
const AGENT = "ag_aaaaaaaaaaaaaaaaaaaaaaaaaa"; // 29 characters, as Fleet makes them

/** A job as the server would send it; fields not given get a pending `sh -c 'exit 3'` made 90 s ago. */
function job(fields: MessageInitShape<typeof JobSchema> = {}): Job {
  const j = create(JobSchema, fields);
  j.id ||= ID;
  j.state ||= JobState.PENDING;
  j.spec ??= create(JobSpecSchema, { exec: { commands: [{ argv: ["sh", "-c", "exit 3"] }] } });
  j.createTime ??= timestampFromMs(NOW - 90_000);
  j.updateTime ??= timestampFromMs(NOW - 1000);
  return j;
}

const ended = (state: AttemptState, exitCode: number, signal = "") =>
  create(AttemptSchema, {
  number: 1,
  agentId: AGENT,
  state,
  exitCode,
  signal,
  startTime: timestampFromMs(NOW - 5000),
  endTime: timestampFromMs(NOW - 2500),
  reason: "the attempt ended",
  });

const defaults: JobSpecOptions = { label: [], env: [], secretEnv: [], priority: "0" };

test("the spec options make a JobSpec, and a bad value names its flag", () => {
  const spec = jobSpecFrom(["echo", "hi"], {
    ...defaults,
    name: "greet",
    label: ["zone=eu"],
    env: ["A=b"],
    cpu: "500m",
    mem: "64Mi",
    timeout: "1m30s",
    retries: "0",
  });
  assert.equal(spec.name, "greet");
  assert.deepEqual(spec.exec?.commands[0]?.argv, ["echo", "hi"]);
  assert.deepEqual(spec.exec?.env, { A: "b" });
  assert.deepEqual(spec.constraints?.labels, { zone: "eu" });
  assert.equal(spec.resources?.cpuMillis, 500);
  assert.equal(spec.resources?.memoryBytes, 64n * 2n ** 20n);
  assert.equal(spec.timeout?.seconds, 90n);
  assert.equal(spec.retry?.maxRetries, 0, "--retries 0 is a policy of no retries, not the default policy");
  assert.equal(jobSpecFrom(["true"], defaults).retry, undefined, "no --retries: the server's default policy");
  assert.throws(() => jobSpecFrom(["true"], { ...defaults, retries: "-1" }), /--retries: "-1" must be 0 or more/);
  assert.throws(() => jobSpecFrom(["true"], { ...defaults, timeout: "soon" }), /--timeout: "soon" is not a duration/);
});

test("the runner options set the image (and the docker driver), secrets, cwd, limits and grace", () => {
  const spec = jobSpecFrom(["make"], {
    ...defaults,
    env: ["A=b"],
    secretEnv: ["TOKEN=t0k"],
    image: "alpine:3.20",
    cwd: "src",
    memLimit: "256Mi",
    nice: "5",
    inheritEnv: true,
    stopGrace: "30s",
  });
  assert.equal(spec.driver, "docker");
  assert.deepEqual(spec.exec?.env, { A: "b", TOKEN: "t0k" });
  assert.deepEqual(spec.exec?.secretEnv, ["TOKEN"]);
  assert.equal(spec.exec?.image, "alpine:3.20");
  assert.equal(spec.exec?.commands[0]?.cwd, "src");
  assert.equal(spec.exec?.memoryLimitBytes, 256n * 2n ** 20n);
  assert.equal(spec.exec?.nice, 5);
  assert.equal(spec.exec?.inheritEnv, true);
  assert.equal(spec.exec?.stopGracePeriod?.seconds, 30n);
  assert.equal(jobSpecFrom(["true"], defaults).driver, "", "no image: the process driver");
  assert.throws(() => jobSpecFrom(["true"], { ...defaults, nice: "20" }), /--nice: "20" must be 0 to 19/);
  assert.throws(() => jobSpecFrom(["true"], { ...defaults, memLimit: "lots" }), /--mem-limit/);
});

test("the scheduling options set a concurrency key and limit, a retry policy, agents, disk and the shell; a bad value names its flag", () => {
  const spec = jobSpecFrom(["make && make test"], {
    ...defaults,
    concurrencyKey: "deploy-db",
    concurrencyLimit: "2",
    retryBackoff: "500ms",
    retryMaxBackoff: "1m",
    retryMultiplier: "3",
    nonRetryableExit: ["2,64", "78"],
    agent: ["ag_one", "ag_two"],
    avoidAgent: ["ag_bad"],
    disk: "10Gi",
    shell: true,
  });
  assert.equal(spec.concurrencyKey, "deploy-db");
  assert.equal(spec.concurrencyLimit, 2);
  assert.equal(spec.retry?.maxRetries, 4, "backoff flags alone keep the default count of retries");
  assert.equal(spec.retry?.initialBackoff?.nanos, 500_000_000);
  assert.equal(spec.retry?.maxBackoff?.seconds, 60n);
  assert.equal(spec.retry?.multiplier, 3);
  assert.deepEqual(spec.retry?.nonRetryableExitCodes, [2, 64, 78]);
  assert.deepEqual(spec.constraints?.agentIds, ["ag_one", "ag_two"]);
  assert.deepEqual(spec.constraints?.avoidAgentIds, ["ag_bad"]);
  assert.equal(spec.resources?.diskBytes, 10n * 2n ** 30n);
  assert.equal(spec.exec?.allowShell, true);
  assert.equal(jobSpecFrom(["true"], { ...defaults, retries: "1", nonRetryableExit: ["2"] }).retry?.maxRetries, 1);
  const plain = jobSpecFrom(["true"], { ...defaults, concurrencyKey: "k" });
  assert.equal(plain.concurrencyLimit, 0, "a key alone: the server's limit of 1");
  assert.equal(plain.retry, undefined);
  assert.equal(plain.exec?.allowShell, false);

  assert.throws(() => jobSpecFrom(["true"], { ...defaults, concurrencyLimit: "3" }), /--concurrency-limit: needs --concurrency-key/);
  assert.throws(() => jobSpecFrom(["true"], { ...defaults, concurrencyKey: "k", concurrencyLimit: "0" }), /--concurrency-limit: "0" must be 1 to 10000/);
  assert.throws(() => jobSpecFrom(["true"], { ...defaults, retryMultiplier: "11" }), /--retry-multiplier: "11" must be a number from 1 to 10/);
  assert.throws(() => jobSpecFrom(["true"], { ...defaults, retryMultiplier: "x" }), /--retry-multiplier/);
  assert.throws(() => jobSpecFrom(["true"], { ...defaults, nonRetryableExit: ["2,x"] }), /--non-retryable-exit: "x" is not a whole number/);
  assert.throws(() => jobSpecFrom(["true"], { ...defaults, retryBackoff: "soon" }), /--retry-backoff: "soon" is not a duration/);
  assert.throws(() => jobSpecFrom(["true"], { ...defaults, disk: "big" }), /--disk/);
});

test("a job's details show its concurrency key, retry policy, agents, disk and shell", () => {
  const spec = create(JobSpecSchema, {
    exec: { commands: [{ argv: ["make && make test"] }], allowShell: true },
    concurrencyKey: "deploy-db",
    retry: { maxRetries: 3, initialBackoff: { seconds: 2n }, nonRetryableExitCodes: [2, 64] },
    constraints: { agentIds: ["ag_one"], avoidAgentIds: ["ag_bad"] },
    resources: { diskBytes: 2n ** 30n },
  });
  const text = jobDetails(job({ state: JobState.PENDING, spec }), { now: NOW });
  assert.match(text, /^shell:\s+yes \(\/bin\/sh -c\)$/m);
  assert.match(text, /^agents:\s+ag_one$/m);
  assert.match(text, /^avoids agents:\s+ag_bad$/m);
  assert.match(text, /^resources:\s+cpu -, mem -, disk 1024Mi$/m);
  assert.match(text, /^retries:\s+3, backoff 2s ×2 up to 5m; exit 2, 64 final$/m);
  assert.match(text, /^concurrency:\s+key deploy-db, at most 1 at a time$/m);
  const none = jobDetails(job({ state: JobState.PENDING, spec: { exec: { commands: [{ argv: ["true"] }] }, retry: { maxRetries: 0 } } }), { now: NOW });
  assert.match(none, /^retries:\s+0$/m);
  assert.doesNotMatch(none, /^(shell|agents|concurrency):/m);
  const once = jobDetails(job({ state: JobState.SUCCEEDED, repeatIndex: 1, spec: { exec: { commands: [{ argv: ["true"] }] } } }), { now: NOW });
  assert.doesNotMatch(once, /^repeat:/m, "a job without a run mode is not a repeat");
});

test("durations in milliseconds parse like 500ms, 10s and 5m", () => {
  assert.equal(parseDurationMs("--grace", "500ms"), 500);
  assert.equal(parseDurationMs("--grace", "10s"), 10_000);
  assert.equal(parseDurationMs("--grace", "5m"), 300_000);
  assert.equal(parseDurationMs("--grace", "1.5s"), 1500);
  assert.throws(() => parseDurationMs("--grace", "10"), /--grace: "10" is not a duration/);
});

test("job states are lowercase words, and a bad one lists them all", () => {
  assert.equal(parseJobState("--state", "dead"), JobState.DEAD);
  assert.equal(parseJobState("--state", "TIMED-OUT"), JobState.TIMED_OUT);
  assert.throws(
    () => parseJobState("--state", "done"),
    (err: Error) =>
      err.message === '--state: "done" is not a job state; use one of pending, offered, assigned, running, succeeded, failed, cancelled, timed_out, dead',
  );
  assert.throws(() => parseJobState("--state", "unspecified"), /is not a job state/);
});

test("a followed job exits 0 on success, with its exit code on failure, 128+N for a signal, 124 for a timeout", () => {
  assert.equal(jobExitStatus(job({ state: JobState.RUNNING })), undefined, "not ended: no status yet");
  assert.equal(jobExitStatus(job({ state: JobState.SUCCEEDED, attempts: [ended(AttemptState.SUCCEEDED, 0)] })), 0);
  assert.equal(jobExitStatus(job({ state: JobState.FAILED, attempts: [ended(AttemptState.FAILED, 3)] })), 3);
  assert.equal(jobExitStatus(job({ state: JobState.DEAD, attempts: [ended(AttemptState.FAILED, 4)] })), 4);
  assert.equal(jobExitStatus(job({ state: JobState.DEAD, attempts: [ended(AttemptState.FAILED, -1, "SIGKILL")] })), 137);
  assert.equal(jobExitStatus(job({ state: JobState.TIMED_OUT, attempts: [ended(AttemptState.TIMED_OUT, -1, "SIGTERM")] })), 124);
  assert.equal(jobExitStatus(job({ state: JobState.DEAD, attempts: [ended(AttemptState.TIMED_OUT, -1, "SIGTERM")] })), 124);
  assert.equal(jobExitStatus(job({ state: JobState.CANCELLED, attempts: [ended(AttemptState.CANCELLED, -1, "SIGTERM")] })), 1);
  assert.equal(jobExitStatus(job({ state: JobState.FAILED, attempts: [ended(AttemptState.FAILED, -1)] })), 1, "could not start");
  assert.equal(jobExitStatus(job({ state: JobState.DEAD, attempts: [ended(AttemptState.FAILED, 300)] })), 1, "no exit status beyond 255");
});

test("a job's row shows its name, else its command, and cuts a long reason", () => {
  const reason = `no eligible agent: ${"x".repeat(80)}`;
  assert.deepEqual(jobRow(job({ waitReason: reason, attemptCount: 2 }), NOW), [ID, "pending", "sh -c 'exit 3'", "2", "1m ago", truncate(reason, 60)]);
  assert.equal(truncate(reason, 60).length, 60);
  assert.ok(truncate(reason, 60).endsWith("…"));
  assert.equal(jobRow(job({ spec: { name: "nightly", exec: { commands: [{ argv: ["true"] }] } } }), NOW)[2], "nightly");
});

test("a job's details end with its attempts: exit code or signal, start, duration, reason", () => {
  const text = jobDetails(
    job({
      state: JobState.PENDING,
      attemptCount: 1,
      waitReason: "attempt 1 failed with exit code 3; retry 1 of 4 in 2.0s",
      retryTime: timestampFromMs(NOW + 2000),
      attempts: [ended(AttemptState.FAILED, 3)],
    }),
    { now: NOW },
  );
  assert.match(text, /^state:\s+pending$/m);
  assert.match(text, /^waiting:\s+attempt 1 failed with exit code 3; retry 1 of 4 in 2.0s$/m);
  assert.match(text, /^retry at:\s+2030-01-01T12:00:02\.000Z \(in 2s\)$/m);
  assert.ok(text.endsWith(`\n\n#  AGENT                          STATE   EXIT  STARTED  DURATION  REASON\n1  ${AGENT}  failed  3     5s ago   2.5s      the attempt ended\n`), text);
  const signalled = attemptsTable([ended(AttemptState.FAILED, -1, "SIGKILL")], undefined, NOW);
  assert.match(signalled, / failed  SIGKILL /);
  const running = attemptsTable([create(AttemptSchema, { ...ended(AttemptState.RUNNING, 0), endTime: undefined, reason: "" })], undefined, NOW);
  assert.match(running, /^1 {2}\S+ {2}running {2}- {5}5s ago {3}5s$/m);
});

test("a job's details show, under its attempts, how each command of an attempt ended", () => {
  const spec = { exec: { commands: [{ argv: ["make"] }, { argv: ["make", "test"] }, { argv: ["./deploy.sh"] }] } };
  const first = create(AttemptSchema, {
    ...ended(AttemptState.FAILED, 2),
    commands: [
      create(CommandResultSchema, { index: 0, exitCode: 0, duration: { seconds: 75n }, peakRssBytes: 150n << 20n }),
      create(CommandResultSchema, { index: 1, exitCode: 2, duration: { nanos: 850_000_000 }, peakRssBytes: 3n << 30n, message: "exited with code 2" }),
    ],
  });
  const second = create(AttemptSchema, {
    ...ended(AttemptState.FAILED, -1, "SIGKILL"),
    number: 2,
    commands: [create(CommandResultSchema, { index: 2, exitCode: -1, signal: "SIGKILL", duration: { seconds: 3n }, message: "killed: out of memory" })],
  });
  const unrun = create(AttemptSchema, { ...ended(AttemptState.CANCELLED, -1), number: 3 });
  const text = jobDetails(job({ state: JobState.FAILED, spec, attemptCount: 3, attempts: [first, second, unrun] }), { now: NOW });
  const tail = text.slice(text.indexOf("\nCommands of attempt"));
  assert.equal(
    tail,
    [
      "",
      "Commands of attempt 1:",
      "#  PROGRAM  EXIT  DURATION  PEAK RSS  MESSAGE",
      "0  make     0     1m15s     150Mi",
      "1  make     2     850ms     3.0Gi     exited with code 2",
      "",
      "Commands of attempt 2:",
      "#  PROGRAM      EXIT     DURATION  PEAK RSS  MESSAGE",
      "2  ./deploy.sh  SIGKILL  3s        -         killed: out of memory",
      "",
    ].join("\n"),
  );
  assert.doesNotMatch(text, /Commands of attempt 3/, "an attempt without results shows none");
  assert.deepEqual([0n, 512n, 5n << 20n, 1536n << 20n].map(bytesText), ["-", "512B", "5.0Mi", "1.5Gi"]);
});

test("durations read short", () => {
  assert.deepEqual([850, 1000, 2500, 42_000, 75_000, 3_600_000, 7_500_000, 90_000_000].map(durationText), ["850ms", "1s", "2.5s", "42s", "1m15s", "1h", "2h5m", "1d1h"]);
});

test("a watch line shows the live attempt, and an earlier one only through the wait reason", () => {
  const running = job({ state: JobState.RUNNING, attempts: [create(AttemptSchema, { ...ended(AttemptState.RUNNING, 0), endTime: undefined })] });
  assert.match(watchLine(running, NOW), new RegExp(`^\\d\\d:\\d\\d:\\d\\d  running    1        ${AGENT}$`));
  const retrying = job({ state: JobState.OFFERED, attempts: [ended(AttemptState.FAILED, 3)] });
  assert.match(watchLine(retrying, NOW), /^\d\d:\d\d:\d\d {2}offered {4}- {8}-$/);
  const failed = job({ state: JobState.FAILED, endReason: "the attempt failed with exit code 3", attempts: [ended(AttemptState.FAILED, 3)] });
  assert.match(watchLine(failed, NOW), new RegExp(`  failed     1        ${AGENT}  the attempt failed with exit code 3$`));
  assert.equal(watchKey(running), watchKey(create(JobSchema, { ...running, updateTime: timestampFromMs(NOW) })), "a new update time alone is not a new line");
  assert.notEqual(watchKey(running), watchKey(failed));
});

test("explain prints the summary, each auction's candidates, and ineligible agents grouped by reason", () => {
  const res = create(ExplainPlacementResponseSchema, {
    explanation: "Latest, attempt 1 at 2030-01-01T11:59:00.000Z: placed on agent a1 (score 0.80): the best bid.",
    auctions: [
      {
        id: "auc-1",
        state: AuctionState.CLOSED,
        winnerAgentId: "a1",
        createTime: timestampFromMs(NOW - 60_000),
        eligibleCount: 3,
        candidates: [
          { agentId: "a1", outcome: Candidate_Outcome.WON, score: 0.8, reason: "the best bid" },
          { agentId: "a2", outcome: Candidate_Outcome.DECLINED, reason: "busy" },
        ],
        ineligible: [{ reason: "lacks label zone=eu", count: 4, exampleAgentIds: ["a3", "a4"] }],
      },
    ],
  });
  assert.equal(
    explainText(job({ state: JobState.RUNNING }), res, undefined, NOW),
    [
      `job:   ${ID}`,
      "state: running",
      "",
      "Latest, attempt 1 at 2030-01-01T11:59:00.000Z: placed on agent a1 (score 0.80): the best bid.",
      "",
      "Auction auc-1 (closed, 1m ago)",
      "  winner:          a1",
      "  eligible agents: 3",
      "",
      "  CANDIDATE  OUTCOME   SCORE  REASON",
      "  a1         won       0.800  the best bid",
      "  a2         declined  -      busy",
      "",
      "  INELIGIBLE BECAUSE   AGENTS  FOR EXAMPLE",
      "  lacks label zone=eu  4       a3,a4",
      "",
    ].join("\n"),
  );
});
