// What every command's action gets: clients made on first use (so a usage
// error never needs a token), the output format, and whether to colour.

import type { Command } from "commander";
import { createCliClients, resolveConnection, type CliClients } from "./connection.ts";
import { bold, parseFormat, render, useColour, type Format, type Printable } from "./output.ts";

/** One command's view of the global options. */
export interface CommandContext {
  /** The generated clients, connected on first access. */
  readonly clients: CliClients;
  format: Format;
  /** Styles table headers (bold on a terminal, unchanged otherwise). */
  bold: (s: string) => string;
}

/** Per-call deadline: long enough for a cold server, short enough for a script. */
export const CALL_TIMEOUT_MS = 30_000;

export function contextFor(cmd: Command): CommandContext {
  const globals = cmd.optsWithGlobals<{ addr?: string; token?: string; output: string }>();
  const format = parseFormat(globals.output);
  let clients: CliClients | undefined;
  return {
    get clients() {
      return (clients ??= createCliClients(resolveConnection({ addr: globals.addr, token: globals.token })));
    },
    format,
    bold: bold(useColour()),
  };
}

/** Runs an action and writes what it returns to stdout in the chosen format. */
export async function print(cmd: Command, action: (ctx: CommandContext) => Promise<Printable>): Promise<void> {
  const ctx = contextFor(cmd);
  const out = await action(ctx);
  process.stdout.write(render(ctx.format, out));
}
