// The config file `drover login` writes and every command reads when neither
// a flag nor the environment says where to connect or with which token.
//
// Writes go to a temporary file in the same directory, then a rename, so a
// reader never sees half a file; the file is 0600 and its directory 0700
// because it holds a bearer secret.

import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { Code } from "@connectrpc/connect";
import { CliError } from "./errors.ts";

/** What the config file holds; either field may be missing. */
export interface CliConfig {
  /** Base URL of the server's gRPC endpoint. */
  addr?: string;
  /** The bearer token to send. */
  token?: string;
}

/** $DROVER_CONFIG, else $XDG_CONFIG_HOME/drover/config.json, else ~/.config/drover/config.json. */
export function configFile(env: NodeJS.ProcessEnv = process.env, home = homedir()): string {
  if (env.DROVER_CONFIG) return resolve(env.DROVER_CONFIG);
  return join(env.XDG_CONFIG_HOME || join(home, ".config"), "drover", "config.json");
}

/** The file's contents, or undefined when there is no file. Anything else wrong with it is an InvalidArgument naming the file. */
export function readConfig(file: string): CliConfig | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new CliError(Code.FailedPrecondition, `config file ${file}: ${(err as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new CliError(Code.InvalidArgument, `config file ${file}: not valid JSON (${(err as Error).message}); fix it or run drover login again`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new CliError(Code.InvalidArgument, `config file ${file}: must be a JSON object such as {"addr": "...", "token": "..."}`);
  }
  const config: CliConfig = {};
  for (const key of ["addr", "token"] as const) {
    const field = (value as Record<string, unknown>)[key];
    if (field === undefined) continue;
    if (typeof field !== "string" || field.trim() === "") {
      throw new CliError(Code.InvalidArgument, `config file ${file}: "${key}" must be a non-empty string`);
    }
    config[key] = field.trim();
  }
  if (config.addr !== undefined && !/^https?:\/\//.test(config.addr)) {
    throw new CliError(Code.InvalidArgument, `config file ${file}: "addr": "${config.addr}" must be a URL such as http://127.0.0.1:7070`);
  }
  return config;
}

/** Replaces the file atomically: mode 0600, in a directory of mode 0700 (created if missing). */
export function writeConfig(file: string, config: CliConfig): void {
  const dir = dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const temp = join(dir, `.config.json.${process.pid}.tmp`);
  try {
    // mode applies only when the file is created; chmod covers a leftover temp file.
    writeFileSync(temp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
    chmodSync(temp, 0o600);
    renameSync(temp, file);
  } catch (err) {
    rmSync(temp, { force: true });
    throw err;
  }
}

/** Removes the file; true if there was one. */
export function removeConfig(file: string): boolean {
  try {
    rmSync(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}
