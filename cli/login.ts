// `drover login` and `drover logout`: check an address and token against the
// server, then keep them in the config file (config.ts) for later commands.

import { Code, ConnectError } from "@connectrpc/connect";
import { Command } from "commander";
import { Role } from "../gen/ts/drover/fleet/v1/fleet_service_pb.ts";
import { configFile, removeConfig, writeConfig } from "./config.ts";
import { createCliClients, DEFAULT_ADDR, type Connection } from "./connection.ts";
import { CALL_TIMEOUT_MS } from "./context.ts";
import { CliError } from "./errors.ts";
import { enumText, formatFields, parseFormat, render } from "./output.ts";

/** Who a token belongs to, as far as the server says. */
export interface Identity {
  /** The token's name and role; unknown when the token may not ask (only admins may call AuthenticateToken). */
  name?: string;
  role?: string;
}

/**
 * Proves the connection works with one authenticated call, and learns whose
 * token it is. AuthenticateToken is admin only, so for any other role the
 * server answers PermissionDenied, which already proves the token is valid;
 * ListAgents with one row, which every API token may call, then confirms it.
 */
export async function checkConnection(conn: Connection): Promise<Identity> {
  const { fleet } = createCliClients(conn);
  try {
    const res = await fleet.authenticateToken({ secret: conn.token }, { timeoutMs: CALL_TIMEOUT_MS });
    return { name: res.name, role: enumText(Role, res.role) };
  } catch (err) {
    if (ConnectError.from(err).code !== Code.PermissionDenied) throw err;
  }
  await fleet.listAgents({ pageSize: 1 }, { timeoutMs: CALL_TIMEOUT_MS });
  return {};
}

/** Everything on stdin up to its end, trimmed. */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8").trim();
}

/** --token, then (with `--token -`) stdin, then DROVER_TOKEN, then stdin when it is not a terminal. */
async function loginToken(flag: string | undefined, env: NodeJS.ProcessEnv): Promise<string> {
  let token: string | undefined;
  if (flag === "-") token = await readStdin();
  else token = flag || env.DROVER_TOKEN || (process.stdin.isTTY ? undefined : await readStdin());
  if (!token) throw new CliError(Code.Unauthenticated, "no token: pass --token, --token - (read from stdin), or pipe it on stdin");
  return token;
}

export function loginCommand(): Command {
  return new Command("login")
    .description("check a server address and token, then keep them in the config file for later commands")
    .addHelpText(
      "after",
      `
Uses the global --addr (else DROVER_ADDR, else ${DEFAULT_ADDR}) and --token.
The token can stay off the command line: \`--token -\` reads it from stdin, and so
does no --token at all (without DROVER_TOKEN) when stdin is not a terminal:
  printf %s "$TOKEN" | drover login --addr https://drover.example:7070
Writes $DROVER_CONFIG, else $XDG_CONFIG_HOME/drover/config.json, else
~/.config/drover/config.json (mode 0600). Nothing is written if the check fails.`,
    )
    .action(async (_opts, cmd: Command) => {
      const globals = cmd.optsWithGlobals<{ addr?: string; token?: string; output: string }>();
      const format = parseFormat(globals.output);
      const addr = globals.addr || process.env.DROVER_ADDR || DEFAULT_ADDR;
      if (!/^https?:\/\//.test(addr)) throw new CliError(Code.InvalidArgument, `--addr: "${addr}" must be a URL such as ${DEFAULT_ADDR}`);
      const token = await loginToken(globals.token, process.env);
      const who = await checkConnection({ addr, token });
      const file = configFile();
      writeConfig(file, { addr, token });
      process.stdout.write(
        render(format, {
          json: () => ({ addr, config: file, ...who }),
          table: () =>
            formatFields([
              ["addr", addr],
              ["token", who.name ?? "(valid; its name is visible to admins only)"],
              ["role", who.role ?? "-"],
              ["config", file],
            ]),
        }),
      );
    });
}

export function logoutCommand(): Command {
  return new Command("logout").description("remove the config file drover login wrote").action(() => {
    const file = configFile();
    process.stdout.write(removeConfig(file) ? `removed ${file}\n` : `no config file at ${file}\n`);
  });
}
