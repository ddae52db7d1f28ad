// The process driver: a command as a child process on this machine.
//
// Each command runs under a shim, a few lines of /bin/sh that the agent
// starts detached (a new session, so a new process group whose id is the
// shim's pid):
//
//   agent ──spawn──▶ sh (shim: ulimit -v; trap TERM) ──▶ [nice -n N] argv...
//                      └─ when the command ends: its status → cmd-NNN.status
//
// The shim exists for the agent's restarts. A process whose parent died is
// adopted by init, and nobody else can learn how it exits; the shim, its
// real parent, writes the exit status to the bundle whether or not the agent
// is alive, so an agent that comes back finds either the command still
// running (the shim's pid, checked against the kernel's start time of that
// pid so a reused pid is not mistaken for it) or its status on disk.
//
// Signals go to the whole group, so a command that started children of its
// own cannot leave them behind. The shim traps SIGTERM (and SIGINT, SIGHUP)
// with a no-op handler — handlers, unlike ignored signals, are reset by exec,
// so the command still gets the default action — and so outlives a stop long
// enough to write the status. After the grace period SIGKILL takes the whole
// group, the shim too; its status file is then missing and the agent, the
// shim's parent, reports SIGKILL from the shim's own end. When the shim has
// ended, whatever is left of its group is killed.
//
// A stop waits for the command's exec before it signals. Until then the
// process that becomes the command is the shim or its fork, and a TERM that
// arrives there is lost: the shim's trap swallows it, and in the fork dash
// catches it with the inherited handler, then resets its traps without
// running it (about a quarter of the TERMs sent 0-4 ms after a start). The
// command would then run until the grace period's SIGKILL.
//
// The shell reports a command killed by signal N as 128+N, so a command that
// *exits* with 129-159 on its own is reported as killed by that signal, as
// shells and Docker report it.
//
// Limits: ExecSpec.memory_limit_bytes becomes RLIMIT_AS (`ulimit -v`, for
// the shim and everything it starts); ExecSpec.nice runs the command under
// nice(1). cgroup v2 would give exact memory caps and peak figures; our
// machines have cgroup v1 only, so it is not used yet.
//
// Peak RSS is sampled: every second (and soon after start) the agent reads
// VmHWM, the kernel's high-water mark, of the command's process. VmHWM only
// rises, so a late sample sees the peak up to then; a command shorter than
// the first sample reports 0 (not measured), and its children's memory is not
// counted.
//
// Output goes straight to the bundle's files, which the command inherits as
// its stdout and stderr: the agent copies nothing, and a command writing
// gigabytes does not grow the agent.

import { spawn, type ChildProcess } from "node:child_process";
import { constants, openSync, closeSync, readFileSync } from "node:fs";
import { access, readFile } from "node:fs/promises";
import { delimiter, isAbsolute, join, resolve } from "node:path";
import { constants as osConstants } from "node:os";

import type { Availability, CommandExit, CommandHandle, CommandStatus, CommandTask, Runner, RunnerCapabilities, SavedHandle } from "./runner.ts";
import { statusFileName } from "./bundle.ts";

/**
 * $1 status file, $2 memory cap in KiB (0: none), $3 niceness, then argv.
 * Builtins only after the command ends: the status must be on disk before a
 * SIGKILL at the end of the grace period, even on a loaded machine. It is one
 * short write, read only once the shim is gone.
 *
 * The shell's own reports are not the command's output: dash prints
 * "Terminated" on its stderr when the command it waits for is killed by
 * SIGTERM (a timeout, a cancel), and that is the attempt's stderr file. So
 * the shell's stderr is /dev/null, and the command gets the file (fd 3) in a
 * subshell that execs it: a redirection on the command itself would be the
 * waiting shell's too while it waits.
 */
const SHIM = [
  // The shell exports PWD; commands get exactly the environment the spec built.
  'f=$1; m=$2; n=$3; shift 3; unset PWD OLDPWD',
  'trap : TERM INT HUP',
  'exec 3>&2 2>/dev/null',
  'if [ "$m" != 0 ]; then ulimit -v "$m" 2>&3 || exit 125; fi',
  'if [ "$n" != 0 ]; then (exec 2>&3 3>&-; exec nice -n "$n" "$@"); else (exec 2>&3 3>&-; exec "$@"); fi',
  's=$?',
  'echo "$s" > "$f"',
  'exit "$s"',
].join("\n");

