#!/usr/bin/env node
// `drover-agent` on PATH: runs the agent from its bundle (lib/bundle.mjs),
// built into node_modules/.cache/drover on the first run and after any
// change to its sources, with agent/web_headers.ts as its `Headers` as
// scripts/build-agent.sh does: no tsx loader thread and no undici, ~25 MiB
// less RSS (agent/README.md, "Footprint"). Where no bundle can be built or
// written, or with DROVER_AGENT_BUNDLE=0, it registers tsx and runs the
// TypeScript entry point itself.
import { fileURLToPath } from "node:url";

const { runEntry } = await import("../lib/bundle.mjs");
const source = (path) => fileURLToPath(new URL(path, import.meta.url));
await runEntry({
  entry: source("./main.ts"),
  inject: [source("./web_headers.ts")],
  name: "agent",
  bundled: process.env.DROVER_AGENT_BUNDLE !== "0",
});
