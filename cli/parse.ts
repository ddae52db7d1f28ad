// Pure parsers for the values people type on the command line. Each throws a
// CliError(InvalidArgument) that names the flag, so a typo exits 2.

import { Code } from "@connectrpc/connect";
import { CliError } from "./errors.ts";

const durationUnits: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** "90s", "10m", "1h30m", "2d" → seconds (fractions of a second allowed). */
export function parseDuration(flag: string, text: string): number {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== text) {
    throw new CliError(Code.InvalidArgument, `${flag}: "${text}" is not a duration (examples: 90s, 10m, 1h30m, 2d)`);
  }
  return parts.reduce((sum, [, n, unit]) => sum + Number(n) * durationUnits[unit!]!, 0);
}

/** Repeated `k=v` → a map; the value may be empty, the key may not. */
export function parseLabels(flag: string, pairs: string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new CliError(Code.InvalidArgument, `${flag}: "${pair}" is not key=value`);
    labels[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return labels;
}

/** "2" or "0.5" cores, or "500m" millicores → millicores. */
export function parseCpu(flag: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)(m?)$/.exec(text);
  if (!m) throw new CliError(Code.InvalidArgument, `${flag}: "${text}" is not a CPU amount (examples: 2, 0.5, 500m)`);
  return Math.round(m[2] ? Number(m[1]) : Number(m[1]) * 1000);
}

const byteUnits: Record<string, number> = {
  "": 1, k: 1e3, m: 1e6, g: 1e9, t: 1e12,
  ki: 2 ** 10, mi: 2 ** 20, gi: 2 ** 30, ti: 2 ** 40,
};

/** "1073741824", "512Mi", "1G" (also "512MiB", "1GB") → bytes. */
export function parseBytes(flag: string, text: string): bigint {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?$/i.exec(text);
  if (!m) throw new CliError(Code.InvalidArgument, `${flag}: "${text}" is not a memory amount (examples: 512Mi, 1G, 1073741824)`);
  return BigInt(Math.round(Number(m[1]) * byteUnits[(m[2] ?? "").toLowerCase()]!));
}

/** A whole number, possibly negative. */
export function parseInteger(flag: string, text: string): number {
  if (!/^-?\d+$/.test(text)) throw new CliError(Code.InvalidArgument, `${flag}: "${text}" is not a whole number`);
  return Number(text);
}

/** parseDuration in whole milliseconds, for protobuf Durations and timers. */
export function parseDurationMs(flag: string, text: string): number {
  return Math.round(parseDuration(flag, text) * 1000);
}

/**
 * The words a flag accepts for a protobuf enum, lowercase, without the zero
 * value: RunState → {running, succeeded, ...}. `joiner` replaces the
 * underscores of multi-word names ("cancel-previous" for CANCEL_PREVIOUS).
 */
export function enumWords<E extends number>(names: Record<string, string | E>, joiner = "_"): Record<string, E> {
  return Object.fromEntries(
    Object.entries(names)
      .filter((e): e is [string, E] => typeof e[1] === "number" && e[1] !== 0)
      .map(([name, value]) => [name.toLowerCase().replaceAll("_", joiner), value]),
  );
}

/** One of `words` (any case, `-` or `_` between words), else a CliError that lists them. */
export function parseEnumWord<E extends number>(flag: string, text: string, words: Record<string, E>, what: string): E {
  const normal = text.toLowerCase();
  const value = words[normal] ?? words[normal.replaceAll("-", "_")] ?? words[normal.replaceAll("_", "-")];
  if (value === undefined) {
    throw new CliError(Code.InvalidArgument, `${flag}: "${text}" is not ${what}; use one of ${Object.keys(words).join(", ")}`);
  }
  return value;
}
