// Commands the agent started that outlived it. The process driver's shim is
// made to survive the agent (an agent that comes back re-attaches to it), so
// an agent that is killed, or wedged past its stop's grace, leaves its jobs
// running. The benchmark's jobs all name its scratch directory in their
// argv, so they are found by that, and each one's process group (the shim
// leads one per command) gets SIGKILL. Groups this process belongs to are
// never touched: the agent itself names the directory too.

import { readdirSync, readFileSync } from "node:fs";

/** The process group of a pid, from /proc/<pid>/stat; undefined when it is gone. */
function processGroupOf(pid: string): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // After the command name (which may contain spaces): state ppid pgrp ...
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
  } catch {
    return undefined;
  }
}

/** SIGKILLs the process group of every process whose argv mentions `marker`; returns the groups signalled. */
export function killLeftovers(marker: string): number[] {
  const own = processGroupOf("self");
  const groups = new Set<number>();
  for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch {
      continue;
    }
    if (!cmdline.includes(marker)) continue;
    const group = processGroupOf(pid);
    if (group !== undefined && group > 1 && group !== own) groups.add(group);
  }
  for (const group of groups) {
    try {
      process.kill(-group, "SIGKILL");
    } catch {
      // Gone meanwhile.
    }
  }
  return [...groups];
}
