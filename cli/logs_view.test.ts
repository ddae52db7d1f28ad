// `drover logs`' pure parts: the TARGET syntax, --since/--until, and how
// lines are written (streams to their outputs, prefixes, cut lines, JSON).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { LogLineSchema, Stream, type LogLine } from "../gen/ts/drover/log/v1/log_service_pb.ts";
import { lineJson, parseStream, parseTarget, parseTime, sourceLabel, TextLineWriter } from "./logs_view.ts";

function line(text: string, init: Partial<Pick<LogLine, "attemptId" | "stream" | "partial" | "marker" | "stageName" | "replicaSlot" | "revision">> = {}): LogLine {
  return create(LogLineSchema, { attemptId: "a1", jobId: "j1", stream: Stream.STDOUT, data: new TextEncoder().encode(text), ...init });
}

/** A TextLineWriter whose outputs are strings, to compare. */
function writer() {
  const out = { stdout: "", stderr: "" };
  const decode = (b: Uint8Array | string) => (typeof b === "string" ? b : new TextDecoder().decode(b));
  const w = new TextLineWriter({ stdout: (b) => (out.stdout += decode(b)), stderr: (b) => (out.stderr += decode(b)) });
  return { w, out };
}

describe("the TARGET of drover logs", () => {
  test("a bare id is a job's (or an attempt's: logs.ts asks), --attempt an attempt's", () => {
    assert.deepEqual(parseTarget("6f1c", undefined), { kind: "job", jobId: "6f1c" });
    assert.deepEqual(parseTarget(undefined, "3b7d"), { kind: "attempt", attemptId: "3b7d" });
  });

  test("run:ID is every stage of a run; RUN/STAGE and run:RUN/STAGE one stage", () => {
    assert.deepEqual(parseTarget("run:9a0e", undefined), { kind: "run", runId: "9a0e" });
    assert.deepEqual(parseTarget("9a0e/build", undefined), { kind: "stage", runId: "9a0e", stageName: "build" });
    assert.deepEqual(parseTarget("run:9a0e/unit-tests.v2", undefined), { kind: "stage", runId: "9a0e", stageName: "unit-tests.v2" });
  });

  test("deployment/NAME is every replica of a deployment; deployment/NAME/REPLICA one, by slot or id", () => {
    assert.deepEqual(parseTarget("deployment/web", undefined), { kind: "deployment", deployment: "web", replica: "" });
    assert.deepEqual(parseTarget("deployment/web-2/0", undefined), { kind: "deployment", deployment: "web-2", replica: "0" });
    assert.deepEqual(parseTarget("deployment/api/6f1c-77", undefined), { kind: "deployment", deployment: "api", replica: "6f1c-77" });
  });

  test("a deployment name that Deploy would refuse, or an empty replica, is a usage error", () => {
    assert.throws(() => parseTarget("deployment/", undefined), /is not a deployment name/);
    assert.throws(() => parseTarget("deployment/Web", undefined), /"Web" is not a deployment name/);
    assert.throws(() => parseTarget("deployment/web-", undefined), /is not a deployment name/);
    assert.throws(() => parseTarget(`deployment/${"a".repeat(64)}`, undefined), /is not a deployment name/);
    assert.throws(() => parseTarget("deployment/web/", undefined), /the replica is missing/);
  });

  test("no target, both a target and --attempt, an empty run id or a bad stage name are usage errors", () => {
    assert.throws(() => parseTarget(undefined, undefined), /a TARGET is required/);
    assert.throws(() => parseTarget("6f1c", "3b7d"), /give no TARGET/);
    assert.throws(() => parseTarget("run:", undefined), /the run id is missing/);
    assert.throws(() => parseTarget("/build", undefined), /is not RUN_ID\/STAGE/);
    assert.throws(() => parseTarget("9a0e/a b", undefined), /is not RUN_ID\/STAGE/);
  });
});

describe("--since and --until", () => {
  const now = Date.parse("2026-12-04T12:00:00Z");

  test("a duration is that long before now", () => {
    assert.equal(parseTime("--since", "10m", now), now - 600_000);
    assert.equal(parseTime("--since", "1h30m", now), now - 5_400_000);
  });

  test("an RFC 3339 time is that time, in its zone", () => {
    assert.equal(parseTime("--since", "2026-12-04T10:00:00Z", now), Date.parse("2026-12-04T10:00:00Z"));
    assert.equal(parseTime("--until", "2026-12-04T11:00:00+01:00", now), Date.parse("2026-12-04T10:00:00Z"));
    assert.equal(parseTime("--until", "2026-12-04T10:00:00.250Z", now), Date.parse("2026-12-04T10:00:00.250Z"));
  });

  test("anything else names the flag and both forms", () => {
    assert.throws(() => parseTime("--since", "yesterday", now), /--since: "yesterday" is neither a duration ago \(10m, 2h\) nor an RFC 3339 time/);
    assert.throws(() => parseTime("--since", "2026-13-45T00:00:00Z", now), /--since: .* is neither/);
  });

  test("--stream takes stdout, stderr or system", () => {
    assert.equal(parseStream("stderr"), Stream.STDERR);
    assert.equal(parseStream(undefined), Stream.UNSPECIFIED);
    assert.throws(() => parseStream("out"), /--stream: "out" is not one of stdout, stderr, system/);
  });
});

