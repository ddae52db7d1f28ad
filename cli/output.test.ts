// The pure parts of the CLI: value parsers and output formatters.

import assert from "node:assert/strict";
import { test } from "node:test";
import { formatTable, formatYaml, parseFormat } from "./output.ts";
import { parseBytes, parseCpu, parseDuration, parseLabels } from "./parse.ts";

test("a table pads each column to its widest cell and trims trailing blanks", () => {
  const text = formatTable({ headers: ["ID", "NAME", "LABELS"], rows: [["a1", "long-name", "-"], ["b", "x", ""]] });
  assert.equal(text, "ID  NAME       LABELS\na1  long-name  -\nb   x\n");
});

test("a table with no rows is just its headers", () => {
  assert.equal(formatTable({ headers: ["ID", "STATUS"], rows: [] }), "ID  STATUS\n");
});

test("YAML quotes every string so none reads as a number or bool", () => {
  const yaml = formatYaml({ id: "1", ok: true, labels: { "a/b": "no" }, argv: ["echo", "hi"], empty: [], list: [{ n: 1, m: "x" }] });
  assert.equal(
    yaml,
    ['id: "1"', "ok: true", "labels:", '  "a/b": "no"', "argv:", '  - "echo"', '  - "hi"', "empty: []", "list:", "  - n: 1", '    m: "x"', ""].join("\n"),
  );
});

test("durations, CPU, memory and labels parse the way people write them", () => {
  assert.equal(parseDuration("--ttl", "1h30m"), 5400);
  assert.equal(parseDuration("--ttl", "90s"), 90);
  assert.throws(() => parseDuration("--ttl", "1 hour"), /--ttl: "1 hour" is not a duration/);
  assert.equal(parseCpu("--cpu", "0.5"), 500);
  assert.equal(parseCpu("--cpu", "250m"), 250);
  assert.equal(parseBytes("--mem", "512Mi"), 512n * 1024n * 1024n);
  assert.equal(parseBytes("--mem", "1G"), 1_000_000_000n);
  assert.deepEqual(parseLabels("--label", ["a=b", "c="]), { a: "b", c: "" });
  assert.throws(() => parseLabels("--label", ["=b"]), /--label: "=b" is not key=value/);
});

test("-o text is another name for table, and anything else names the choices", () => {
  assert.equal(parseFormat("text"), "table");
  assert.equal(parseFormat("json"), "json");
  assert.throws(() => parseFormat("csv"), /-o: "csv" is not one of table \(or text\), json, yaml/);
});
