#!/usr/bin/env bash
# Bundles drover-agent into one executable ES module, dist/drover-agent.mjs
# (or $1), to run on a machine with Node 20 and nothing else compiling at run
# time. Idle, it keeps ~58 MiB of RSS where agent/bin.mjs (tsx) keeps ~90
# (agent/README.md, "Footprint"), thanks to:
#   - no tsx: its loader thread has a V8 heap of its own (~30 MiB);
#   - agent/web_headers.ts injected as the bundle's `Headers`: Node's own
#     loads undici and compiles its WebAssembly HTTP parser on first use;
#   - `--v8-pool-size=1` on the #! line: one V8 helper thread instead of
#     four, each with its stack and malloc arena (~2.5 MiB). Run it as
#     `./drover-agent.mjs` (or `node --v8-pool-size=1 drover-agent.mjs`).
# systeminformation stays outside the bundle (the agent loads three of its
# parts with createRequire): install it next to the bundle, or run the bundle
# from this repository.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist/drover-agent.mjs}"
npx --no-install esbuild agent/main.ts --bundle --platform=node --format=esm --target=node20 \
  --inject:agent/web_headers.ts \
  --outfile="$out" --log-level=warning \
  --banner:js="#!/usr/bin/env -S node --v8-pool-size=1
import { createRequire as __droverCreateRequire } from 'node:module'; const require = __droverCreateRequire(import.meta.url);"
chmod +x "$out"
echo "$out"
