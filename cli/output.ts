// What the CLI prints: aligned tables for people, protobuf JSON or YAML for
// scripts. Colour is used only when stdout is a terminal and NO_COLOR is unset.

import type { JsonValue } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { CliError } from "./errors.ts";

/** The output formats commands print; `-o text` is another name for table (what `drover logs` prints). */
export type Format = "table" | "json" | "yaml";

export function parseFormat(text: string): Format {
  if (text === "table" || text === "json" || text === "yaml") return text;
  if (text === "text") return "table";
  throw new CliError(Code.InvalidArgument, `-o: "${text}" is not one of table (or text), json, yaml`);
}

/** A table: a header per column and rows of cells. */
export interface Table {
  headers: string[];
  rows: string[][];
}

/** Columns padded to their widest cell, two spaces apart, no trailing blanks. */
export function formatTable(table: Table, bold: (s: string) => string = (s) => s): string {
  const widths = table.headers.map((h, i) => Math.max(h.length, ...table.rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[], style: (s: string) => string) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? style(c) : style(c.padEnd(widths[i]!))))
      .join("  ")
      .trimEnd();
  return [line(table.headers, bold), ...table.rows.map((r) => line(r, (s) => s))].join("\n") + "\n";
}

/** Key: value lines for one object, keys aligned. */
export function formatFields(fields: [string, string][]): string {
  const width = Math.max(...fields.map(([k]) => k.length)) + 1;
  return fields.map(([k, v]) => `${(k + ":").padEnd(width)} ${v}`.trimEnd()).join("\n") + "\n";
}

/**
 * YAML for a JSON value. Strings are always double-quoted (a JSON string is a
 * valid YAML scalar), so no value can be misread as a number, bool or null.
 */
export function formatYaml(value: JsonValue): string {
  const key = (k: string) => (/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(k) ? k : JSON.stringify(k));
  const scalar = (v: JsonValue) => (typeof v === "string" ? JSON.stringify(v) : String(v));
  const isEmpty = (v: JsonValue) => (Array.isArray(v) ? v.length === 0 : v !== null && typeof v === "object" && Object.keys(v).length === 0);
  const block = (v: JsonValue, indent: string): string[] => {
    if (Array.isArray(v)) {
      return v.flatMap((item) => {
        if (item !== null && typeof item === "object" && !isEmpty(item)) {
          const [first, ...rest] = block(item, indent + "  ");
          return [`${indent}- ${first!.trimStart()}`, ...rest];
        }
        return [`${indent}- ${inline(item)}`];
      });
    }
    if (v !== null && typeof v === "object") {
      return Object.entries(v).flatMap(([k, item]) =>
        item !== null && typeof item === "object" && !isEmpty(item!)
          ? [`${indent}${key(k)}:`, ...block(item!, indent + "  ")]
          : [`${indent}${key(k)}: ${inline(item!)}`],
      );
    }
    return [indent + scalar(v)];
  };
  const inline = (v: JsonValue) => (Array.isArray(v) ? "[]" : v !== null && typeof v === "object" ? "{}" : scalar(v));
  return (isEmpty(value) ? [inline(value)] : block(value, "")).join("\n") + "\n";
}

/** Whether to colour stdout: only a terminal, and never when NO_COLOR is set. */
export function useColour(stream: NodeJS.WriteStream = process.stdout, env: NodeJS.ProcessEnv = process.env): boolean {
  return stream.isTTY === true && !env.NO_COLOR;
}

/** What a command prints, in every format; each is built only when chosen. */
export interface Printable {
  json: () => JsonValue;
  table: () => string;
}

export function render(format: Format, out: Printable): string {
  switch (format) {
    case "json":
      return JSON.stringify(out.json(), null, 2) + "\n";
    case "yaml":
      return formatYaml(out.json());
    case "table":
      return out.table();
  }
}

/** Bold headers on a terminal. */
export function bold(colour: boolean): (s: string) => string {
  return colour ? (s) => `\x1b[1m${s}\x1b[0m` : (s) => s;
}

/** "3m ago", "in 2h": a timestamp relative to now, for tables. */
export function ago(ms: number | undefined, now = Date.now()): string {
  if (ms === undefined) return "-";
  const diff = Math.round((now - ms) / 1000);
  const abs = Math.abs(diff);
  const text = abs < 60 ? `${abs}s` : abs < 3600 ? `${Math.floor(abs / 60)}m` : abs < 86400 ? `${Math.floor(abs / 3600)}h` : `${Math.floor(abs / 86400)}d`;
  return diff >= 0 ? `${text} ago` : `in ${text}`;
}

/** "k=v,k2=v2", or "-" when empty. */
export function labelText(labels: Record<string, string>): string {
  const entries = Object.entries(labels).sort(([a], [b]) => a.localeCompare(b));
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(",") : "-";
}

/** AgentStatus.ONLINE → "online" (protobuf-es already drops the enum's prefix). */
export function enumText(names: Record<number, string>, value: number): string {
  return (names[value] ?? String(value)).toLowerCase();
}
