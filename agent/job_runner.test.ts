// The runner with real child processes: echo, false, sleep, sh.

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, stat, symlink } from "node:fs/promises";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";

import { ExecSpecSchema } from "../gen/ts/drover/common/v1/exec_pb.ts";
import { AttemptState } from "../gen/ts/drover/fleet/v1/agent_stream_pb.ts";
import { createLogger } from "../lib/logger.ts";
import type { Manifest } from "./bundle.ts";
import { ProcessRunner } from "./process_runner.ts";
import { JobRunner, workingDirectoryProblem, type AttemptUpdate, type JobRunnerOptions } from "./job_runner.ts";

let stateDir: string;
let attempts = 0;
/** One for the file, as in the agent. */
const processRunner = new ProcessRunner();

before(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "drover-runner-test-"));
});
after(async () => {
  await rm(stateDir, { recursive: true, force: true });
});

interface Run {
  runner: JobRunner;
  updates: AttemptUpdate[];
  /** The states reported, by name. */
  states: () => string[];
  done: Promise<AttemptUpdate>;
}

/** Starts a runner for spec in the shared state directory, with a fresh attempt id. */
function start(spec: MessageInitShape<typeof ExecSpecSchema>, options: Partial<JobRunnerOptions> = {}): Run {
  attempts += 1;
  const updates: AttemptUpdate[] = [];
  const runner = new JobRunner({
    attemptId: `attempt-${attempts}`,
    jobId: "job-1",
    exec: create(ExecSpecSchema, spec),
    stateDir,
    driver: "process",
    runner: options.runner ?? processRunner,
    allowShell: false,
    timeoutGraceMs: 2_000,
    onUpdate: (u) => updates.push(u),
    logger: createLogger("silent"),
    ...options,
  });
  return { runner, updates, states: () => updates.map((u) => AttemptState[u.state]), done: runner.run() };
}

/** Waits until the attempt reports RUNNING. */
async function running(run: Run): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!run.updates.some((u) => u.state === AttemptState.RUNNING)) {
    if (Date.now() > deadline) throw new Error(`never RUNNING: ${run.states().join(", ")}`);
    await sleep(5);
  }
}