describe("text output", () => {
  test("one source: the bytes as they are, stdout lines to stdout and stderr and system lines to stderr", () => {
    const { w, out } = writer();
    w.write(line("hello\n"), "");
    w.write(line("oops\n", { stream: Stream.STDERR }), "");
    w.write(line("exit 0\n", { stream: Stream.SYSTEM }), "");
    w.write(line("no newline at the end"), "");
    assert.equal(out.stdout, "hello\nno newline at the end");
    assert.equal(out.stderr, "oops\nexit 0\n");
  });

  test("several sources: each line starts with its source, and a line the Log service cut is not prefixed again", () => {
    const { w, out } = writer();
    w.write(line("building ", { partial: true, stageName: "build" }), "build");
    w.write(line("done\n", { stageName: "build" }), "build");
    w.write(line("ok 1\n", { attemptId: "a2", stageName: "test" }), "test");
    assert.equal(out.stdout, "[build] building done\n[test] ok 1\n");
  });

  test("another source's line ends an open line first, so no two sources share a line", () => {
    const { w, out } = writer();
    w.write(line("half", { partial: true }), "attempt 1");
    w.write(line("other\n", { attemptId: "a2" }), "attempt 2");
    w.finish();
    assert.equal(out.stdout, "[attempt 1] half\n[attempt 2] other\n");
  });

  test("finish ends output that stopped mid-line; a marker line goes to stderr in brackets", () => {
    const { w, out } = writer();
    w.write(line("partial"), "");
    w.finish();
    w.write(line("output past 1 GiB was not stored\n", { marker: "truncated" }), "");
    assert.equal(out.stdout, "partial\n");
    assert.equal(out.stderr, "[truncated] output past 1 GiB was not stored\n");
  });

  test("sources are named by stage for a run and by attempt number when there are several", () => {
    assert.equal(sourceLabel("attempt", { stageName: "" }, { number: 1, of: 1 }), "");
    assert.equal(sourceLabel("job", { stageName: "" }, { number: 1, of: 1 }), "");
    assert.equal(sourceLabel("job", { stageName: "" }, { number: 2, of: 2 }), "attempt 2");
    assert.equal(sourceLabel("stage", { stageName: "build" }, { number: 2, of: 3 }), "attempt 2");
    assert.equal(sourceLabel("run", { stageName: "build" }, { number: 1, of: 1 }), "build");
    assert.equal(sourceLabel("run", { stageName: "build" }, { number: 2, of: 2 }), "build attempt 2");
  });

  test("a deployment's lines are named by their replica's slot, and by revision once several were seen", () => {
    const r = { stageName: "", replicaSlot: "2", revision: 3 };
    assert.equal(sourceLabel("deployment", r, { number: 1, of: 1 }), "slot 2");
    assert.equal(sourceLabel("deployment", r, { number: 1, of: 1 }, 2), "slot 2 rev 3");
    const { w, out } = writer();
    w.write(line("up\n", { attemptId: "a1", replicaSlot: "0" }), sourceLabel("deployment", { stageName: "", replicaSlot: "0", revision: 1 }, { number: 1, of: 1 }));
    w.write(line("up\n", { attemptId: "a2", replicaSlot: "1" }), sourceLabel("deployment", { stageName: "", replicaSlot: "1", revision: 1 }, { number: 1, of: 1 }));
    assert.equal(out.stdout, "[slot 0] up\n[slot 1] up\n");
  });
});

test("-o json names a deployment line's replica", () => {
  const l = create(LogLineSchema, { attemptId: "a1", jobId: "j1", replicaId: "r-1", replicaSlot: "0", revision: 2, stream: Stream.STDOUT, data: new TextEncoder().encode("hi\n") });
  const json = lineJson(l, "slot 0");
  assert.equal(json.replicaId, "r-1");
  assert.equal(json.replicaSlot, "0");
  assert.equal(json.revision, 2);
  assert.equal(json.source, "slot 0");
  // Not on lines of other targets.
  assert.equal("replicaSlot" in lineJson(line("x\n"), ""), false);
});

test("-o json prints a line's fields with its bytes as text", () => {
  const l = create(LogLineSchema, {
    attemptId: "a1",
    jobId: "j1",
    stageName: "build",
    stream: Stream.STDERR,
    commandIndex: 1,
    offset: 42n,
    time: timestampFromMs(Date.parse("2026-12-04T10:00:00Z")),
    data: new TextEncoder().encode("héllo\n"),
  });
  assert.deepEqual(lineJson(l, "build"), {
    attemptId: "a1",
    jobId: "j1",
    stageName: "build",
    stream: "stderr",
    commandIndex: 1,
    offset: 42,
    time: "2026-12-04T10:00:00.000Z",
    text: "héllo\n",
    source: "build",
  });
});
