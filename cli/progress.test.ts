// Progress lines of long CLI waits (progress.ts): what a job waiting for
// placement and a long read of stored output say, that the line is written
// only where it may be, and that a followed job's progress never ends up
// inside the lines printed around it.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { AttemptState, JobSchema, JobState, type Job } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import type { CommandContext } from "./context.ts";
import { followJob } from "./follow.ts";
import { LogLineSchema, Stream } from "../gen/ts/drover/log/v1/log_service_pb.ts";
import { TextLineWriter } from "./logs_view.ts";
import { addPage, elapsedText, fitLine, placementLine, progressEnabled, ProgressLine, readLine, waitingSinceMs, type ProgressStream } from "./progress.ts";

const T0 = Date.parse("2026-12-04T10:00:00Z");

function job(init: MessageInitShape<typeof JobSchema>): Job {
  return create(JobSchema, { id: "6f1c0000-0000-4000-8000-000000000001", createTime: timestampFromMs(T0), ...init });
}

/** A terminal (or not) that records what is written to it. */
function fakeStream(isTTY: boolean, columns = 80): ProgressStream & { written: string[] } {
  const written: string[] = [];
  return { isTTY, columns, written, write: (text: string) => written.push(text) };
}

describe("when progress is shown", () => {
  test("only for text output on a terminal", () => {
    assert.equal(progressEnabled("table", { isTTY: true }), true);
    assert.equal(progressEnabled("table", { isTTY: false }), false);
    assert.equal(progressEnabled("table", {}), false);
    assert.equal(progressEnabled("json", { isTTY: true }), false);
    assert.equal(progressEnabled("yaml", { isTTY: true }), false);
  });
});

describe("the line's text", () => {
  test("fits one row of the terminal, cut with an ellipsis", () => {
    assert.equal(fitLine("short", 80), "short");
    assert.equal(fitLine("a  b\nc", 80), "a b c");
    const cut = fitLine("x".repeat(100), 40);
    assert.equal(cut.length, 39);
    assert.ok(cut.endsWith("…"));
  });

  test("counts whole seconds, from one", () => {
    assert.equal(elapsedText(0), "1s");
    assert.equal(elapsedText(12_400), "12s");
    assert.equal(elapsedText(125_000), "2m5s");
  });
});

describe("a job waiting for placement", () => {
  test("says how long it has waited since it was accepted, and the Scheduler's reason", () => {
    const pending = job({ state: JobState.PENDING, waitReason: "no eligible agent: 1 agent lacks label site=garage" });
    assert.equal(placementLine(pending, T0 + 12_000), "waiting for placement for 12s: no eligible agent: 1 agent lacks label site=garage");
  });

  test("while offered without a reason, says bids are being collected", () => {
    assert.equal(placementLine(job({ state: JobState.OFFERED }), T0 + 1_500), "offered to agents for 1s: collecting bids");
  });

  test("waiting again after an attempt, counts from that attempt's end", () => {
    const retrying = job({
      state: JobState.PENDING,
      waitReason: "waiting for retry 2 of 4",
      attempts: [{ number: 1, state: AttemptState.FAILED, endTime: timestampFromMs(T0 + 60_000) }],
    });
    assert.equal(waitingSinceMs(retrying), T0 + 60_000);
    assert.equal(placementLine(retrying, T0 + 65_000), "waiting for placement for 5s: waiting for retry 2 of 4");
  });

  test("with no times at all, counts from when the watch began", () => {
    const bare = create(JobSchema, { state: JobState.PENDING });
    assert.equal(placementLine(bare, T0 + 3_000, T0), "waiting for placement for 3s");
  });

  test("says nothing once the job is placed or has ended", () => {
    for (const state of [JobState.ASSIGNED, JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.DEAD]) {
      assert.equal(placementLine(job({ state }), T0 + 1_000), undefined, JobState[state]);
    }
  });
});

describe("reading stored output", () => {
  test("tallies pages, bytes and lines", () => {
    let p = { pages: 0, bytes: 0, lines: 0 };
    p = addPage(p, [{ data: new Uint8Array(1024) }, { data: new Uint8Array(1024) }]);
    p = addPage(p, [{ data: new Uint8Array(2 * 1024 * 1024) }]);
    assert.deepEqual(p, { pages: 2, bytes: 2 * 1024 * 1024 + 2048, lines: 3 });
    assert.equal(readLine(p, 4_200), "reading stored output: 2 pages, 2.0Mi, 3 lines (4s)");
  });

  test("says one page and one line in the singular, and 0B for empty pages", () => {
    assert.equal(readLine(addPage({ pages: 0, bytes: 0, lines: 0 }, []), 10), "reading stored output: 1 page, 0B, 0 lines (1s)");
    assert.equal(readLine({ pages: 1, bytes: 3, lines: 1 }, 10), "reading stored output: 1 page, 3B, 1 line (1s)");
  });
});