/** How often peak memory is sampled. */
const SAMPLE_MS = 1_000;
/** The first sample, so that short commands get one too. */
const FIRST_SAMPLE_MS = 50;
/** How often a re-attached command (not our child) is checked for its end. */
const REATTACH_POLL_MS = 250;
/** The longest a stop waits for the command's exec before it signals anyway. */
const EXEC_WAIT_MS = 1_000;

interface ProcessHandle extends CommandHandle {
  readonly pid: number;
  readonly statusPath: string;
  /** Set for commands this agent process started: its 'exit' is the end. */
  readonly child?: ChildProcess;
  /** The command's process (the shim's child), once known: for VmHWM. */
  commandPid?: number;
  peakRssBytes: number;
  ended?: Promise<CommandExit>;
  killTimer?: NodeJS.Timeout;
  stopping?: boolean;
  exited: boolean;
}

export interface ProcessRunnerOptions {
  /** Absolute roots a command's absolute cwd may be under (DROVER_ALLOWED_ROOTS); none: only the work directory. */
  allowedRoots?: readonly string[];
}

export class ProcessRunner implements Runner {
  readonly driver = "process";
  readonly capabilities: RunnerCapabilities = { reattach: true, memoryLimit: true, nice: true, peakRss: true };
  private readonly live = new Set<ProcessHandle>();
  private sampler: NodeJS.Timeout | undefined;

  constructor(private readonly options: ProcessRunnerOptions = {}) {}

  get allowedRoots(): readonly string[] {
    return this.options.allowedRoots ?? [];
  }

  async availability(): Promise<Availability> {
    try {
      await access("/bin/sh", constants.X_OK);
      return { available: true };
    } catch {
      return { available: false, reason: "/bin/sh is not executable" };
    }
  }

  async start(task: CommandTask): Promise<CommandHandle> {
    const argv = task.shell ? ["/bin/sh", "-c", task.command.argv.join(" ")] : task.command.argv;
    const missing = await executableProblem(argv[0]!, task.env.PATH ?? "", task.cwd);
    if (missing) throw new Error(missing);
    // Absolute: the shim runs in the command's cwd, not the agent's.
    const statusPath = resolve(task.bundleDir, statusFileName(task.index));
    const memoryKiB = task.exec.memoryLimitBytes > 0n ? String(task.exec.memoryLimitBytes / 1024n) : "0";
    const out = openSync(task.stdoutPath, "a");
    const err = openSync(task.stderrPath, "a");
    let child: ChildProcess;
    try {
      child = spawn("/bin/sh", ["-c", SHIM, "drover-shim", statusPath, memoryKiB, String(task.exec.nice), ...argv], {
        cwd: task.cwd,
        env: task.env,
        stdio: ["ignore", out, err],
        detached: true,
      });
    } finally {
      // The child has its own copies.
      closeSync(out);
      closeSync(err);
    }
    // Listened for at once: a short command can end before the awaits below return.
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    const pid = await new Promise<number>((resolve, reject) => {
      child.once("spawn", () => resolve(child.pid!));
      child.once("error", (e) => {
        if (child.pid === undefined) reject(new Error(`could not start: ${e.message}`));
      });
    });
    const startTime = new Date();
    const saved: SavedHandle = { driver: this.driver, id: String(pid), startTime: startTime.toISOString(), extra: { startTicks: (await processStartTicks(pid)) ?? 0 } };
    const handle: ProcessHandle = { saved, pid, statusPath, child, peakRssBytes: 0, exited: false };
    handle.ended = exited.then(({ code, signal }) => {
      handle.exited = true;
      this.forget(handle);
      killGroup(pid, "SIGKILL");
      return this.exitOf(handle, code, signal);
    });
    this.watch(handle);
    return handle;
  }

