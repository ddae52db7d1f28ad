// A run spec file: a RunSpec in protobuf's JSON form (field names as in
// `drover runs get -o json`), written as YAML or JSON, read from a path or
// from stdin ("-"). `drover runs submit` and `drover schedules create --run`
// take one.
//
// Reading is strict: an unknown key is an error, not ignored, so a typo
// ("require:") cannot silently drop an edge of the graph. The graph itself
// (unknown names, cycles) is the server's to judge.

import { readFileSync } from "node:fs";
import { fromJson, type DescMessage, type JsonValue } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { parse as parseYaml } from "yaml";
import { RunSpecSchema, type RunSpec } from "../gen/ts/drover/scheduler/v1/scheduler_service_pb.ts";
import { CliError } from "./errors.ts";

/** Reads and parses the file (`-`: stdin); every failure is a CliError(InvalidArgument) naming it. */
export function readRunSpec(file: string): RunSpec {
  const label = file === "-" ? "stdin" : file;
  let text: string;
  try {
    text = readFileSync(file === "-" ? 0 : file, "utf8");
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message;
    throw new CliError(Code.InvalidArgument, `${label}: cannot read the run spec: ${reason}`);
  }
  return parseRunSpec(label, text);
}

/**
 * The RunSpec in `text`. A `.json` file is read as JSON, anything else as
 * YAML (which JSON also is). `label` names the file in errors, which also
 * give the path of the field at fault: `stages[1].job.exec.commands[0].argv`.
 */
export function parseRunSpec(label: string, text: string): RunSpec {
  const json = label.endsWith(".json");
  let value: unknown;
  try {
    value = json ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new CliError(Code.InvalidArgument, `${label}: not valid ${json ? "JSON" : "YAML"}: ${(err as Error).message.split("\n")[0]!.replace(/:$/, "")}`);
  }
  if (value === null || value === undefined) throw new CliError(Code.InvalidArgument, `${label}: the run spec is empty`);
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new CliError(Code.InvalidArgument, `${label}: a run spec is a mapping with "name" and "stages", not ${Array.isArray(value) ? "a list" : typeof value}`);
  }
  try {
    return fromJson(RunSpecSchema, value as JsonValue);
  } catch {
    const fault = locateFault(RunSpecSchema, value as JsonValue, "");
    throw new CliError(Code.InvalidArgument, `${label}: ${fault}`);
  }
}

/**
 * fromJson names the message or field type at fault, not where it is; this
 * descends into the fields the document sets to find the innermost value
 * that fails on its own, and says where it is and what is wrong with it.
 */
function locateFault(schema: DescMessage, value: JsonValue, path: string): string {
  try {
    fromJson(schema, value);
    return `${path || "the run spec"}: not accepted`;
  } catch (err) {
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      for (const field of schema.fields) {
        const key = field.jsonName in value ? field.jsonName : field.name in value ? field.name : undefined;
        if (key === undefined) continue;
        const item = value[key]!;
        const at = path ? `${path}.${key}` : key;
        if (field.fieldKind === "message") {
          if (fails(field.message, item)) return isWellKnown(field.message) ? explain(field.message, at, faultOf(field.message, item)) : locateFault(field.message, item, at);
        } else if (field.fieldKind === "list" && field.listKind === "message" && Array.isArray(item)) {
          const i = item.findIndex((element) => fails(field.message, element));
          if (i >= 0) return locateFault(field.message, item[i]!, `${at}[${i}]`);
        }
      }
    }
    return explain(schema, path, (err as Error).message);
  }
}

/** fromJson's complaint about `value`, or "" when it has none. */
export function faultOf(schema: DescMessage, value: JsonValue): string {
  try {
    fromJson(schema, value);
    return "";
  } catch (err) {
    return (err as Error).message;
  }
}

export function fails(schema: DescMessage, value: JsonValue): boolean {
  return faultOf(schema, value) !== "";
}

/** google.protobuf messages have their own JSON forms (a Duration is "90s"); their errors are explained, not descended into. */
export function isWellKnown(schema: DescMessage): boolean {
  return schema.typeName.startsWith("google.protobuf.");
}

/** protobuf-es's "cannot decode field a.b.C.argv from JSON: expected Array" as `<path>.argv: expected Array`. */
function explain(schema: DescMessage, path: string, message: string): string {
  const field = /^cannot decode field [\w.]+\.(\w+) from JSON: (.*)$/s.exec(message);
  if (field) {
    const name = schema.fields.find((f) => f.name === field[1])?.jsonName ?? field[1];
    const inner = /^cannot decode message google\.protobuf\.Duration from JSON: (.*)$/s.exec(field[2]!);
    if (inner) return `${path ? `${path}.` : ""}${name}: ${inner[1]} is not a duration; write seconds with an "s": "90s", "0.5s", "3600s"`;
    return `${path ? `${path}.` : ""}${name}: ${field[2]}`;
  }
  const whole = /^cannot decode message ([\w.]+) from JSON: (.*)$/s.exec(message);
  if (whole?.[1] === "google.protobuf.Duration") return `${path}: ${whole[2]} is not a duration; write seconds with an "s": "90s", "0.5s", "3600s"`;
  if (whole?.[1] === "google.protobuf.Timestamp") return `${path}: ${whole[2]} is not a timestamp; write RFC 3339: "2030-01-01T12:00:00Z"`;
  return `${path || "the run spec"}: ${whole ? whole[2] : message}`;
}
