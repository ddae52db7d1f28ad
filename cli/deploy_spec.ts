// A deployment file: `name:` plus the fields of ServiceSpec in protobuf's
// JSON form (either spelling: `health_check` or `healthCheck`), written as
// YAML (or JSON, which YAML reads too), read from a path or from stdin ("-").
// `drover deploy apply` takes one.
//
//   name: web
//   replicas: 3
//   exec: {commands: [{argv: [./server, --port, "8080"]}]}
//   health_check: {http: {port: 8080, path: /healthz}}
//   update: {max_parallel: 1, min_healthy_time: 10s}
//
// Reading is strict and says where: an unknown key, a value of the wrong
// type and a broken protovalidate rule (the same rules the server checks)
// are each one error naming the file, the line and the field as written,
// `web.yaml:7: update.max_parallel: value must be greater than or equal to 1`.
// Rules that need more than one field (replicas or per_agent) are the
// server's to judge, and its INVALID_ARGUMENT names the field too.

import { readFileSync } from "node:fs";
import { create, fromJson, type DescMessage, type JsonValue } from "@bufbuild/protobuf";
import type { Path } from "@bufbuild/protobuf/reflect";
import type { Validator } from "@bufbuild/protovalidate";
import { Code } from "@connectrpc/connect";
import { isMap, isSeq, LineCounter, parseDocument, type Document, type Node as YamlNode } from "yaml";
import { ApplyDeploymentRequestSchema, ServiceSpecSchema, type ServiceSpec } from "../gen/ts/drover/deploy/v1/deploy_service_pb.ts";
import { CliError } from "./errors.ts";
import { fails, faultOf, isWellKnown } from "./run_spec.ts";

/** What a deployment file asks for: a name and the spec to apply under it. */
export interface DeploymentFile {
  name: string;
  spec: ServiceSpec;
}

/**
 * The protovalidate checker, loaded on first use: importing protovalidate
 * costs most of a second, which every other command would pay if it were
 * imported with the command tree.
 */
export async function loadValidator(): Promise<Validator> {
  const { createValidator } = await import("@bufbuild/protovalidate");
  return createValidator();
}

/** Reads and parses the file (`-`: stdin); every failure is a CliError(InvalidArgument) naming it. */
export function readDeploymentFile(file: string, validator: Validator): DeploymentFile {
  const label = file === "-" ? "stdin" : file;
  let text: string;
  try {
    text = readFileSync(file === "-" ? 0 : file, "utf8");
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message;
    throw new CliError(Code.InvalidArgument, `${label}: cannot read the deployment file: ${reason}`);
  }
  return parseDeploymentFile(label, text, validator);
}

/** A path into the document as written: keys as the file spells them, list indexes. */
type DocPath = (string | number)[];

/**
 * The deployment in `text`; `label` names the file in errors. Checks, in
 * order: YAML syntax, the shape (a mapping with a string `name`), the
 * spec's JSON form (types, unknown keys), then the protovalidate rules.
 */
export function parseDeploymentFile(label: string, text: string, validator: Validator): DeploymentFile {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true });
  const fail: (path: DocPath, what: string, keyOnly?: boolean) => never = (path, what, keyOnly = false) => {
    const line = lineOf(doc, lines, path, keyOnly);
    throw new CliError(Code.InvalidArgument, `${label}${line ? `:${line}` : ""}: ${what}`);
  };
  if (doc.errors.length > 0) {
    const err = doc.errors[0]!;
    const message = err.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "").replace(/:$/, "");
    throw new CliError(Code.InvalidArgument, `${label}:${err.linePos?.[0].line ?? 1}: not valid YAML: ${message}`);
  }
  const value = doc.toJS() as unknown;
  if (value === null || value === undefined) throw new CliError(Code.InvalidArgument, `${label}: the deployment file is empty`);
  if (typeof value !== "object" || Array.isArray(value)) {
    fail([], `a deployment file is a mapping with "name" and the service's fields (exec, replicas, ...), not ${Array.isArray(value) ? "a list" : typeof value}`);
  }
  const { name, ...rest } = value as Record<string, JsonValue>;
  if (name === undefined) fail([], `name: missing; every deployment has one ("name: web")`);
  if (typeof name !== "string") fail(["name"], `name: expected a string, got ${JSON.stringify(name)}`);

  let spec: ServiceSpec;
  try {
    spec = fromJson(ServiceSpecSchema, rest as JsonValue);
  } catch {
    const fault = locateFault(ServiceSpecSchema, rest as JsonValue, []);
    return fail(fault.path, `${fault.path.length > 0 ? `${pathText(fault.path)}: ` : ""}${fault.message}`, fault.keyOnly);
  }

  const result = validator.validate(ApplyDeploymentRequestSchema, create(ApplyDeploymentRequestSchema, { name: name as string, spec }));
  if (result.kind === "error") throw new CliError(Code.Internal, `${label}: cannot check the deployment: ${result.error.message}`);
  if (result.kind === "invalid") {
    const v = result.violations[0]!;
    const path = docPathOf(v.field, value as JsonValue);
    // The name's pattern is a regular expression on the wire; here it is said in words.
    if (path.length === 1 && path[0] === "name") fail(path, `name: ${JSON.stringify(name)} must be 1-63 lowercase letters, digits and '-', starting with a letter and not ending with '-'`);
    const rule = v.ruleId ? ` [${v.ruleId}]` : "";
    fail(path, `${pathText(path)}: ${v.message}${rule}`, v.forKey);
  }
  return { name: name as string, spec: spec! };
}

