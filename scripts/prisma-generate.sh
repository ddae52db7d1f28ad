#!/usr/bin/env bash
# Generates the five services' Prisma clients into gen/prisma/<service>.
# The output is committed; CI runs this and fails if `git diff` shows a change.
#
# Offline: `prisma generate` insists on downloading the native schema engine
# before it starts, although generating does not run it. Pointing
# PRISMA_SCHEMA_ENGINE_BINARY at any existing file skips the download (see
# prisma/README.md). A real engine given by the caller is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${PRISMA_SCHEMA_ENGINE_BINARY:-}" ]]; then
  export PRISMA_SCHEMA_ENGINE_BINARY="$PWD/package.json"
fi
# No update notices, no telemetry: nothing here may need the network.
export PRISMA_HIDE_UPDATE_MESSAGE=1 CHECKPOINT_DISABLE=1

for service in fleet scheduler bid deploy log; do
  # The generator adds and overwrites files but leaves ones it no longer
  # writes; start clean so a removed model leaves no stale file behind.
  rm -rf "gen/prisma/$service"
  npx --no-install prisma generate --schema "prisma/$service/schema.prisma"
done