/** True while pid is a live process (a zombie awaiting its reaper counts as dead). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

describe("JobRunner", () => {
  it("runs echo, writes its output to cmd-000.stdout.log, and reports STARTING, RUNNING, SUCCEEDED with exit code 0", async () => {
    const run = start({ commands: [{ argv: ["echo", "hi"] }] });
    const end = await run.done;
    assert.deepEqual(run.states(), ["STARTING", "RUNNING", "SUCCEEDED"]);
    assert.equal(end.exitCode, 0);
    assert.equal(end.signal, "");
    assert.equal(await readFile(join(run.runner.directory, "cmd-000.stdout.log"), "utf8"), "hi\n");
    assert.equal(run.runner.directory, join(stateDir, "runs", "job-1", "job-1", `attempt-${attempts}`));
  });

  it("runs commands in order and stops at the first failure, naming the command", async () => {
    const run = start({ commands: [{ argv: ["echo", "one"] }, { argv: ["false"] }, { argv: ["echo", "three"] }] });
    const end = await run.done;
    assert.equal(AttemptState[end.state], "FAILED");
    assert.equal(end.exitCode, 1);
    assert.equal(end.message, "command 2 (false) exited with code 1");
    assert.ok(existsSync(join(run.runner.directory, "cmd-001.stdout.log")));
    assert.ok(!existsSync(join(run.runner.directory, "cmd-002.stdout.log")), "the third command never ran");
  });

  it("keeps going after a failure with continue_on_failure, and still fails the attempt", async () => {
    const run = start({ continueOnFailure: true, commands: [{ argv: ["false"] }, { argv: ["echo", "after"] }] });
    const end = await run.done;
    assert.equal(AttemptState[end.state], "FAILED");
    assert.equal(end.message, "command 1 (false) exited with code 1");
    assert.equal(end.exitCode, 0, "the exit code is the last command's");
    assert.equal(await readFile(join(run.runner.directory, "cmd-001.stdout.log"), "utf8"), "after\n");
  });

  it("fails saying the program is not on PATH when it does not exist, without ever RUNNING", async () => {
    const run = start({ commands: [{ argv: ["drover-no-such-program"] }] });
    const end = await run.done;
    assert.deepEqual(run.states(), ["STARTING", "FAILED"]);
    assert.match(end.message, /^command 1 \(drover-no-such-program\) could not start: drover-no-such-program was not found on PATH \(/);
  });

  it("gives commands the spec's and the command's env with the agent's PATH and HOME, and nothing else of the agent's", async () => {
    process.env.DROVER_RUNNER_TEST_SECRET = "leak";
    try {
      const run = start({ env: { A: "spec", B: "spec" }, commands: [{ argv: ["env"], env: { B: "command" } }] });
      await run.done;
      const lines = (await readFile(join(run.runner.directory, "cmd-000.stdout.log"), "utf8")).trim().split("\n").sort();
      assert.deepEqual(lines, [`A=spec`, `B=command`, `HOME=${process.env.HOME}`, `PATH=${process.env.PATH}`].sort());
    } finally {
      delete process.env.DROVER_RUNNER_TEST_SECRET;
    }
  });

  it("runs in the attempt's work directory, or a relative cwd under it", async () => {
    const run = start({ commands: [{ argv: ["pwd"] }, { argv: ["pwd"], cwd: "sub/dir" }] });
    await run.done;
    const work = join(run.runner.directory, "work");
    assert.equal((await readFile(join(run.runner.directory, "cmd-000.stdout.log"), "utf8")).trim(), work);
    assert.equal((await readFile(join(run.runner.directory, "cmd-001.stdout.log"), "utf8")).trim(), join(work, "sub/dir"));
  });

  it("refuses a cwd that climbs out with .. or is absolute, before running anything", async () => {
    for (const cwd of ["../..", "a/../../b", "/etc"]) {
      const run = start({ commands: [{ argv: ["echo", "no"] }, { argv: ["pwd"], cwd }] });
      const end = await run.done;
      assert.deepEqual(run.states(), ["STARTING", "FAILED"], cwd);
      assert.match(end.message, /^command 2: the working directory .* (leaves the attempt's work directory|is absolute)/);
    }
    assert.equal(workingDirectoryProblem("a/../b"), undefined, "a .. that stays inside is fine");
  });

  it("refuses allow_shell unless the agent allows shells, and runs through /bin/sh when it does", async () => {
    const refused = start({ allowShell: true, commands: [{ argv: ["echo $((1 + 2))"] }] });
    assert.match((await refused.done).message, /does not allow shells \(DROVER_ALLOW_SHELL/);
    assert.deepEqual(refused.states(), ["STARTING", "FAILED"]);

    const allowed = start({ allowShell: true, commands: [{ argv: ["echo $((1 + 2))"] }] }, { allowShell: true });
    assert.equal(AttemptState[(await allowed.done).state], "SUCCEEDED");
    assert.equal(await readFile(join(allowed.runner.directory, "cmd-000.stdout.log"), "utf8"), "3\n");
  });

  it("refuses an attempt id that could not name a directory", async () => {
    const run = start({ commands: [{ argv: ["true"] }] }, { attemptId: "../escape" });
    assert.match((await run.done).message, /attempt id "..\/escape" cannot name a directory/);
  });

  it("cancels with SIGTERM: a sleep ends CANCELLED at once", async () => {
    const run = start({ commands: [{ argv: ["sleep", "30"] }, { argv: ["echo", "never"] }] });
    await running(run);
    const started = Date.now();
    run.runner.cancel(5_000, "the user cancelled the job");
    const end = await run.done;
    assert.ok(Date.now() - started < 1_000, "SIGTERM was enough");
    assert.equal(AttemptState[end.state], "CANCELLED");
    assert.equal(end.signal, "SIGTERM");
    assert.equal(end.message, "the user cancelled the job");
    assert.ok(!existsSync(join(run.runner.directory, "cmd-001.stdout.log")), "no command runs after a cancel");
  });

  it("escalates to SIGKILL after the grace period when the command ignores SIGTERM", async () => {
    const run = start({ commands: [{ argv: ["sh", "-c", 'trap "" TERM; echo ready; sleep 30'] }] });
    await waitForFile(join(run.runner.directory, "cmd-000.stdout.log"), "ready");
    const started = Date.now();
    run.runner.cancel(300);
    const end = await run.done;
    const took = Date.now() - started;
    assert.ok(took >= 280 && took < 2_000, `ended ${took} ms after the cancel, grace 300 ms`);
    assert.equal(AttemptState[end.state], "CANCELLED");
    assert.equal(end.signal, "SIGKILL");
  });

  it("kills the command's whole process group, grandchildren included", async () => {
    const pidFile = "grandchild.pid";
    const run = start({ commands: [{ argv: ["sh", "-c", `sleep 30 & echo $! > ${pidFile}; wait`] }] });
    const pid = Number(await waitForFile(join(run.runner.directory, "work", pidFile), /^\d+\n$/));
    assert.ok(alive(pid), "the grandchild runs");
    run.runner.cancel(2_000);
    await run.done;
    await eventually(() => !alive(pid), `grandchild ${pid} still alive after the cancel`);
  });

  it("kills what a command left running in its group once the command itself has exited", async () => {
    const run = start({ commands: [{ argv: ["sh", "-c", "sleep 30 & echo $! > left.pid"] }] });
    assert.equal(AttemptState[(await run.done).state], "SUCCEEDED");
    const pid = Number(await readFile(join(run.runner.directory, "work", "left.pid"), "utf8"));
    await eventually(() => !alive(pid), `background process ${pid} outlived its command`);
  });

  it("stops a command at its own timeout and ends TIMED_OUT, its stderr the command's alone", async () => {
    const run = start({ commands: [{ argv: ["sh", "-c", "echo before >&2; exec sleep 30"], timeout: durationFromMs(500) }] });
    const started = Date.now();
    const end = await run.done;
    assert.ok(Date.now() - started < 2_500);
    assert.equal(AttemptState[end.state], "TIMED_OUT");
    assert.equal(end.message, "command 1 (sh) timed out after 0.5 s");
    assert.equal(end.signal, "SIGTERM");
    // Not the shim's "Terminated" (dash reports a child killed by SIGTERM on its stderr).
    assert.equal(await readFile(join(run.runner.directory, "cmd-000.stderr.log"), "utf8"), "before\n");
  });

  it("stops the attempt at the attempt's timeout, between or during commands, and ends TIMED_OUT", async () => {
    const run = start({ commands: [{ argv: ["sleep", "0.05"] }, { argv: ["sleep", "30"] }, { argv: ["echo", "never"] }] }, { timeoutMs: 300 });
    const end = await run.done;
    assert.equal(AttemptState[end.state], "TIMED_OUT");
    assert.equal(end.message, "the attempt timed out after 0.3 s");
    assert.ok(!existsSync(join(run.runner.directory, "cmd-002.stdout.log")));
  });

  it("ignores a cancel after the attempt has ended", async () => {
    const run = start({ commands: [{ argv: ["true"] }] });
    await run.done;
    run.runner.cancel(0);
    assert.deepEqual(run.states(), ["STARTING", "RUNNING", "SUCCEEDED"]);
  });
});

describe("JobRunner: limits, safety and the bundle", () => {
  it("fully stops a process tree whose every member ignores SIGTERM once the grace period is over", async () => {
    const script = 'trap "" TERM; (trap "" TERM; sleep 30) & echo $! > child.pid; (trap "" TERM; sleep 30) & echo $! >> child.pid; echo ready; sleep 30';
    const run = start({ commands: [{ argv: ["sh", "-c", script] }] });
    await waitForFile(join(run.runner.directory, "cmd-000.stdout.log"), "ready");
    const pids = (await readFile(join(run.runner.directory, "work", "child.pid"), "utf8")).trim().split("\n").map(Number);
    assert.equal(pids.length, 2);
    run.runner.cancel(400);
    await sleep(200);
    assert.ok(pids.every(alive), "SIGTERM alone stops none of them");
    const end = await run.done;
    assert.equal(end.signal, "SIGKILL");
    await eventually(() => !pids.some(alive), `children ${pids.join(", ")} outlived the grace period`);
  });

  it("caps memory with memory_limit_bytes (RLIMIT_AS): an allocation beyond it fails, the same one without a cap succeeds", async () => {
    const alloc = ["python3", "-c", "x = bytearray(300 * 1024 * 1024); print('allocated')"];
    const capped = start({ memoryLimitBytes: 200n * 1024n * 1024n, commands: [{ argv: alloc }] });
    const end = await capped.done;
    assert.equal(AttemptState[end.state], "FAILED");
    assert.match(await readFile(join(capped.runner.directory, "cmd-000.stderr.log"), "utf8"), /MemoryError/);
    const free = start({ commands: [{ argv: alloc }] });
    assert.equal(AttemptState[(await free.done).state], "SUCCEEDED");
  });

  it("runs commands at the spec's niceness", async () => {
    const run = start({ nice: 7, commands: [{ argv: ["nice"] }] });
    await run.done;
    assert.equal((await readFile(join(run.runner.directory, "cmd-000.stdout.log"), "utf8")).trim(), "7");
  });

  it("records exit code, duration and a sampled peak RSS per command, and reports each command's end with increasing sequence numbers", async () => {
    const run = start({ commands: [{ argv: ["python3", "-c", "import time; x = bytearray(64 * 1024 * 1024); time.sleep(1.3)"] }, { argv: ["true"] }] });
    const end = await run.done;
    assert.equal(AttemptState[end.state], "SUCCEEDED");
    const commandEvent = run.updates.find((u) => u.command?.index === 0);
    assert.ok(commandEvent && commandEvent.state === AttemptState.RUNNING, "the first command's end is an update of its own");
    assert.ok((commandEvent.command?.peakRssBytes ?? 0) >= 64 * 1024 * 1024, `peak RSS ${commandEvent.command?.peakRssBytes}`);
    assert.ok((commandEvent.command?.durationMs ?? 0) >= 1_200);
    assert.equal(end.command?.index, 1);
    assert.deepEqual(run.updates.map((u) => u.sequence), run.updates.map((_, i) => i + 1));
  });

  it("writes a closed manifest with redacted secrets and the hashes of the log files, and makes the bundle read-only", async () => {
    const run = start({ env: { TOKEN: "s3cr3t-value", PLAIN: "visible" }, secretEnv: ["TOKEN"], commands: [{ argv: ["echo", "token=s3cr3t-value"] }] });
    await run.done;
    const manifest = JSON.parse(await readFile(join(run.runner.directory, "manifest.json"), "utf8")) as Manifest;
    assert.equal(manifest.closed, true);
    assert.equal(manifest.state, "SUCCEEDED");
    const text = JSON.stringify(manifest);
    assert.ok(!text.includes("s3cr3t-value"), "no secret value in the manifest");
    assert.deepEqual((manifest.spec as { env: Record<string, string> }).env, { TOKEN: "[REDACTED]", PLAIN: "visible" });
    assert.deepEqual(manifest.commands[0]?.argv, ["echo", "token=[REDACTED]"]);
    const out = manifest.logs?.["cmd-000.stdout.log"];
    assert.equal(out?.bytes, "token=s3cr3t-value\n".length);
    assert.equal(out?.sha256, createHash("sha256").update("token=s3cr3t-value\n").digest("hex"));
    assert.equal((await stat(join(run.runner.directory, "cmd-000.stdout.log"))).mode & 0o777, 0o444);
    assert.ok(!existsSync(join(run.runner.directory, "assignment.pb")), "the assignment (with its secrets) is gone once the attempt ended");
  });

  it("gives commands the agent's whole environment only with inherit_env", async () => {
    process.env.DROVER_RUNNER_TEST_INHERITED = "yes";
    try {
      const run = start({ inheritEnv: true, commands: [{ argv: ["env"] }] });
      await run.done;
      assert.match(await readFile(join(run.runner.directory, "cmd-000.stdout.log"), "utf8"), /^DROVER_RUNNER_TEST_INHERITED=yes$/m);
    } finally {
      delete process.env.DROVER_RUNNER_TEST_INHERITED;
    }
  });

  it("allows an absolute cwd under DROVER_ALLOWED_ROOTS, and refuses one outside or a symlink that leads out", async () => {
    const root = await mkdtemp(join(tmpdir(), "drover-allowed-root-"));
    try {
      await mkdir(join(root, "builds"));
      await symlink("/etc", join(root, "escape"));
      const ok = start({ commands: [{ argv: ["pwd"], cwd: join(root, "builds") }] }, { allowedRoots: [root] });
      assert.equal(AttemptState[(await ok.done).state], "SUCCEEDED");
      assert.equal((await readFile(join(ok.runner.directory, "cmd-000.stdout.log"), "utf8")).trim(), join(root, "builds"));
      const outside = start({ commands: [{ argv: ["pwd"], cwd: "/usr" }] }, { allowedRoots: [root] });
      assert.match((await outside.done).message, /not under a root this agent allows/);
      const link = start({ commands: [{ argv: ["pwd"], cwd: join(root, "escape") }] }, { allowedRoots: [root] });
      assert.match((await link.done).message, /resolves to \/etc, outside the allowed roots/);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it("refuses an argument with a NUL byte with a clear reason, before running anything", async () => {
    const run = start({ commands: [{ argv: ["echo", "a\0b"] }] });
    const end = await run.done;
    assert.deepEqual(run.states(), ["STARTING", "FAILED"]);
    assert.equal(end.message, "command 1: argument 2 contains a NUL byte");
  });

  it("streams 1 GiB of output to disk without growing the agent's memory", async () => {
    const before = process.memoryUsage().rss;
    const run = start({ commands: [{ argv: ["head", "-c", String(1024 ** 3), "/dev/zero"] }] });
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      assert.equal(AttemptState[(await run.done).state], "SUCCEEDED");
    } finally {
      clearInterval(sampler);
    }
    assert.equal((await stat(join(run.runner.directory, "cmd-000.stdout.log"))).size, 1024 ** 3);
    assert.ok(peak - before < 64 * 1024 * 1024, `the agent grew by ${Math.round((peak - before) / 1024 / 1024)} MiB`);
    await rm(run.runner.directory, { recursive: true, force: true });
  });
});

async function waitForFile(path: string, match: string | RegExp): Promise<string> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const text = existsSync(path) ? await readFile(path, "utf8") : "";
    if (typeof match === "string" ? text.includes(match) : match.test(text)) return text;
    if (Date.now() > deadline) throw new Error(`${path} never matched ${match}; it holds ${JSON.stringify(text)}`);
    await sleep(5);
  }
}

async function eventually(check: () => boolean, message: string): Promise<void> {
  const deadline = Date.now() + 3_000;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(message);
    await sleep(10);
  }
}

async function waitUntil<T>(check: () => T | undefined): Promise<T> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error("timed out");
    await sleep(10);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
