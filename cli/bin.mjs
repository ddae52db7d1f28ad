#!/usr/bin/env node
// `drover` on PATH: registers tsx, then runs the TypeScript entry point.
//
// `drover --version` (alone) is answered before any of that: scripts and
// shells call it to check for the tool, and loading tsx and the CLI costs
// ~0.7 s here where Node itself starts in ~0.1 s.
import { readFileSync } from "node:fs";

const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === "--version" || args[0] === "-v")) {
  process.stdout.write(`${JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version}\n`);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import("./main.ts");
}
