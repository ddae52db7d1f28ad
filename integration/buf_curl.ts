import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { ROOT } from "./harness.ts";

const run = promisify(execFile);

/** Runs the `buf curl` that @bufbuild/buf ships (grpcurl's reflection protocol) and resolves its stdout. */
export async function bufCurl(args: string[]): Promise<string> {
  const { stdout } = await run(join(ROOT, "node_modules", ".bin", "buf"), ["curl", ...args], { cwd: ROOT, timeout: 20_000 });
  return stdout;
}
