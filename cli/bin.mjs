#!/usr/bin/env node
// `drover` on PATH: runs the CLI from its bundle (lib/bundle.mjs), built into
// node_modules/.cache/drover on the first run and after any change to its
// sources. Where no bundle can be built or written (a read-only install),
// or with DROVER_CLI_BUNDLE=0, it registers tsx and runs the TypeScript
// entry point itself, as before.
//
// `drover --version` (alone) is answered before any of that: scripts and
// shells call it to check for the tool, and Node itself starts in ~0.1 s.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === "--version" || args[0] === "-v")) {
  process.stdout.write(`${JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version}\n`);
} else {
  const { runEntry } = await import("../lib/bundle.mjs");
  await runEntry({
    entry: fileURLToPath(new URL("./main.ts", import.meta.url)),
    name: "cli",
    bundled: process.env.DROVER_CLI_BUNDLE !== "0",
  });
}
