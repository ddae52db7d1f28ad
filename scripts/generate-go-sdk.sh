#!/usr/bin/env bash
# Generates the Go SDK's message and gRPC client code from proto/drover (and
# the vendored buf/validate/validate.proto our protos import) into sdk/go/gen,
# with Debian's protoc, protoc-gen-go (1.28.1) and protoc-gen-go-grpc (grpc-go
# 1.33.3): newer upstream protoc-gen-go-grpc output does not compile against
# Debian's grpc 1.33 (sdk/go/README.md has the version pairing).
#
# Usage: scripts/generate-go-sdk.sh [OUT]   (OUT defaults to sdk/go/gen)
#
# The generated code is committed and never edited by hand; running this again
# gives no diff (integration/sdk_go.test.ts checks it). Our protos set no
# go_package, and they are the product's contract, so the Go import paths are
# given here as M mappings instead. The layout mirrors the proto paths:
# drover/scheduler/v1/scheduler_service.proto becomes
# gen/drover/scheduler/v1/scheduler_service{.pb,_grpc.pb}.go, package
# schedulerv1.
set -euo pipefail

# The import path sdk/go has in a GOPATH (GOPATH/src/drover/sdk/go). Drover has
# no published Go module path yet; if it gets one, change this and regenerate.
SDK_IMPORT_PATH="drover/sdk/go"
GEN_IMPORT_PATH="$SDK_IMPORT_PATH/gen"

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/sdk/go/gen}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
# OUT is replaced wholesale below: refuse one that holds anything but
# generated code (a mistyped OUT such as sdk/go or the repository itself).
if [ -n "$(find "$out" -type f ! -name '*.pb.go' -print -quit)" ]; then
  echo "generate-go-sdk: $out holds files that are not generated code; refusing to replace it" >&2
  exit 1
fi

for tool in protoc protoc-gen-go protoc-gen-go-grpc; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "generate-go-sdk: $tool not found; install Debian's protobuf-compiler, protoc-gen-go and protoc-gen-go-grpc" >&2
    exit 1
  }
done

cd "$root"
# Sorted, so the protoc command line (and so its output) does not depend on
# the order the filesystem lists files in.
mapfile -t drover_protos < <(cd proto && find drover -name '*.proto' | LC_ALL=C sort)
protos=("${drover_protos[@]}" buf/validate/validate.proto)

# One M mapping per file, for both plugins: "<file>=<import path>;<package>".
# The Go package is the proto package's last two elements joined
# (drover.scheduler.v1 -> schedulerv1), buf.validate's is validate.
maps=()
for f in "${protos[@]}"; do
  dir="$(dirname "$f")"
  case "$dir" in
    drover/*/v*) pkg="$(basename "$(dirname "$dir")")$(basename "$dir")" ;;
    *) pkg="$(basename "$dir")" ;;
  esac
  maps+=("M$f=$GEN_IMPORT_PATH/$dir;$pkg")
done
go_opts=("module=$GEN_IMPORT_PATH" "${maps[@]}")

# Generate into a scratch directory and swap it in only when protoc succeeded,
# so a failed run never leaves half an SDK behind; a file whose proto is gone
# disappears with the old tree.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# -I /usr/include: the well-known types (descriptor, duration, timestamp,
# field_mask) that libprotobuf-dev ships; their Go code is in
# google.golang.org/protobuf/types, which protoc-gen-go knows by itself.
protoc -I proto -I proto-vendor -I /usr/include \
  "${go_opts[@]/#/--go_opt=}" --go_out="$scratch" \
  "${go_opts[@]/#/--go-grpc_opt=}" --go-grpc_out="$scratch" \
  "${protos[@]}"

rm -rf "$out"
mkdir -p "$out"
cp -R "$scratch"/. "$out"/
