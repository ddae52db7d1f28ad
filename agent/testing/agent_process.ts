// drover-agent as a real child process, for tests.

import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

export const AGENT_MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));
/** drover-agent as it is installed: runs the agent's bundle (lib/bundle.mjs). */
export const AGENT_BIN = fileURLToPath(new URL("../bin.mjs", import.meta.url));
export const REPO = fileURLToPath(new URL("../..", import.meta.url));

export interface AgentProcess {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code (or the signal's name). */
  exited: Promise<number | string>;
}

/** Starts drover-agent (agent/bin.mjs unless `entry` says otherwise) with args and an environment free of the caller's DROVER_* variables. */
export function startAgent(args: string[], env: Record<string, string> = {}, entry: string[] = [AGENT_BIN]): AgentProcess {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("DROVER_")));
  const child = spawn(process.execPath, [...entry, ...args], { cwd: REPO, env: { ...clean, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | string>((resolve) => child.on("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Resolves with what settles first: promise, or "timeout" after ms. */
export function within<T>(promise: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: NodeJS.Timeout;
  return Promise.race([promise, new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), ms)))]).finally(() => clearTimeout(timer));
}
