// `drover`: the command line for Drover. It reaches the services only through
// their generated clients; see connection.ts for how it finds them.
//
// Exits when the command's one call is done: process.exit closes the HTTP/2
// session, which would otherwise keep the process alive while idle.

import { CommanderError } from "commander";
import { describeFailure, ExitCode } from "./errors.ts";
import { createProgram } from "./program.ts";

async function main(argv: string[]): Promise<number> {
  const program = createProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here too, with exit code 0.
      return err.exitCode === 0 ? 0 : ExitCode.usage;
    }
    const { line, exitCode } = describeFailure(err);
    process.stderr.write(`${line}\n`);
    return exitCode;
  }
}

const code = await main(process.argv);
// Let buffered stdout drain (a pipe to `head`, a slow terminal) before exiting.
process.stdout.write("", () => process.exit(code));