describe("a read's progress line and the log's own stderr lines", () => {
  test("the writer says when a stderr line is still open, so the progress line waits", () => {
    const text = new TextLineWriter({ stdout: () => {}, stderr: () => {} });
    const line = (data: string, partial = false) => create(LogLineSchema, { attemptId: "a1", stream: Stream.STDERR, data: new TextEncoder().encode(data), partial });
    assert.equal(text.isOpen("stderr"), false);
    text.write(line("the start of a long line", true), "");
    assert.equal(text.isOpen("stderr"), true);
    assert.equal(text.isOpen("stdout"), false);
    text.write(line(" and its end\n"), "");
    assert.equal(text.isOpen("stderr"), false);
  });
});

describe("ProgressLine", () => {
  test("rewrites one line in place and clears it once", () => {
    const tty = fakeStream(true, 30);
    const line = new ProgressLine(tty, true);
    line.clear(); // nothing shown yet: nothing to clear
    line.show("waiting for placement for 1s");
    line.show("waiting for placement for 2s: no eligible agent");
    line.clear();
    line.clear();
    assert.deepEqual(tty.written, ["\r\x1b[Kwaiting for placement for 1s", "\r\x1b[Kwaiting for placement for 2s…", "\r\x1b[K"]);
  });

  test("writes nothing when disabled", () => {
    const pipe = fakeStream(false);
    const line = new ProgressLine(pipe, false);
    line.show("anything");
    line.clear();
    assert.deepEqual(pipe.written, []);
  });
});

describe("following a job that waits for placement", () => {
  /** A context whose Scheduler streams `jobs` from WatchJob. */
  function contextWatching(jobs: Job[], format: CommandContext["format"] = "table"): CommandContext {
    const scheduler = {
      async *watchJob() {
        for (const j of jobs) yield { job: j };
      },
    };
    return { clients: { scheduler } as unknown as CommandContext["clients"], format, bold: (s) => s };
  }

  const pending = job({ state: JobState.PENDING, waitReason: "no eligible agent: none online", updateTime: timestampFromMs(T0) });
  const running = job({
    state: JobState.RUNNING,
    updateTime: timestampFromMs(T0 + 5_000),
    attempts: [{ number: 1, state: AttemptState.RUNNING, agentId: "ag_1" }],
  });
  const succeeded = job({
    state: JobState.SUCCEEDED,
    updateTime: timestampFromMs(T0 + 6_000),
    endReason: "attempt 1 succeeded",
    attempts: [{ number: 1, state: AttemptState.SUCCEEDED, agentId: "ag_1", exitCode: 0 }],
  });

  test("shows the wait on the terminal's line and clears it before every line printed", async () => {
    // stdout and stderr on one terminal: one transcript of both, in order.
    const transcript: string[] = [];
    const stderr: ProgressStream = { isTTY: true, columns: 120, write: (t: string) => transcript.push(`err:${t}`) };
    const progress = new ProgressLine(stderr, true);
    const ended = await followJob(contextWatching([pending, running, succeeded]), pending.id, (t) => transcript.push(`out:${t}`), { progress });

    assert.equal(ended.state, JobState.SUCCEEDED);
    const shown = transcript.findIndex((t) => t.startsWith("err:\r\x1b[Kwaiting for placement for ") && t.endsWith(": no eligible agent: none online"));
    assert.ok(shown > 0, `the wait was shown after the first lines:\n${transcript.join("\n")}`);
    // Every stdout line comes with the progress line cleared (not shown, or cleared since).
    let visible = false;
    for (const t of transcript) {
      if (t.startsWith("err:\r\x1b[K")) visible = t !== "err:\r\x1b[K";
      else assert.equal(visible, false, `printed over the progress line: ${JSON.stringify(t)}`);
    }
    assert.equal(visible, false, "the line is cleared at the end");
  });

  test("writes no progress at all with -o json", async () => {
    const stderr = fakeStream(true);
    const progress = new ProgressLine(stderr, progressEnabled("json", stderr));
    const out: string[] = [];
    await followJob(contextWatching([pending, succeeded], "json"), pending.id, (t) => out.push(t), { progress });
    assert.deepEqual(stderr.written, []);
    assert.equal(out.length, 2);
    assert.ok(out.every((l) => JSON.parse(l).id === pending.id));
  });
});
