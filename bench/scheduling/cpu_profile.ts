// Reads a V8 .cpuprofile (what `node --cpu-prof` writes at exit) and says
// where the self time went, by function and by file or package, optionally
// only within a window of CLOCK_MONOTONIC time (µs; V8's profile clock on
// Linux, and process.hrtime's), so start-up and shutdown do not count.
//
//   node --import tsx bench/scheduling/cpu_profile.ts FILE.cpuprofile [N]

import { readFileSync } from "node:fs";
import { relative } from "node:path";
import { ROOT } from "../harness.ts";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** One row of a summary: a function or a file, its self time and share of the sampled time. */
export interface SelfTime {
  name: string;
  ms: number;
  percent: number;
}

export interface ProfileSummary {
  /** Sampled time counted (ms) and whether a window cut it. */
  sampledMs: number;
  windowed: boolean;
  /** Of the sampled time, the share the process spent idle (waiting on the event loop). */
  idlePercent: number;
  gcPercent: number;
  functions: SelfTime[];
  files: SelfTime[];
}

/** A file's group: a package for node_modules, the repository path for our code, the category for V8's pseudo-frames. */
export function fileGroup(url: string, functionName: string): string {
  if (url === "") return functionName.startsWith("(") ? functionName : "(native)";
  if (url.startsWith("node:")) return url;
  const path = url.startsWith("file://") ? decodeURIComponent(new URL(url).pathname) : url;
  const nm = path.lastIndexOf("/node_modules/");
  if (nm >= 0) {
    const rest = path.slice(nm + "/node_modules/".length).split("/");
    const pkg = rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!;
    return `npm:${pkg}`;
  }
  return path.startsWith(ROOT) ? relative(ROOT, path) : path;
}

export function summarizeProfile(file: string, opts: { windowUs?: { startUs: number; endUs: number }; top?: number } = {}): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  let t = profile.startTime;
  let counted = 0;
  const w = opts.windowUs;
  // A window that misses the profile entirely (another clock) is ignored rather than trusted.
  const windowed = w !== undefined && w.startUs < profile.endTime && w.endUs > profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] ?? 0;
    t += delta;
    if (windowed && (t < w!.startUs || t > w!.endUs)) continue;
    // A sample's time is the gap to the next one.
    const spent = profile.timeDeltas[i + 1] ?? delta;
    selfUs.set(profile.samples[i]!, (selfUs.get(profile.samples[i]!) ?? 0) + spent);
    counted += spent;
  }
  const functions = new Map<string, number>();
  const files = new Map<string, number>();
  let idle = 0;
  let gc = 0;
  for (const [id, us] of selfUs) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    if (functionName === "(idle)") idle += us;
    if (functionName === "(garbage collector)") gc += us;
    const group = fileGroup(url, functionName);
    const fn = url ? `${functionName || "(anonymous)"} ${group}:${lineNumber + 1}` : functionName || "(anonymous)";
    functions.set(fn, (functions.get(fn) ?? 0) + us);
    files.set(group, (files.get(group) ?? 0) + us);
  }
  const top = opts.top ?? 15;
  const rows = (m: Map<string, number>) =>
    [...m]
      .filter(([name]) => name !== "(idle)")
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: Math.round(us / 1000), percent: Math.round((us / Math.max(1, counted)) * 1000) / 10 }));
  return {
    sampledMs: Math.round(counted / 1000),
    windowed,
    idlePercent: Math.round((idle / Math.max(1, counted)) * 1000) / 10,
    gcPercent: Math.round((gc / Math.max(1, counted)) * 1000) / 10,
    functions: rows(functions),
    files: rows(files),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const summary = summarizeProfile(process.argv[2]!, { top: Number(process.argv[3] ?? 15) });
  console.log(`sampled ${summary.sampledMs} ms; idle ${summary.idlePercent} %, GC ${summary.gcPercent} %`);
  for (const title of ["files", "functions"] as const) {
    console.log(`\nself time by ${title === "files" ? "file / package" : "function"}:`);
    for (const r of summary[title]) console.log(`${String(r.percent).padStart(5)} %  ${String(r.ms).padStart(6)} ms  ${r.name}`);
  }
}