  wait(handle: CommandHandle): Promise<CommandExit> {
    return (handle as ProcessHandle).ended!;
  }

  async stop(handle: CommandHandle, graceMs: number, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const h = handle as ProcessHandle;
    if (h.exited || h.stopping) return;
    h.stopping = true;
    if (signal !== "SIGKILL") await untilExecuted(h);
    if (h.exited) return;
    killGroup(h.pid, signal);
    h.killTimer = setTimeout(() => {
      if (!h.exited) killGroup(h.pid, "SIGKILL");
    }, graceMs);
    h.killTimer.unref();
    void h.ended?.finally(() => clearTimeout(h.killTimer));
  }

  async status(handle: CommandHandle): Promise<CommandStatus> {
    const h = handle as ProcessHandle;
    if (h.exited) return "exited";
    return (await sameProcess(h.pid, h.saved)) ? "running" : "gone";
  }

  async destroy(handle: CommandHandle): Promise<void> {
    const h = handle as ProcessHandle;
    clearTimeout(h.killTimer);
    if (!h.exited && (await sameProcess(h.pid, h.saved))) killGroup(h.pid, "SIGKILL");
    this.forget(h);
  }

  async reattach(saved: SavedHandle, task: CommandTask): Promise<CommandHandle | CommandExit | undefined> {
    const pid = Number(saved.id);
    const statusPath = join(task.bundleDir, statusFileName(task.index));
    if (!Number.isInteger(pid) || pid <= 1) return undefined;
    if (!(await sameProcess(pid, saved))) return readStatus(statusPath, new Date());
    const handle: ProcessHandle = { saved, pid, statusPath, peakRssBytes: 0, exited: false };
    // Not our child: poll for its end, then read what the shim wrote.
    handle.ended = new Promise<CommandExit>((resolve) => {
      const poll = setInterval(() => {
        void sameProcess(pid, saved).then(async (alive) => {
          if (alive || handle.exited) return;
          clearInterval(poll);
          handle.exited = true;
          this.forget(handle);
          killGroup(pid, "SIGKILL");
          const end = (await readStatus(statusPath, new Date())) ?? {
            exitCode: -1,
            signal: "",
            peakRssBytes: 0,
            endTime: new Date(),
            failure: "ended while the agent was restarting and left no exit status (killed by SIGKILL?)",
          };
          resolve({ ...end, peakRssBytes: handle.peakRssBytes });
        });
      }, REATTACH_POLL_MS);
    });
    this.watch(handle);
    return handle;
  }

  /** How the shim's end translates into the command's. */
  private async exitOf(h: ProcessHandle, code: number | null, signal: NodeJS.Signals | null): Promise<CommandExit> {
    const endTime = new Date();
    const written = await readStatus(h.statusPath, endTime);
    if (written) return { ...written, peakRssBytes: h.peakRssBytes };
    // No status: the shim itself was killed (SIGKILL after the grace period, or
    // something outside), or it could not apply the memory cap (125).
    if (signal) return { exitCode: -1, signal, peakRssBytes: h.peakRssBytes, endTime };
    if (code === 125) return { exitCode: 125, signal: "", peakRssBytes: 0, endTime, failure: "could not apply the memory limit (ulimit -v)" };
    return { exitCode: code ?? -1, signal: "", peakRssBytes: h.peakRssBytes, endTime };
  }

  private watch(h: ProcessHandle): void {
    this.live.add(h);
    setTimeout(() => void this.sample(h), FIRST_SAMPLE_MS).unref();
    this.sampler ??= setInterval(() => {
      for (const x of this.live) void this.sample(x);
    }, SAMPLE_MS);
    this.sampler.unref();
  }

  private forget(h: ProcessHandle): void {
    this.live.delete(h);
    if (this.live.size === 0 && this.sampler) {
      clearInterval(this.sampler);
      this.sampler = undefined;
    }
  }

  private async sample(h: ProcessHandle): Promise<void> {
    if (h.exited) return;
    h.commandPid ??= await firstChild(h.pid);
    if (h.commandPid === undefined) return;
    const hwm = await highWaterMark(h.commandPid);
    if (hwm > h.peakRssBytes) h.peakRssBytes = hwm;
  }
}