/** `update.max_parallel`, `exec.commands[0].argv`: a path as the file spells it. */
function pathText(path: DocPath): string {
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? p : `.${p}`)).join("");
}

/**
 * The line of the node at `path`, or of its deepest ancestor the file has
 * (a missing field: the mapping it belongs in); undefined for the document
 * itself. keyOnly: the line of the key (an unknown key, a bad map key).
 */
function lineOf(doc: Document, lines: LineCounter, path: DocPath, keyOnly: boolean): number | undefined {
  for (let n = path.length; n > 0; n--) {
    const parent = n === 1 ? doc.contents : doc.getIn(path.slice(0, n - 1), true);
    const last = path[n - 1]!;
    let node: YamlNode | null | undefined;
    if (isMap(parent)) {
      const pair = parent.items.find((p) => (p.key as { value?: unknown } | null)?.value === last || String((p.key as { value?: unknown } | null)?.value) === String(last));
      node = (keyOnly && n === path.length ? pair?.key : pair?.value ?? pair?.key) as YamlNode | undefined;
    } else if (isSeq(parent) && typeof last === "number") {
      node = parent.items[last] as YamlNode | undefined;
    }
    if (node?.range) return lines.linePos(node.range[0]).line;
  }
  return undefined;
}

/** Where fromJson fails and why, the innermost value that fails on its own. */
interface Fault {
  path: DocPath;
  message: string;
  /** The fault is the key itself (unknown), not its value. */
  keyOnly: boolean;
}

/**
 * fromJson names the message or field type at fault, not where it is; this
 * descends into the fields the document sets to find the innermost value
 * that fails on its own.
 */
function locateFault(schema: DescMessage, value: JsonValue, path: DocPath): Fault {
  const err = faultOf(schema, value);
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    for (const key of Object.keys(value)) {
      const field = schema.fields.find((f) => f.jsonName === key || f.name === key);
      if (!field) {
        const hint = closest(key, schema.fields.flatMap((f) => [f.name, f.jsonName]));
        return { path: [...path, key], message: `unknown field${hint ? ` (did you mean ${hint}?)` : ""}`, keyOnly: true };
      }
      const item = value[key]!;
      if (field.fieldKind === "message" && fails(field.message, item)) {
        if (isWellKnown(field.message)) return { path: [...path, key], message: explainWellKnown(field.message, faultOf(field.message, item), item), keyOnly: false };
        return locateFault(field.message, item, [...path, key]);
      }
      if (field.fieldKind === "list" && field.listKind === "message" && Array.isArray(item)) {
        const i = item.findIndex((element) => fails(field.message, element));
        if (i >= 0) return locateFault(field.message, item[i]!, [...path, key, i]);
      }
      if (field.fieldKind === "map" && field.mapKind === "message" && item !== null && typeof item === "object" && !Array.isArray(item)) {
        const k = Object.keys(item).find((k) => fails(field.message, item[k]!));
        if (k !== undefined) return locateFault(field.message, item[k]!, [...path, key, k]);
      }
      // A scalar, enum, list or map of scalars: check it alone.
      const alone = faultOf(schema, { [key]: item });
      if (alone) return { path: [...path, key], message: explainField(alone), keyOnly: false };
    }
  }
  return { path, message: explainField(err) || "not accepted", keyOnly: false };
}

function explainWellKnown(schema: DescMessage, message: string, value: JsonValue): string {
  if (schema.typeName === "google.protobuf.Duration") return `${JSON.stringify(value)} is not a duration; write seconds with an "s": "90s", "0.5s", "3600s"`;
  return explainField(message);
}

/** protobuf-es's "cannot decode field a.b.C.argv from JSON: expected Array, got "x"" as `expected Array, got "x"`. */
function explainField(message: string): string {
  const field = /^cannot decode field [\w.]+ from JSON: (.*)$/s.exec(message);
  if (field) return field[1]!;
  const whole = /^cannot decode message [\w.]+ from JSON: (.*)$/s.exec(message);
  return whole ? whole[1]! : message;
}

/** The field name nearest to a misspelt key (at most 2 edits), for "did you mean". */
function closest(key: string, names: string[]): string | undefined {
  let best: { name: string; d: number } | undefined;
  for (const name of new Set(names)) {
    const d = editDistance(key.toLowerCase(), name.toLowerCase());
    if (d <= 2 && (!best || d < best.d)) best = { name, d };
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = row;
  }
  return prev[b.length]!;
}

/**
 * A protovalidate path (from ApplyDeploymentRequest) as the file spells it:
 * `spec` is the file's top level, and each field takes the spelling the file
 * used (`max_parallel` or `maxParallel`).
 */
function docPathOf(path: Path, value: JsonValue): DocPath {
  const out: DocPath = [];
  let here: JsonValue | undefined = value;
  const objectAt = (v: JsonValue | undefined): Record<string, JsonValue> => (v !== null && typeof v === "object" && !Array.isArray(v) ? v : {});
  path.forEach((element, i) => {
    if (element.kind === "field") {
      if (i === 0 && element.name === "spec") return;
      const obj = objectAt(here);
      const key = element.jsonName in obj ? element.jsonName : element.name;
      out.push(key);
      here = obj[key];
    } else if (element.kind === "list_sub") {
      out.push(element.index);
      here = Array.isArray(here) ? here[element.index] : undefined;
    } else if (element.kind === "map_sub") {
      const key = String(element.key);
      out.push(key);
      here = objectAt(here)[key];
    }
  });
  return out;
}
