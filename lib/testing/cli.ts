// Runs the drover CLI as a child process, the way a test of what it prints
// and how it exits needs it.
//
// A CLI test file makes a few dozen invocations. Through tsx each one spends
// ~0.6 s of CPU compiling and loading the TypeScript modules, which is most
// of such a file's run time; bundled once with esbuild (as
// scripts/build-agent.sh does for the agent) the same code starts in ~0.15 s.
// The bundle lives in a temporary directory laid out like the repository
// (package.json, node_modules and services are links to it), so what the CLI
// reads next to itself is found as from cli/main.ts.
//
//   const cli = await bundleCli();            // in before()
//   const out = await cli.run(["agents", "ls"], cleanEnv());
//   cli.remove();                             // in after()
//
// `node --import tsx cli/main.ts` stays available as TSX_CLI, for the tests
// about how the CLI is started.

import { execFile } from "node:child_process";
import { mkdirSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { build } from "esbuild";
import { ROOT, removeDir, tempDir } from "../../integration/harness.ts";

const run = promisify(execFile);

/** How one `drover` invocation ended. */
export interface CliOutcome {
  code: number;
  stdout: string;
  stderr: string;
}

/** The node arguments that start the CLI from its TypeScript sources, as cli/bin.mjs does. */
export const TSX_CLI = ["--import", "tsx", "cli/main.ts"];

/** The CLI bundled into one module; `run` starts it, `remove` deletes the bundle. */
export interface BundledCli {
  /** Node arguments that start the bundle, in place of TSX_CLI. */
  entry: string[];
  run(args: string[], env?: NodeJS.ProcessEnv, input?: string): Promise<CliOutcome>;
  remove(): void;
}

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

/** Bundles cli/main.ts with everything it imports into a temporary directory. */
export async function bundleCli(): Promise<BundledCli> {
  const dir = tempDir("drover-cli-bundle-");
  try {
    for (const name of ["package.json", "node_modules", "services"]) symlinkSync(join(ROOT, name), join(dir, name));
    mkdirSync(join(dir, "cli"));
    const outfile = join(dir, "cli", "main.mjs");
    await build({
      entryPoints: [join(ROOT, "cli", "main.ts")],
      outfile,
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      logLevel: "warning",
      // CommonJS dependencies require() Node's modules; an ES module has no require of its own.
      banner: { js: "import { createRequire as __droverCreateRequire } from 'node:module'; const require = __droverCreateRequire(import.meta.url);" },
    });
    const entry = [outfile];
    return { entry, run: (args, env, input) => runCli(entry, args, env, input), remove: () => removeDir(dir) };
  } catch (err) {
    removeDir(dir);
    throw err;
  }
}
