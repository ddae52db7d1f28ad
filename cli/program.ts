// The `drover` command tree, apart from main.ts so that tests and
// `drover completion` can walk it without running a command.

import { readFileSync } from "node:fs";
import { Command, Option } from "commander";
import { agentsCommand } from "./agents.ts";
import { completionCommand } from "./completion.ts";
import { DEFAULT_ADDR } from "./connection.ts";
import { deployCommand } from "./deploy.ts";
import { devCommand } from "./dev.ts";
import { exitCodesHelp } from "./errors.ts";
import { jobsCommand } from "./jobs.ts";
import { loginCommand, logoutCommand } from "./login.ts";
import { logsCommand } from "./logs.ts";
import { runCommand } from "./run.ts";
import { runsCommand } from "./runs.ts";
import { schedulesCommand } from "./schedules.ts";
import { agentTokensCommand, tokensCommand } from "./tokens.ts";

const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };

/** The whole command tree. */
export function createProgram(): Command {
  const program = new Command("drover")
    .description("Drover: run jobs and services on machines you own.")
    .version(version, "-v, --version")
    .option("--addr <url>", `server gRPC address (env DROVER_ADDR; then the config file drover login writes; default ${DEFAULT_ADDR})`)
    .option("--token <secret>", "bearer token (env DROVER_TOKEN; then the config file drover login writes; then the dev-mode admin token in $DROVER_DATA_DIR or ./.drover)")
    .addOption(new Option("-o, --output <format>", "output format (text: the same as table)").choices(["table", "text", "json", "yaml"]).default("table"))
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`drover: usage: ${text.replace(/^error: /, "")}`) })
    .addHelpText("after", `\n${exitCodesHelp}\n\nErrors print one line on stderr: drover: <grpc code>: <message>`);

  for (const command of [devCommand(), tokensCommand(), agentTokensCommand(), agentsCommand(), jobsCommand(), runCommand(), logsCommand(), runsCommand(), schedulesCommand(), deployCommand(), loginCommand(), logoutCommand(), completionCommand()]) {
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
