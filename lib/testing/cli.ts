// Runs the drover CLI as a child process, the way a test of what it prints
// and how it exits needs it: through cli/bin.mjs, as it is installed, which
// runs the CLI from its bundle (lib/bundle.mjs) in the repository's cache.
//
//   before(() => prepareCli());               // builds the bundle if it is not current
//   const out = await drover(["agents", "ls"], cleanEnv());
//
// `node --import tsx cli/main.ts` stays available as TSX_CLI, for the tests
// about how the CLI is started.

import { execFile } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { ROOT } from "../../integration/harness.ts";

const run = promisify(execFile);

/** How one `drover` invocation ended. */
export interface CliOutcome {
  code: number;
  stdout: string;
  stderr: string;
}

/** The node arguments that start `drover` as it is installed (from its bundle). */
export const DROVER = ["cli/bin.mjs"];

/** The node arguments that start the CLI from its TypeScript sources, through tsx. */
export const TSX_CLI = ["--import", "tsx", "cli/main.ts"];

/**
 * The environment without any DROVER_* variable the developer may have set,
 * and with DROVER_CONFIG pointing at no file, so their `drover login` is not
 * read either; then `extra`.
 */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("DROVER_")));
  return { ...env, NO_COLOR: "1", DROVER_CONFIG: join(tmpdir(), `drover-cli-test-${process.pid}-none`, "config.json"), ...extra };
}

/** Runs `node ENTRY ARGS` in the repository; with input, writes it to stdin and closes it. */
export async function runCli(entry: string[], args: string[], env: NodeJS.ProcessEnv = cleanEnv(), input?: string): Promise<CliOutcome> {
  try {
    const pending = run(process.execPath, [...entry, ...args], { cwd: ROOT, env });
    if (input !== undefined) pending.child.stdin!.end(input);
    const { stdout, stderr } = await pending;
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** Runs `drover ARGS` (cli/bin.mjs) in the repository; with input, writes it to stdin and closes it. */
export function drover(args: string[], env: NodeJS.ProcessEnv = cleanEnv(), input?: string): Promise<CliOutcome> {
  return runCli(DROVER, args, env, input);
}

/**
 * Builds the CLI's bundle unless it is current, so that the invocations a
 * test file makes next do not each build it at once.
 */
export async function prepareCli(): Promise<void> {
  const outcome = await drover(["--help"]);
  if (outcome.code !== 0) throw new Error(`drover --help exited ${outcome.code}: ${outcome.stderr}`);
}
