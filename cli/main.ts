// `drover`: the command line for Drover. It reaches the services only through
// their generated clients; see connection.ts for how it finds them.
//
// Exits when the command's one call is done: process.exit closes the HTTP/2
// session, which would otherwise keep the process alive while idle.

import { readFileSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import { agentsCommand } from "./agents.ts";
import { DEFAULT_ADDR } from "./connection.ts";
import { devCommand } from "./dev.ts";
import { describeFailure, exitCodesHelp, ExitCode } from "./errors.ts";
import { jobsCommand } from "./jobs.ts";
import { logsCommand } from "./logs.ts";
import { runCommand } from "./run.ts";
import { runsCommand } from "./runs.ts";
import { schedulesCommand } from "./schedules.ts";
import { agentTokensCommand, tokensCommand } from "./tokens.ts";

const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };

/** The whole command tree. */
function createProgram(): Command {
  const program = new Command("drover")
    .description("Drover: run jobs and services on machines you own.")
    .version(version, "-v, --version")
    .option("--addr <url>", `server gRPC address (env DROVER_ADDR; default ${DEFAULT_ADDR})`)
    .option("--token <secret>", "bearer token (env DROVER_TOKEN; default: the dev-mode admin token in $DROVER_DATA_DIR or ./.drover)")
    .addOption(new Option("-o, --output <format>", "output format (text: the same as table)").choices(["table", "text", "json", "yaml"]).default("table"))
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`drover: usage: ${text.replace(/^error: /, "")}`) })
    .addHelpText("after", `\n${exitCodesHelp}\n\nErrors print one line on stderr: drover: <grpc code>: <message>`);

  for (const command of [devCommand(), tokensCommand(), agentTokensCommand(), agentsCommand(), jobsCommand(), runCommand(), logsCommand(), runsCommand(), schedulesCommand()]) {
    program.addCommand(copySettings(command, program));
  }
  return program;
}

/** addCommand does not pass exitOverride and output settings down; this does, to the whole subtree. */
function copySettings(command: Command, parent: Command): Command {
  command.copyInheritedSettings(parent);
  for (const sub of command.commands) copySettings(sub, command);
  return command;
}

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
