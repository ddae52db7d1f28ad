// The process driver's stop on real child processes: a signal sent as soon
// as a command has started must reach the command, not only its shim.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { create } from "@bufbuild/protobuf";

import { ExecSpecSchema } from "../gen/ts/drover/common/v1/exec_pb.ts";
import { createLogger } from "../lib/logger.ts";
import { ProcessRunner } from "./process_runner.ts";
import type { CommandTask } from "./runner.ts";

let dir: string;
let tasks = 0;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "drover-process-runner-test-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function task(argv: string[], nice = 0): CommandTask {
  tasks += 1;
  const exec = create(ExecSpecSchema, { commands: [{ argv }], nice });
  return {
    attemptId: `attempt-${tasks}`,
    jobId: "job-1",
    index: tasks,
    command: exec.commands[0]!,
    exec,
    cwd: dir,
    workDir: dir,
    bundleDir: dir,
    stdoutPath: join(dir, `cmd-${tasks}.stdout.log`),
    stderrPath: join(dir, `cmd-${tasks}.stderr.log`),
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    shell: false,
    logger: createLogger("silent"),
  };
}

/** Busy-waits ms: a timer's granularity is a millisecond, and the window is about that long. */
function spin(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

describe("ProcessRunner.stop", () => {
  // Each stop comes 0-5 ms after start() returns, when the shim has just
  // forked, or not yet, the process that becomes the command: the window in
  // which a TERM to the group used to be caught by the shim's trap (or by its
  // copy in the forked child, which dash then dropped) and never reached the
  // command. A miss shows as a SIGKILL at the end of the grace period.
  const GRACE_MS = 4_000;
  const ROUNDS = 40;

  for (const [name, nice] of [["a command", 0], ["a command under nice", 5]] as const) {
    it(`ends ${name} with SIGTERM when stopped right after its start (${ROUNDS} times)`, async () => {
      const runner = new ProcessRunner();
      const signals: string[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        const handle = await runner.start(task(["sleep", "30"], nice));
        const started = Date.now();
        spin((i % 20) * 0.25); // 0-5 ms: before the shim's trap, between its fork and the exec, after
        await runner.stop(handle, GRACE_MS);
        const end = await runner.wait(handle);
        signals.push(end.signal);
        assert.ok(Date.now() - started < GRACE_MS, `round ${i}: the command outlived its SIGTERM (ended by ${end.signal || `exit ${end.exitCode}`})`);
      }
      assert.deepEqual(new Set(signals), new Set(["SIGTERM"]));
    });
  }

  it("does not wait out its bound for a command that ends before its exec is seen", async () => {
    const runner = new ProcessRunner();
    const handle = await runner.start(task(["true"]));
    const started = Date.now();
    await runner.stop(handle, GRACE_MS);
    const end = await runner.wait(handle);
    // The wait for the exec ends with the shim (its bound is 1 s).
    assert.ok(Date.now() - started < 800, `stop and wait took ${Date.now() - started} ms`);
    assert.ok(end.exitCode === 0 || end.signal === "SIGTERM", `ended ${end.signal || `with ${end.exitCode}`}`);
  });
});
