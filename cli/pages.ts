// Listing commands page through the server's results: `--limit N` takes the
// newest N, `--all` follows next_page_token to the end. Shared by `jobs ls`
// and `runs ls`.

import { Code } from "@connectrpc/connect";
import { Option, type Command } from "commander";
import { CliError } from "./errors.ts";
import { parseInteger } from "./parse.ts";

/** The server's largest page. */
export const MAX_PAGE = 1000;

/** One page as every List RPC answers it. */
export interface Page<T> {
  items: T[];
  nextPageToken: string;
}

/**
 * Items in the server's order, following page tokens until `limit` items
 * (undefined: all of them); `more` says whether the server had more than were taken.
 */
export async function collectPages<T>(
  limit: number | undefined,
  fetch: (pageSize: number, pageToken: string) => Promise<Page<T>>,
): Promise<{ items: T[]; more: boolean }> {
  const items: T[] = [];
  let pageToken = "";
  do {
    const page = await fetch(Math.min(MAX_PAGE, limit === undefined ? MAX_PAGE : limit - items.length), pageToken);
    items.push(...page.items);
    pageToken = page.nextPageToken;
  } while (pageToken && (limit === undefined || items.length < limit));
  return { items, more: pageToken !== "" };
}

/** Adds `--limit N` (default 100) and `--all`, which exclude each other. */
export function addLimitOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option("--limit <n>", "show at most this many, newest first").default("100").conflicts("all"))
    .option("--all", "show every one, following pages");
}

/** The limit the options ask for: undefined for --all. */
export function limitFrom(opts: { limit: string; all?: boolean }): number | undefined {
  if (opts.all) return undefined;
  const limit = parseInteger("--limit", opts.limit);
  if (limit < 1) throw new CliError(Code.InvalidArgument, `--limit: "${opts.limit}" must be 1 or more`);
  return limit;
}