/** The status file's contents as an exit, or undefined when there is none (yet). */
async function readStatus(path: string, endTime: Date): Promise<CommandExit | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    return undefined;
  }
  const s = Number.parseInt(text.trim(), 10);
  if (!Number.isInteger(s)) return undefined;
  const signal = s > 128 && s < 160 ? signalName(s - 128) : undefined;
  if (signal) return { exitCode: -1, signal, peakRssBytes: 0, endTime };
  if (s === 127) return { exitCode: 127, signal: "", peakRssBytes: 0, endTime, failure: "the command was not found (exit code 127)" };
  if (s === 126) return { exitCode: 126, signal: "", peakRssBytes: 0, endTime, failure: "the command could not be executed (exit code 126)" };
  return { exitCode: s, signal: "", peakRssBytes: 0, endTime };
}

function signalName(n: number): string | undefined {
  for (const [name, value] of Object.entries(osConstants.signals)) if (value === n) return name;
  return undefined;
}

/** Why argv0 cannot be run, or undefined. A name without a slash is looked up on PATH. */
export async function executableProblem(argv0: string, path: string, cwd: string): Promise<string | undefined> {
  if (argv0.includes("\0")) return `the program name contains a NUL byte`;
  const candidates = argv0.includes("/") ? [isAbsolute(argv0) ? argv0 : join(cwd, argv0)] : path.split(delimiter).filter(Boolean).map((dir) => join(dir, argv0));
  for (const c of candidates) {
    try {
      await access(c, constants.X_OK);
      return undefined;
    } catch {
      // next
    }
  }
  return argv0.includes("/") ? `${argv0} does not exist or is not executable` : `${argv0} was not found on PATH (${path || "empty"})`;
}

/**
 * Field 22 of /proc/<pid>/stat: when the process started, in clock ticks
 * since boot. Read synchronously: it is a few hundred bytes from the kernel,
 * and on the path to a command's start a round trip through the thread pool
 * cost milliseconds.
 */
async function processStartTicks(pid: number): Promise<number | undefined> {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[19]);
    return Number.isFinite(ticks) ? ticks : undefined;
  } catch {
    return undefined;
  }
}

/** True when pid is alive and is the process the handle saved (same start time), not a reused pid. */
async function sameProcess(pid: number, saved: SavedHandle): Promise<boolean> {
  const ticks = await processStartTicks(pid);
  if (ticks === undefined) return false;
  const want = Number(saved.extra?.startTicks ?? 0);
  if (want !== 0 && ticks !== want) return false;
  // A zombie has ended; only its parent's wait is missing.
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/**
 * Resolves once the shim's child is the command (its argv is no longer the
 * shim's, which a fork keeps until it execs), the shim has ended, or after
 * EXEC_WAIT_MS. Only for commands this agent process started: a re-attached
 * one has long been running.
 */
async function untilExecuted(h: ProcessHandle): Promise<void> {
  if (!h.child) return;
  const shim = await cmdline(h.pid);
  if (shim === undefined) return;
  const deadline = performance.now() + EXEC_WAIT_MS;
  while (!h.exited && performance.now() < deadline) {
    const child = await firstChild(h.pid);
    const argv = child === undefined ? undefined : await cmdline(child);
    if (argv !== undefined && argv.length > 0 && !argv.equals(shim)) return;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

async function cmdline(pid: number): Promise<Buffer | undefined> {
  try {
    return await readFile(`/proc/${pid}/cmdline`);
  } catch {
    return undefined;
  }
}

async function firstChild(pid: number): Promise<number | undefined> {
  try {
    const first = Number((await readFile(`/proc/${pid}/task/${pid}/children`, "utf8")).trim().split(" ")[0]);
    return Number.isInteger(first) && first > 0 ? first : undefined;
  } catch {
    return undefined;
  }
}

async function highWaterMark(pid: number): Promise<number> {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(await readFile(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Signals every process in the group led by pid. Never throws: ESRCH is the outcome it wants. */
export function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // nothing left to signal
  }
}
