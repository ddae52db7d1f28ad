#!/usr/bin/env bash
# Bundles drover-agent into one ES module, dist/drover-agent.mjs (or $1), to
# run with plain `node` on a machine. Without tsx compiling TypeScript at run
# time the idle agent's RSS drops from ~82 MiB to ~60 MiB (bench/README.md).
# systeminformation stays outside the bundle (the agent loads three of its
# parts with createRequire): install it next to the bundle, or run the bundle
# from this repository.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist/drover-agent.mjs}"
npx --no-install esbuild agent/main.ts --bundle --platform=node --format=esm --target=node20 \
  --outfile="$out" --log-level=warning \
  --banner:js="import { createRequire as __droverCreateRequire } from 'node:module'; const require = __droverCreateRequire(import.meta.url);"
echo "$out"
